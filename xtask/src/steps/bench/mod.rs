//! bench: sysbench against the standalone server and the cluster (`sysbench.rs`), then the
//! patterns load test through the gatekeeper and straight to the manager (`load.rs`), and, when
//! asked, the scaling curve (`curve.rs`).
//! Everything runs on the bench client host (the proxy's host, which may reach the databases
//! and the gatekeeper and serves no database) through the provider-neutral scripts. Raw outputs
//! go to the client's run folder (`bench/<run-id>/`, laid out as `results::layout` says), one
//! file per measurement, each written whole or not at all: a resumed run skips what is there
//! and does the rest.

mod curve;
mod load;
mod sysbench;

use std::collections::BTreeSet;
use std::fs;

use anyhow::{bail, Context, Result};

use crate::cluster::{build, galera, limits, packages, services};
use crate::progress::Progress;
use crate::providers;
use crate::results::layout;
use crate::results::{Degraded, RunMeta};
use crate::state::{
    self, project_root, BenchRun, Deployment, Engine, Host, HostLimit, Role, Session,
};
use crate::transport::{self, script::Script};

use load::{DegradedPlan, LoadTest};

/// The load generator, in the bench client's folder.
const LOADGEN: &str = "./loadgen";

const BENCH_LIST: &str = include_str!("../../../scripts/bench-list.sh");

/// Runs the measurements of one bench run on the client, skipping the ones already there, and
/// says on the progress line which one runs and how long the rest should take.
struct Bench<'a> {
    client: Host,
    /// The bench client's cgroup, which sysbench and the load generator run in.
    client_limit: Option<HostLimit>,
    run: &'a BenchRun,
    /// Outputs already in the run folder, relative to it.
    done: BTreeSet<String>,
    progress: Progress,
    /// Measurements not started yet.
    pending: u32,
}

impl Bench<'_> {
    fn has(&self, out: &str) -> bool {
        self.done.contains(out)
    }

    /// Whether a measurement that writes these outputs is done: all of them are there.
    fn has_all<'o>(&self, outs: impl IntoIterator<Item = &'o String>) -> bool {
        outs.into_iter().all(|out| self.has(out))
    }

    /// Announces measurement `what` of run `n`, which is starting.
    fn measuring(&mut self, what: impl std::fmt::Display, n: u32) {
        let s = &self.run.settings;
        self.progress.task(format!(
            "{what}, run {n}/{}, about {} s left",
            s.runs,
            self.pending * (s.seconds + 1)
        ));
        self.pending = self.pending.saturating_sub(1);
    }

    /// Places an output of the run, whole or not at all.
    fn put(&mut self, out: &str, contents: &[u8]) -> Result<()> {
        transport::put_file(
            &self.client,
            &format!("{}/{out}", self.run.id),
            contents,
            false,
        )?;
        self.done.insert(out.to_string());
        Ok(())
    }
}

/// Where the cluster's measurements run.
struct Cluster {
    /// The server that takes the writes: the manager, or the Galera node the proxy writes to.
    writer: Host,
    /// The writer in the names of the outputs: `manager`, or (Galera) `writer`, whichever node
    /// it was (run.json says).
    writer_target: &'static str,
    /// The servers that serve the chain's reads besides the writer: the workers, or the other
    /// Galera nodes.
    readers: Vec<Host>,
    /// Galera's nodes, all of which run sysbench's reads and the write-scaling run; empty with
    /// replication.
    nodes: Vec<Host>,
}

impl Cluster {
    fn of(d: &Deployment) -> Result<Cluster> {
        Ok(match d.engine() {
            Engine::Replication => Cluster {
                writer: d.host(Role::Manager)?.clone(),
                writer_target: "manager",
                readers: d.hosts_with_role(Role::Worker).cloned().collect(),
                nodes: Vec::new(),
            },
            Engine::Galera => {
                let nodes: Vec<Host> = d.hosts_with_role(Role::Node).cloned().collect();
                let writer = galera_writer(d, &nodes)?;
                Cluster {
                    readers: nodes
                        .iter()
                        .filter(|n| n.name != writer.name)
                        .cloned()
                        .collect(),
                    writer,
                    writer_target: layout::WRITER,
                    nodes,
                }
            }
        })
    }

    /// Where sysbench's reads run: on every worker, or on every Galera node.
    fn read_targets(&self) -> &[Host] {
        if self.nodes.is_empty() {
            &self.readers
        } else {
            &self.nodes
        }
    }
}

pub fn run(session: &mut Session) -> Result<()> {
    let run = session
        .deployment
        .bench
        .clone()
        .context("no bench run was chosen; this is a bug in the step engine")?;
    let s = &run.settings;
    let d = &session.deployment;
    curve::check(d, s)?;
    let client = d.bench_client()?;
    let built_loadgen = build::release_dir(d.settings.target.as_deref()).join("loadgen");
    if !built_loadgen.exists() {
        bail!(
            "{} is missing; run `{}`, which builds it",
            built_loadgen.display(),
            state::command("deploy-services --force")
        );
    }
    // Recorded under the proxy, whose machine the bench client is.
    let proxy = d.host(Role::Proxy)?.clone();
    packages::ensure(session, &[(&proxy, &packages::BENCH_CLIENT)])?;
    let d = &session.deployment;
    let bytes =
        fs::read(&built_loadgen).with_context(|| format!("reading {}", built_loadgen.display()))?;
    transport::put_file(&client, LOADGEN, &bytes, true)?;
    let listed = transport::run_script(
        &client,
        &Script::new("bench-list", BENCH_LIST).param("RUN", run.id.clone()),
        b"",
    )?;
    let done: BTreeSet<String> = listed.lines().map(str::to_string).collect();
    // A run interrupted in the degraded-worker scenario or the chain measurement left a worker
    // slowed down or every quota lifted: every host gets its own quota back before anything is
    // measured.
    limits::set_all_cpus(d, false)?;

    let standalone = d.host(Role::Standalone)?.clone();
    let cluster = Cluster::of(d)?;
    let degraded = load::degraded_plan(d, s, &cluster.readers);
    // A resumed run keeps the metadata it started with.
    if !done.contains(layout::METADATA) {
        write_metadata(&client, d, &run, degraded.as_ref(), &cluster.writer)?;
    }
    write_client_files(&client, d)?;

    let pending = sysbench::pending(&done, s.runs, &cluster)
        + load::pending(&done, s.runs, degraded.is_some())
        + curve::pending(&done, s);
    let mut bench = Bench {
        client_limit: limits::of(d, &client.name).cloned(),
        client,
        run: &run,
        done,
        // The prepare before each sysbench part and the cleanup after them are tasks too.
        progress: Progress::new("bench", u64::from(pending) + 2),
        pending,
    };

    sysbench::on_standalone(&mut bench, &standalone)?;
    sysbench::on_cluster(&mut bench, &cluster)?;
    bench.progress.task(format!(
        "sysbench cleanup on the standalone server and {}",
        sysbench::writer_is(&cluster)
    ));
    sysbench::cleanup(&mut bench, &[&standalone, &cluster.writer])?;

    let load = LoadTest::new(d, &bench.client, &cluster.writer, s.seconds)?;
    load::patterns(&mut bench, d, &load)?;
    load::chain_cost(&mut bench, d, &load)?;
    if let Some(plan) = &degraded {
        load::degraded(&mut bench, d, &load, plan)?;
    }
    curve::run(&mut bench, session)?;
    bench.progress.note(format!(
        "run {} is complete in {} ({}); `{}` turns it into {}",
        run.id,
        bench.client.dir.join(&run.id).display(),
        transport::describe(&bench.client),
        state::command("fetch-results"),
        crate::results::results_dir().display()
    ));
    Ok(())
}

/// What a run was: kept with its raw outputs and copied into every row of the results.
fn write_metadata(
    client: &Host,
    d: &Deployment,
    run: &BenchRun,
    degraded: Option<&DegradedPlan>,
    writer: &Host,
) -> Result<()> {
    let revision = duct::cmd!("git", "rev-parse", "--short", "HEAD")
        .dir(project_root())
        .stderr_null()
        .read()
        .unwrap_or_else(|_| "unknown".to_string());
    let (instance_type, ran_on) = providers::of(d.provider()).bench_machines(d)?;
    let meta = RunMeta {
        run_id: run.id.clone(),
        started_at: run.started_at.clone(),
        provider: d.provider().to_string(),
        deployment: d.id.clone(),
        git_revision: revision.trim().to_string(),
        instance_type,
        ran_on,
        workers: d.settings.workers,
        engine: d.engine().to_string(),
        writer: (d.engine() == Engine::Galera).then(|| writer.name.clone()),
        dataset_scale: d.settings.scale,
        settings: run.settings.clone(),
        cluster_reads: match d.engine() {
            Engine::Replication => {
                "one sysbench per worker, all at the same time; the cluster row adds them up"
            }
            Engine::Galera => {
                "one sysbench per node, all at the same time; the cluster row adds them up"
            }
        }
        .to_string(),
        host_limits: d.limits.describe(),
        degraded: degraded.map(|plan| Degraded {
            worker: plan.worker.name.clone(),
            cpus: plan.degraded.as_cpus(),
            others_cpus: plan.normal.as_cpus(),
        }),
    };
    let text = serde_json::to_vec_pretty(&meta)?;
    transport::put_file(
        client,
        &format!("{}/{}", run.id, layout::METADATA),
        &text,
        false,
    )
}

/// Galera: the node the proxy sends the writes to (its /health says), else the one it would
/// choose.
fn galera_writer(d: &Deployment, nodes: &[Host]) -> Result<Host> {
    let named = services::get(d, d.host(Role::Proxy)?, "/health")
        .ok()
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|health| Some(health.get("writer")?.as_str()?.to_string()));
    match named.and_then(|name| nodes.iter().find(|n| n.name == name)) {
        Some(node) => Ok(node.clone()),
        None => galera::writer(nodes),
    }
}

/// One sysbench connection file per database host, and the load generator's password file,
/// readable by the owner only: a password must not appear on a command line.
fn write_client_files(client: &Host, d: &Deployment) -> Result<()> {
    for host in d.database_hosts() {
        let text = format!(
            "db-driver=mysql\nmysql-host={}\nmysql-port={}\nmysql-user=bench\nmysql-password={}\nmysql-db=sbtest\n",
            host.address, d.settings.db_port, d.secrets.bench_password
        );
        transport::put_file(client, &sysbench::config(host), text.as_bytes(), false)?;
    }
    transport::put_file(
        client,
        "bench.password",
        d.secrets.bench_password.as_bytes(),
        false,
    )
}
