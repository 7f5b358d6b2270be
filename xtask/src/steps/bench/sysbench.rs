//! sysbench on the standalone server and on the cluster: read-write on the writer, the reads on
//! every worker (Galera: every node) at once, and Galera's write-scaling run with every node
//! writing.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{Bench, Cluster};
use crate::cluster::{galera, limits, server, sql};
use crate::results::layout::{self, WORKLOADS};
use crate::state::{BenchSettings, Host};
use crate::transport::{self, script::Script};

/// How long the readers may take to catch up with what sysbench prepared on the writer.
const CATCH_UP: Duration = Duration::from_secs(300);

const BENCH_SYSBENCH: &str = include_str!("../../../scripts/bench-sysbench.sh");

/// The read-only workloads, which run on every reader at once.
pub(super) fn read_workloads() -> &'static [&'static str] {
    &WORKLOADS[1..]
}

/// A host's sysbench connection file, in the bench client's folder.
pub(super) fn config(host: &Host) -> String {
    format!("{}.sysbench.cfg", host.name)
}

/// How the progress line names the writer.
pub(super) fn writer_is(cluster: &Cluster) -> String {
    match cluster.nodes.is_empty() {
        true => "the manager".to_string(),
        false => format!("the writer ({})", cluster.writer.name),
    }
}

fn readers_are(cluster: &Cluster) -> &'static str {
    match cluster.nodes.is_empty() {
        true => "workers",
        false => "nodes",
    }
}

/// A sysbench measurement on the cluster.
enum ClusterRun {
    /// Read-write on the writer.
    Writes(String),
    /// A read-only workload on every reader at once, an output each.
    Reads(&'static str, Vec<String>),
    /// Galera: read-write on every node at once, an output each.
    EveryNodeWrites(Vec<String>),
}

impl ClusterRun {
    fn outs(&self) -> &[String] {
        match self {
            ClusterRun::Writes(out) => std::slice::from_ref(out),
            ClusterRun::Reads(_, outs) | ClusterRun::EveryNodeWrites(outs) => outs,
        }
    }
}

/// The sysbench measurements of run `n` on the cluster, in the order they run.
fn cluster_runs(cluster: &Cluster, n: u32) -> Vec<ClusterRun> {
    let mut all = vec![ClusterRun::Writes(layout::sysbench_out(
        cluster.writer_target,
        "oltp_read_write",
        n,
    ))];
    for workload in read_workloads() {
        let outs = cluster
            .read_targets()
            .iter()
            .map(|host| layout::sysbench_out(&host.name, workload, n))
            .collect();
        all.push(ClusterRun::Reads(workload, outs));
    }
    if !cluster.nodes.is_empty() {
        let outs = cluster
            .nodes
            .iter()
            .map(|node| layout::scaling_out(&node.name, n))
            .collect();
        all.push(ClusterRun::EveryNodeWrites(outs));
    }
    all
}

/// The sysbench measurements not done yet.
pub(super) fn pending(done: &BTreeSet<String>, runs: u32, cluster: &Cluster) -> u32 {
    let standalone = (1..=runs).flat_map(|n| {
        WORKLOADS
            .iter()
            .map(move |w| vec![layout::sysbench_out("standalone", w, n)])
    });
    let on_cluster = (1..=runs)
        .flat_map(|n| cluster_runs(cluster, n))
        .map(|run| run.outs().to_vec());
    let left = standalone
        .chain(on_cluster)
        .filter(|outs| !outs.iter().all(|out| done.contains(out)))
        .count();
    u32::try_from(left).unwrap_or(u32::MAX)
}

impl Bench<'_> {
    /// One sysbench command against several servers at once, each (server, output) a pair;
    /// an output of None discards the report.
    pub(super) fn sysbench(
        &mut self,
        command: &str,
        workload: &str,
        targets: &[(&Host, Option<&String>)],
    ) -> Result<()> {
        let lines: Vec<String> = targets
            .iter()
            .map(|(host, out)| {
                let out = out.map_or("-".to_string(), |o| format!("{}/{o}", self.run.id));
                format!("{} {out}", config(host))
            })
            .collect();
        let script = Script::new("bench-sysbench", BENCH_SYSBENCH)
            .param("COMMAND", command)
            .param(
                "ARGS",
                sysbench_args(workload, &self.run.settings).join(" "),
            )
            .param("TARGETS", lines.join("\n"));
        let script = limits::in_group(script, self.client_limit.as_ref());
        transport::run_script(&self.client, &script, b"")
            .with_context(|| format!("sysbench {command} {workload}"))?;
        self.done
            .extend(targets.iter().filter_map(|(_, out)| out.cloned()));
        Ok(())
    }

    /// A fresh sysbench dataset on a server.
    pub(super) fn prepare(&mut self, host: &Host) -> Result<()> {
        for command in ["cleanup", "prepare"] {
            self.sysbench(command, "oltp_read_write", &[(host, None)])?;
        }
        Ok(())
    }
}

/// Every workload on the standalone server.
pub(super) fn on_standalone(bench: &mut Bench, standalone: &Host) -> Result<()> {
    let runs = bench.run.settings.runs;
    let measurements: Vec<(u32, &str, String)> = (1..=runs)
        .flat_map(|n| {
            WORKLOADS
                .iter()
                .map(move |w| (n, *w, layout::sysbench_out("standalone", w, n)))
        })
        .filter(|(_, _, out)| !bench.has(out))
        .collect();
    if measurements.is_empty() {
        return Ok(());
    }
    bench
        .progress
        .task("sysbench prepare on the standalone server");
    bench.prepare(standalone)?;
    for (n, workload, out) in measurements {
        bench.measuring(format!("sysbench {workload} on the standalone server"), n);
        bench.sysbench("run", workload, &[(standalone, Some(&out))])?;
    }
    Ok(())
}

/// Read-write on the writer, the reads on every worker (node) at once; Galera also writes on
/// every node at once.
pub(super) fn on_cluster(bench: &mut Bench, cluster: &Cluster) -> Result<()> {
    let runs: Vec<(u32, ClusterRun)> = (1..=bench.run.settings.runs)
        .flat_map(|n| {
            cluster_runs(cluster, n)
                .into_iter()
                .map(move |run| (n, run))
        })
        .filter(|(_, run)| !bench.has_all(run.outs()))
        .collect();
    if runs.is_empty() {
        return Ok(());
    }
    let (writer_is, readers_are) = (writer_is(cluster), readers_are(cluster));
    bench.progress.task(format!(
        "sysbench prepare on {writer_is}, copied to the {readers_are}"
    ));
    bench.prepare(&cluster.writer)?;
    for (n, run) in runs {
        match &run {
            ClusterRun::Writes(out) => {
                bench.measuring(format!("sysbench oltp_read_write on {writer_is}"), n);
                bench.sysbench("run", "oltp_read_write", &[(&cluster.writer, Some(out))])?;
            }
            ClusterRun::Reads(workload, outs) => {
                // The readers read what the writer wrote: they catch up first.
                catch_up(cluster)?;
                bench.measuring(
                    format!(
                        "sysbench {workload} on all {} {readers_are} at once",
                        outs.len()
                    ),
                    n,
                );
                let targets: Vec<_> = cluster
                    .read_targets()
                    .iter()
                    .zip(outs.iter().map(Some))
                    .collect();
                bench.sysbench("run", workload, &targets)?;
            }
            ClusterRun::EveryNodeWrites(outs) => {
                // What multi-primary costs: concurrent writes to the same rows fail
                // certification (counted by sysbench as ignored errors, and retried).
                bench.measuring(
                    format!(
                        "sysbench oltp_read_write on all {} nodes at once (every node writes)",
                        outs.len()
                    ),
                    n,
                );
                let targets: Vec<_> = cluster.nodes.iter().zip(outs.iter().map(Some)).collect();
                bench.sysbench("run", "oltp_read_write", &targets)?;
            }
        }
    }
    Ok(())
}

/// Drops sysbench's tables from these servers.
pub(super) fn cleanup(bench: &mut Bench, hosts: &[&Host]) -> Result<()> {
    for host in hosts {
        bench.sysbench("cleanup", "oltp_read_write", &[(host, None)])?;
    }
    Ok(())
}

/// Waits until the readers hold everything the writer has: the workers apply the manager's
/// binary log; a Galera node answers a causal read (wsrep_sync_wait) once it has applied every
/// write certified before it.
pub(super) fn catch_up(cluster: &Cluster) -> Result<()> {
    if cluster.nodes.is_empty() {
        return server::wait_for_replicas(&cluster.writer, &cluster.readers, CATCH_UP);
    }
    galera::wait_synced(&cluster.nodes, CATCH_UP)?;
    for node in &cluster.readers {
        sql::sql(node, "SET SESSION wsrep_sync_wait = 1; SELECT 1;")?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Role;

    fn host(name: &str, role: Role) -> Host {
        Host {
            name: name.to_string(),
            role,
            address: "127.0.0.1".to_string(),
            dir: name.into(),
            ssh: None,
            connects_from: None,
        }
    }

    fn galera() -> Cluster {
        let nodes: Vec<Host> = (1..=3)
            .map(|i| host(&format!("node-{i}"), Role::Node))
            .collect();
        Cluster {
            writer: nodes[1].clone(),
            writer_target: layout::WRITER,
            readers: vec![nodes[0].clone(), nodes[2].clone()],
            nodes,
        }
    }

    #[test]
    fn a_measurement_is_pending_until_every_output_is_there() {
        let replication = Cluster {
            writer: host("manager", Role::Manager),
            writer_target: "manager",
            readers: vec![
                host("worker-1", Role::Worker),
                host("worker-2", Role::Worker),
            ],
            nodes: Vec::new(),
        };
        let mut done = BTreeSet::new();
        // Per run: 3 workloads on the standalone server, read-write on the writer, the two
        // read workloads on the readers, and with Galera every node writing.
        assert_eq!(pending(&done, 2, &replication), 12);
        assert_eq!(pending(&done, 2, &galera()), 14);

        done.insert(layout::sysbench_out("standalone", "oltp_read_write", 1));
        done.insert(layout::sysbench_out("writer", "oltp_read_write", 1));
        done.insert(layout::sysbench_out("node-1", "oltp_read_only", 1));
        done.insert(layout::sysbench_out("node-2", "oltp_read_only", 1));
        assert_eq!(
            pending(&done, 2, &galera()),
            12,
            "node-3's read-only is missing"
        );
        done.insert(layout::sysbench_out("node-3", "oltp_read_only", 1));
        assert_eq!(pending(&done, 2, &galera()), 11);
        for node in ["node-1", "node-2", "node-3"] {
            done.insert(layout::scaling_out(node, 2));
        }
        assert_eq!(pending(&done, 2, &galera()), 10);
    }

    #[test]
    fn galera_reads_run_on_every_node_and_its_writes_on_all_of_them_too() {
        let runs = cluster_runs(&galera(), 1);
        let outs: Vec<Vec<String>> = runs.iter().map(|run| run.outs().to_vec()).collect();
        assert_eq!(outs[0], ["sysbench/writer-oltp_read_write-run1.txt"]);
        assert_eq!(outs[1].len(), 3, "read-only on all three nodes: {outs:?}");
        assert!(matches!(runs[3], ClusterRun::EveryNodeWrites(ref o) if o.len() == 3));
    }
}
