//! failover: makes a worker the manager. The old manager is fenced (read-only, semi-sync off)
//! if it answers; every reachable worker stops receiving and applies what it received; the
//! most advanced one (or the one named) is promoted; the others replicate from it. The proxy
//! follows by itself: it sends writes to the one server that takes writes and replicates from
//! nobody, so the chain is not restarted and reads go on throughout. data.json records the
//! new roles, the fenced old manager and the failover; `repair` later makes the old manager a
//! worker of the new one.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{server, sql, topology};
use crate::progress::Progress;
use crate::state::{
    self, now, Engine, FailoverRecord, Host, Lock, Paths, Role, Session, Step, StepStatus,
};

/// How long a worker gets to apply what it received before the choice.
const DRAIN: Duration = Duration::from_secs(30);

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
    let old = d.host(Role::Manager)?.clone();
    let workers: Vec<Host> = d.hosts_with_role(Role::Worker).cloned().collect();
    if let Some(name) = to {
        if !workers.iter().any(|w| w.name == name) {
            let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
            bail!(
                "--to {name} is not a worker of this deployment; its workers are {}",
                names.join(", ")
            );
        }
    }
    let progress = Progress::new("failover", 4);

    progress.task(format!("fencing the manager ({})", old.name));
    let old_answered = match topology::fence(&old) {
        Ok(()) => true,
        Err(e) => {
            progress.note(format!(
                "{} does not answer ({}): it starts read-only whenever it comes back",
                old.name,
                first_line(&e)
            ));
            false
        }
    };

    progress.task("letting every worker apply what it received");
    let mut reachable = Vec::new();
    for worker in workers.iter().filter(|w| !d.fenced.contains(&w.name)) {
        match topology::drain(worker, DRAIN) {
            Ok(position) => {
                progress.note(format!("{} has applied {position}", worker.name));
                reachable.push((worker.clone(), position));
            }
            Err(e) => progress.note(format!("{} is left out: {}", worker.name, first_line(&e))),
        }
    }
    let (chosen, position) = match to {
        Some(name) => reachable
            .iter()
            .find(|(w, _)| w.name == name)
            .with_context(|| format!("{name} does not answer: it cannot be promoted"))?,
        None => topology::most_advanced(&reachable)?,
    }
    .clone();

    progress.task(format!("promoting {}", chosen.name));
    topology::promote(&chosen, d.settings.semi_sync_timeout_ms)?;
    let others: Vec<Host> = reachable
        .iter()
        .map(|(w, _)| w.clone())
        .filter(|w| w.name != chosen.name)
        .collect();

    // The record first: from here on the promoted worker is the manager, whatever happens.
    for host in &mut session.deployment.hosts {
        if host.name == chosen.name {
            host.role = Role::Manager;
        } else if host.name == old.name {
            host.role = Role::Worker;
        }
    }
    session.deployment.fenced.retain(|h| *h != chosen.name);
    if !session.deployment.fenced.contains(&old.name) {
        session.deployment.fenced.push(old.name.clone());
    }
    session.deployment.failovers.push(FailoverRecord {
        at: now(),
        from: old.name.clone(),
        to: chosen.name.clone(),
        position: position.to_string(),
        old_manager_answered: old_answered,
    });
    session.save()?;
    // Its config says manager from now on (kept for its next start; it runs as it is).
    let promoted = session
        .deployment
        .hosts
        .iter()
        .find(|h| h.name == chosen.name)
        .cloned()
        .context("the promoted host vanished from the record")?;
    server::write_config(&session.deployment, &promoted)?;

    progress.task(format!(
        "pointing {} other workers at {}",
        others.len(),
        chosen.name
    ));
    for worker in &others {
        topology::replicate_from(&session.deployment, worker, &promoted)?;
    }
    let semi_sync = match sql::semi_sync(&promoted) {
        Ok(sql::SemiSync::On { workers }) => format!("on ({workers} workers acknowledging)"),
        Ok(sql::SemiSync::FellBack) => "fell back to asynchronous".to_string(),
        Ok(sql::SemiSync::Disabled) => "off".to_string(),
        Err(e) => format!("unknown ({})", first_line(&e)),
    };
    progress.note(format!(
        "{} is the manager (it had applied {position}); {} replicate from it; {} is fenced \
         until `{}`; semi-sync: {semi_sync}; took {:.1} s",
        chosen.name,
        if others.is_empty() {
            "no other workers".to_string()
        } else {
            others
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
        old.name,
        state::command("repair"),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
