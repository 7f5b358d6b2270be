//! The scaling curve: the cluster's reads at each number of workers a run scaled it to (`bench
//! --scaling`), read back from `scaling-curve/w<N>/`; with each measurement's efficiency (its
//! throughput against N times one worker's), the point where adding a worker stops paying,
//! and what was saturated there, from the CPU each part used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use contract::report::Report;
use serde::{Deserialize, Serialize};

use super::sysbench::{combine, parse_sysbench};
use super::{layout, RunMeta};

/// The workloads of the curve, in the order they run: sysbench's two reads on every worker at
/// once, then the chain's reads.
pub const CURVE_WORKLOADS: [&str; 3] = ["oltp_read_only", "oltp_point_select", CHAIN];
/// The chain's reads (the load generator's read mix, `random` mode, through the gatekeeper).
pub const CHAIN: &str = "chain-random";

/// Where the CPU went during one measurement of the curve (`<what>-run<n>.cpu.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurveCpu {
    /// How long the measurement took, wall clock.
    pub seconds: f64,
    /// The CPU seconds each host's server or service used, by host.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// Each host's CPU quota in force, in CPUs; None: no quota.
    pub cpu_quotas: BTreeMap<String, Option<f64>>,
    /// The bench client's group (sysbench, the load generator), and its quota.
    pub client_seconds: Option<f64>,
    pub client_quota: Option<f64>,
    /// The bench client's machine: the CPU seconds all its cores were busy, and how many.
    pub machine_busy_seconds: f64,
    pub machine_cores: u32,
}

impl CurveCpu {
    /// How busy each part was, from 0 to 1 of what it may use (its quota, else the machine's
    /// cores): the bench client, each service, the workers on average, and the machine.
    pub fn busy(&self, meta: &RunMeta) -> Vec<(String, f64)> {
        let cores = f64::from(self.machine_cores.max(1));
        let share = |cpu: f64, quota: Option<f64>| cpu / self.seconds / quota.unwrap_or(cores);
        let mut busy = Vec::new();
        if let Some(client) = self.client_seconds {
            busy.push((
                "the bench client".to_string(),
                share(client, self.client_quota),
            ));
        }
        for service in ["gatekeeper", "trusted-host", "proxy"] {
            if let Some(cpu) = self.cpu_seconds.get(service) {
                let quota = self.cpu_quotas.get(service).copied().flatten();
                busy.push((format!("the {service}"), share(*cpu, quota)));
            }
        }
        let readers: Vec<f64> = self
            .cpu_seconds
            .iter()
            .filter(|(host, _)| meta.is_reader(host))
            .map(|(host, cpu)| share(*cpu, self.cpu_quotas.get(host).copied().flatten()))
            .collect();
        if !readers.is_empty() {
            busy.push((
                "the workers (on average)".to_string(),
                readers.iter().sum::<f64>() / readers.len() as f64,
            ));
        }
        busy.push((
            format!("the machine's {} cores", self.machine_cores),
            self.machine_busy_seconds / self.seconds / cores,
        ));
        busy
    }
}

/// One measurement of the curve.
#[derive(Debug, Clone)]
pub struct CurveRow {
    pub meta: RunMeta,
    pub workers: u8,
    pub workload: String,
    pub run: u32,
    /// Reads answered per second, all workers together (the chain: requests).
    pub reads_per_s: f64,
    /// Failed requests (the chain) or sysbench errors.
    pub errors: u64,
    pub cpu: Option<CurveCpu>,
}

/// The curve's rows of a run folder (none when the run has no curve).
pub fn load(dir: &Path, meta: &RunMeta) -> Result<Vec<CurveRow>> {
    let mut rows = Vec::new();
    for entry in fs::read_dir(dir.join(layout::CURVE))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Some(workers) = layout::curve_workers(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        let point = entry.path();
        let cpu_of = |what: &str, run: u32| -> Result<Option<CurveCpu>> {
            let path = point.join(layout::curve_cpu_file(what, run));
            match fs::read(&path) {
                Ok(bytes) => Ok(Some(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("reading {}", path.display()))?,
                )),
                Err(_) => Ok(None),
            }
        };
        // sysbench: one report per worker, added up per workload and run.
        let mut reports: BTreeMap<(String, u32), Vec<super::sysbench::SysbenchStats>> =
            BTreeMap::new();
        let mut chain = Vec::new();
        for file in fs::read_dir(&point)?.flatten() {
            let path = file.path();
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".txt") {
                let Some((_, workload, run)) = layout::split_sysbench(stem) else {
                    continue;
                };
                let text = fs::read_to_string(&path)?;
                let stats =
                    parse_sysbench(&text).with_context(|| format!("reading {}", path.display()))?;
                reports.entry((workload, run)).or_default().push(stats);
            } else if let Some(stem) = name.strip_suffix(".json").filter(|s| !s.ends_with(".cpu")) {
                let Some((_, run)) = layout::split_patterns(stem) else {
                    continue;
                };
                let report: Report = serde_json::from_slice(&fs::read(&path)?)
                    .with_context(|| format!("reading {}", path.display()))?;
                chain.push((run, report));
            }
        }
        for ((workload, run), parts) in reports {
            // A measurement counts once its CPU samples, written last, are there.
            let Some(cpu) = cpu_of(&workload, run)? else {
                continue;
            };
            let parts: Vec<_> = parts.iter().collect();
            let Some(stats) = combine(&parts) else {
                continue;
            };
            rows.push(CurveRow {
                meta: meta.clone(),
                workers,
                reads_per_s: stats.reads as f64 / stats.seconds.max(1e-9),
                errors: stats.errors,
                workload,
                run,
                cpu: Some(cpu),
            });
        }
        for (run, report) in chain {
            let Some(cpu) = cpu_of(CHAIN, run)? else {
                continue;
            };
            rows.push(CurveRow {
                meta: meta.clone(),
                workers,
                workload: CHAIN.to_string(),
                run,
                reads_per_s: report.throughput_rps,
                errors: report.error_count(),
                cpu: Some(cpu),
            });
        }
    }
    rows.sort_by_key(|r| (order(&r.workload), r.workers, r.run));
    Ok(rows)
}

fn order(workload: &str) -> usize {
    CURVE_WORKLOADS
        .iter()
        .position(|w| *w == workload)
        .unwrap_or(usize::MAX)
}

/// One workload's curve: the median throughput at each number of workers, its efficiency,
/// and where adding a worker stops paying.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// (workers, median reads per second, efficiency), by workers.
    pub points: Vec<(u8, f64, f64)>,
    /// One worker's throughput: measured with one worker, else the smallest count's divided
    /// by that count.
    pub per_worker: f64,
    /// The first count whose workers added less than half of one worker's throughput each
    /// over the count before it, with what they added per worker.
    pub knee: Option<(u8, f64)>,
}

/// What a worker added must be at least this share of one worker's throughput to pay.
const PAYS: f64 = 0.5;

/// The curve of (workers, throughput) pairs (several runs of a count: their median).
pub fn curve(measured: &[(u8, f64)]) -> Option<Curve> {
    let mut by_count: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
    for (workers, value) in measured {
        by_count.entry(*workers).or_default().push(*value);
    }
    let medians: Vec<(u8, f64)> = by_count
        .into_iter()
        .map(|(n, mut values)| {
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let median = if values.len() % 2 == 0 {
                (values[mid - 1] + values[mid]) / 2.0
            } else {
                values[mid]
            };
            (n, median)
        })
        .collect();
    let (first, first_value) = *medians.first()?;
    let per_worker = first_value / f64::from(first);
    let points = medians
        .iter()
        .map(|(n, v)| (*n, *v, v / (f64::from(*n) * per_worker)))
        .collect();
    let knee = medians.windows(2).find_map(|w| {
        let ((a, va), (b, vb)) = (w[0], w[1]);
        let added = (vb - va) / f64::from(b - a);
        (added < PAYS * per_worker).then_some((b, added))
    });
    Some(Curve {
        points,
        per_worker,
        knee,
    })
}

/// Each workload's curve of a run's rows.
pub fn curves(rows: &[CurveRow]) -> Vec<(&'static str, Curve)> {
    CURVE_WORKLOADS
        .iter()
        .filter_map(|workload| {
            let measured: Vec<(u8, f64)> = rows
                .iter()
                .filter(|r| r.workload == *workload)
                .map(|r| (r.workers, r.reads_per_s))
                .collect();
            Some((*workload, curve(&measured)?))
        })
        .collect()
}

/// A part this busy (of what it may use) is what held the throughput back.
const SATURATED: f64 = 0.85;

/// Each part during the measurements at `workers` of `workload` (the mean over runs), with
/// how busy, the busiest first.
fn busiest(rows: &[CurveRow], workload: &str, workers: u8) -> Vec<(String, f64)> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.workload == workload && r.workers == workers)
    {
        let Some(cpu) = &row.cpu else {
            continue;
        };
        for (part, busy) in cpu.busy(&row.meta) {
            let entry = sums.entry(part).or_default();
            entry.0 += busy;
            entry.1 += 1;
        }
    }
    let mut parts: Vec<(String, f64)> = sums
        .into_iter()
        .map(|(part, (sum, n))| (part, sum / n as f64))
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
}

pub fn label(workload: &str) -> &str {
    match workload {
        "oltp_read_only" => "sysbench read-only, reads/s",
        "oltp_point_select" => "sysbench point select, reads/s",
        _ => "the chain (random), requests/s",
    }
}

/// The summary's section on the curve of the latest run that has one.
pub fn section(rows: &[CurveRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let curves = curves(rows);
    let mut out = String::new();
    let counts: Vec<String> = first
        .meta
        .settings
        .scaling
        .iter()
        .map(u8::to_string)
        .collect();
    let noun = if first.meta.engine == "galera" {
        "nodes"
    } else {
        "workers"
    };
    writeln!(
        out,
        "\n## Scaling: reads against the number of {noun}\n\nRun {}: the cluster scaled live \
         (`cargo xtask scale`) to {} {noun} in turn; at each, sysbench's two read workloads on \
         every {} at once ({} threads each) and the chain's reads (`random`, {} clients per \
         {}), {} run(s) of {} s, every quota in force. Efficiency is the throughput against N \
         times one's ({}); adding one stops paying when it adds less than half of one's.\n",
        first.meta.run_id,
        counts.join(", "),
        &noun[..noun.len() - 1],
        first.meta.settings.threads,
        first.meta.settings.concurrency,
        &noun[..noun.len() - 1],
        first.meta.settings.runs,
        first.meta.settings.seconds,
        if counts.first().map(String::as_str) == Some("1") {
            "measured with one"
        } else {
            "the smallest count's, per one"
        },
    )
    .unwrap();
    let mut header = format!("| {noun} |");
    let mut rule = "|---:|".to_string();
    for (workload, _) in &curves {
        header += &format!(" {} | efficiency |", label(workload));
        rule += "---:|---:|";
    }
    writeln!(out, "{header}\n{rule}").unwrap();
    let all_counts: Vec<u8> = {
        let mut c: Vec<u8> = rows.iter().map(|r| r.workers).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    for n in &all_counts {
        let mut line = format!("| {n} |");
        for (_, curve) in &curves {
            match curve.points.iter().find(|(c, _, _)| c == n) {
                Some((_, value, efficiency)) => {
                    line += &format!(" {value:.0} | {:.0} % |", efficiency * 100.0)
                }
                None => line += " - | - |",
            }
        }
        writeln!(out, "{line}").unwrap();
    }
    out.push('\n');
    for (workload, curve) in &curves {
        let said = match curve.knee {
            Some((at, added)) => {
                let why = match busiest(rows, workload, at).first().cloned() {
                    Some((part, busy)) if busy >= SATURATED => format!(
                        "{part} {} saturated ({:.0} % of what it may use)",
                        if part.contains("workers") || part.contains("cores") {
                            "were"
                        } else {
                            "was"
                        },
                        busy * 100.0
                    ),
                    Some(_) => format!(
                        "nothing measured was saturated; the busiest were {}",
                        busiest(rows, workload, at)
                            .iter()
                            .take(3)
                            .map(|(part, busy)| format!("{part} ({:.0} %)", busy * 100.0))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => "no CPU was measured".to_string(),
                };
                let gained = if added < 0.0 {
                    format!("the throughput fell, by {:.0}/s for each added", -added)
                } else {
                    format!("each added {added:.0}/s")
                };
                format!(
                    "adding a {} stops paying at {at}: {gained}, against {:.0}/s for one; \
                     {why}.",
                    &noun[..noun.len() - 1],
                    curve.per_worker
                )
            }
            None => format!(
                "every {} added paid (at least half of one's {:.0}/s each).",
                &noun[..noun.len() - 1],
                curve.per_worker
            ),
        };
        writeln!(out, "- {}: {said}", label(workload)).unwrap();
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        writeln!(
            out,
            "\n⚠ {errors} requests or queries of the curve failed: its figures count them out."
        )
        .unwrap();
    }
    out.push_str("\nChart: `scaling.svg`. Every measurement: `scaling.csv`.\n");
    out
}

#[derive(Debug, Serialize)]
struct CsvRow<'a> {
    run_id: &'a str,
    timestamp: &'a str,
    provider: &'a str,
    engine: &'a str,
    workers: u8,
    workload: &'a str,
    run: u32,
    reads_per_s: f64,
    efficiency: f64,
    errors: u64,
    /// How busy each part was, 0 to 1 of what it may use.
    bench_client_busy: Option<f64>,
    proxy_busy: Option<f64>,
    workers_busy: Option<f64>,
    machine_busy: Option<f64>,
    host_limits: &'a str,
    git_revision: &'a str,
}

/// `scaling.csv`: every measurement of every run's curve.
pub fn csv(rows: &[CurveRow]) -> Result<Vec<u8>> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let mut by_run: BTreeMap<&str, Vec<&CurveRow>> = BTreeMap::new();
    for row in rows {
        by_run.entry(&row.meta.run_id).or_default().push(row);
    }
    for run_rows in by_run.values() {
        let owned: Vec<CurveRow> = run_rows.iter().map(|r| (*r).clone()).collect();
        let curves = curves(&owned);
        for row in run_rows {
            let per_worker = curves
                .iter()
                .find(|(w, _)| *w == row.workload)
                .map_or(f64::NAN, |(_, c)| c.per_worker);
            let busy = row
                .cpu
                .as_ref()
                .map(|c| c.busy(&row.meta))
                .unwrap_or_default();
            let part = |prefix: &str| {
                busy.iter()
                    .find(|(p, _)| p.starts_with(prefix))
                    .map(|(_, b)| *b)
            };
            writer.serialize(CsvRow {
                run_id: &row.meta.run_id,
                timestamp: &row.meta.started_at,
                provider: &row.meta.provider,
                engine: &row.meta.engine,
                workers: row.workers,
                workload: &row.workload,
                run: row.run,
                reads_per_s: row.reads_per_s,
                efficiency: row.reads_per_s / (f64::from(row.workers) * per_worker),
                errors: row.errors,
                bench_client_busy: part("the bench client"),
                proxy_busy: part("the proxy"),
                workers_busy: part("the workers"),
                machine_busy: part("the machine"),
                host_limits: &row.meta.host_limits,
                git_revision: &row.meta.git_revision,
            })?;
        }
    }
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efficiency_is_against_n_times_one_worker() {
        let c = curve(&[(1, 100.0), (2, 190.0), (3, 270.0), (4, 300.0), (6, 310.0)]).unwrap();
        assert_eq!(c.per_worker, 100.0);
        let efficiency: Vec<(u8, f64)> = c.points.iter().map(|(n, _, e)| (*n, *e)).collect();
        assert_eq!(efficiency[0], (1, 1.0));
        assert!((efficiency[1].1 - 0.95).abs() < 1e-9);
        assert!((efficiency[2].1 - 0.9).abs() < 1e-9);
        assert!((efficiency[4].1 - 310.0 / 600.0).abs() < 1e-9);
        // 3 -> 4 added 30/s, under half of one worker's 100/s.
        assert_eq!(c.knee, Some((4, 30.0)));
    }

    #[test]
    fn without_one_worker_the_smallest_count_gives_one_workers_share() {
        let c = curve(&[(2, 200.0), (2, 240.0), (2, 220.0), (4, 430.0)]).unwrap();
        assert_eq!(c.points[0], (2, 220.0, 1.0), "the median of three runs");
        assert_eq!(c.per_worker, 110.0);
        assert_eq!(c.knee, None, "two more added 105/s each");
        // A step of two that adds under half of one worker's per worker is the knee.
        let c = curve(&[(2, 200.0), (4, 290.0)]).unwrap();
        assert_eq!(c.knee, Some((4, 45.0)));
        assert!(curve(&[]).is_none());
    }
}
