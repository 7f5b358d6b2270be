//! scale: sets the number of workers while the cluster serves.
//!
//! A worker added gets a host of its own (the provider's next), a server, a consistent copy of
//! a serving worker's data with the GTID position it was taken at (the manager's only when no
//! worker serves), replication from the manager (semi-sync acknowledging) and, once it has
//! applied everything the manager had, the proxy's reads. A worker removed gets no new reads
//! from the proxy and finishes what it had; then its server stops and its host goes. The
//! manager is never removed.
//!
//! Each worker's phase is in data.json before the phase begins, so a rerun (with the same
//! count or another) goes on, or rolls back, from where the last one stopped.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{limits, server, services, sql, topology};
use crate::progress::Progress;
use crate::providers::{self, Provider};
use crate::state::{
    self, Deployment, Engine, Host, Lock, Paths, Role, ScalePhase, Session, Step, StepStatus,
};

/// How long a new worker may take to apply what the manager wrote since its copy.
const CATCH_UP: Duration = Duration::from_secs(300);
/// How long the proxy may take to find a new worker eligible (a round of probes is 500 ms).
const PROXY_SERVES_WITHIN: Duration = Duration::from_secs(30);

/// What `scale` does to reach a number of workers.
#[derive(Debug, PartialEq, Eq)]
pub struct ScalePlan {
    /// Workers that go: joining ones no longer wanted, then serving ones.
    pub leave: Vec<String>,
    /// Workers an earlier run began to add, to finish adding.
    pub finish: Vec<String>,
    /// Names of the workers to add.
    pub add: Vec<String>,
}

/// A worker's number in its name (`worker-4`: 4); 0 for another name (a former manager).
fn number(name: &str) -> u32 {
    name.strip_prefix("worker-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Plans the way to `target` workers from the serving ones (with whether each is fenced) and
/// the ones an earlier run was adding. Serving workers stay before joining ones are kept; the
/// ones that go are fenced ones first, then the newest. New names follow the highest in use.
pub fn plan(
    serving: &[(String, bool)],
    joining: &[String],
    taken: &[String],
    target: usize,
) -> ScalePlan {
    let mut joining = joining.to_vec();
    joining.sort_by_key(|n| number(n));
    let mut leave = Vec::new();
    let kept_joining = target.saturating_sub(serving.len()).min(joining.len());
    leave.extend(joining.split_off(kept_joining));
    if serving.len() > target {
        let mut going: Vec<&(String, bool)> = serving.iter().collect();
        going.sort_by_key(|(name, fenced)| {
            (std::cmp::Reverse(*fenced), std::cmp::Reverse(number(name)))
        });
        leave.extend(
            going[..serving.len() - target]
                .iter()
                .map(|(n, _)| n.clone()),
        );
    }
    let missing = target.saturating_sub(serving.len() + joining.len());
    let first = taken.iter().map(|n| number(n)).max().unwrap_or(0) + 1;
    ScalePlan {
        leave,
        finish: joining,
        add: (0..missing as u32)
            .map(|i| format!("worker-{}", first + i))
            .collect(),
    }
}

pub fn run(paths: &Paths, workers: u8) -> Result<()> {
    let started = Instant::now();
    let mut session = Session::open_live(paths, Lock::acquire(paths)?)?;
    check(&session.deployment, workers)?;
    // What the proxy did by itself (a failover) is recorded first: the manager never goes.
    topology::follow(&mut session)?;
    let d = &session.deployment;
    let provider = providers::of(d.provider());
    let serving: Vec<(String, bool)> = d
        .hosts_with_role(Role::Worker)
        .filter(|h| d.in_service(h))
        .map(|h| (h.name.clone(), d.fenced.contains(&h.name)))
        .collect();
    let joining: Vec<String> = d
        .scaling
        .iter()
        .filter(|(_, phase)| **phase != ScalePhase::Leaving)
        .map(|(name, _)| name.clone())
        .collect();
    let taken: Vec<String> = d
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .chain(d.scaling.keys().cloned())
        .collect();
    let mut todo = plan(&serving, &joining, &taken, workers.into());
    // Workers an earlier run was removing go first.
    todo.leave.extend(
        d.scaling
            .iter()
            .filter(|(_, phase)| **phase == ScalePhase::Leaving)
            .map(|(name, _)| name.clone()),
    );
    let progress = Progress::new(
        "scale",
        (todo.leave.len() + 2 * (todo.finish.len() + todo.add.len()) + 1) as u64,
    );
    if !todo.leave.is_empty() {
        remove_workers(&mut session, provider, &todo.leave, &progress)?;
    }
    for name in todo.finish.iter().chain(&todo.add) {
        add_worker(&mut session, provider, name, &progress)?;
    }
    progress.task("recording the number of workers");
    session.deployment.settings.workers = workers;
    session.save()?;
    let d = &session.deployment;
    let names: Vec<&str> = d
        .hosts_with_role(Role::Worker)
        .map(|h| h.name.as_str())
        .collect();
    let semi_sync = match sql::semi_sync(d.host(Role::Manager)?) {
        Ok(sql::SemiSync::On { workers }) => format!("on ({workers} workers acknowledging)"),
        Ok(sql::SemiSync::FellBack) => "fell back to asynchronous".to_string(),
        Ok(sql::SemiSync::Disabled) => "off".to_string(),
        Err(e) => format!("unknown ({})", first_line(&format!("{e:#}"))),
    };
    progress.note(format!(
        "{} workers serve: {}; semi-sync {semi_sync}; took {:.1} s",
        names.len(),
        names.join(", "),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Refuses, before anything changes, what scale cannot do.
fn check(d: &Deployment, workers: u8) -> Result<()> {
    if !(1..=20).contains(&workers) {
        bail!(
            "--workers must be between 1 and 20, got {workers} (the manager's commits wait for \
             a worker's acknowledgement)"
        );
    }
    if d.engine() == Engine::Galera {
        bail!(
            "scale adds and removes workers of a replication cluster; a Galera cluster's nodes \
             are not scaled yet: provision another with the number of nodes you want \
             (--workers N)"
        );
    }
    for step in [Step::InstallCluster, Step::DeployServices] {
        if d.step(step).status != StepStatus::Done {
            bail!(
                "scale changes a cluster that serves, and {step} is not done yet: run `{}` first",
                state::command(&step.to_string())
            );
        }
    }
    Ok(())
}

/// Takes workers out: the proxy sends them nothing new (and answers once what it sent has
/// finished), then each one's server stops and its host goes.
fn remove_workers(
    session: &mut Session,
    provider: &dyn Provider,
    names: &[String],
    progress: &Progress,
) -> Result<()> {
    for name in names {
        session
            .deployment
            .scaling
            .insert(name.clone(), ScalePhase::Leaving);
    }
    session.save()?;
    progress.task(format!(
        "the proxy stops sending reads to {}",
        names.join(", ")
    ));
    let changed = services::set_backends(&session.deployment)?;
    if !changed.removed.is_empty() {
        progress.note(format!(
            "the proxy took out {} once their queries had finished",
            changed.removed.join(", ")
        ));
    }
    for name in names {
        progress.task(format!("stopping {name} and removing its host"));
        let host = session
            .deployment
            .hosts
            .iter()
            .find(|h| h.name == *name)
            .cloned();
        if let Some(host) = host {
            server::stop(session, &host)?;
            provider.remove_host(session, &host)?;
        }
        session.deployment.scaling.remove(name);
        session.save()?;
    }
    Ok(())
}

/// Adds a worker, or goes on adding it from the phase an earlier run recorded.
fn add_worker(
    session: &mut Session,
    provider: &dyn Provider,
    name: &str,
    progress: &Progress,
) -> Result<()> {
    let phase = *session
        .deployment
        .scaling
        .entry(name.to_string())
        .or_insert(ScalePhase::Made);
    progress.task(format!("making the host of {name}"));
    let host = match provider.add_host(session, name, Role::Worker) {
        Ok(host) => host,
        Err(e) => {
            // Nothing was recorded for it: it is forgotten again.
            if !session.deployment.hosts.iter().any(|h| h.name == name) {
                session.deployment.scaling.remove(name);
                session.save()?;
            }
            return Err(e);
        }
    };
    let d = &session.deployment;
    let manager = d.host(Role::Manager)?.clone();
    let source = copy_source(d, &manager);
    // Copied and caught up at full speed; the quotas are back before it serves.
    let full_speed = [host.name.as_str(), source.name.as_str()];
    limits::set_cpus_of(d, &full_speed, true)?;
    let outcome = (|| {
        if phase != ScalePhase::CatchingUp {
            set_phase(session, name, ScalePhase::Copying)?;
            progress.note(format!(
                "{name} at {}: copying {}'s data",
                host.address, source.name
            ));
            server::start_afresh(session, &host)?;
            topology::copy_into(&host, &source)?;
            let d = &session.deployment;
            topology::allow_replica(
                d,
                &manager,
                providers::of(d.provider()).client_address(&host),
            )?;
            topology::replicate_from(d, &host, &manager)?;
            set_phase(session, name, ScalePhase::CatchingUp)?;
        } else {
            server::start(session, &host)?;
        }
        progress.task(format!("{name} catches up with the manager"));
        server::wait_for_replicas(&manager, std::slice::from_ref(&host), CATCH_UP)?;
        server::check_replicating(std::slice::from_ref(&host))
    })();
    limits::set_cpus_of(&session.deployment, &full_speed, false)
        .context("putting the CPU quotas back after the copy")?;
    outcome?;
    session.deployment.scaling.remove(name);
    session.save()?;
    services::set_backends(&session.deployment)?;
    wait_served(&session.deployment, name)?;
    progress.note(format!("{name} serves reads"));
    Ok(())
}

fn set_phase(session: &mut Session, name: &str, phase: ScalePhase) -> Result<()> {
    session.deployment.scaling.insert(name.to_string(), phase);
    session.save()
}

/// Where a new worker's data comes from: a serving worker that replicates (the copy's lock is
/// brief, but a worker's is nobody's write), else the manager.
fn copy_source(d: &Deployment, manager: &Host) -> Host {
    d.hosts_with_role(Role::Worker)
        .filter(|h| d.in_service(h) && !d.fenced.contains(&h.name))
        .find(|h| sql::replica_status(h).is_ok_and(|s| s.is_some_and(|s| s.healthy())))
        .unwrap_or(manager)
        .clone()
}

/// Waits until the proxy finds the worker eligible to serve reads.
fn wait_served(d: &Deployment, name: &str) -> Result<()> {
    let proxy = d.host(Role::Proxy)?;
    let deadline = Instant::now() + PROXY_SERVES_WITHIN;
    loop {
        let health: serde_json::Value = serde_json::from_str(&services::get(d, proxy, "/health")?)
            .context("reading the proxy's /health")?;
        let backend = health["backends"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["name"] == name))
            .cloned()
            .unwrap_or_default();
        if backend["healthy"] == true {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the proxy has {name} but does not send it reads after {} s: {}; `{}` shows \
                 why, and running scale again goes on",
                PROXY_SERVES_WITHIN.as_secs(),
                backend["problem"].as_str().unwrap_or("it does not list it"),
                state::command("status")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn serving(list: &[&str]) -> Vec<(String, bool)> {
        list.iter().map(|n| (n.to_string(), false)).collect()
    }

    #[test]
    fn adding_names_workers_after_the_highest_in_use() {
        let taken = names(&["standalone", "manager", "worker-1", "worker-2", "worker-7"]);
        let p = plan(&serving(&["worker-1", "worker-2"]), &[], &taken, 4);
        assert_eq!(p.add, ["worker-8", "worker-9"]);
        assert!(p.leave.is_empty() && p.finish.is_empty());
    }

    #[test]
    fn removing_takes_fenced_workers_first_then_the_newest() {
        let workers = vec![
            ("manager".to_string(), true),
            ("worker-1".to_string(), false),
            ("worker-3".to_string(), false),
            ("worker-2".to_string(), false),
        ];
        let p = plan(&workers, &[], &[], 2);
        assert_eq!(p.leave, ["manager", "worker-3"]);
        assert!(p.add.is_empty());
        // Never below what is asked, never anything to add.
        let p = plan(&serving(&["worker-1"]), &[], &[], 1);
        assert_eq!(
            p,
            ScalePlan {
                leave: vec![],
                finish: vec![],
                add: vec![]
            }
        );
    }

    #[test]
    fn a_rerun_finishes_the_joining_workers_it_still_wants_and_rolls_back_the_others() {
        let joining = names(&["worker-4", "worker-3"]);
        let taken = names(&["worker-1", "worker-2", "worker-3", "worker-4"]);
        let p = plan(&serving(&["worker-1", "worker-2"]), &joining, &taken, 4);
        assert_eq!(
            (p.finish, p.add, p.leave),
            (names(&["worker-3", "worker-4"]), vec![], vec![])
        );
        let p = plan(&serving(&["worker-1", "worker-2"]), &joining, &taken, 3);
        assert_eq!(
            (p.finish, p.leave),
            (names(&["worker-3"]), names(&["worker-4"]))
        );
        let p = plan(&serving(&["worker-1", "worker-2"]), &joining, &taken, 5);
        assert_eq!(p.add, ["worker-5"]);
        let p = plan(&serving(&["worker-1", "worker-2"]), &joining, &taken, 1);
        assert_eq!(p.leave, ["worker-3", "worker-4", "worker-2"]);
    }
}
