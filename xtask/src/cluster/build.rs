//! The workspace's release builds: the services and the load generator, for this machine or
//! for a target.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::state::project_root;

/// Where release builds of this workspace land (the services and the load generator), for a
/// target or for this machine.
pub fn release_dir(target: Option<&str>) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from);
    match target {
        Some(t) => base.join(t).join("release"),
        None => base.join("release"),
    }
}

/// Builds the services and returns the folder with the binaries.
pub fn build(target: Option<&str>) -> Result<PathBuf> {
    let root = project_root();
    let sh = Shell::new().context("starting a shell")?;
    sh.change_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target_args: Vec<String> = match target {
        Some(t) => {
            check_target(t)?;
            vec!["--target".to_string(), t.to_string()]
        }
        None => Vec::new(),
    };
    cmd!(
        sh,
        "{cargo} build --release --package services --bins --quiet {target_args...}"
    )
    // The step says what it builds; an echoed command line would be drawn through its bar.
    .quiet()
    .run()
    .with_context(|| match target {
        Some(t) if t.contains("musl") => format!(
            "building the services for {t} failed; the compiler's output above says why. A \
             linker error usually means the musl C toolchain is missing: `sudo apt-get install \
             musl-tools`; or build for the instances' glibc with `--target \
             x86_64-unknown-linux-gnu` at provision"
        ),
        _ => "building the services failed; the compiler's output above says why".to_string(),
    })?;
    Ok(release_dir(target))
}

/// This machine's own target triple (what a build without --target makes).
pub fn host_target() -> Result<String> {
    let version = duct::cmd!("rustc", "-vV")
        .read()
        .context("running rustc -vV")?;
    version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host target")
}

/// This machine's glibc version ("2.36"), which binaries built here for a `-gnu` target need
/// at least.
pub fn local_glibc() -> Result<String> {
    let text = duct::cmd!("getconf", "GNU_LIBC_VERSION")
        .read()
        .context("running getconf GNU_LIBC_VERSION")?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("getconf GNU_LIBC_VERSION said {text:?}"))
}

/// Fails, with the command that fixes it, when the Rust standard library of `target` is not
/// installed.
pub fn check_target(target: &str) -> Result<()> {
    let sysroot = duct::cmd!("rustc", "--print", "sysroot")
        .read()
        .context("running rustc --print sysroot")?;
    let lib = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .join("lib");
    if !lib.is_dir() {
        bail!(
            "the Rust target {target} is not installed: run `rustup target add {target}`{}",
            if target.contains("musl") {
                " (and `sudo apt-get install musl-tools` for crates that build C), or provision \
                 with --target x86_64-unknown-linux-gnu to build for the instances' glibc"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_target_names_the_command_that_installs_it() {
        let err = check_target("sparc64-unknown-linux-gnu")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rustup target add sparc64-unknown-linux-gnu"),
            "{err}"
        );
        let err = check_target("riscv64gc-unknown-linux-musl")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("musl-tools") && err.contains("--target x86_64-unknown-linux-gnu"),
            "{err}"
        );
        // This machine's own target is always there.
        check_target(&host_target().unwrap()).unwrap();
        let glibc = local_glibc().unwrap();
        assert!(glibc.starts_with("2."), "{glibc}");
    }
}
