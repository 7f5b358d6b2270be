//! The scaling curve (`--scaling`): after the other measurements, the cluster is scaled live
//! to each number of workers (Galera: nodes) in turn, and at each its reads are measured:
//! sysbench's read-only and point-select on every worker at once, and the chain's reads
//! (`random`, as many clients per worker as the load test's concurrency), each with the CPU
//! every part used, to say what saturated where the curve bends. Then the cluster is scaled
//! back to its size when the run began.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use contract::report::Workload;

use super::load::{cpu_seconds, program_of, LoadTest};
use super::sysbench::{catch_up, read_workloads};
use super::{write_client_files, Bench, Cluster};
use crate::cluster::limits;
use crate::resize;
use crate::results::layout;
use crate::results::scaling::{CurveCpu, CHAIN};
use crate::state::{BenchSettings, Deployment, Engine, Host, Session};
use crate::transport::{self, script::Script};

const MACHINE_CPU: &str = include_str!("../../../scripts/machine-cpu.sh");

/// The measurements of the curve, each named by the output written last (its CPU).
fn measurements(s: &BenchSettings) -> Vec<(u8, u32, &'static str)> {
    s.scaling
        .iter()
        .flat_map(|&count| {
            (1..=s.runs).flat_map(move |n| {
                read_workloads()
                    .iter()
                    .copied()
                    .chain([CHAIN])
                    .map(move |what| (count, n, what))
            })
        })
        .collect()
}

/// The curve's measurements not done yet.
pub(super) fn pending(done: &BTreeSet<String>, s: &BenchSettings) -> u32 {
    let left = measurements(s)
        .into_iter()
        .filter(|(count, n, what)| !done.contains(&layout::curve_cpu_out(*count, what, *n)))
        .count();
    u32::try_from(left).unwrap_or(u32::MAX)
}

/// Refuses, before anything is measured, a count the cluster cannot be scaled to.
pub(super) fn check(d: &Deployment, s: &BenchSettings) -> Result<()> {
    if d.engine() == Engine::Galera {
        if let Some(count) = s.scaling.iter().find(|c| **c < 3) {
            bail!(
                "--scaling {count}: a Galera cluster keeps 3 nodes or more (with fewer, one node \
                 lost takes the others' majority); start the curve at 3"
            );
        }
    }
    Ok(())
}

pub(super) fn run(bench: &mut Bench, session: &mut Session) -> Result<()> {
    let s = bench.run.settings.clone();
    if s.scaling.is_empty() {
        return Ok(());
    }
    let back_to = bench
        .run
        .workers
        .unwrap_or(session.deployment.settings.workers);
    let left: Vec<(u8, u32, &str)> = measurements(&s)
        .into_iter()
        .filter(|(count, n, what)| !bench.has(&layout::curve_cpu_out(*count, what, *n)))
        .collect();
    if !left.is_empty() {
        let writer = Cluster::of(&session.deployment)?.writer;
        bench
            .progress
            .task("sysbench prepare for the scaling curve, copied to the workers");
        bench.prepare(&writer)?;
        for count in s.scaling.iter().copied() {
            if !left.iter().any(|(c, _, _)| *c == count) {
                continue;
            }
            at_count(bench, session, count, &left)?;
        }
        let writer = Cluster::of(&session.deployment)?.writer;
        bench.sysbench("cleanup", "oltp_read_write", &[(&writer, None)])?;
    }
    if session.deployment.settings.workers != back_to {
        bench
            .progress
            .task(format!("scaling the cluster back to {back_to}"));
        let done = resize::to(session, back_to, &bench.progress)?;
        bench.progress.note(done);
    }
    Ok(())
}

/// Scales to `count` and measures what is left there.
fn at_count(
    bench: &mut Bench,
    session: &mut Session,
    count: u8,
    left: &[(u8, u32, &str)],
) -> Result<()> {
    bench
        .progress
        .task(format!("scaling the cluster to {count} for the curve"));
    let done = resize::to(session, count, &bench.progress)?;
    bench.progress.note(done);
    let d = &session.deployment;
    // What a scale lifted is back, and a new worker has its sysbench connection file.
    limits::set_all_cpus(d, false)?;
    write_client_files(&bench.client, d)?;
    let cluster = Cluster::of(d)?;
    let s = bench.run.settings.clone();
    let load = LoadTest::new(d, &bench.client, &cluster.writer, s.seconds)?;
    for (_, n, what) in left.iter().filter(|(c, _, _)| *c == count) {
        let readers = cluster.read_targets().len();
        let clients = s.concurrency * u32::from(count);
        bench.measuring(
            match *what {
                CHAIN => format!("scaling curve at {count}: the chain's reads, {clients} clients"),
                _ => format!("scaling curve at {count}: sysbench {what} on {readers} at once"),
            },
            *n,
        );
        // The readers read what the writer prepared: they catch up first, outside the count.
        if *what != CHAIN {
            catch_up(&cluster)?;
        }
        let before = sample(d, bench)?;
        if *what == CHAIN {
            let args = load.args("random", Workload::Mix, clients);
            bench
                .loadgen(&args, layout::curve_report_out(count, CHAIN, *n))
                .context("the scaling curve's chain reads")?;
        } else {
            let outs: Vec<String> = cluster
                .read_targets()
                .iter()
                .map(|h| layout::curve_sysbench_out(count, &h.name, what, *n))
                .collect();
            let targets: Vec<(&Host, Option<&String>)> = cluster
                .read_targets()
                .iter()
                .zip(outs.iter().map(Some))
                .collect();
            bench.sysbench("run", what, &targets)?;
        }
        let after = sample(d, bench)?;
        let used = used(d, &before, &after)?;
        bench.put(
            &layout::curve_cpu_out(count, what, *n),
            &serde_json::to_vec_pretty(&used)?,
        )?;
    }
    Ok(())
}

/// The CPU counters at one moment: each host's server or service, the bench client's group,
/// the client's machine.
struct Sample {
    at: Instant,
    hosts: BTreeMap<String, f64>,
    client: Option<f64>,
    /// Busy clock ticks, clock ticks per second, cores.
    machine: (f64, f64, u32),
}

fn sample(d: &Deployment, bench: &Bench) -> Result<Sample> {
    let measured: Vec<(Host, &'static str)> = d
        .hosts
        .iter()
        .map(|h| Ok((h.clone(), program_of(h)?)))
        .collect::<Result<_>>()?;
    let hosts = cpu_seconds(&measured)?;
    let client = match &bench.client_limit {
        Some(limit) => Some(limits::usage(&bench.client, limit)?.cpu_seconds),
        None => None,
    };
    let out = transport::run_script(&bench.client, &Script::new("machine-cpu", MACHINE_CPU), b"")?;
    let fields: Vec<f64> = out
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [busy, _, ticks, cores] = fields[..] else {
        anyhow::bail!("machine-cpu printed {out:?}");
    };
    Ok(Sample {
        at: Instant::now(),
        hosts,
        client,
        machine: (busy, ticks, cores as u32),
    })
}

/// What was used between two samples, with the quotas in force (read back from the groups).
fn used(d: &Deployment, before: &Sample, after: &Sample) -> Result<CurveCpu> {
    let cpu_quotas = d
        .hosts
        .iter()
        .filter_map(|host| Some((host, limits::of(d, &host.name)?)))
        .map(|(host, limit)| Ok((host.name.clone(), limits::usage(host, limit)?.quota_cpus)))
        .collect::<Result<_>>()?;
    let client_quota = match limits::of(d, "bench-client") {
        Some(limit) => limits::usage(&d.bench_client()?, limit)?.quota_cpus,
        None => None,
    };
    Ok(CurveCpu {
        seconds: after.at.duration_since(before.at).as_secs_f64(),
        cpu_seconds: after
            .hosts
            .iter()
            .map(|(h, t)| (h.clone(), t - before.hosts.get(h).copied().unwrap_or(*t)))
            .collect(),
        cpu_quotas,
        client_seconds: after.client.zip(before.client).map(|(a, b)| a - b),
        client_quota,
        machine_busy_seconds: (after.machine.0 - before.machine.0) / after.machine.1.max(1.0),
        machine_cores: after.machine.2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProviderKind, Settings};

    #[test]
    fn a_galera_curve_below_three_nodes_is_refused_before_anything_runs() {
        let settings = |engine| Settings {
            engine,
            ..Settings::defaults(ProviderKind::Local)
        };
        let bench = BenchSettings {
            scaling: vec![3, 2, 4],
            ..BenchSettings::defaults(true)
        };
        let galera = Deployment::new("d".into(), settings(Engine::Galera), Vec::new());
        let err = check(&galera, &bench).unwrap_err().to_string();
        assert!(
            err.contains("--scaling 2: a Galera cluster keeps 3 nodes"),
            "{err}"
        );
        let replication = Deployment::new("d".into(), settings(Engine::Replication), Vec::new());
        assert!(check(&replication, &bench).is_ok());
    }
}
