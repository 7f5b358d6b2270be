//! failover: makes a worker the manager now: the one named (a planned switchover), or the one
//! that has applied the most. The proxy does it, as it does by itself when the manager is gone
//! for good: one implementation, and one failover at a time. It fences the manager if it
//! answers, lets every worker that answers apply what it received, promotes the chosen one and
//! points the others at it; writes go there at once. data.json records the new roles, the
//! fenced old manager and the failover. The proxy makes the old manager a worker of the new one
//! when it comes back with nothing more than the new one has; otherwise `repair` rebuilds it.

use std::time::Instant;

use anyhow::{bail, Result};

use crate::cluster::{services, sql, topology};
use crate::progress::Progress;
use crate::state::{self, Engine, Lock, Paths, Role, Session, Step, StepStatus};

pub fn run(paths: &Paths, to: Option<&str>) -> Result<()> {
    let started = Instant::now();
    let mut session = Session::open_live(paths, Lock::acquire(paths)?)?;
    let d = &session.deployment;
    if d.engine() == Engine::Galera {
        bail!(
            "a Galera cluster has no manager to fail over: every node holds every write, and \
             the proxy moves the writes to the next Synced node by itself when the writer \
             fails; `{}` shows which node writes, `{}` brings a stopped node back",
            state::command("status"),
            state::command("repair")
        );
    }
    if d.step(Step::InstallCluster).status != StepStatus::Done {
        bail!(
            "the cluster is not installed yet: run `{}` first",
            state::command("install-cluster")
        );
    }
    if d.step(Step::DeployServices).status != StepStatus::Done {
        bail!(
            "the proxy does failovers (by itself too), and it is not deployed yet: run `{}`",
            state::command("deploy-services")
        );
    }
    // What the proxy did by itself since the last look is recorded first.
    topology::follow(&mut session)?;
    let d = &session.deployment;
    let old = d.host(Role::Manager)?.clone();
    if let Some(name) = to {
        let workers: Vec<&str> = d
            .hosts_with_role(Role::Worker)
            .map(|w| w.name.as_str())
            .collect();
        if !workers.contains(&name) {
            bail!(
                "--to {name} is not a worker of this deployment; its workers are {}",
                workers.join(", ")
            );
        }
    }
    let progress = Progress::new("failover", 2);
    progress.task(format!(
        "asking the proxy to promote {} instead of {}",
        to.unwrap_or("the worker that has applied the most"),
        old.name
    ));
    let event = services::request_failover(d, to)?;
    progress.task("recording the new roles");
    topology::record_failover(&mut session, &event)?;
    let promoted = session.deployment.host(Role::Manager)?.clone();
    let semi_sync = match sql::semi_sync(&promoted) {
        Ok(sql::SemiSync::On { workers }) => format!("on ({workers} workers acknowledging)"),
        Ok(sql::SemiSync::FellBack) => "fell back to asynchronous".to_string(),
        Ok(sql::SemiSync::Disabled) => "off".to_string(),
        Err(e) => format!(
            "unknown ({})",
            format!("{e:#}").lines().next().unwrap_or("")
        ),
    };
    progress.note(format!(
        "{} is the manager (it had applied {}); {} is fenced{} until it rejoins by itself or \
         `{}` rebuilds it; semi-sync: {semi_sync}; took {:.1} s",
        event.to,
        event.position,
        event.from,
        if event.old_manager_answered {
            ""
        } else {
            " (it did not answer: it starts read-only whenever it comes back)"
        },
        state::command("repair"),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
