//! The role services on their hosts: each one's config (typed by `contract::config`), its
//! binary and config placed on the host, started under the host's supervisor (detached here, a
//! systemd unit on a machine of its own), stopped gracefully and asked for its health.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contract::config::{
    Account, BackendConfig, BackendSet, BackendsChanged, FairShare, GatekeeperConfig, ProxyConfig,
    TrustedHostConfig,
};
use contract::failover::{FailoverConfig, FailoverEvent, FailoverHistory};

use super::process;
use crate::state::{Deployment, Engine, Host, Role, Session};
use crate::transport::{self, script::Script, Supervisor};

const SERVICE_START: &str = include_str!("../../scripts/service-start.sh");
const SERVICE_STOP: &str = include_str!("../../scripts/service-stop.sh");
const SERVICE_HEALTH: &str = include_str!("../../scripts/service-health.sh");
const SERVICE_GET: &str = include_str!("../../scripts/service-get.sh");
const SERVICE_POST: &str = include_str!("../../scripts/service-post.sh");
const SYSTEMD_UNIT: &str = include_str!("../../scripts/service.unit.in");

/// The proxy's database accounts (sql/accounts.sql makes them).
pub const READ_ACCOUNT: &str = "app_read";
pub const WRITE_ACCOUNT: &str = "app";
/// The proxy's account for failovers (sql/accounts.sql).
pub const FAILOVER_ACCOUNT: &str = "failover";
/// Connections the proxy's pool holds to each backend, per account.
pub const PROXY_CONNECTIONS_PER_BACKEND: usize = 32;
/// The longest a statement of the proxy's accounts may run.
pub const STATEMENT_TIME_LIMIT_SECONDS: u64 = 5;

/// What a service reads of the next one's answer: the proxy sends at most 1 MiB of values
/// (max_result_bytes), which JSON may escape to about six times that.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// A service's memory under systemd: far above what it uses (tens of MB), far below the
/// instance's.
const SERVICE_MEMORY_MAX: &str = "1G";

/// How long a service gets to finish its requests when stopped.
const GRACE: Duration = Duration::from_secs(20);

/// Started back to front, so each service finds the one it calls already up.
pub const ORDER: [Role; 3] = [Role::Proxy, Role::TrustedHost, Role::Gatekeeper];

/// The binary (and service) name of a service role.
pub fn binary_name(role: Role) -> Result<&'static str> {
    Ok(match role {
        Role::Proxy => "proxy",
        Role::TrustedHost => "trusted-host",
        Role::Gatekeeper => "gatekeeper",
        other => bail!("{other} runs no service"),
    })
}

pub fn process_key(host: &Host) -> String {
    format!("{}/service", host.name)
}

/// The service's config, serialized: its address, whom it accepts, whom it calls, the tokens.
pub fn config_for(d: &Deployment, role: Role) -> Result<Vec<u8>> {
    let port = d.settings.service_port;
    let (proxy, trusted, gatekeeper) = (
        d.host(Role::Proxy)?,
        d.host(Role::TrustedHost)?,
        d.host(Role::Gatekeeper)?,
    );
    let url = |h: &Host| format!("http://{}:{port}", h.address);
    let listen = |h: &Host| -> Result<std::net::SocketAddr> {
        format!("{}:{port}", h.address)
            .parse()
            .with_context(|| format!("{} has no IP address: {:?}", h.name, h.address))
    };
    let ip = |h: &Host| -> Result<std::net::IpAddr> {
        h.address
            .parse()
            .with_context(|| format!("{} has no IP address: {:?}", h.name, h.address))
    };
    let backend = |h: &Host| BackendConfig {
        name: h.name.clone(),
        address: h.address.clone(),
        port: d.settings.db_port,
    };
    // Galera: the first node is where writes go until the proxy has probed every node.
    let (first, others) = match d.engine() {
        Engine::Replication => (Role::Manager, Role::Worker),
        Engine::Galera => (Role::Node, Role::Node),
    };
    // (A server `scale` is taking out is not the first: the proxy's set leaves it out.)
    let first = d
        .hosts_with_role(first)
        .find(|h| d.in_service(h))
        .with_context(|| format!("data.json has no {first} host in service"))?;
    let json = match role {
        Role::Proxy => serde_json::to_vec_pretty(&ProxyConfig {
            listen: listen(proxy)?,
            allowed_peers: vec![ip(trusted)?],
            token: d.secrets.trusted_host_token.clone(),
            engine: d.engine(),
            manager: backend(first),
            workers: d
                .hosts_with_role(others)
                .filter(|h| h.name != first.name && d.in_service(h))
                .map(backend)
                .collect(),
            database: "filmdb".into(),
            reader: Account {
                user: READ_ACCOUNT.into(),
                password: d.secrets.app_read_password.clone(),
            },
            writer: Account {
                user: WRITE_ACCOUNT.into(),
                password: d.secrets.app_password.clone(),
            },
            health_interval_ms: 500,
            max_lag_seconds: 10,
            statement_time_limit_seconds: STATEMENT_TIME_LIMIT_SECONDS,
            connections_per_backend: PROXY_CONNECTIONS_PER_BACKEND,
            // The policy caps a read at 1000 rows with LIMIT; the size cap is what holds
            // rows of long values.
            max_result_rows: 1000,
            max_result_bytes: 1024 * 1024,
            max_recursive_iterations: 1000,
            failover: (d.engine() == Engine::Replication).then(|| FailoverConfig {
                after_ms: u64::from(d.settings.failover_after) * 1000,
                cooldown_seconds: u64::from(d.settings.failover_cooldown),
                account: Account {
                    user: FAILOVER_ACCOUNT.into(),
                    password: d.secrets.failover_password.clone(),
                },
                replication: Account {
                    user: "repl".into(),
                    password: d.secrets.replication_password.clone(),
                },
                semi_sync_timeout_ms: d.settings.semi_sync_timeout_ms,
                token: d.secrets.failover_token.clone(),
            }),
            fair_share: Some(fair_share(d, first)),
            operator_token: Some(d.secrets.failover_token.clone()),
        }),
        Role::TrustedHost => serde_json::to_vec_pretty(&TrustedHostConfig {
            listen: listen(trusted)?,
            allowed_peers: vec![ip(gatekeeper)?],
            token: d.secrets.gatekeeper_token.clone(),
            proxy_url: url(proxy),
            proxy_token: d.secrets.trusted_host_token.clone(),
            outgoing_address: ip(trusted)?,
            request_timeout_ms: 10_000,
            max_answer_bytes: MAX_ANSWER_BYTES,
        }),
        Role::Gatekeeper => serde_json::to_vec_pretty(&GatekeeperConfig {
            listen: listen(gatekeeper)?,
            trusted_host_url: url(trusted),
            trusted_host_token: d.secrets.gatekeeper_token.clone(),
            outgoing_address: ip(gatekeeper)?,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 15_000,
            max_answer_bytes: MAX_ANSWER_BYTES,
            rate_per_second: 2000.0,
            rate_burst: 4000,
            // The bench client is the proxy's host.
            unlimited_clients: vec![ip(proxy)?],
            // Far above what the chain behind serves at once (32 connections per backend),
            // far below what would exhaust the gatekeeper's memory or file descriptors.
            max_in_flight: 512,
            max_in_flight_per_client: 64,
        }),
        other => bail!("{other} runs no service"),
    };
    json.context("serializing the config")
}

/// The proxy's budget per client, queue per backend and cost bound, from the settings or the
/// cluster's size: each server runs eight queries per CPU of its quota at once (at least 4; 8
/// with no quota, as on a machine of its own), one client holds half of them at most, and a
/// client may use an eighth of a second of query time per second for each server of the
/// cluster (past each query's first millisecond), as much again after an idle second.
fn fair_share(d: &Deployment, server: &Host) -> FairShare {
    let slots = match d.settings.backend_slots {
        0 => d
            .limits
            .hosts
            .get(&server.name)
            .and_then(|l| l.cpus)
            .map_or(8, |cpus| ((cpus.as_cpus() * 8.0).ceil() as usize).max(4)),
        n => n as usize,
    };
    let servers = d
        .hosts
        .iter()
        .filter(|h| matches!(h.role, Role::Manager | Role::Worker | Role::Node))
        .count()
        .max(1);
    let share = match d.settings.client_db_share {
        0.0 => servers as f64 / 8.0,
        share => share,
    };
    FairShare {
        client_seconds_per_second: share,
        client_burst_seconds: share,
        backend_slots: slots,
        backend_slots_per_client: (slots / 2).max(1),
        max_examined_rows: match d.settings.max_examined_rows {
            0 => u64::MAX,
            rows => rows,
        },
    }
}

/// Places the service's binary and its config (owner-only: it holds tokens) on its host.
pub fn install(host: &Host, binary: &Path, config: &[u8]) -> Result<()> {
    let name = binary_name(host.role)?;
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    transport::put_file(host, name, &bytes, true)?;
    transport::put_file(host, "config.json", config, false)
}

/// Starts the host's service (or adopts the one running) and records its process.
pub fn start(session: &mut Session, host: &Host) -> Result<()> {
    let name = binary_name(host.role)?;
    let supervisor = transport::supervisor(host);
    let mut script = Script::new("service-start", SERVICE_START)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SERVICE", name)
        .param("SUPERVISOR", supervisor.as_str())
        .param("UNIT_NAME", process::unit_name(host));
    if supervisor == Supervisor::Systemd {
        script = script.param("UNIT", systemd_unit(&host.dir, name)?);
    }
    process::start_and_record(session, host, script, process_key(host), name)
}

/// Stops the host's service gracefully, recorded or not, and the floor relay beside it if a
/// bench left one; nothing to do when none runs. Returns the pid of the service stopped, if
/// one ran (and was not under systemd).
pub fn stop(session: &mut Session, host: &Host) -> Result<Option<u32>> {
    super::floor::stop(host)?;
    let script = Script::new("service-stop", SERVICE_STOP)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SERVICE", binary_name(host.role)?)
        .param("SUPERVISOR", transport::supervisor(host).as_str())
        .param("UNIT_NAME", process::unit_name(host))
        .param("GRACE", GRACE.as_secs().to_string());
    process::stop_and_forget(session, host, &script, &process_key(host))
}

/// Asks a service's /health once (`wait` zero) or until it answers; it is asked from its own
/// host, where its port is open. A detached service that is not running fails at once, with
/// the end of its log.
pub fn check_health(d: &Deployment, host: &Host, wait: Duration) -> Result<()> {
    let script = Script::new("service-health", SERVICE_HEALTH)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SERVICE", binary_name(host.role)?)
        .param("SUPERVISOR", transport::supervisor(host).as_str())
        .param("ADDRESS", host.address.clone())
        .param("PORT", d.settings.service_port.to_string())
        .param("TIMEOUT", wait.as_secs().to_string());
    transport::run_script(host, &script, b"").map(drop)
}

/// The body of `GET path` on the host's service, asked from its own host.
pub fn get(d: &Deployment, host: &Host, path: &str) -> Result<String> {
    let script = Script::new("service-get", SERVICE_GET)
        .param("ADDRESS", host.address.clone())
        .param("PORT", d.settings.service_port.to_string())
        .param("URL_PATH", path);
    transport::run_script(host, &script, b"")
}

/// Asks the proxy to fail over now (to `to`, or to the worker that has applied the most), as
/// a person: past its cool-down. Returns what it did.
pub fn request_failover(d: &Deployment, to: Option<&str>) -> Result<FailoverEvent> {
    let proxy = d.host(Role::Proxy)?;
    let script = Script::new("service-post", SERVICE_POST)
        .param("ADDRESS", proxy.address.clone())
        .param("PORT", d.settings.service_port.to_string())
        .param("URL_PATH", "/failover");
    let body = serde_json::json!({ "to": to });
    let input = format!("{}\n{body}", d.secrets.failover_token);
    let answer = transport::run_script(proxy, &script, input.as_bytes())
        .context("the proxy does failovers (as it does by itself); it refused or did not answer")?;
    serde_json::from_str(&answer).with_context(|| format!("the proxy answered {answer:?}"))
}

/// Gives the proxy the cluster's servers as data.json has them now (every one in service):
/// its config for its next start, then the running proxy, which answers once the servers
/// left out have finished what was sent to them. Returns what it did.
pub fn set_backends(d: &Deployment) -> Result<BackendsChanged> {
    let proxy = d.host(Role::Proxy)?;
    let config = config_for(d, Role::Proxy)?;
    transport::put_file(proxy, "config.json", &config, false)?;
    let config: ProxyConfig = serde_json::from_slice(&config).context("reading back the config")?;
    let set = BackendSet {
        servers: std::iter::once(config.manager)
            .chain(config.workers)
            .collect(),
    };
    let script = Script::new("service-post", SERVICE_POST)
        .param("ADDRESS", proxy.address.clone())
        .param("PORT", d.settings.service_port.to_string())
        .param("URL_PATH", "/backends");
    let body = serde_json::to_string(&set).context("serializing the servers")?;
    let input = format!("{}\n{body}", d.secrets.failover_token);
    let answer = transport::run_script(proxy, &script, input.as_bytes()).with_context(|| {
        format!(
            "the proxy did not take the new set of servers (a proxy deployed before `scale` \
             existed has no /backends: `{}` replaces it)",
            crate::state::command("deploy-services --force")
        )
    })?;
    serde_json::from_str(&answer).with_context(|| format!("the proxy answered {answer:?}"))
}

/// Waits, up to `within`, until the proxy's own probes find the server `name` healthy (it
/// sends it queries again); returns the problem the proxy still reports if they do not.
pub fn until_the_proxy_serves(
    d: &Deployment,
    name: &str,
    within: Duration,
) -> Result<Option<String>> {
    let proxy = d.host(Role::Proxy)?;
    let deadline = std::time::Instant::now() + within;
    loop {
        let body = get(d, proxy, "/health")?;
        let health: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("the proxy's /health said {body:?}"))?;
        let backend = health["backends"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["name"] == name))
            .cloned()
            .unwrap_or_default();
        if backend["healthy"] == true {
            return Ok(None);
        }
        if std::time::Instant::now() >= deadline {
            let problem = backend["problem"].as_str().unwrap_or("it does not list it");
            return Ok(Some(problem.to_string()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The server the proxy sends writes to now, as its /health says.
pub fn proxy_writer(d: &Deployment) -> Result<String> {
    let body = get(d, d.host(Role::Proxy)?, "/health")?;
    let health: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("the proxy's /health said {body:?}"))?;
    health["writer"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the proxy's /health names no writer: {body}"))
}

/// What the proxy says of its failovers: its settings, every failover and rejoin, its last
/// verdict.
pub fn failover_history(d: &Deployment) -> Result<FailoverHistory> {
    let body = get(d, d.host(Role::Proxy)?, "/failovers")?;
    serde_json::from_str(&body).with_context(|| format!("the proxy's /failovers said {body:?}"))
}

/// The systemd unit that runs a service from its host's folder and restarts it when it fails.
fn systemd_unit(host_dir: &Path, name: &str) -> Result<String> {
    let in_dir = |file: &str| host_dir.join(file).display().to_string();
    super::sql::fill(
        SYSTEMD_UNIT,
        &[
            ("SERVICE", name.to_string()),
            ("BINARY", in_dir(name)),
            ("CONFIG", in_dir("config.json")),
            ("LOG", in_dir("service.log")),
            ("ACCOUNT", format!("dbcluster-{name}")),
            ("MEMORY_MAX", SERVICE_MEMORY_MAX.to_string()),
        ],
    )
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
        // And judges its hardening: systemd's exposure score (0 locked down, 10 open; a unit
        // with none of the hardening scores 9.6) stays in its "OK" band.
        let security = duct::cmd!("systemd-analyze", "security", "--offline=yes", &unit)
            .stderr_to_stdout()
            .read()
            .unwrap();
        let exposure: f64 = security
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for dbcluster-proxy.service: "))
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in: {security}"));
        assert!(exposure <= 2.0, "exposure {exposure}:\n{security}");
        assert!(text.contains("User=dbcluster-proxy\n"), "{text}");
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

    /// The configs are the services' own types: what xtask writes, the services read.
    #[test]
    fn configs_are_the_services_types() {
        let settings = crate::state::Settings::defaults(crate::state::ProviderKind::Local);
        let hosts = crate::providers::local::plan_hosts(&settings, Path::new("/s"));
        let d = Deployment::new("dbc-t".into(), settings, hosts);
        let proxy: ProxyConfig =
            serde_json::from_slice(&config_for(&d, Role::Proxy).unwrap()).unwrap();
        assert_eq!(proxy.workers.len(), 3);
        assert_eq!(
            proxy.allowed_peers,
            ["127.0.1.8".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(proxy.writer.password, d.secrets.app_password);
        assert_eq!(proxy.reader.password, d.secrets.app_read_password);
        assert_ne!(proxy.reader.user, proxy.writer.user);
        let gatekeeper: GatekeeperConfig =
            serde_json::from_slice(&config_for(&d, Role::Gatekeeper).unwrap()).unwrap();
        assert_eq!(gatekeeper.trusted_host_url, "http://127.0.1.8:8080");
        assert_eq!(
            gatekeeper.unlimited_clients,
            ["127.0.1.7".parse::<std::net::IpAddr>().unwrap()],
            "the bench client, on the proxy's host"
        );
        let err = config_for(&d, Role::Manager).unwrap_err().to_string();
        assert!(err.contains("manager runs no service"), "{err}");
    }
}
