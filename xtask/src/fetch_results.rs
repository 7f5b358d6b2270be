//! fetch-results: copies every bench run's raw outputs into `results/raw/<run-id>/` and rebuilds
//! `results/sysbench.csv`, `results/patterns.csv`, `results/summary.md` and the charts from all
//! the raw runs there. Rebuilding from the raw files is what makes a rerun add no duplicate row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::charts;
use crate::steps::Session;
use crate::{bench, transport};

pub fn run(session: &mut Session) -> Result<()> {
    let results = results_dir();
    let raw = results.join("raw");
    fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;

    // The bench client's run folders: on this machine a copy is all fetching takes; from an
    // instance they come over scp into a staging folder first.
    let client = bench::bench_client(session)?;
    let staging = session.paths.state_dir().join("fetch");
    let bench_dir = match &client.ssh {
        Some(_) => {
            if staging.exists() {
                fs::remove_dir_all(&staging)
                    .with_context(|| format!("removing {}", staging.display()))?;
            }
            transport::fetch_folders(&client, &staging)?;
            staging.clone()
        }
        None => client.dir.clone(),
    };
    let mut fetched = 0;
    if let Ok(entries) = fs::read_dir(&bench_dir) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            fetched += copy_run(&entry.path(), &raw.join(entry.file_name()))?;
        }
    }
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    let runs = load_runs(&raw)?;
    if runs.is_empty() {
        bail!(
            "no bench run on the bench client ({}) or in {}; run `cargo xtask bench` first",
            client.dir.display(),
            raw.display()
        );
    }
    let sysbench_rows: Vec<SysbenchRow> = runs.iter().flat_map(|r| r.sysbench.clone()).collect();
    let pattern_rows: Vec<PatternRow> = runs.iter().flat_map(|r| r.patterns.clone()).collect();
    write_atomically(&results.join("sysbench.csv"), &sysbench_csv(&sysbench_rows))?;
    write_atomically(&results.join("patterns.csv"), &patterns_csv(&pattern_rows))?;
    let latest = runs.last().expect("not empty");
    write_atomically(&results.join("summary.md"), &summary(latest, runs.len()))?;
    charts::sysbench_tps(&results.join("sysbench-tps.svg"), &latest.sysbench)?;
    charts::pattern_latency(&results.join("patterns-latency.svg"), &latest.patterns)?;
    eprintln!(
        "fetch-results: {fetched} new raw files; {} runs, {} sysbench rows, {} pattern rows in {}",
        runs.len(),
        sysbench_rows.len(),
        pattern_rows.len(),
        results.display()
    );
    eprintln!(
        "fetch-results: read {} first",
        results.join("summary.md").display()
    );
    Ok(())
}

pub fn results_dir() -> PathBuf {
    std::env::var_os("XTASK_RESULTS")
        .map_or_else(|| crate::project_root().join("results"), PathBuf::from)
}

/// Copies the finished files of a run (not the ones still being written); returns how many
/// were new.
fn copy_run(from: &Path, to: &Path) -> Result<usize> {
    let mut copied = 0;
    for entry in fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .flatten()
    {
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copied += copy_run(&path, &target)?;
        } else if path.extension().is_some_and(|e| e != "tmp") && !target.exists() {
            fs::create_dir_all(to)?;
            let staged = target.with_extension("tmp");
            fs::copy(&path, &staged).with_context(|| format!("copying {}", path.display()))?;
            fs::rename(&staged, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let staged = path.with_extension("tmp");
    fs::write(&staged, text).with_context(|| format!("writing {}", staged.display()))?;
    fs::rename(&staged, path).with_context(|| format!("writing {}", path.display()))
}

/// One bench run as read back from its raw folder.
pub struct Run {
    pub id: String,
    pub meta: Value,
    pub sysbench: Vec<SysbenchRow>,
    pub patterns: Vec<PatternRow>,
}

/// The numbers of one sysbench report.
#[derive(Debug, Clone, PartialEq)]
pub struct SysbenchStats {
    pub threads: u64,
    pub reads: u64,
    pub writes: u64,
    pub other: u64,
    pub transactions: u64,
    pub tps: f64,
    pub qps: f64,
    pub errors: u64,
    pub reconnects: u64,
    pub seconds: f64,
    pub latency_min: f64,
    pub latency_avg: f64,
    pub latency_p95: f64,
    pub latency_max: f64,
}

#[derive(Debug, Clone)]
pub struct SysbenchRow {
    pub run_id: String,
    pub meta: Value,
    pub target: String,
    pub workload: String,
    pub run: u32,
    pub stats: SysbenchStats,
}

#[derive(Debug, Clone)]
pub struct PatternRow {
    pub run_id: String,
    pub meta: Value,
    pub mode: String,
    pub run: u32,
    pub report: Value,
}

/// Reads sysbench's text report.
pub fn parse_sysbench(text: &str) -> Result<SysbenchStats> {
    // "name:   value (rate per sec.)" lines; the first number after the colon, and the rate.
    let field = |name: &str| -> Option<(f64, Option<f64>)> {
        let line = text.lines().find(|l| l.trim_start().starts_with(name))?;
        let rest = line.split_once(':')?.1.trim();
        let value: f64 = rest
            .split_whitespace()
            .next()?
            .trim_end_matches('s')
            .parse()
            .ok()?;
        let rate = rest
            .split_once('(')
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|r| r.parse().ok());
        Some((value, rate))
    };
    let need = |name: &str| {
        field(name).with_context(|| format!("the sysbench report has no {name:?} line"))
    };
    let (transactions, tps) = need("transactions:")?;
    let (_, qps) = need("queries:")?;
    Ok(SysbenchStats {
        threads: need("Number of threads:")?.0 as u64,
        reads: need("read:")?.0 as u64,
        writes: need("write:")?.0 as u64,
        other: need("other:")?.0 as u64,
        transactions: transactions as u64,
        tps: tps.context("transactions has no rate")?,
        qps: qps.context("queries has no rate")?,
        errors: need("ignored errors:")?.0 as u64,
        reconnects: need("reconnects:")?.0 as u64,
        seconds: need("total time:")?.0,
        latency_min: need("min:")?.0,
        latency_avg: need("avg:")?.0,
        latency_p95: need("95th percentile:")?.0,
        latency_max: need("max:")?.0,
    })
}

/// The cluster's read capacity: the workers' reports of one run, added up. Latency: the
/// lowest minimum, the transaction-weighted average, and the highest 95th percentile and
/// maximum (an upper bound: percentiles do not add).
pub fn combine(parts: &[&SysbenchStats]) -> Option<SysbenchStats> {
    let first = parts.first()?;
    let sum = |f: fn(&SysbenchStats) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
    let transactions = sum(|p| p.transactions);
    let weighted = parts
        .iter()
        .map(|p| p.latency_avg * p.transactions as f64)
        .sum::<f64>();
    Some(SysbenchStats {
        threads: sum(|p| p.threads),
        reads: sum(|p| p.reads),
        writes: sum(|p| p.writes),
        other: sum(|p| p.other),
        transactions,
        tps: parts.iter().map(|p| p.tps).sum(),
        qps: parts.iter().map(|p| p.qps).sum(),
        errors: sum(|p| p.errors),
        reconnects: sum(|p| p.reconnects),
        seconds: parts
            .iter()
            .map(|p| p.seconds)
            .fold(first.seconds, f64::max),
        latency_min: parts
            .iter()
            .map(|p| p.latency_min)
            .fold(first.latency_min, f64::min),
        latency_avg: if transactions > 0 {
            weighted / transactions as f64
        } else {
            0.0
        },
        latency_p95: parts.iter().map(|p| p.latency_p95).fold(0.0, f64::max),
        latency_max: parts.iter().map(|p| p.latency_max).fold(0.0, f64::max),
    })
}

/// "worker-1-oltp_read_only-run2.txt" -> ("worker-1", "oltp_read_only", 2)
fn split_name(stem: &str) -> Option<(String, String, u32)> {
    let (rest, run) = stem.rsplit_once("-run")?;
    let at = rest.find("-oltp_")?;
    Some((
        rest[..at].to_string(),
        rest[at + 1..].to_string(),
        run.parse().ok()?,
    ))
}

fn load_runs(raw: &Path) -> Result<Vec<Run>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(raw)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut runs = Vec::new();
    for dir in dirs {
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let meta: Value = match fs::read(dir.join("run.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}/run.json", dir.display()))?,
            Err(_) => continue,
        };
        let mut sysbench = Vec::new();
        for (path, stem) in files(&dir.join("sysbench"), "txt") {
            let Some((target, workload, run)) = split_name(&stem) else {
                continue;
            };
            let text = fs::read_to_string(&path)?;
            let stats =
                parse_sysbench(&text).with_context(|| format!("reading {}", path.display()))?;
            sysbench.push(SysbenchRow {
                run_id: id.clone(),
                meta: meta.clone(),
                target,
                workload,
                run,
                stats,
            });
        }
        // The cluster rows: writes are the manager's, reads all workers' together.
        let mut cluster = Vec::new();
        let keys: std::collections::BTreeSet<(String, u32)> = sysbench
            .iter()
            .map(|r| (r.workload.clone(), r.run))
            .collect();
        for (workload, run) in keys {
            let parts: Vec<&SysbenchStats> = sysbench
                .iter()
                .filter(|r| r.workload == workload && r.run == run)
                .filter(|r| {
                    if workload == "oltp_read_write" {
                        r.target == "manager"
                    } else {
                        r.target.starts_with("worker-")
                    }
                })
                .map(|r| &r.stats)
                .collect();
            if let Some(stats) = combine(&parts) {
                cluster.push(SysbenchRow {
                    run_id: id.clone(),
                    meta: meta.clone(),
                    target: "cluster".into(),
                    workload,
                    run,
                    stats,
                });
            }
        }
        sysbench.extend(cluster);
        sysbench
            .sort_by(|a, b| (a.run, &a.workload, &a.target).cmp(&(b.run, &b.workload, &b.target)));

        let mut patterns = Vec::new();
        for (path, stem) in files(&dir.join("patterns"), "json") {
            let Some((mode, run)) = stem.rsplit_once("-run") else {
                continue;
            };
            let report: Value = serde_json::from_slice(&fs::read(&path)?)
                .with_context(|| format!("reading {}", path.display()))?;
            patterns.push(PatternRow {
                run_id: id.clone(),
                meta: meta.clone(),
                mode: mode.to_string(),
                run: run.parse().unwrap_or(0),
                report,
            });
        }
        patterns.sort_by_key(|p| (p.run, mode_order(&p.mode)));
        runs.push(Run {
            id,
            meta,
            sysbench,
            patterns,
        });
    }
    Ok(runs)
}

fn mode_order(mode: &str) -> usize {
    crate::bench::MODES
        .iter()
        .position(|m| *m == mode)
        .unwrap_or(usize::MAX)
}

/// The files of a folder with this extension, sorted, with their stems.
fn files(dir: &Path, extension: &str) -> Vec<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .filter_map(|p| Some((p.clone(), p.file_stem()?.to_string_lossy().into_owned())))
        .collect();
    found.sort();
    found
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn meta(meta: &Value, key: &str) -> String {
    match &meta[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn sysbench_csv(rows: &[SysbenchRow]) -> String {
    let mut out = String::from(
        "run_id,timestamp,provider,target,workload,run,threads,table_size,duration_s,\
         transactions_per_s,queries_per_s,reads,writes,other,latency_min_ms,latency_avg_ms,\
         latency_p95_ms,latency_max_ms,errors,reconnects,git_revision,instance_type,ran_on\n",
    );
    for r in rows {
        let s = &r.stats;
        let fields = [
            r.run_id.clone(),
            meta(&r.meta, "started_at"),
            meta(&r.meta, "provider"),
            r.target.clone(),
            r.workload.clone(),
            r.run.to_string(),
            s.threads.to_string(),
            meta(&r.meta["settings"], "table_size"),
            format!("{:.2}", s.seconds),
            format!("{:.2}", s.tps),
            format!("{:.2}", s.qps),
            s.reads.to_string(),
            s.writes.to_string(),
            s.other.to_string(),
            format!("{:.2}", s.latency_min),
            format!("{:.2}", s.latency_avg),
            format!("{:.2}", s.latency_p95),
            format!("{:.2}", s.latency_max),
            s.errors.to_string(),
            s.reconnects.to_string(),
            meta(&r.meta, "git_revision"),
            meta(&r.meta, "instance_type"),
            meta(&r.meta, "ran_on"),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(",")).unwrap();
    }
    out
}

/// "worker-1=33.3%;worker-2=66.7%" from a report's served_by counts.
fn shares(report: &Value) -> String {
    let Some(served) = report["served_by"].as_object() else {
        return String::new();
    };
    let total: u64 = served.values().filter_map(Value::as_u64).sum();
    served
        .iter()
        .map(|(name, n)| {
            format!(
                "{name}={:.1}%",
                100.0 * n.as_u64().unwrap_or(0) as f64 / total.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

pub fn patterns_csv(rows: &[PatternRow]) -> String {
    let mut out = String::from(
        "run_id,timestamp,provider,mode,run,workload,concurrency,duration_s,requests,throughput_rps,\
         p50_ms,p90_ms,p99_ms,p999_ms,max_ms,mean_ms,errors,backend_shares,git_revision\n",
    );
    for r in rows {
        let rep = &r.report;
        let lat = |k: &str| format!("{:.3}", rep["latency_ms"][k].as_f64().unwrap_or(f64::NAN));
        let errors: u64 = rep["errors"]
            .as_object()
            .map_or(0, |e| e.values().filter_map(Value::as_u64).sum());
        let fields = [
            r.run_id.clone(),
            meta(&r.meta, "started_at"),
            meta(&r.meta, "provider"),
            r.mode.clone(),
            r.run.to_string(),
            meta(rep, "workload"),
            meta(rep, "concurrency"),
            format!("{:.2}", rep["duration_s"].as_f64().unwrap_or(0.0)),
            meta(rep, "requests"),
            format!("{:.1}", rep["throughput_rps"].as_f64().unwrap_or(0.0)),
            lat("p50"),
            lat("p90"),
            lat("p99"),
            lat("p999"),
            lat("max"),
            lat("mean"),
            errors.to_string(),
            shares(rep),
            meta(&r.meta, "git_revision"),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(",")).unwrap();
    }
    out
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

/// Mean throughput and latency percentiles of a mode over a run's repetitions.
pub fn pattern_means(rows: &[PatternRow], mode: &str) -> BTreeMap<&'static str, f64> {
    let of = || rows.iter().filter(|r| r.mode == mode);
    let mut m = BTreeMap::new();
    m.insert(
        "throughput",
        mean(of().filter_map(|r| r.report["throughput_rps"].as_f64())),
    );
    for p in ["p50", "p90", "p99", "p999"] {
        m.insert(
            p,
            mean(of().filter_map(|r| r.report["latency_ms"][p].as_f64())),
        );
    }
    m.insert(
        "errors",
        of().map(|r| {
            r.report["errors"]
                .as_object()
                .map_or(0, |e| e.values().filter_map(Value::as_u64).sum::<u64>()) as f64
        })
        .sum(),
    );
    m
}

fn summary(run: &Run, total_runs: usize) -> String {
    let m = &run.meta;
    let mut out = format!(
        "# Benchmark summary\n\nRun `{}` (started {}, provider {}, revision {}), {} workers, dataset \
         scale {}; repetitions per measurement: {}. Benchmarks ran on {}. {} run(s) in all are in the CSVs.\n\n",
        run.id,
        meta(m, "started_at"),
        meta(m, "provider"),
        meta(m, "git_revision"),
        meta(m, "workers"),
        meta(m, "dataset_scale"),
        meta(&m["settings"], "runs"),
        meta(m, "ran_on"),
        total_runs
    );
    let s = &m["settings"];
    writeln!(
        out,
        "## sysbench: standalone server vs cluster\n\n{} threads per server, {} s per run, {} table(s) of {} rows. \
         The cluster's writes run on the manager; its reads run on every worker at once and are added up.\n",
        meta(s, "threads"), meta(s, "seconds"), meta(s, "tables"), meta(s, "table_size")
    )
    .unwrap();
    out.push_str("| workload | standalone tx/s | cluster tx/s | cluster / standalone | standalone p95 ms | cluster p95 ms |\n|---|---:|---:|---:|---:|---:|\n");
    for workload in crate::bench::WORKLOADS {
        let (st, sp) = sysbench_means(&run.sysbench, "standalone", workload);
        let (ct, cp) = sysbench_means(&run.sysbench, "cluster", workload);
        writeln!(
            out,
            "| {workload} | {st:.1} | {ct:.1} | {:.2}x | {sp:.2} | {cp:.2} |",
            ct / st
        )
        .unwrap();
    }
    writeln!(
        out,
        "\n## The patterns: every strategy vs the database directly\n\n{} clients for {} s per run through the \
         gatekeeper (reads: 4 point reads for every range read; write: updates by key); `direct-db` sends the \
         same reads straight to the manager.\n",
        meta(s, "concurrency"), meta(s, "seconds")
    )
    .unwrap();
    out.push_str("| mode | requests/s | vs direct-db | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let direct = pattern_means(&run.patterns, "direct-db");
    for mode in crate::bench::MODES {
        let p = pattern_means(&run.patterns, mode);
        writeln!(
            out,
            "| {mode} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            p["throughput"],
            p["throughput"] / direct["throughput"],
            p["p50"],
            p["p90"],
            p["p99"],
            p["p999"],
            p["errors"]
        )
        .unwrap();
    }
    out.push_str("\nCharts: `sysbench-tps.svg`, `patterns-latency.svg`. Every number per run: `sysbench.csv`, `patterns.csv` (columns in README.md).\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_sysbench_reports() {
        let rw =
            parse_sysbench(include_str!("../tests/data/sysbench-oltp_read_write.txt")).unwrap();
        assert_eq!(
            (rw.threads, rw.reads, rw.writes, rw.other, rw.transactions),
            (2, 6622, 1892, 946, 473)
        );
        assert_eq!(
            (rw.tps, rw.qps, rw.errors, rw.reconnects),
            (235.64, 4712.88, 0, 0)
        );
        assert_eq!(
            (
                rw.latency_min,
                rw.latency_avg,
                rw.latency_max,
                rw.latency_p95
            ),
            (2.59, 8.46, 23.85, 14.46)
        );
        assert!((rw.seconds - 2.0066).abs() < 1e-9);
        let ro = parse_sysbench(include_str!("../tests/data/sysbench-oltp_read_only.txt")).unwrap();
        assert_eq!(ro.writes, 0);
        assert!(ro.tps > 0.0 && ro.reads > 0);
        let ps =
            parse_sysbench(include_str!("../tests/data/sysbench-oltp_point_select.txt")).unwrap();
        assert_eq!(ps.reads, ps.transactions);
        let err = parse_sysbench("FATAL: error 2013").unwrap_err().to_string();
        assert!(err.contains("transactions:"), "{err}");
    }

    #[test]
    fn cluster_rows_add_up_the_workers() {
        let a = parse_sysbench(include_str!("../tests/data/sysbench-oltp_read_only.txt")).unwrap();
        let b = SysbenchStats {
            tps: 100.0,
            transactions: 200,
            latency_avg: 1.0,
            latency_p95: 99.0,
            ..a.clone()
        };
        let c = combine(&[&a, &b]).unwrap();
        assert_eq!(c.tps, a.tps + 100.0);
        assert_eq!(c.threads, a.threads * 2);
        assert_eq!(c.latency_p95, 99.0_f64.max(a.latency_p95));
        let expected =
            (a.latency_avg * a.transactions as f64 + 200.0) / (a.transactions + 200) as f64;
        assert!((c.latency_avg - expected).abs() < 1e-9);
        assert!(combine(&[]).is_none());
    }

    #[test]
    fn names_and_fields() {
        assert_eq!(
            split_name("worker-12-oltp_point_select-run3"),
            Some(("worker-12".into(), "oltp_point_select".into(), 3))
        );
        assert_eq!(
            split_name("standalone-oltp_read_write-run1"),
            Some(("standalone".into(), "oltp_read_write".into(), 1))
        );
        assert_eq!(split_name("junk"), None);
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
        let report = serde_json::json!({ "served_by": { "worker-1": 1, "worker-2": 3 } });
        assert_eq!(shares(&report), "worker-1=25.0%;worker-2=75.0%");
    }
}
