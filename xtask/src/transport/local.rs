//! This machine as a host: scripts run under bash here, as the current user.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::script::Script;
use crate::state::Host;

pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Runs a script in the host's folder, feeding it `stdin`; returns what it printed. A failure
/// carries the script's error output. The script dies with this process (a killed xtask leaves
/// no half-done script behind); what it starts detached, like a database server, lives on.
pub fn run_script(host: &Host, script: &Script, stdin: &[u8]) -> Result<String> {
    create_dir(&host.dir)?;
    let output = dies_with_us(duct::cmd("bash", ["-c", &script.text()]))
        .dir(&host.dir)
        .stdin_bytes(stdin)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("starting bash for {} on {}", script.name(), host.name))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let status = output
            .status
            .code()
            .map_or_else(|| output.status.to_string(), |c| format!("exit status {c}"));
        bail!(
            "{} on {} failed ({status}): {}",
            script.name(),
            host.name,
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// Copies every folder in `from` (not the files beside them) into `to`.
pub fn copy_folders(from: &Path, to: &Path) -> Result<()> {
    create_dir(to)?;
    let Ok(entries) = fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
        duct::cmd!("cp", "-r", entry.path(), to)
            .stderr_capture()
            .run()
            .with_context(|| format!("copying {}", entry.path().display()))?;
    }
    Ok(())
}

/// Makes a command die with this process: a killed xtask leaves no half-done work running
/// that a rerun would collide with. What the command itself starts detached lives on.
pub fn dies_with_us(command: duct::Expression) -> duct::Expression {
    command.before_spawn(|command| {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(())
    })
}
