//! The resize layer: the cluster's number of workers (Galera: nodes) changed while it serves,
//! for `scale` and for the bench's scaling curve.
//!
//! A worker added gets a host of its own (the provider's next), a server, a consistent copy of
//! a serving worker's data with the GTID position it was taken at (the manager's only when no
//! worker serves), replication from the manager (semi-sync acknowledging) and, once it has
//! applied everything the manager had, the proxy's reads. A Galera node joins by a full state
//! transfer from a node that is not the writer and serves once Synced. One removed gets no new
//! queries from the proxy and finishes what it had; then its server stops (a node leaves its
//! cluster cleanly) and its host goes. The manager (Galera: the writer) is never removed.
//!
//! Each server's phase is in data.json before the phase begins, so a rerun (with the same
//! count or another) goes on, or rolls back, from where the last one stopped.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{galera, limits, packages, server, services, sql, topology};
use crate::progress::Progress;
use crate::providers::{self, Provider};
use crate::state::{self, Deployment, Engine, Host, Role, ScalePhase, Session, Step, StepStatus};

/// How long a new server may take to apply what was written since its copy.
const CATCH_UP: Duration = Duration::from_secs(300);
/// How long the proxy may take to find a new worker eligible (a round of probes is 500 ms).
const PROXY_SERVES_WITHIN: Duration = Duration::from_secs(30);

/// What `scale` does to reach a number of workers.
#[derive(Debug, PartialEq, Eq)]
pub struct ScalePlan {
    /// Servers that go: joining ones no longer wanted, then serving ones.
    pub leave: Vec<String>,
    /// Servers an earlier run began to add, to finish adding.
    pub finish: Vec<String>,
    /// Names of the servers to add.
    pub add: Vec<String>,
}

/// A server's number in its name (`worker-4`, `node-4`: 4); 0 for another name (a former
/// manager).
fn number(name: &str) -> u32 {
    name.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// Plans the way to `target` servers (those that may go: the manager or Galera's writer is not
/// among them) from the serving ones (with whether each is fenced) and the ones an earlier run
/// was adding. Serving ones stay before joining ones are kept; the ones that go are fenced ones
/// first, then the newest. New names (`prefix-N`) follow the highest in use.
pub fn plan(
    serving: &[(String, bool)],
    joining: &[String],
    taken: &[String],
    target: usize,
    prefix: &str,
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
            .map(|i| format!("{prefix}-{}", first + i))
            .collect(),
    }
}

/// What scale changes: the replication cluster's workers, or the Galera cluster's nodes.
struct Kind {
    role: Role,
    /// Names of new ones: `worker-N`, `node-N`.
    prefix: &'static str,
    /// What the user calls them.
    noun: &'static str,
}

impl Kind {
    fn of(engine: Engine) -> Kind {
        match engine {
            Engine::Replication => Kind {
                role: Role::Worker,
                prefix: "worker",
                noun: "workers",
            },
            Engine::Galera => Kind {
                role: Role::Node,
                prefix: "node",
                noun: "nodes",
            },
        }
    }
}

/// Brings the cluster to `count` workers (Galera: nodes), going on from (or rolling back)
/// what an interrupted run left; returns what serves then, in a line.
pub fn to(session: &mut Session, count: u8, progress: &Progress) -> Result<String> {
    let started = Instant::now();
    let serves = check(&session.deployment, count)?;
    // What the proxy did by itself (a failover) is recorded first: the manager never goes.
    topology::follow(session)?;
    let d = &session.deployment;
    let kind = Kind::of(d.engine());
    let provider = providers::of(d.provider());
    // Galera: every node counts, and the one taking the writes stays.
    let (writer, pinned) = match d.engine() {
        Engine::Galera if serves => (Some(services::proxy_writer(d)?), 1),
        _ => (None, 0),
    };
    let serving: Vec<(String, bool)> = d
        .hosts_with_role(kind.role)
        .filter(|h| d.in_service(h) && Some(&h.name) != writer.as_ref())
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
    let mut todo = plan(
        &serving,
        &joining,
        &taken,
        usize::from(count) - pinned,
        kind.prefix,
    );
    // Servers an earlier run was removing go first.
    todo.leave.extend(
        d.scaling
            .iter()
            .filter(|(_, phase)| **phase == ScalePhase::Leaving)
            .map(|(name, _)| name.clone()),
    );
    progress.add_tasks((todo.leave.len() + 2 * (todo.finish.len() + todo.add.len()) + 1) as u64);
    if !serves {
        return hosts_only(session, provider, &kind, &todo, count, progress);
    }
    if !todo.leave.is_empty() {
        remove_servers(session, provider, &todo.leave, progress)?;
    }
    for name in todo.finish.iter().chain(&todo.add) {
        add_server(session, provider, &kind, name, progress)?;
    }
    progress.task(format!("recording the number of {}", kind.noun));
    session.deployment.settings.workers = count;
    session.save()?;
    let d = &session.deployment;
    let names: Vec<&str> = d
        .hosts_with_role(kind.role)
        .map(|h| h.name.as_str())
        .collect();
    let replication = match d.engine() {
        Engine::Replication => match sql::semi_sync(d.host(Role::Manager)?) {
            Ok(sql::SemiSync::On { workers }) => {
                format!("semi-sync on ({workers} workers acknowledging)")
            }
            Ok(sql::SemiSync::FellBack) => "semi-sync fell back to asynchronous".to_string(),
            Ok(sql::SemiSync::Disabled) => "semi-sync off".to_string(),
            Err(e) => format!("semi-sync unknown ({})", first_line(&format!("{e:#}"))),
        },
        Engine::Galera => "every node Synced in one primary component".to_string(),
    };
    Ok(format!(
        "{} {} serve: {}; {replication}; took {:.1} s",
        names.len(),
        kind.noun,
        names.join(", "),
        started.elapsed().as_secs_f64()
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Before install-cluster is done, only the hosts change: the ones that go are removed (with a
/// server an interrupted install started), the new ones made; install-cluster then sets up
/// every host it finds.
fn hosts_only(
    session: &mut Session,
    provider: &dyn Provider,
    kind: &Kind,
    todo: &ScalePlan,
    count: u8,
    progress: &Progress,
) -> Result<String> {
    for name in &todo.leave {
        set_phase(session, name, ScalePhase::Leaving)?;
        progress.task(format!("removing the host of {name}"));
        if let Some(host) = session.deployment.host_named(name).cloned() {
            // Only an install that began can have started its server.
            if session.deployment.step(Step::InstallCluster).attempts > 0 {
                server::stop(session, &host)?;
            }
            provider.remove_host(session, &host)?;
        }
        session.deployment.scaling.remove(name);
        session.save()?;
    }
    for name in todo.finish.iter().chain(&todo.add) {
        progress.task(format!("making the host of {name}"));
        set_phase(session, name, ScalePhase::Made)?;
        provider.add_host(session, name, kind.role)?;
        session.deployment.scaling.remove(name);
        session.save()?;
    }
    session.deployment.settings.workers = count;
    session.save()?;
    let names: Vec<&str> = session
        .deployment
        .hosts_with_role(kind.role)
        .map(|h| h.name.as_str())
        .collect();
    Ok(format!(
        "{} {} planned: {}; the cluster is not installed yet, so only their hosts changed: `{}` \
         sets them up",
        names.len(),
        kind.noun,
        names.join(", "),
        state::command("install-cluster")
    ))
}

/// Refuses, before anything changes, what scale cannot do; says whether the cluster serves
/// (else only its hosts change).
fn check(d: &Deployment, count: u8) -> Result<bool> {
    match d.engine() {
        Engine::Replication if !(1..=20).contains(&count) => bail!(
            "--workers must be between 1 and 20, got {count} (the manager's commits wait for \
             a worker's acknowledgement)"
        ),
        Engine::Galera if !(3..=20).contains(&count) => bail!(
            "--workers must be between 3 and 20 for a Galera cluster, got {count}: with fewer \
             nodes, one node lost (or leaving) takes the others' majority, and the cluster \
             stops taking writes"
        ),
        _ => {}
    }
    let done = |step| d.step(step).status == StepStatus::Done;
    match (done(Step::InstallCluster), done(Step::DeployServices)) {
        (true, true) => Ok(true),
        (false, _) => Ok(false),
        (true, false) => bail!(
            "the cluster is installed and its services are not deployed yet: scale changes the \
             proxy's servers too; run `{}` first",
            state::command("deploy-services")
        ),
    }
}

/// Takes servers out: the proxy sends them nothing new (and answers once what it sent has
/// finished), then each one's server stops (a Galera node leaves its cluster cleanly) and its
/// host goes.
fn remove_servers(
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
        "the proxy stops sending queries to {}",
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
        if let Some(host) = session.deployment.host_named(name).cloned() {
            server::stop(session, &host)?;
            provider.remove_host(session, &host)?;
        }
        session.deployment.scaling.remove(name);
        session.save()?;
    }
    if session.deployment.engine() == Engine::Galera {
        let nodes = nodes_in_service(&session.deployment);
        rewrite_configs(&session.deployment, &nodes)?;
        galera::wait_synced(&nodes, CATCH_UP)?;
    }
    Ok(())
}

/// Adds a server, or goes on adding it from the phase an earlier run recorded.
fn add_server(
    session: &mut Session,
    provider: &dyn Provider,
    kind: &Kind,
    name: &str,
    progress: &Progress,
) -> Result<()> {
    let phase = *session
        .deployment
        .scaling
        .entry(name.to_string())
        .or_insert(ScalePhase::Made);
    progress.task(format!("making the host of {name}"));
    let host = match provider.add_host(session, name, kind.role) {
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
    // MariaDB (and Galera) on its machine, if it has not.
    let packages = match kind.role {
        Role::Node => &packages::GALERA,
        _ => &packages::DATABASE,
    };
    packages::ensure(session, &[(&host, packages)])?;
    let d = &session.deployment;
    let source = copy_source(d)?;
    // Copied and caught up at full speed; the quotas are back before it serves.
    let full_speed = [host.name.as_str(), source.name.as_str()];
    limits::set_cpus_of(d, &full_speed, true)?;
    let outcome = match d.engine() {
        Engine::Replication => replicate(session, &host, &source, phase, progress),
        Engine::Galera => transfer(session, &host, &source, progress),
    };
    limits::set_cpus_of(&session.deployment, &full_speed, false)
        .context("putting the CPU quotas back after the copy")?;
    outcome?;
    session.deployment.scaling.remove(name);
    session.save()?;
    services::set_backends(&session.deployment)?;
    wait_served(&session.deployment, name)?;
    progress.note(format!("{name} serves"));
    Ok(())
}

/// A new worker: a copy of `source` with its GTID position, then replication from the manager
/// until it has applied everything the manager had.
fn replicate(
    session: &mut Session,
    host: &Host,
    source: &Host,
    phase: ScalePhase,
    progress: &Progress,
) -> Result<()> {
    let manager = session.deployment.host(Role::Manager)?.clone();
    if phase != ScalePhase::CatchingUp {
        set_phase(session, &host.name, ScalePhase::Copying)?;
        progress.note(format!(
            "{} at {}: copying {}'s data",
            host.name, host.address, source.name
        ));
        server::wipe(session, host)?;
        server::start(session, host)?;
        topology::copy_into(host, source)?;
        let d = &session.deployment;
        let client = providers::of(d.provider()).client_address(host);
        topology::allow_replica(d, &manager, client)?;
        topology::replicate_from(d, host, &manager)?;
        set_phase(session, &host.name, ScalePhase::CatchingUp)?;
    } else {
        server::start(session, host)?;
    }
    progress.task(format!("{} catches up with the manager", host.name));
    server::wait_for_replicas(&manager, std::slice::from_ref(host), CATCH_UP)?;
    server::check_replicating(std::slice::from_ref(host))
}

/// A new Galera node: a full state transfer from `donor`, then Synced with the others (whose
/// configs name it from now on, for their next start).
fn transfer(session: &mut Session, host: &Host, donor: &Host, progress: &Progress) -> Result<()> {
    // A transfer that was cut off starts over: the node holds nothing of its own.
    set_phase(session, &host.name, ScalePhase::Copying)?;
    progress.note(format!(
        "{} at {}: a state transfer from {}",
        host.name, host.address, donor.name
    ));
    galera::join_new(session, host, donor)?;
    set_phase(session, &host.name, ScalePhase::CatchingUp)?;
    progress.task(format!("{} is Synced with the others", host.name));
    let mut nodes = nodes_in_service(&session.deployment);
    nodes.push(host.clone());
    rewrite_configs(&session.deployment, &nodes)?;
    galera::wait_synced(&nodes, CATCH_UP)
}

fn nodes_in_service(d: &Deployment) -> Vec<Host> {
    d.hosts_with_role(Role::Node)
        .filter(|h| d.in_service(h))
        .cloned()
        .collect()
}

/// Galera: each node's config names every node, for its next start.
fn rewrite_configs(d: &Deployment, nodes: &[Host]) -> Result<()> {
    nodes
        .iter()
        .try_for_each(|node| server::write_config(d, node))
}

fn set_phase(session: &mut Session, name: &str, phase: ScalePhase) -> Result<()> {
    session.deployment.scaling.insert(name.to_string(), phase);
    session.save()
}

/// Where a new server's data comes from. Replication: a serving worker that replicates (the
/// copy's lock is brief, but a worker's is nobody's write), else the manager. Galera: a Synced
/// node that is not the writer (a full transfer blocks its donor's writes), else the writer.
fn copy_source(d: &Deployment) -> Result<Host> {
    let (role, first_choice) = match d.engine() {
        Engine::Replication => (Role::Worker, d.host(Role::Manager)?.name.clone()),
        Engine::Galera => (Role::Node, services::proxy_writer(d)?),
    };
    let fallback = d
        .hosts
        .iter()
        .find(|h| h.name == first_choice)
        .cloned()
        .with_context(|| format!("data.json has no host {first_choice}"))?;
    let eligible = |h: &Host| match d.engine() {
        Engine::Replication => sql::replica_status(h).is_ok_and(|s| s.is_some_and(|s| s.healthy())),
        Engine::Galera => galera::node_state(h).is_ok_and(|s| s.may_serve().is_ok()),
    };
    Ok(d.hosts_with_role(role)
        .filter(|h| d.in_service(h) && !d.fenced.contains(&h.name) && h.name != first_choice)
        .find(|h| eligible(h))
        .cloned()
        .unwrap_or(fallback))
}

/// Waits until the proxy finds the server eligible to serve.
fn wait_served(d: &Deployment, name: &str) -> Result<()> {
    match services::until_the_proxy_serves(d, name, PROXY_SERVES_WITHIN)? {
        None => Ok(()),
        Some(problem) => bail!(
            "the proxy has {name} but does not send it queries after {} s: {problem}; `{}` \
             shows why, and running scale again goes on",
            PROXY_SERVES_WITHIN.as_secs(),
            state::command("status")
        ),
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
        let p = plan(
            &serving(&["worker-1", "worker-2"]),
            &[],
            &taken,
            4,
            "worker",
        );
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
        let p = plan(&workers, &[], &[], 2, "worker");
        assert_eq!(p.leave, ["manager", "worker-3"]);
        assert!(p.add.is_empty());
        // Never below what is asked, never anything to add.
        let p = plan(&serving(&["worker-1"]), &[], &[], 1, "worker");
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
        let p = plan(
            &serving(&["worker-1", "worker-2"]),
            &joining,
            &taken,
            4,
            "worker",
        );
        assert_eq!(
            (p.finish, p.add, p.leave),
            (names(&["worker-3", "worker-4"]), vec![], vec![])
        );
        let p = plan(
            &serving(&["worker-1", "worker-2"]),
            &joining,
            &taken,
            3,
            "worker",
        );
        assert_eq!(
            (p.finish, p.leave),
            (names(&["worker-3"]), names(&["worker-4"]))
        );
        let p = plan(
            &serving(&["worker-1", "worker-2"]),
            &joining,
            &taken,
            5,
            "worker",
        );
        assert_eq!(p.add, ["worker-5"]);
        let p = plan(
            &serving(&["worker-1", "worker-2"]),
            &joining,
            &taken,
            1,
            "worker",
        );
        assert_eq!(p.leave, ["worker-3", "worker-4", "worker-2"]);
    }
}
