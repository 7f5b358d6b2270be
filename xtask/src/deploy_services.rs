//! deploy-services: builds the gatekeeper, trusted host and proxy in release mode (for the
//! instances' target on aws), places each binary with its config on its host, starts it
//! (local: detached; aws: a systemd unit) and waits for its /health. A rerun replaces running
//! services: each gets SIGTERM and finishes its requests in flight first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::local;
use crate::progress::Progress;
use crate::render::{self, Script};
use crate::state::{Deployment, Host, ProviderKind, Role};
use crate::steps::Session;
use crate::transport;

const SERVICE_START: &str = include_str!("../scripts/service-start.sh");
const SERVICE_STOP: &str = include_str!("../scripts/service-stop.sh");
const SERVICE_HEALTH: &str = include_str!("../scripts/service-health.sh");
const SYSTEMD_UNIT: &str = include_str!("../scripts/service.unit.in");

/// How long a service gets to finish its requests when replaced.
const GRACE: Duration = Duration::from_secs(20);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new instance may take to accept SSH logins.
pub const SSH_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Started back to front, so each service finds the one it calls already up.
const ORDER: [Role; 3] = [Role::Proxy, Role::TrustedHost, Role::Gatekeeper];

pub fn binary_name(role: Role) -> Option<&'static str> {
    match role {
        Role::Proxy => Some("proxy"),
        Role::TrustedHost => Some("trusted-host"),
        Role::Gatekeeper => Some("gatekeeper"),
        _ => None,
    }
}

pub fn run(session: &mut Session) -> Result<()> {
    let progress = Progress::new("deploy-services", 4);
    let target = target_of(&session.deployment);
    progress.task(format!(
        "building the services (cargo build --release -p services{})",
        target.map_or(String::new(), |t| format!(" --target {t}"))
    ));
    let bin_dir = build(target)?;

    for role in ORDER {
        let host = session.deployment.host(role)?.clone();
        let name = binary_name(role).context("not a service role")?;
        progress.task(format!("starting {name} on {}", host.address));
        if let Some(ssh) = &host.ssh {
            ssh.wait_ready(SSH_READY_TIMEOUT)?;
        }
        stop_service(session, &host, name)?;
        install(
            &host,
            &bin_dir.join(name),
            name,
            &config_for(&session.deployment, role)?,
        )?;
        start_service(session, &host, name)?;
        wait_healthy(session, &host)?;
    }
    let base = session.deployment.public_gatekeeper_url()?;
    progress.note(format!(
        "the gatekeeper is up: {base}/ (pages {base}/read and {base}/write, JSON API POST {base}/api/query)"
    ));
    Ok(())
}

/// The Rust target the services are built for: None for this machine's own.
pub fn target_of(d: &Deployment) -> Option<&str> {
    d.settings.target.as_deref()
}

/// How a host's services are kept running: systemd on cloud instances, a detached process of
/// its own session on this machine.
fn supervisor(d: &Deployment) -> &'static str {
    match d.provider {
        ProviderKind::Aws => "systemd",
        ProviderKind::Local => "detached",
    }
}

/// Where release builds of this workspace land (the services and the load generator), for a
/// target or for this machine.
pub fn release_dir(target: Option<&str>) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::project_root().join("target"), PathBuf::from);
    match target {
        Some(t) => base.join(t).join("release"),
        None => base.join("release"),
    }
}

/// Builds the services and returns the folder with the binaries.
fn build(target: Option<&str>) -> Result<PathBuf> {
    let root = crate::project_root();
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

/// The service's config: its address, whom it accepts, whom it calls and the tokens.
fn config_for(d: &Deployment, role: Role) -> Result<serde_json::Value> {
    let host = |role| d.host(role);
    let port = d.settings.service_port;
    let url = |h: &Host| format!("http://{}:{port}", h.address);
    let listen = |h: &Host| format!("{}:{port}", h.address);
    let backend =
        |h: &Host| json!({ "name": h.name, "address": h.address, "port": d.settings.db_port });
    let (proxy, trusted, gatekeeper) = (
        host(Role::Proxy)?,
        host(Role::TrustedHost)?,
        host(Role::Gatekeeper)?,
    );
    Ok(match role {
        Role::Proxy => json!({
            "listen": listen(proxy),
            "allowed_peers": [trusted.address],
            "token": d.secrets.trusted_host_token,
            "manager": backend(host(Role::Manager)?),
            "workers": d.hosts_with_role(Role::Worker).map(backend).collect::<Vec<_>>(),
            "database": "filmdb",
            "user": "app",
            "password": d.secrets.app_password,
            "health_interval_ms": 500,
            "max_lag_seconds": 10,
            "statement_time_limit_seconds": 5,
        }),
        Role::TrustedHost => json!({
            "listen": listen(trusted),
            "allowed_peers": [gatekeeper.address],
            "token": d.secrets.gatekeeper_token,
            "proxy_url": url(proxy),
            "proxy_token": d.secrets.trusted_host_token,
            "outgoing_address": trusted.address,
            "request_timeout_ms": 10_000,
        }),
        Role::Gatekeeper => json!({
            "listen": listen(gatekeeper),
            "trusted_host_url": url(trusted),
            "trusted_host_token": d.secrets.gatekeeper_token,
            "outgoing_address": gatekeeper.address,
            "max_body_bytes": 64 * 1024,
            "request_timeout_ms": 15_000,
            "rate_per_second": 2000.0,
            "rate_burst": 4000,
        }),
        other => bail!("{other:?} runs no service"),
    })
}

/// Stops the service of a host: the one recorded and any other started with its config.
fn stop_service(session: &mut Session, host: &Host, name: &str) -> Result<()> {
    let key = format!("{}/service", host.name);
    if host.ssh.is_some() {
        let script = Script::new("service-stop", SERVICE_STOP)
            .param("HOST_DIR", host.dir.display().to_string())
            .param("SERVICE", name)
            .param("SUPERVISOR", supervisor(&session.deployment))
            .param("GRACE", GRACE.as_secs().to_string());
        transport::run_script(host, &script, b"")?;
    } else {
        if let Some(record) = session.deployment.processes.get(&key).cloned() {
            local::stop(&record, GRACE).with_context(|| format!("stopping {key}"))?;
        }
        for pid in local::find_processes_with_arg(&config_path(host)) {
            local::stop(&local::record_process(pid, "service")?, GRACE)?;
        }
    }
    if session.deployment.processes.remove(&key).is_some() {
        session.save()?;
    }
    Ok(())
}

pub fn config_path(host: &Host) -> String {
    host.dir.join("config.json").display().to_string()
}

fn install(host: &Host, binary: &Path, name: &str, config: &serde_json::Value) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    transport::put_file(host, name, &bytes, true)?;
    let config = serde_json::to_vec_pretty(config).context("serializing the config")?;
    transport::put_file(host, "config.json", &config, false)
}

fn start_service(session: &mut Session, host: &Host, name: &str) -> Result<()> {
    let supervisor = supervisor(&session.deployment);
    let mut script = Script::new("service-start", SERVICE_START)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SERVICE", name)
        .param("SUPERVISOR", supervisor);
    if supervisor == "systemd" {
        script = script.param("UNIT", systemd_unit(&host.dir, name)?);
    }
    transport::start_and_record(
        session,
        host,
        &script,
        format!("{}/service", host.name),
        name,
    )
}

/// The systemd unit that runs a service from its host's folder and restarts it when it fails.
fn systemd_unit(host_dir: &Path, name: &str) -> Result<String> {
    let in_dir = |file: &str| host_dir.join(file).display().to_string();
    render::fill(
        SYSTEMD_UNIT,
        &[
            ("SERVICE", name.to_string()),
            ("BINARY", in_dir(name)),
            ("CONFIG", in_dir("config.json")),
            ("LOG", in_dir("service.log")),
        ],
    )
}

/// Asks a service's /health once (`wait` zero) or until it answers; a remote service is asked
/// from its own host, where its port is open.
pub fn check_health(d: &Deployment, host: &Host, wait: Duration) -> Result<()> {
    let script = Script::new("service-health", SERVICE_HEALTH)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("ADDRESS", host.address.clone())
        .param("PORT", d.settings.service_port.to_string())
        .param("TIMEOUT", wait.as_secs().to_string());
    transport::run_script(host, &script, b"").map(drop)
}

fn wait_healthy(session: &Session, host: &Host) -> Result<()> {
    if host.ssh.is_some() {
        return check_health(&session.deployment, host, HEALTH_TIMEOUT);
    }
    let port = session.deployment.settings.service_port;
    let record = &session.deployment.processes[&format!("{}/service", host.name)];
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        match local::http_get(&host.address, port, "/health") {
            Ok((200, _)) => return Ok(()),
            _ if !local::is_running(record) => {
                let log = std::fs::read_to_string(host.dir.join("service.log")).unwrap_or_default();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                bail!(
                    "{} exited while starting; the end of its log:\n{}",
                    host.name,
                    tail.join("\n")
                );
            }
            _ if Instant::now() >= deadline => bail!(
                "{} did not answer /health on {}:{port} within {} s",
                host.name,
                host.address,
                HEALTH_TIMEOUT.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd itself reads the unit (no systemd runs here, so this is the check the aws path's
    /// units get before an instance sees them): no unknown key, an executable ExecStart.
    #[test]
    fn the_systemd_unit_passes_systemd_analyze_verify() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("proxy");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o700)).unwrap();
        let unit = dir.join("dbcluster-proxy.service");
        let text = systemd_unit(&dir, "proxy").unwrap();
        assert!(
            text.contains(&format!(
                "ExecStart={} --config {}/config.json",
                binary.display(),
                dir.display()
            )),
            "{text}"
        );
        std::fs::write(&unit, &text).unwrap();
        let verify = || {
            duct::cmd!("systemd-analyze", "verify", &unit)
                .stderr_to_stdout()
                .stdout_capture()
                .unchecked()
                .run()
                .expect("running systemd-analyze: install it (apt-get install systemd)")
        };
        let out = verify();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
        // The check can fail: without the binary, systemd refuses the unit.
        std::fs::remove_file(&binary).unwrap();
        let out = verify();
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        let host = duct::cmd!("rustc", "-vV").read().unwrap();
        let triple = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
        check_target(triple).unwrap();
    }
}
