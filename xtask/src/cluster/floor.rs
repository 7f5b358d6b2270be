//! The chain's floor: a relay beside each service, on its host and the port after the
//! services' (`Settings::floor_port`), which does nothing but the chain's plumbing (the
//! `relay` binary, `services::relay`). The bench sends the chain's load through the three
//! relays as it sends it through the services, so what the services spend above the relays is
//! their own work, measured on the same machines at the same time.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use contract::config::RelayConfig;

use super::{limits, services};
use crate::state::{Deployment, Host, Role};
use crate::transport::{self, script::Script};

const RELAY_START: &str = include_str!("../../scripts/relay-start.sh");
const RELAY_STOP: &str = include_str!("../../scripts/relay-stop.sh");

/// The relay's binary, in its host's folder; also the program whose CPU it is (cpu-sample.sh).
pub const PROGRAM: &str = "relay";

/// The hosts of the relays, in the order the chain's requests pass them: the gatekeeper's,
/// the trusted host's, the proxy's.
pub fn hosts(d: &Deployment) -> Result<Vec<Host>> {
    services::ORDER
        .iter()
        .rev()
        .map(|role| d.host(*role).cloned())
        .collect()
}

/// Where the load goes in: the relay on the gatekeeper's host.
pub fn url(d: &Deployment) -> Result<String> {
    let gatekeeper = d.host(Role::Gatekeeper)?;
    Ok(format!(
        "http://{}:{}",
        gatekeeper.address,
        d.settings.floor_port()
    ))
}

/// Places the relay and its config on the three hosts and starts them, the last hop first;
/// each is listening when this returns.
pub fn start(d: &Deployment, release_dir: &Path) -> Result<()> {
    let binary = release_dir.join(PROGRAM);
    let bytes = std::fs::read(&binary).with_context(|| {
        format!(
            "reading {} (`{}` builds it)",
            binary.display(),
            crate::state::command("deploy-services --force")
        )
    })?;
    let hosts = hosts(d)?;
    let port = d.settings.floor_port();
    for (i, host) in hosts.iter().enumerate().rev() {
        let address: IpAddr = host
            .address
            .parse()
            .with_context(|| format!("{}'s address {}", host.name, host.address))?;
        let config = RelayConfig {
            listen: SocketAddr::new(address, port),
            next_url: hosts
                .get(i + 1)
                .map(|next| format!("http://{}:{port}", next.address)),
            outgoing_address: Some(address),
        };
        transport::put_file(host, PROGRAM, &bytes, true)?;
        transport::put_file(host, "relay.json", &serde_json::to_vec(&config)?, false)?;
        let script = Script::new("relay-start", RELAY_START)
            .param("HOST_DIR", host.dir.display().to_string())
            .param("ADDRESS", host.address.clone())
            .param("PORT", port.to_string());
        transport::run_script(
            host,
            &limits::in_group(script, limits::of(d, &host.name)),
            b"",
        )
        .with_context(|| format!("starting the floor relay on {}", host.name))?;
    }
    Ok(())
}

/// Stops the host's relay, if one runs.
pub fn stop(host: &Host) -> Result<()> {
    let script =
        Script::new("relay-stop", RELAY_STOP).param("HOST_DIR", host.dir.display().to_string());
    transport::run_script(host, &script, b"").map(drop)
}
