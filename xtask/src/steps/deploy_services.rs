//! deploy-services: builds the gatekeeper, trusted host and proxy in release mode (for the
//! deployment's target), places each binary with its config on its host, starts it under the
//! provider's supervisor (local: detached; aws: a systemd unit) and waits for its /health. A
//! rerun replaces running services: each gets SIGTERM and finishes its requests in flight first.

use std::time::Duration;

use anyhow::Result;

use crate::cluster::{build, services};
use crate::progress::Progress;
use crate::providers;
use crate::state::Session;
use crate::transport;

const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(session: &mut Session) -> Result<()> {
    let progress = Progress::new("deploy-services", 4);
    let provider = providers::of(session.deployment.provider());
    let target = session.deployment.settings.target.clone();
    let building = format!(
        "building the services (cargo build --release -p services{})",
        target
            .as_deref()
            .map_or(String::new(), |t| format!(" --target {t}"))
    );
    progress.task(&building);
    // The compiler's warnings and errors print as they come, under a line that says what is
    // built, with the bar off the screen.
    let bin_dir = progress.suspend(|| {
        if progress.is_drawn() {
            eprintln!("deploy-services: {building}");
        }
        build::build(target.as_deref())
    })?;

    for role in services::ORDER {
        let host = session.deployment.host(role)?.clone();
        let name = services::binary_name(role)?;
        progress.task(format!("starting {name} on {}", host.address));
        transport::wait_ready(&host)?;
        services::stop(session, &host)?;
        let config = services::config_for(&session.deployment, role)?;
        services::install(&host, &bin_dir.join(name), &config)?;
        services::start(session, &host)?;
        services::check_health(&session.deployment, &host, HEALTH_TIMEOUT)?;
    }
    let base = provider.public_gatekeeper_url(&session.deployment)?;
    progress.note(format!(
        "the gatekeeper is up: {base}/ (pages {base}/read and {base}/write, JSON API POST {base}/api/query)"
    ));
    Ok(())
}
