//! teardown: removes everything the deployment created, through its provider (local: stops
//! every process of the hosts and removes their folders; aws: terminates the instances and
//! deletes what provision created). Processes are found by their recorded identity or by a
//! command line naming one of the deployment's own config files; nothing else is signalled.

use anyhow::{bail, Result};

use crate::engine::Engine;
use crate::flags::{BenchArgs, TeardownArgs};
use crate::providers::{self, aws};
use crate::state::{now, Lock, Session, Step};

/// The `teardown` command: the recorded deployment, or an aws one whose data.json is lost.
pub fn command(engine: &Engine, args: &TeardownArgs) -> Result<()> {
    let paths = &engine.paths;
    let existing = paths.load()?;
    if let Some(id) = &args.aws_deployment {
        let _lock = Lock::acquire(paths)?;
        if existing
            .as_ref()
            .is_some_and(|d| d.is_live() && d.id == *id)
        {
            bail!(
                "{id} is the deployment of {}: run `{}` without --aws-deployment",
                paths.data_json.display(),
                crate::state::command("teardown")
            );
        }
        return aws::teardown_lost(
            paths,
            id,
            args.region.as_deref(),
            args.aws_endpoint.as_deref(),
        );
    }
    match existing {
        None => eprintln!(
            "teardown: nothing to do, no deployment at {}",
            paths.data_json.display()
        ),
        Some(d) if !d.is_live() => eprintln!(
            "teardown: deployment {} was already torn down at {}; nothing to do",
            d.id,
            d.torn_down_at.unwrap_or_default()
        ),
        Some(_) => engine.step(Step::Teardown, false, &BenchArgs::default())?,
    }
    Ok(())
}

/// The work of the step, recorded by the engine.
pub fn run(session: &mut Session) -> Result<()> {
    providers::of(session.deployment.provider()).destroy(session)?;
    session.deployment.torn_down_at = Some(now());
    // Nothing needs them any more: data.json keeps the record, not the keys.
    session.deployment.secrets.forget();
    eprintln!(
        "teardown: deployment {} removed ({} hosts); results/ is kept",
        session.deployment.id,
        session.deployment.hosts.len()
    );
    Ok(())
}
