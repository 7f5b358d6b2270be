//! Collecting runs: raw outputs copied into `results/raw/<run-id>/`, and every run there read
//! back into rows.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use contract::report::Report;

use super::sysbench::{combine, parse_sysbench, SysbenchStats};
use super::{layout, CpuUse, PatternRow, Run, RunMeta, Scenario, SysbenchRow};
use crate::state::atomic_write;

/// Copies the finished files of a run (not the ones still being written); returns how many
/// were new.
pub fn copy_run(from: &Path, to: &Path) -> Result<usize> {
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
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            atomic_write(&target, &bytes, 0o644)?;
            copied += 1;
        }
    }
    Ok(copied)
}

pub fn load_runs(raw: &Path) -> Result<Vec<Run>> {
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
        let meta: RunMeta = match fs::read(dir.join(layout::METADATA)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}/run.json", dir.display()))?,
            Err(_) => continue,
        };
        let mut sysbench = Vec::new();
        for (path, stem) in files(&dir.join("sysbench"), "txt") {
            let Some((target, workload, run)) = layout::split_sysbench(&stem) else {
                continue;
            };
            let text = fs::read_to_string(&path)?;
            let stats =
                parse_sysbench(&text).with_context(|| format!("reading {}", path.display()))?;
            sysbench.push(SysbenchRow {
                meta: meta.clone(),
                target,
                workload,
                run,
                stats,
            });
        }
        // The cluster rows: writes are the manager's (Galera: the writer's), reads all workers'
        // (all nodes') together.
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
                        r.target == "manager" || r.target == layout::WRITER
                    } else {
                        r.target.starts_with("worker-") || r.target.starts_with("node-")
                    }
                })
                .map(|r| &r.stats)
                .collect();
            if let Some(stats) = combine(&parts) {
                cluster.push(SysbenchRow {
                    meta: meta.clone(),
                    target: "cluster".into(),
                    workload,
                    run,
                    stats,
                });
            }
        }
        // Galera's write-scaling runs: writes on every node at once, added up.
        let scaling = files(&dir.join("scaling"), "txt")
            .into_iter()
            .filter_map(|(path, stem)| Some((path, layout::split_sysbench(&stem)?)))
            .map(|(path, (target, workload, run))| {
                let text = fs::read_to_string(&path)?;
                let stats =
                    parse_sysbench(&text).with_context(|| format!("reading {}", path.display()))?;
                Ok((target, workload, run, stats))
            })
            .collect::<Result<Vec<_>>>()?;
        let runs_of_scaling: std::collections::BTreeSet<u32> =
            scaling.iter().map(|(_, _, run, _)| *run).collect();
        for run in runs_of_scaling {
            let parts: Vec<&SysbenchStats> = scaling
                .iter()
                .filter(|(_, _, r, _)| *r == run)
                .map(|(_, _, _, s)| s)
                .collect();
            if let Some(stats) = combine(&parts) {
                cluster.push(SysbenchRow {
                    meta: meta.clone(),
                    target: layout::EVERY_NODE_WRITES.into(),
                    workload: "oltp_read_write".into(),
                    run,
                    stats,
                });
            }
        }
        sysbench.extend(cluster);
        sysbench
            .sort_by(|a, b| (a.run, &a.workload, &a.target).cmp(&(b.run, &b.workload, &b.target)));

        // Runs from before the chain measurement existed took their one-client runs under the
        // hosts' quotas.
        let lifted = if dir.join("chain").is_dir() {
            Scenario::QuotasLifted
        } else {
            Scenario::Normal
        };
        let patterns = load_reports(&dir.join("patterns"), &meta, Scenario::Normal)?;
        let latency = load_reports(&dir.join("latency"), &meta, lifted)?;
        let degraded = load_reports(&dir.join("degraded"), &meta, Scenario::DegradedWorker)?;
        let chain = load_reports(&dir.join("chain"), &meta, Scenario::QuotasLifted)?;
        let scaling = super::scaling::load(&dir, &meta)?;
        runs.push(Run {
            scaling,
            id,
            meta,
            sysbench,
            patterns,
            latency,
            degraded,
            chain,
        });
    }
    Ok(runs)
}

/// The load generator's reports in a folder, each with its CPU samples when it has them.
fn load_reports(dir: &Path, meta: &RunMeta, scenario: Scenario) -> Result<Vec<PatternRow>> {
    let mut rows = Vec::new();
    for (path, stem) in files(dir, "json") {
        // The CPU samples are read with their report.
        if stem.ends_with(".cpu") {
            continue;
        }
        let Some((mode, run)) = layout::split_patterns(&stem) else {
            continue;
        };
        let report: Report = serde_json::from_slice(&fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let cpu_path = path.with_extension("cpu.json");
        let cpu: Option<CpuUse> = match fs::read(&cpu_path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", cpu_path.display()))?,
            ),
            Err(_) => None,
        };
        rows.push(PatternRow {
            meta: meta.clone(),
            mode,
            run,
            report,
            cpu,
            scenario,
        });
    }
    rows.sort_by_key(|p| (p.run, mode_order(&p.mode)));
    Ok(rows)
}

fn mode_order(mode: &str) -> usize {
    layout::modes()
        .into_iter()
        .chain([layout::FLOOR, layout::FLOOR_AT_CHAIN_RATE])
        .position(|m| m == mode)
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
