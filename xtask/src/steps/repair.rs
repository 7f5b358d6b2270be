//! repair: checks what the done steps promised and mends only what drifted. Every database
//! server and role service of the deployment answers (a dead one is started again on its
//! recorded config); every worker replicates from the current manager; the manager is
//! writable with semi-sync on; a manager fenced by a failover becomes a worker of the new one
//! when it holds nothing the new one lacks, and is reported otherwise. Galera: every node is
//! Synced in one primary component (a stopped node joins from its recovered position; with
//! none running, the cluster is started by its plan). Prints what it found and what it did. A
//! server or service that cannot be started (its machine is gone) is reported and the rest is
//! mended without it; the command then fails, naming what is still broken.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use contract::gtid::GtidPosition;

use crate::cluster::{galera, server, services, sql, topology};
use crate::state::{self, Engine, Host, Lock, Paths, Role, Session, Step, StepStatus};

/// How long a restarted worker gets to catch up before repair says it is still behind.
const CATCH_UP: Duration = Duration::from_secs(60);
/// How long the proxy's probes (every 500 ms) may take to see a mended manager.
const PROXY_SEES_WITHIN: Duration = Duration::from_secs(15);

pub fn run(paths: &Paths) -> Result<()> {
    let started = Instant::now();
    let mut session = Session::open_live(paths, Lock::acquire(paths)?)?;
    if session.deployment.step(Step::InstallCluster).status != StepStatus::Done {
        bail!(
            "the cluster is not installed yet: run `{}` first",
            state::command("install-cluster")
        );
    }
    // What the proxy did by itself is recorded first: the manager is the one the servers have.
    let mut did = topology::follow(&mut session)?
        .into_iter()
        .map(|change| format!("recorded from the servers and the proxy: {change}"))
        .collect::<Vec<_>>();
    let mut stuck = Vec::new();
    let healthy = match session.deployment.engine() {
        Engine::Replication => repair_replication(&mut session, &mut did, &mut stuck)?,
        Engine::Galera => repair_galera(&mut session, &mut did, &mut stuck)?,
    };
    repair_services(&mut session, &mut did, &mut stuck)?;
    // What was mended serves once the proxy's probes see it: writes wait for the manager.
    let d = &session.deployment;
    if !did.is_empty()
        && d.engine() == Engine::Replication
        && d.step(Step::DeployServices).status == StepStatus::Done
    {
        let manager = d.host(Role::Manager)?.name.clone();
        if let Some(problem) = services::until_the_proxy_serves(d, &manager, PROXY_SEES_WITHIN)? {
            stuck.push(format!(
                "the proxy does not send writes to the manager ({manager}) yet: {problem}"
            ));
        }
    }

    if !stuck.is_empty() {
        for line in &did {
            println!("repair: {line}");
        }
        bail!(
            "repair mended what it could ({} s), but not: {}. Bring those machines back and run \
             `{}` again",
            started.elapsed().as_secs(),
            stuck.join("; "),
            state::command("repair")
        );
    }
    if did.is_empty() {
        println!(
            "repair: nothing drifted: every server and service answers, {healthy} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    } else {
        for line in &did {
            println!("repair: {line}");
        }
        println!("repair: done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Galera: the standalone server answers, and every node is Synced in one primary component:
/// the nodes that do not run join it from their recovered position (or, when none runs, the
/// cluster is started by the plan that fits what they hold). Returns what is healthy.
fn repair_galera(
    session: &mut Session,
    did: &mut Vec<String>,
    stuck: &mut Vec<String>,
) -> Result<String> {
    let standalone = session.deployment.host(Role::Standalone)?.clone();
    start_if_down(session, &standalone, did, stuck)?;
    let nodes: Vec<Host> = session
        .deployment
        .hosts_with_role(Role::Node)
        .cloned()
        .collect();
    if galera::wait_synced(&nodes, Duration::ZERO).is_ok() {
        return Ok(format!("all {} Galera nodes are Synced", nodes.len()));
    }
    let before: Vec<bool> = nodes
        .iter()
        .map(|n| galera::report(n).map(|r| r.running))
        .collect::<Result<_>>()?;
    galera::start_cluster(session, &nodes, &|note| println!("repair: {note}"))?;
    for (node, was_running) in nodes.iter().zip(before) {
        if !was_running {
            did.push(format!("started {}; it is Synced", node.name));
        }
    }
    if did.is_empty() {
        did.push(format!("all {} Galera nodes are Synced again", nodes.len()));
    }
    Ok(format!("all {} Galera nodes are Synced", nodes.len()))
}

/// Replication: every server answers, the manager is writable with semi-sync, a fenced former
/// manager rejoins (or is rebuilt), every worker replicates from the manager. Returns what is
/// healthy.
fn repair_replication(
    session: &mut Session,
    did: &mut Vec<String>,
    stuck: &mut Vec<String>,
) -> Result<String> {
    let did_before = did.len();
    // Servers: each answers, or is started on its config for its role now.
    let db_hosts: Vec<Host> = session.deployment.database_hosts().cloned().collect();
    let mut down = Vec::new();
    for host in &db_hosts {
        if !start_if_down(session, host, did, stuck)? {
            down.push(host.name.clone());
        }
    }

    let d = &session.deployment;
    let manager = d.host(Role::Manager)?.clone();
    if down.contains(&manager.name) {
        bail!(
            "the manager ({}) does not answer and could not be started: {}. Make a worker the \
             manager with `{}`, then run `{}` again",
            manager.name,
            stuck.join("; "),
            state::command("failover"),
            state::command("repair")
        );
    }
    if sql::sql(&manager, "SELECT @@read_only;")?.trim() != "0" {
        server::make_writable(&manager)?;
        did.push(format!("made the manager ({}) writable", manager.name));
    }
    if d.settings.semi_sync_timeout_ms > 0 && sql::semi_sync(&manager)? == sql::SemiSync::Disabled {
        topology::enable_semi_sync(&manager, d.settings.semi_sync_timeout_ms)?;
        did.push(format!("turned semi-sync on at {}", manager.name));
    }

    // A fenced former manager joins the new one, unless its history went elsewhere.
    for name in d.fenced.clone() {
        let d = &session.deployment;
        let Some(host) = d.host_named(&name).cloned() else {
            continue;
        };
        if down.contains(&name) {
            // It stays fenced: it starts read-only whenever its machine comes back.
            continue;
        }
        let promoted_at: GtidPosition = d
            .failovers
            .iter()
            .rev()
            .find(|f| f.from == name)
            .map_or(Ok(GtidPosition::default()), |f| f.position.parse())
            .map_err(|e: String| anyhow::anyhow!("the failover record of {name}: {e}"))?;
        let holds = topology::binlog_position(&host)?;
        if promoted_at.covers(&holds) {
            topology::rejoin(d, &host, &manager)?;
            did.push(format!(
                "{name}, fenced since the failover, replicates from {} (it held nothing more)",
                manager.name
            ));
        } else {
            // Replicating onto it would build on transactions the manager never had.
            println!(
                "repair: {name} diverged: it holds {holds}, beyond what {} had when it was \
                 promoted ({promoted_at}); rebuilding it from {}'s data",
                manager.name, manager.name
            );
            let aside = topology::rebuild_from(session, &host, &manager)?;
            did.push(format!(
                "{name} diverged and was rebuilt from {}'s data; it replicates from {}; its \
                 own data is kept in {aside}",
                manager.name, manager.name
            ));
        }
        session.deployment.fenced.retain(|h| *h != name);
        session.save()?;
    }

    // Workers replicate from the manager.
    let d = &session.deployment;
    for worker in d
        .hosts_with_role(Role::Worker)
        .filter(|w| !d.fenced.contains(&w.name) && !down.contains(&w.name))
    {
        let status = sql::replica_status(worker)?;
        if status
            .as_ref()
            .is_some_and(|s| s.source_host == manager.address && s.healthy())
        {
            continue;
        }
        topology::replicate_from(d, worker, &manager)?;
        did.push(format!(
            "{} replicates from {} again (was: {})",
            worker.name,
            manager.name,
            match status {
                None => "no source".to_string(),
                Some(st) if st.source_host == manager.address => format!(
                    "threads io {} sql {}{}",
                    st.io_running,
                    st.sql_running,
                    if st.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", st.last_error)
                    }
                ),
                Some(st) => format!("replicating from {}", st.source_host),
            }
        ));
    }
    let workers: Vec<Host> = d
        .hosts_with_role(Role::Worker)
        .filter(|w| !d.fenced.contains(&w.name) && !down.contains(&w.name))
        .cloned()
        .collect();
    if did.len() > did_before {
        server::wait_for_replicas(&manager, &workers, CATCH_UP)?;
    }
    Ok(format!("every worker replicates from {}", manager.name))
}

/// Starts a database server that does not answer; returns whether it answers now. One whose
/// machine cannot be reached is put in `stuck`.
fn start_if_down(
    session: &mut Session,
    host: &Host,
    did: &mut Vec<String>,
    stuck: &mut Vec<String>,
) -> Result<bool> {
    if sql::sql(host, "SELECT 1;").is_ok() {
        return Ok(true);
    }
    println!("repair: {} does not answer; starting it", host.name);
    match server::start(session, host) {
        Ok(()) => {
            did.push(format!("started {}", host.name));
            Ok(true)
        }
        Err(e) => {
            let why = format!("{e:#}");
            println!("repair: {} could not be started: {why}", host.name);
            stuck.push(format!(
                "{}'s server ({})",
                host.name,
                why.lines().next().unwrap_or_default()
            ));
            Ok(false)
        }
    }
}

/// Services: each answers its /health, or is started again.
fn repair_services(
    session: &mut Session,
    did: &mut Vec<String>,
    stuck: &mut Vec<String>,
) -> Result<()> {
    if session.deployment.step(Step::DeployServices).status != StepStatus::Done {
        return Ok(());
    }
    for role in services::ORDER {
        let host = session.deployment.host(role)?.clone();
        if services::check_health(&session.deployment, &host, Duration::ZERO).is_ok() {
            continue;
        }
        println!("repair: {} does not answer; starting it", host.name);
        let started = services::start(session, &host).and_then(|()| {
            services::check_health(&session.deployment, &host, Duration::from_secs(30))
        });
        match started {
            Ok(()) => did.push(format!("started {}", host.name)),
            Err(e) => stuck.push(format!(
                "{} ({})",
                host.name,
                format!("{e:#}").lines().next().unwrap_or_default()
            )),
        }
    }
    Ok(())
}
