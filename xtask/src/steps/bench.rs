//! bench: sysbench against the standalone server and the cluster, then the patterns load test
//! through the gatekeeper and straight to the manager. Everything runs on the bench client host
//! (the proxy's host, which may reach the databases and the gatekeeper and serves no database)
//! through the provider-neutral scripts. Raw outputs go to the client's run folder
//! (`bench/<run-id>/`, laid out as `results::layout` says), one file per measurement, each
//! written whole or not at all: a resumed run skips what is there and does the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contract::report::{Workload, DIRECT_DB};
use contract::wire::Mode;

use crate::cluster::{build, galera, limits, packages, process, server, services, sql};
use crate::progress::Progress;
use crate::providers;
use crate::results::layout::{self, WORKLOADS};
use crate::results::{CpuUse, Degraded, RunMeta};
use crate::state::{
    project_root, BenchRun, BenchSettings, Deployment, Engine, Host, HostLimit, Millicpus, Role,
    Session,
};
use crate::transport::{self, script::Script};

/// The load generator, in the bench client's folder.
const LOADGEN: &str = "./loadgen";

/// How long the workers may take to catch up with what sysbench prepared on the manager.
const CATCH_UP: Duration = Duration::from_secs(300);

const BENCH_LIST: &str = include_str!("../../scripts/bench-list.sh");
const BENCH_SYSBENCH: &str = include_str!("../../scripts/bench-sysbench.sh");
const BENCH_LOADGEN: &str = include_str!("../../scripts/bench-loadgen.sh");

/// Runs the measurements of one bench run on the client, skipping the ones already there.
struct Bench<'a> {
    client: Host,
    /// The bench client's cgroup, which sysbench and the load generator run in.
    client_limit: Option<HostLimit>,
    run: &'a BenchRun,
    /// Outputs already in the run folder, relative to it.
    done: BTreeSet<String>,
}

impl Bench<'_> {
    fn has(&self, out: &str) -> bool {
        self.done.contains(out)
    }

    /// One sysbench command against several servers at once, each (config, output) a pair;
    /// an output of None discards the report.
    fn sysbench(
        &mut self,
        command: &str,
        workload: &str,
        s: &BenchSettings,
        targets: &[(String, Option<String>)],
    ) -> Result<()> {
        let lines: Vec<String> = targets
            .iter()
            .map(|(config, out)| {
                let out = out
                    .as_ref()
                    .map_or("-".to_string(), |o| format!("{}/{o}", self.run.id));
                format!("{config} {out}")
            })
            .collect();
        let script = Script::new("bench-sysbench", BENCH_SYSBENCH)
            .param("COMMAND", command)
            .param("ARGS", sysbench_args(workload, s).join(" "))
            .param("TARGETS", lines.join("\n"));
        let script = limits::in_group(script, self.client_limit.as_ref());
        transport::run_script(&self.client, &script, b"")
            .with_context(|| format!("sysbench {command} {workload}"))?;
        self.done
            .extend(targets.iter().filter_map(|(_, out)| out.clone()));
        Ok(())
    }

    fn loadgen(&mut self, args: &[String], out: String) -> Result<()> {
        let script = Script::new("bench-loadgen", BENCH_LOADGEN)
            .param("LOADGEN", LOADGEN)
            .param("ARGS", args.join(" "))
            .param("OUT", format!("{}/{out}", self.run.id));
        let script = limits::in_group(script, self.client_limit.as_ref());
        transport::run_script(&self.client, &script, b"")?;
        self.done.insert(out);
        Ok(())
    }

    /// A load test with the CPU time each host's server or service spent during it; the CPU
    /// samples are written last, so they mark the measurement complete.
    fn loadgen_with_cpu(
        &mut self,
        d: &Deployment,
        args: &[String],
        measured: &[(Host, &'static str)],
        out: String,
        cpu_out: &str,
    ) -> Result<()> {
        let before = cpu_seconds(measured)?;
        self.loadgen(args, out)?;
        let after = cpu_seconds(measured)?;
        // What was in force, read back from the groups: the figures say under which quotas
        // they were taken, not which were meant.
        let cpu_quotas = measured
            .iter()
            .filter_map(|(host, _)| Some((host, limits::of(d, &host.name)?)))
            .map(|(host, limit)| Ok((host.name.clone(), limits::usage(host, limit)?.quota_cpus)))
            .collect::<Result<_>>()?;
        let used = CpuUse {
            cpu_seconds: after
                .iter()
                .map(|(host, t)| (host.clone(), t - before.get(host).copied().unwrap_or(*t)))
                .collect(),
            cpu_quotas,
        };
        self.put(cpu_out, &serde_json::to_vec_pretty(&used)?)
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

pub fn run(session: &mut Session) -> Result<()> {
    let run = session
        .deployment
        .bench
        .clone()
        .context("no bench run was chosen; this is a bug in the step engine")?;
    let s = &run.settings;
    let d = &session.deployment;
    let client = d.bench_client()?;
    let built_loadgen = build::release_dir(d.settings.target.as_deref()).join("loadgen");
    if !built_loadgen.exists() {
        bail!(
            "{} is missing; run `cargo xtask deploy-services --force`, which builds it",
            built_loadgen.display()
        );
    }
    packages::ensure(&client, &packages::BENCH_CLIENT)?;
    let bytes =
        fs::read(&built_loadgen).with_context(|| format!("reading {}", built_loadgen.display()))?;
    transport::put_file(&client, LOADGEN, &bytes, true)?;
    let listed = transport::run_script(
        &client,
        &Script::new("bench-list", BENCH_LIST).param("RUN", run.id.clone()),
        b"",
    )?;
    let mut bench = Bench {
        client_limit: limits::of(d, &client.name).cloned(),
        client,
        run: &run,
        done: listed.lines().map(str::to_string).collect(),
    };
    // A run interrupted in the degraded-worker scenario or the chain measurement left a worker
    // slowed down or every quota lifted: every host gets its own quota back before anything is
    // measured.
    limits::set_all_cpus(d, false)?;

    let standalone = d.host(Role::Standalone)?.clone();
    // The cluster's writes go to one server, its reads to the others: the manager and the
    // workers, or the Galera node that writes (the proxy's choice) and the other nodes.
    let (writer, writer_target, readers, nodes) = match d.engine() {
        Engine::Replication => (
            d.host(Role::Manager)?.clone(),
            "manager",
            d.hosts_with_role(Role::Worker)
                .cloned()
                .collect::<Vec<Host>>(),
            Vec::new(),
        ),
        Engine::Galera => {
            let nodes: Vec<Host> = d.hosts_with_role(Role::Node).cloned().collect();
            let writer = galera_writer(d, &nodes)?;
            let others = nodes
                .iter()
                .filter(|n| n.name != writer.name)
                .cloned()
                .collect();
            (writer, layout::WRITER, others, nodes)
        }
    };
    // sysbench's reads run on every worker, or on every Galera node.
    let read_targets: Vec<Host> = if nodes.is_empty() {
        readers.clone()
    } else {
        nodes.clone()
    };
    let degraded = degraded_plan(d, s, &readers);
    // A resumed run keeps the metadata it started with.
    if !bench.has(layout::METADATA) {
        write_metadata(&bench.client, d, &run, degraded.as_ref(), &writer)?;
    }
    write_client_files(&bench.client, d)?;

    let config = |host: &Host| format!("{}.sysbench.cfg", host.name);

    // Every measurement, to count what is left for the progress line.
    let mut pending = 0u32;
    for n in 1..=s.runs {
        for workload in WORKLOADS {
            pending += u32::from(!bench.has(&layout::sysbench_out("standalone", workload, n)));
            let cluster_host = if workload == "oltp_read_write" {
                writer_target
            } else {
                read_targets[0].name.as_str()
            };
            pending += u32::from(!bench.has(&layout::sysbench_out(cluster_host, workload, n)));
        }
        if let Some(first) = nodes.first() {
            pending += u32::from(!bench.has(&layout::scaling_out(&first.name, n)));
        }
        for mode in layout::modes() {
            pending += u32::from(!bench.has(&layout::patterns_cpu_out(mode, n)));
        }
        for mode in layout::chain_modes() {
            pending += u32::from(!bench.has(&layout::chain_cpu_out(mode, n)));
            pending += u32::from(!bench.has(&layout::latency_out(mode, n)));
        }
        if degraded.is_some() {
            for mode in layout::degraded_modes() {
                pending += u32::from(!bench.has(&layout::degraded_out(mode, n)));
            }
        }
    }
    let progress = Progress::new("bench", u64::from(pending) + 2);
    let left = |pending: u32| format!("about {} s left", pending * (s.seconds + 1));

    // sysbench on the standalone server.
    let standalone_left = (1..=s.runs).any(|n| {
        WORKLOADS
            .iter()
            .any(|w| !bench.has(&layout::sysbench_out("standalone", w, n)))
    });
    if standalone_left {
        progress.task("sysbench prepare on the standalone server");
        for command in ["cleanup", "prepare"] {
            bench.sysbench(
                command,
                "oltp_read_write",
                s,
                &[(config(&standalone), None)],
            )?;
        }
    }
    for n in 1..=s.runs {
        for workload in WORKLOADS {
            let out = layout::sysbench_out("standalone", workload, n);
            if bench.has(&out) {
                continue;
            }
            progress.task(format!(
                "sysbench {workload} on the standalone server, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            bench.sysbench("run", workload, s, &[(config(&standalone), Some(out))])?;
            pending -= 1;
        }
    }

    // sysbench on the cluster: writes on the writer, reads on every worker (node) at once;
    // Galera also writes on every node at once.
    let (writer_is, readers_are) = match d.engine() {
        Engine::Replication => ("the manager".to_string(), "workers"),
        Engine::Galera => (format!("the writer ({})", writer.name), "nodes"),
    };
    let cluster_left = (1..=s.runs).any(|n| {
        !bench.has(&layout::sysbench_out(writer_target, "oltp_read_write", n))
            || read_targets.iter().any(|w| {
                WORKLOADS[1..]
                    .iter()
                    .any(|wl| !bench.has(&layout::sysbench_out(&w.name, wl, n)))
            })
            || nodes
                .iter()
                .any(|node| !bench.has(&layout::scaling_out(&node.name, n)))
    });
    if cluster_left {
        progress.task(format!(
            "sysbench prepare on {writer_is}, copied to the {readers_are}"
        ));
        for command in ["cleanup", "prepare"] {
            bench.sysbench(command, "oltp_read_write", s, &[(config(&writer), None)])?;
        }
    }
    for n in 1..=s.runs {
        let out = layout::sysbench_out(writer_target, "oltp_read_write", n);
        if !bench.has(&out) {
            progress.task(format!(
                "sysbench oltp_read_write on {writer_is}, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            bench.sysbench("run", "oltp_read_write", s, &[(config(&writer), Some(out))])?;
            pending -= 1;
        }
        for workload in &WORKLOADS[1..] {
            let targets: Vec<(String, Option<String>)> = read_targets
                .iter()
                .map(|w| (config(w), Some(layout::sysbench_out(&w.name, workload, n))))
                .collect();
            if targets
                .iter()
                .all(|(_, out)| bench.has(out.as_deref().unwrap_or_default()))
            {
                continue;
            }
            // The readers read what the writer wrote: they catch up first.
            catch_up(d, &writer, &readers)?;
            progress.task(format!(
                "sysbench {workload} on all {} {readers_are} at once, run {n}/{}, {}",
                read_targets.len(),
                s.runs,
                left(pending)
            ));
            bench.sysbench("run", workload, s, &targets)?;
            pending -= 1;
        }
        // What multi-primary costs: read-write on every node at once, where concurrent
        // writes to the same rows fail certification (counted by sysbench as ignored errors,
        // and retried).
        let targets: Vec<(String, Option<String>)> = nodes
            .iter()
            .map(|node| (config(node), Some(layout::scaling_out(&node.name, n))))
            .collect();
        if !targets.is_empty()
            && !targets
                .iter()
                .all(|(_, out)| bench.has(out.as_deref().unwrap_or_default()))
        {
            progress.task(format!(
                "sysbench oltp_read_write on all {} nodes at once (every node writes), run {n}/{}, {}",
                nodes.len(),
                s.runs,
                left(pending)
            ));
            bench.sysbench("run", "oltp_read_write", s, &targets)?;
            pending -= 1;
        }
    }
    progress.task(format!(
        "sysbench cleanup on the standalone server and {writer_is}"
    ));
    bench.sysbench(
        "cleanup",
        "oltp_read_write",
        s,
        &[(config(&standalone), None)],
    )?;
    bench.sysbench("cleanup", "oltp_read_write", s, &[(config(&writer), None)])?;

    // The patterns load test: every mode under load, each with the CPU the servers and
    // services spent on it.
    let load = LoadTest {
        gatekeeper_url: d.gatekeeper_url()?,
        films: 100 * d.settings.scale,
        manager: format!("{}:{}", writer.address, d.settings.db_port),
        manager_name: writer.name.clone(),
        from: bench.client.address.clone(),
        seconds: s.seconds,
    };
    let measured: Vec<(Host, &'static str)> = d
        .hosts
        .iter()
        .map(|h| Ok((h.clone(), program_of(h)?)))
        .collect::<Result<_>>()?;
    for n in 1..=s.runs {
        for mode in layout::modes() {
            let cpu_out = layout::patterns_cpu_out(mode, n);
            if bench.has(&cpu_out) {
                continue;
            }
            progress.task(format!(
                "load test {mode}, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            let workload = if mode == Mode::Write.as_str() {
                Workload::Write
            } else {
                Workload::Mix
            };
            let args = load.args(mode, workload, s.concurrency);
            bench
                .loadgen_with_cpu(d, &args, &measured, layout::patterns_out(mode, n), &cpu_out)
                .with_context(|| format!("the load test of {mode}"))?;
            pending -= 1;
        }
    }
    // What the chain costs: the manager straight and through the chain, under load and from
    // one client, with every CPU quota lifted: a capped server makes any chain look free and a
    // capped service makes it look dear.
    let chain_left = (1..=s.runs).any(|n| {
        layout::chain_modes().iter().any(|mode| {
            !bench.has(&layout::chain_cpu_out(mode, n)) || !bench.has(&layout::latency_out(mode, n))
        })
    });
    if chain_left {
        limits::set_all_cpus(d, true)?;
        for n in 1..=s.runs {
            for mode in layout::chain_modes() {
                let cpu_out = layout::chain_cpu_out(mode, n);
                if !bench.has(&cpu_out) {
                    progress.task(format!(
                        "what the chain costs: {mode} with no CPU quota, run {n}/{}, {}",
                        s.runs,
                        left(pending)
                    ));
                    let args = load.args(mode, Workload::Mix, s.concurrency);
                    bench
                        .loadgen_with_cpu(d, &args, &measured, layout::chain_out(mode, n), &cpu_out)
                        .with_context(|| format!("the chain-cost test of {mode}"))?;
                    pending -= 1;
                }
                let out = layout::latency_out(mode, n);
                if !bench.has(&out) {
                    progress.task(format!(
                        "point reads from one client, {mode}, run {n}/{}, {}",
                        s.runs,
                        left(pending)
                    ));
                    bench
                        .loadgen(&load.args(mode, Workload::Point, 1), out)
                        .with_context(|| format!("the latency test of {mode}"))?;
                    pending -= 1;
                }
            }
        }
        limits::set_all_cpus(d, false)?;
    }
    // The degraded-worker scenario: the strategies that choose a worker, with one of them
    // given a fraction of the others' CPU.
    if let Some(plan) = &degraded {
        for n in 1..=s.runs {
            for mode in layout::degraded_modes() {
                let out = layout::degraded_out(mode, n);
                if bench.has(&out) {
                    continue;
                }
                progress.task(format!(
                    "load test {mode} with {} at {} CPU, run {n}/{}, {}",
                    plan.worker.name,
                    plan.degraded,
                    s.runs,
                    left(pending)
                ));
                plan.slow_down(d)?;
                bench
                    .loadgen(&load.args(mode, Workload::Mix, s.concurrency), out)
                    .with_context(|| format!("the degraded-worker load test of {mode}"))?;
                pending -= 1;
            }
        }
        limits::set_all_cpus(d, false)?;
    }
    progress.note(format!(
        "run {} is complete in {} ({}); `cargo xtask fetch-results` turns it into results/",
        run.id,
        bench.client.dir.join(&run.id).display(),
        transport::describe(&bench.client)
    ));
    Ok(())
}

/// The degraded-worker scenario of a run: the last worker, slowed to a share of its quota.
struct DegradedPlan {
    worker: Host,
    limit: HostLimit,
    normal: Millicpus,
    degraded: Millicpus,
}

impl DegradedPlan {
    fn slow_down(&self, d: &Deployment) -> Result<()> {
        let (worker, limit) = (&self.worker, &self.limit);
        limits::set_cpus(worker, &d.id, &worker.name, limit, Some(self.degraded))
    }
}

/// The scenario, when the run asks for it and the deployment can have it: two workers (Galera:
/// nodes besides the writer) or more, with CPU quotas.
fn degraded_plan(d: &Deployment, s: &BenchSettings, workers: &[Host]) -> Option<DegradedPlan> {
    if s.degraded_worker_percent == 0 || workers.len() < 2 {
        return None;
    }
    let worker = workers.last()?;
    let limit = limits::of(d, &worker.name)?;
    let normal = limit.cpus?;
    Some(DegradedPlan {
        worker: worker.clone(),
        limit: limit.clone(),
        normal,
        degraded: normal.percent(s.degraded_worker_percent),
    })
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

/// Waits until the readers hold everything the writer has: the workers apply the manager's
/// binary log; a Galera node answers a causal read (wsrep_sync_wait) once it has applied every
/// write certified before it.
fn catch_up(d: &Deployment, writer: &Host, readers: &[Host]) -> Result<()> {
    match d.engine() {
        Engine::Replication => server::wait_for_replicas(writer, readers, CATCH_UP),
        Engine::Galera => {
            galera::wait_synced(
                &d.hosts_with_role(Role::Node).cloned().collect::<Vec<_>>(),
                CATCH_UP,
            )?;
            for node in readers {
                sql::sql(node, "SET SESSION wsrep_sync_wait = 1; SELECT 1;")?;
            }
            Ok(())
        }
    }
}

/// What every load test of a run shares.
struct LoadTest {
    gatekeeper_url: String,
    films: u32,
    /// The manager's (Galera: the writer's) ADDRESS:PORT, for `direct-db`.
    manager: String,
    /// Its host name, which direct-db's report names as the server that served.
    manager_name: String,
    /// The bench client's address: the load leaves from it, which the gatekeeper does not
    /// rate-limit.
    from: String,
    seconds: u32,
}

impl LoadTest {
    /// The load generator's options for a mode (`direct-db`: straight to the manager).
    fn args(&self, mode: &str, workload: Workload, concurrency: u32) -> Vec<String> {
        let mut args: Vec<String> = [
            "--workload",
            workload.as_str(),
            "--concurrency",
            &concurrency.to_string(),
            "--duration",
            &self.seconds.to_string(),
            "--films",
            &self.films.to_string(),
        ]
        .map(String::from)
        .into();
        let target: [&str; 6] = if mode == DIRECT_DB {
            [
                "--database",
                &self.manager,
                "--user",
                "bench",
                "--name",
                &self.manager_name,
            ]
        } else {
            [
                "--gatekeeper",
                &self.gatekeeper_url,
                "--mode",
                mode,
                "--from",
                &self.from,
            ]
        };
        args.extend(target.map(String::from));
        args
    }
}

/// The program whose CPU a host's work is: its server or its service.
fn program_of(host: &Host) -> Result<&'static str> {
    if host.role.runs_database() {
        Ok("mariadbd")
    } else {
        services::binary_name(host.role)
    }
}

/// The CPU seconds each host's server or service has used so far.
fn cpu_seconds(hosts: &[(Host, &'static str)]) -> Result<BTreeMap<String, f64>> {
    hosts
        .iter()
        .map(|(host, program)| Ok((host.name.clone(), process::cpu_seconds(host, program)?)))
        .collect()
}

/// One sysbench connection file per database host, and the load generator's password file,
/// readable by the owner only: a password must not appear on a command line.
fn write_client_files(client: &Host, d: &Deployment) -> Result<()> {
    for host in d.database_hosts() {
        let text = format!(
            "db-driver=mysql\nmysql-host={}\nmysql-port={}\nmysql-user=bench\nmysql-password={}\nmysql-db=sbtest\n",
            host.address, d.settings.db_port, d.secrets.bench_password
        );
        transport::put_file(
            client,
            &format!("{}.sysbench.cfg", host.name),
            text.as_bytes(),
            false,
        )?;
    }
    transport::put_file(
        client,
        "bench.password",
        d.secrets.bench_password.as_bytes(),
        false,
    )
}

fn sysbench_args(workload: &str, s: &BenchSettings) -> Vec<String> {
    vec![
        workload.to_string(),
        format!("--tables={}", s.tables),
        format!("--table-size={}", s.table_size),
        format!("--threads={}", s.threads),
        format!("--time={}", s.seconds),
        "--report-interval=0".to_string(),
        // Deadlocks and lock waits are counted and retried, as in the classic setup.
        "--mysql-ignore-errors=1213,1205,1020".to_string(),
    ]
}
