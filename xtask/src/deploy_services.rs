//! deploy-services: builds the gatekeeper, trusted host and proxy in release mode, places each
//! binary with its config on its host, starts it detached and waits for its /health. A rerun
//! replaces running services: each gets SIGTERM and finishes its requests in flight first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::local;
use crate::progress::Progress;
use crate::render::Script;
use crate::state::{Deployment, Host, Role};
use crate::steps::Session;
use crate::transport;

const SERVICE_START: &str = include_str!("../scripts/service-start.sh");

/// How long a service gets to finish its requests when replaced.
const GRACE: Duration = Duration::from_secs(20);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

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
    progress.task("building the services (cargo build --release -p services)");
    let bin_dir = build()?;

    for role in ORDER {
        let host = session.deployment.host(role)?.clone();
        let name = binary_name(role).context("not a service role")?;
        progress.task(format!("starting {name} on {}", host.address));
        stop_service(session, &host)?;
        install(
            &host,
            &bin_dir.join(name),
            name,
            &config_for(&session.deployment, role)?,
        )?;
        start_service(session, &host, name)?;
        wait_healthy(session, &host)?;
    }
    let base = session.deployment.gatekeeper_url()?;
    progress.note(format!(
        "the gatekeeper is up: {base}/ (pages {base}/read and {base}/write, JSON API POST {base}/api/query)"
    ));
    Ok(())
}

/// Where release builds of this workspace land (the services and the load generator).
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::project_root().join("target"), PathBuf::from)
        .join("release")
}

/// Builds the services for this machine and returns the folder with the binaries.
fn build() -> Result<PathBuf> {
    let root = crate::project_root();
    let sh = Shell::new().context("starting a shell")?;
    sh.change_dir(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    cmd!(
        sh,
        "{cargo} build --release --package services --bins --quiet"
    )
    .run()
    .context("building the services failed; the compiler's output above says why")?;
    Ok(release_dir())
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
fn stop_service(session: &mut Session, host: &Host) -> Result<()> {
    let key = format!("{}/service", host.name);
    if let Some(record) = session.deployment.processes.get(&key).cloned() {
        local::stop(&record, GRACE).with_context(|| format!("stopping {key}"))?;
        session.deployment.processes.remove(&key);
        session.save()?;
    }
    for pid in local::find_processes_with_arg(&config_path(host)) {
        local::stop(&local::record_process(pid, "service")?, GRACE)?;
    }
    Ok(())
}

pub fn config_path(host: &Host) -> String {
    host.dir.join("config.json").display().to_string()
}

fn install(
    host: &Host,
    binary: &std::path::Path,
    name: &str,
    config: &serde_json::Value,
) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    // Written beside and renamed over: a running binary is never written into.
    let staged = host.dir.join(format!(".{name}.new"));
    std::fs::write(&staged, bytes).with_context(|| format!("writing {}", staged.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&staged, host.dir.join(name)).context("placing the service binary")?;
    let config = serde_json::to_vec_pretty(config).context("serializing the config")?;
    transport::put_file(host, "config.json", &config, false)?;
    Ok(())
}

fn start_service(session: &mut Session, host: &Host, name: &str) -> Result<()> {
    let script = Script::new("service-start", SERVICE_START)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SERVICE", name);
    transport::start_and_record(
        session,
        host,
        &script,
        format!("{}/service", host.name),
        name,
    )
}

fn wait_healthy(session: &Session, host: &Host) -> Result<()> {
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
