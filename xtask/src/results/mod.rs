//! The results layer: what the benchmarks produced, read back from the raw outputs of every
//! run in `results/raw/` (the layout `bench` writes), and the files a person reads:
//! `sysbench.csv`, `patterns.csv`, `summary.md` and the charts. Rebuilt whole from the raw
//! files each time, so a rerun adds no duplicate row.

pub mod charts;
pub mod collect;
pub mod csv;
pub mod layout;
pub mod scaling;
pub mod summary;
pub mod sysbench;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use contract::report::Report;
use serde::{Deserialize, Serialize};

use crate::state::{atomic_write, project_root, BenchSettings};
use sysbench::SysbenchStats;

pub fn results_dir() -> PathBuf {
    std::env::var_os("XTASK_RESULTS").map_or_else(|| project_root().join("results"), PathBuf::from)
}

/// What a run was (`run.json`, written when it starts): copied into every row of the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub started_at: String,
    pub provider: String,
    pub deployment: String,
    pub git_revision: String,
    pub instance_type: String,
    pub ran_on: String,
    pub workers: u8,
    /// `replication` or `galera` (runs from before engines: replication).
    #[serde(default = "replication")]
    pub engine: String,
    /// Galera: the node that took the writes when the run started.
    #[serde(default)]
    pub writer: Option<String>,
    pub dataset_scale: u32,
    pub settings: BenchSettings,
    pub cluster_reads: String,
    /// The per-host limits in force, in one line (runs from before they existed: empty).
    #[serde(default)]
    pub host_limits: String,
    /// The degraded-worker scenario, when the run has one.
    #[serde(default)]
    pub degraded: Option<Degraded>,
}

/// The degraded-worker scenario of a run: which worker was slowed, to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Degraded {
    pub worker: String,
    /// Its CPU quota during the scenario.
    pub cpus: f64,
    /// The other workers' quota (and its own otherwise).
    pub others_cpus: f64,
}

fn replication() -> String {
    "replication".to_string()
}

impl RunMeta {
    /// The server that takes the cluster's writes: the manager, or the run's Galera writer.
    pub fn is_writer(&self, host: &str) -> bool {
        host == self.writer.as_deref().unwrap_or("manager")
    }

    /// A server of the cluster that serves reads only: a worker, or a Galera node that is not
    /// the writer.
    pub fn is_reader(&self, host: &str) -> bool {
        host.starts_with("worker-") || (host.starts_with("node-") && !self.is_writer(host))
    }
}

impl Degraded {
    pub fn describe(&self) -> String {
        let others = if self.worker.starts_with("node-") {
            "the other reading nodes"
        } else {
            "the other workers"
        };
        format!(
            "{} at {} CPU, {others} at {} CPU",
            self.worker, self.cpus, self.others_cpus
        )
    }
}

/// One bench run as read back from its raw folder.
pub struct Run {
    pub id: String,
    pub meta: RunMeta,
    pub sysbench: Vec<SysbenchRow>,
    pub patterns: Vec<PatternRow>,
    /// The one-client point-read runs (`latency/`), as pattern rows.
    pub latency: Vec<PatternRow>,
    /// `direct-db` and `direct-hit` under load with every CPU quota lifted (`chain/`): what the
    /// chain costs, measured where no quota caps a server or service.
    pub chain: Vec<PatternRow>,
    /// The degraded-worker scenario's runs (`degraded/`).
    pub degraded: Vec<PatternRow>,
    /// The scaling curve (`scaling-curve/`), when the run has one.
    pub scaling: Vec<scaling::CurveRow>,
}

#[derive(Debug, Clone)]
pub struct SysbenchRow {
    pub meta: RunMeta,
    pub target: String,
    pub workload: String,
    pub run: u32,
    pub stats: SysbenchStats,
}

#[derive(Debug, Clone)]
pub struct PatternRow {
    pub meta: RunMeta,
    pub mode: String,
    pub run: u32,
    pub report: Report,
    /// What the servers and services spent on it (runs from before it was measured: none).
    pub cpu: Option<CpuUse>,
    pub scenario: Scenario,
}

/// Under what conditions a load test ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every host at the quota it was provisioned with.
    Normal,
    /// One worker slowed down (the run's `meta.degraded` says which).
    DegradedWorker,
    /// Every host's CPU quota lifted for the measurement.
    QuotasLifted,
}

impl PatternRow {
    /// Under what conditions it ran, for the CSV.
    pub fn scenario(&self) -> String {
        match (&self.meta.degraded, self.scenario) {
            (Some(d), Scenario::DegradedWorker) => format!("degraded: {}", d.describe()),
            (_, Scenario::QuotasLifted) => "every CPU quota lifted".to_string(),
            _ => "normal".to_string(),
        }
    }
}

/// The CPU time each server and service used during one load test, by host name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub cpu_seconds: std::collections::BTreeMap<String, f64>,
    /// The CPU quota each host with a group had when the measurement ended, in CPUs; None: no
    /// quota. (Runs from before it was recorded: empty.)
    #[serde(default)]
    pub cpu_quotas: std::collections::BTreeMap<String, Option<f64>>,
}

impl CpuUse {
    /// Microseconds of CPU per request of the hosts `which` selects, added up.
    pub fn per_request(&self, requests: u64, which: impl Fn(&str) -> bool) -> f64 {
        let seconds: f64 = self
            .cpu_seconds
            .iter()
            .filter(|(host, _)| which(host))
            .map(|(_, s)| s)
            .sum();
        seconds * 1e6 / requests.max(1) as f64
    }
}

/// The role services' hosts.
pub fn is_service(host: &str) -> bool {
    matches!(host, "gatekeeper" | "trusted-host" | "proxy")
}

/// Rebuilds every file of `results` from the runs in `raw`; returns (runs, sysbench rows,
/// pattern rows).
pub fn rebuild(results: &Path, raw: &Path) -> Result<(usize, usize, usize)> {
    let runs = collect::load_runs(raw)?;
    let Some(latest) = runs.last() else {
        bail!(
            "no bench run in {}; run `{}` first",
            raw.display(),
            crate::state::command("bench")
        );
    };
    let sysbench_rows: Vec<SysbenchRow> = runs.iter().flat_map(|r| r.sysbench.clone()).collect();
    let pattern_rows: Vec<PatternRow> = runs
        .iter()
        .flat_map(|r| {
            r.patterns
                .iter()
                .chain(&r.degraded)
                .chain(&r.chain)
                .chain(&r.latency)
                .cloned()
        })
        .collect();
    atomic_write(
        &results.join("sysbench.csv"),
        &csv::sysbench_csv(&sysbench_rows)?,
        0o644,
    )?;
    atomic_write(
        &results.join("patterns.csv"),
        &csv::patterns_csv(&pattern_rows)?,
        0o644,
    )?;
    atomic_write(
        &results.join("summary.md"),
        summary::summary(&runs).as_bytes(),
        0o644,
    )?;
    charts::sysbench_tps(&results.join("sysbench-tps.svg"), &latest.sysbench)?;
    charts::patterns(&results.join("patterns.svg"), latest)?;
    let curve_rows: Vec<scaling::CurveRow> = runs.iter().flat_map(|r| r.scaling.clone()).collect();
    if let Some(curve) = runs.iter().rev().find(|r| !r.scaling.is_empty()) {
        atomic_write(
            &results.join("scaling.csv"),
            &scaling::csv(&curve_rows)?,
            0o644,
        )?;
        charts::scaling(&results.join("scaling.svg"), &curve.scaling)?;
    }
    // The latency chart of earlier versions, which patterns.svg replaces: a stale chart beside
    // fresh ones would show an old run as if it were this one.
    std::fs::remove_file(results.join("patterns-latency.svg")).ok();
    Ok((runs.len(), sysbench_rows.len(), pattern_rows.len()))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The smallest, median and largest of a measurement over a run's repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// NaN everywhere when there is no value.
    pub fn of(values: impl Iterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let Some((&min, &max)) = v.first().zip(v.last()) else {
            return Spread {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        };
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread { min, median, max }
    }
}

/// Transactions/s and p95 latency of a target and workload over a run's repetitions.
pub fn sysbench_spread(rows: &[SysbenchRow], target: &str, workload: &str) -> (Spread, Spread) {
    let of = || {
        rows.iter()
            .filter(|r| r.target == target && r.workload == workload)
    };
    (
        Spread::of(of().map(|r| r.stats.tps)),
        Spread::of(of().map(|r| r.stats.latency_p95)),
    )
}

/// The share (0 to 1) of a mode's successful requests that `host` served, over its runs.
pub fn share_served_by(rows: &[PatternRow], mode: &str, host: &str) -> f64 {
    let (mut on_host, mut all) = (0u64, 0u64);
    for row in rows.iter().filter(|r| r.mode == mode) {
        on_host += row.report.served_by.get(host).copied().unwrap_or(0);
        all += row.report.served_by.values().sum::<u64>();
    }
    if all == 0 {
        f64::NAN
    } else {
        on_host as f64 / all as f64
    }
}

/// Mean throughput, latency percentiles and CPU per request of a mode over a run's
/// repetitions, and its errors by kind.
pub struct PatternMeans {
    pub throughput: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub errors: std::collections::BTreeMap<String, u64>,
    /// CPU µs per request: the three services together, the manager (Galera: the writer), the
    /// workers (the other nodes) together.
    pub cpu_services: f64,
    pub cpu_manager: f64,
    pub cpu_workers: f64,
}

impl PatternMeans {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Microseconds of CPU per request of a mode's hosts that `which` selects, added up, as a mean
/// over the runs that sampled them; NaN when none did.
pub fn cpu_per_request(
    rows: &[PatternRow],
    mode: &str,
    which: impl Fn(&RunMeta, &str) -> bool,
) -> f64 {
    mean(rows.iter().filter(|r| r.mode == mode).filter_map(|r| {
        r.cpu
            .as_ref()
            .map(|c| c.per_request(r.report.requests, |h| which(&r.meta, h)))
    }))
}

pub fn pattern_means(rows: &[PatternRow], mode: &str) -> PatternMeans {
    let of = || rows.iter().filter(|r| r.mode == mode);
    let reports = || of().map(|r| &r.report);
    let cpu = |which: fn(&RunMeta, &str) -> bool| cpu_per_request(rows, mode, which);
    let mut errors = std::collections::BTreeMap::new();
    for (kind, n) in reports().flat_map(|r| &r.errors) {
        *errors.entry(kind.clone()).or_default() += n;
    }
    PatternMeans {
        throughput: mean(reports().map(|r| r.throughput_rps)),
        p50: mean(reports().map(|r| r.latency_ms.p50)),
        p90: mean(reports().map(|r| r.latency_ms.p90)),
        p99: mean(reports().map(|r| r.latency_ms.p99)),
        p999: mean(reports().map(|r| r.latency_ms.p999)),
        errors,
        cpu_services: cpu(|_, h| is_service(h)),
        cpu_manager: cpu(RunMeta::is_writer),
        cpu_workers: cpu(RunMeta::is_reader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_runs() {
        let s = Spread::of([3.0, 1.0, 2.0].into_iter());
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Spread::of([4.0, 1.0, f64::NAN, 2.0, 3.0].into_iter());
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
        assert!(Spread::of(std::iter::empty()).median.is_nan());
    }
}
