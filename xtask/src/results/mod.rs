//! The results layer: what the benchmarks produced, read back from the raw outputs of every
//! run in `results/raw/` (the layout `bench` writes), and the files a person reads:
//! `sysbench.csv`, `patterns.csv`, `summary.md` and the charts. Rebuilt whole from the raw
//! files each time, so a rerun adds no duplicate row.

pub mod charts;
pub mod collect;
pub mod csv;
pub mod layout;
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
    pub dataset_scale: u32,
    pub settings: BenchSettings,
    pub cluster_reads: String,
}

/// One bench run as read back from its raw folder.
pub struct Run {
    pub id: String,
    pub meta: RunMeta,
    pub sysbench: Vec<SysbenchRow>,
    pub patterns: Vec<PatternRow>,
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
}

/// Rebuilds every file of `results` from the runs in `raw`; returns (runs, sysbench rows,
/// pattern rows).
pub fn rebuild(results: &Path, raw: &Path) -> Result<(usize, usize, usize)> {
    let runs = collect::load_runs(raw)?;
    let Some(latest) = runs.last() else {
        bail!(
            "no bench run in {}; run `cargo xtask bench` first",
            raw.display()
        );
    };
    let sysbench_rows: Vec<SysbenchRow> = runs.iter().flat_map(|r| r.sysbench.clone()).collect();
    let pattern_rows: Vec<PatternRow> = runs.iter().flat_map(|r| r.patterns.clone()).collect();
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
        summary::summary(latest, runs.len()).as_bytes(),
        0o644,
    )?;
    charts::sysbench_tps(&results.join("sysbench-tps.svg"), &latest.sysbench)?;
    charts::pattern_latency(&results.join("patterns-latency.svg"), &latest.patterns)?;
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

/// Mean transactions/s and p95 of a target and workload over a run's repetitions.
pub fn sysbench_means(rows: &[SysbenchRow], target: &str, workload: &str) -> (f64, f64) {
    let of = || {
        rows.iter()
            .filter(|r| r.target == target && r.workload == workload)
    };
    (
        mean(of().map(|r| r.stats.tps)),
        mean(of().map(|r| r.stats.latency_p95)),
    )
}

/// Mean throughput and latency percentiles of a mode over a run's repetitions, and its errors.
pub struct PatternMeans {
    pub throughput: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub errors: u64,
}

pub fn pattern_means(rows: &[PatternRow], mode: &str) -> PatternMeans {
    let of = || rows.iter().filter(|r| r.mode == mode).map(|r| &r.report);
    PatternMeans {
        throughput: mean(of().map(|r| r.throughput_rps)),
        p50: mean(of().map(|r| r.latency_ms.p50)),
        p90: mean(of().map(|r| r.latency_ms.p90)),
        p99: mean(of().map(|r| r.latency_ms.p99)),
        p999: mean(of().map(|r| r.latency_ms.p999)),
        errors: of().map(Report::error_count).sum(),
    }
}
