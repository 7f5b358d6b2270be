//! install-cluster: MariaDB on every database host, the manager's replicas (or the Galera
//! nodes), the accounts and the dataset, then a check that every worker replicates (every node
//! is Synced) and holds the same rows.
//!
//! Every action finds what an earlier attempt left and continues from it: a running server is
//! adopted, accounts are created-if-missing, a complete dataset is kept, replicas resume from
//! their GTID position, Galera nodes start by the plan that fits what they hold.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cluster::dataset::{self, Dataset};
use crate::cluster::sql::{self as db, fill, sql_string};
use crate::cluster::{galera, limits, packages, server, services, topology};
use crate::progress::Progress;
use crate::providers;
use crate::state::{Deployment, Engine, Host, Role, Session};

const ACCOUNTS: &str = include_str!("../../../sql/accounts.sql");

/// How long a worker may take to apply everything the manager has.
const CATCH_UP: Duration = Duration::from_secs(300);

pub fn run(session: &mut Session) -> Result<()> {
    if session.deployment.engine() == Engine::Galera {
        return install_galera(session);
    }
    let d = &session.deployment;
    let provider = providers::of(d.provider());
    let db_hosts: Vec<Host> = d.database_hosts().cloned().collect();
    let standalone = d.host(Role::Standalone)?.clone();
    let manager = d.host(Role::Manager)?.clone();
    let workers: Vec<Host> = d.hosts_with_role(Role::Worker).cloned().collect();
    let scale = d.settings.scale;

    let tasks = 1 + db_hosts.len() + 1 + 1 + workers.len() + 2;
    let progress = Progress::new("install-cluster", tasks as u64);

    progress.task("checking for MariaDB and sysbench on every machine");
    // The bench client runs on the proxy's machine.
    let proxy = d.host(Role::Proxy)?.clone();
    let needs: Vec<(&Host, &packages::Packages)> = db_hosts
        .iter()
        .map(|h| (h, &packages::DATABASE))
        .chain([(&proxy, &packages::BENCH_CLIENT)])
        .collect();
    packages::ensure(session, &needs)?;

    for host in &db_hosts {
        progress.task(format!(
            "starting {} on {}:{}",
            host.name, host.address, session.deployment.settings.db_port
        ));
        server::start(session, host)?;
    }

    progress.task("creating accounts on the standalone server and the manager");
    let d = &session.deployment;
    let accounts = accounts(d)?;
    db::sql(&standalone, &accounts)?;
    db::sql(&manager, &accounts)?;
    // Every server of the cluster may replicate from any other after a failover: the
    // replication account exists for each one's address.
    let mut replica_clients: Vec<String> = std::iter::once(&manager)
        .chain(&workers)
        .map(|h| provider.client_address(h))
        .collect();
    replica_clients.sort();
    replica_clients.dedup();
    for client in replica_clients {
        topology::allow_replica(d, &manager, client)?;
    }

    let on_manager = at_full_speed(d, &progress, || {
        load_everywhere(&progress, &[&standalone, &manager], scale)?;

        for worker in &workers {
            progress.task(format!("making {} a replica of the manager", worker.name));
            topology::replicate_from(d, worker, &manager)?;
        }

        progress.task("waiting for the workers to apply everything the manager has");
        server::wait_for_replicas(&manager, &workers, CATCH_UP)?;
        server::check_replicating(&workers)?;

        progress.task("checking that every worker holds the manager's rows");
        let on_manager = row_counts(&manager)?;
        for worker in &workers {
            compare_counts(worker, &row_counts(worker)?, &on_manager, "the manager")?;
        }
        Ok(on_manager)
    })?;
    progress.note(format!(
        "standalone, manager and {} workers are up; every worker replicates with all {} rows",
        workers.len(),
        on_manager.iter().map(|(_, n)| n).sum::<u64>()
    ));
    Ok(())
}

/// Runs the load (and what replicates it) with every CPU quota lifted, then puts the quotas
/// back, whether it worked or not: quotas are for measuring, not for loading. (A run killed
/// in between leaves them lifted; the bench sets every quota again before it measures.)
fn at_full_speed<T>(
    d: &Deployment,
    progress: &Progress,
    load: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let limited = d.limits.hosts.values().any(|l| l.cpus.is_some());
    if limited {
        progress.note("CPU quotas lifted while the dataset loads");
        limits::set_all_cpus(d, true)?;
    }
    let outcome = load();
    if limited {
        limits::set_all_cpus(d, false).context("putting the CPU quotas back after the load")?;
        progress.note("CPU quotas back in force");
    }
    outcome
}

/// The Galera engine: the standalone server, then the nodes started together by the plan that
/// fits what they hold (galera::start_cluster), the accounts and the dataset written once on a
/// node (every node certifies and applies them), and a check that every node is Synced with
/// the same rows.
fn install_galera(session: &mut Session) -> Result<()> {
    let d = &session.deployment;
    let standalone = d.host(Role::Standalone)?.clone();
    let nodes: Vec<Host> = d.hosts_with_role(Role::Node).cloned().collect();
    let scale = d.settings.scale;
    let progress = Progress::new("install-cluster", 6);

    progress.task("checking for MariaDB, Galera and sysbench on every machine");
    // The bench client runs on the proxy's machine.
    let proxy = d.host(Role::Proxy)?.clone();
    let needs: Vec<(&Host, &packages::Packages)> = [(&standalone, &packages::DATABASE)]
        .into_iter()
        .chain(nodes.iter().map(|h| (h, &packages::GALERA)))
        .chain([(&proxy, &packages::BENCH_CLIENT)])
        .collect();
    packages::ensure(session, &needs)?;
    let d = &session.deployment;
    progress.task(format!(
        "starting standalone on {}:{}",
        standalone.address, d.settings.db_port
    ));
    server::start(session, &standalone)?;

    progress.task(format!(
        "starting the Galera cluster of {} nodes ({})",
        nodes.len(),
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    galera::start_cluster(session, &nodes, &|note| progress.note(note))?;

    progress.task("creating accounts on the standalone server and the cluster");
    let d = &session.deployment;
    let accounts = accounts(d)?;
    let first = galera::writer(&nodes)?;
    db::sql(&standalone, &accounts)?;
    db::sql(&first, &accounts)?;

    let on_first = at_full_speed(d, &progress, || {
        load_everywhere(&progress, &[&standalone, &first], scale)?;

        progress.task("checking that every node is Synced and holds the same rows");
        galera::wait_synced(&nodes, CATCH_UP)?;
        // Counted after each node has applied everything certified before (a causal read):
        // Synced nodes may still be applying the load.
        let causal_counts = |node: &Host| {
            db::parse_counts(&db::sql(
                node,
                &format!(
                    "SET SESSION wsrep_sync_wait = 1; {}",
                    dataset::count_query()
                ),
            )?)
        };
        let on_first = causal_counts(&first)?;
        for node in &nodes {
            compare_counts(node, &causal_counts(node)?, &on_first, &first.name)?;
        }
        Ok(on_first)
    })?;
    progress.note(format!(
        "standalone and a Galera cluster of {} Synced nodes are up; every node holds all {} rows",
        nodes.len(),
        on_first.iter().map(|(_, n)| n).sum::<u64>()
    ));
    Ok(())
}

/// Loads the dataset on the hosts at once, each unless it holds it, and checks their row
/// counts. (They are separate machines; on the local provider, separate processes that share
/// the cores.)
fn load_everywhere(progress: &Progress, hosts: &[&Host], scale: u32) -> Result<()> {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    progress.task(format!(
        "loading the dataset (scale {scale}) on {} at once",
        names.join(" and ")
    ));
    let dataset = dataset::generate(scale);
    std::thread::scope(|scope| {
        let loads: Vec<_> = hosts
            .iter()
            .map(|host| scope.spawn(|| load_on(progress, host, scale, &dataset)))
            .collect();
        loads
            .into_iter()
            .try_for_each(|load| load.join().expect("a load's thread panicked"))
    })
}

/// Loads the dataset on a host (unless it holds it) and checks its row counts.
fn load_on(progress: &Progress, host: &Host, scale: u32, dataset: &Dataset) -> Result<()> {
    if load_dataset(host, scale, dataset)? {
        // It may have changed since (writes through the services): it is kept as it is.
        progress.note(format!(
            "{} already holds the dataset of scale {scale}",
            host.name
        ));
        Ok(())
    } else {
        compare_counts(host, &row_counts(host)?, &dataset.counts, "the generator")
    }
}

/// The accounts of a server that holds the dataset, rendered for this deployment.
fn accounts(d: &Deployment) -> Result<String> {
    let provider = providers::of(d.provider());
    let proxy = d.host(Role::Proxy)?;
    fill(
        ACCOUNTS,
        &[
            ("APP_CLIENT_HOST", provider.client_address(proxy)),
            ("APP_PASSWORD", sql_string(&d.secrets.app_password)),
            (
                "APP_READ_PASSWORD",
                sql_string(&d.secrets.app_read_password),
            ),
            // The proxy's pool, its probe and room for a restarted proxy's new connections
            // while the old ones close.
            (
                "APP_MAX_CONNECTIONS",
                (2 * services::PROXY_CONNECTIONS_PER_BACKEND + 1).to_string(),
            ),
            (
                "APP_STATEMENT_SECONDS",
                services::STATEMENT_TIME_LIMIT_SECONDS.to_string(),
            ),
            // The bench client is the proxy's host (see bench).
            ("BENCH_CLIENT_HOST", provider.client_address(proxy)),
            ("BENCH_PASSWORD", sql_string(&d.secrets.bench_password)),
            (
                "FAILOVER_PASSWORD",
                sql_string(&d.secrets.failover_password),
            ),
        ],
    )
}

/// Loads the dataset unless the host already holds a complete load of this scale and version.
/// Returns whether it was already there.
fn load_dataset(host: &Host, scale: u32, dataset: &Dataset) -> Result<bool> {
    let marker = db::sql(
        host,
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = 'filmdb' AND table_name = 'dataset_info';",
    )?;
    if marker.trim() == "1" {
        let loaded = db::sql(
            host,
            "SELECT scale, generator_version FROM filmdb.dataset_info;",
        )?;
        if loaded.trim() == format!("{scale}\t{}", dataset::GENERATOR_VERSION) {
            return Ok(true);
        }
    }
    db::sql(host, &dataset.sql).with_context(|| format!("loading the dataset on {}", host.name))?;
    Ok(false)
}

fn row_counts(host: &Host) -> Result<Vec<(String, u64)>> {
    db::parse_counts(&db::sql(host, &dataset::count_query())?)
}

/// Fails unless `host` has, table for table, the row counts `expected` (from `source`).
fn compare_counts<T: AsRef<str>>(
    host: &Host,
    counts: &[(String, u64)],
    expected: &[(T, u64)],
    source: &str,
) -> Result<()> {
    for (table, rows) in expected {
        let table = table.as_ref();
        let found = counts.iter().find(|(t, _)| t == table).map(|(_, n)| *n);
        if found != Some(*rows) {
            bail!(
                "{} has {} rows in filmdb.{table} where {source} has {rows}",
                host.name,
                found.map_or("no".to_string(), |n| n.to_string())
            );
        }
    }
    Ok(())
}
