//! bench: sysbench against the standalone server and the cluster, then the patterns load test
//! through the gatekeeper and straight to the manager. Raw outputs go to the bench client's run
//! folder (local: `.state/bench/<run-id>/`), one file per measurement, each written whole or not
//! at all: a resumed run skips what is there and does the rest.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::db;
use crate::deploy_services;
use crate::flags::BenchArgs;
use crate::local;
use crate::progress::Progress;
use crate::render::sql_string;
use crate::state::{now, BenchRun, BenchSettings, Deployment, Host, Role, StepStatus};
use crate::steps::{Session, Step};
use crate::transport;

/// The sysbench workloads, in the order they run.
pub const WORKLOADS: [&str; 3] = ["oltp_read_write", "oltp_read_only", "oltp_point_select"];
/// The load test's modes; `direct-db` is the baseline: the same reads, straight to the manager.
pub const MODES: [&str; 5] = ["direct-db", "direct-hit", "random", "customized", "write"];
/// Where the local provider's benchmarks run, recorded with every result.
const LOCAL_CLIENT: &str = "this machine (local provider: clients and servers share its cores)";

/// Decides the bench run a `bench` (or `all`) works on: the interrupted one, or a new one.
pub fn choose_run(d: &mut Deployment, args: &BenchArgs, force: bool) -> Result<()> {
    let requested = args.to_settings()?;
    let status = d.step(Step::Bench).status;
    match &d.bench {
        Some(run) if status != StepStatus::Done && !force => {
            if !args.is_empty() && run.settings != requested {
                bail!(
                    "bench run {} was interrupted with other settings ({:?}); run `cargo xtask \
                     bench` without flags to finish it, or with --force to start a new run",
                    run.id,
                    run.settings
                );
            }
        }
        Some(_) if status == StepStatus::Done && !force => {}
        _ => {
            let started_at = now();
            let stamp: String = started_at
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            d.bench = Some(BenchRun {
                id: format!("{stamp}-{}", d.id),
                started_at,
                settings: requested,
            });
        }
    }
    Ok(())
}

/// The folder where a run's raw outputs are written.
pub fn run_dir(session: &Session, run: &BenchRun) -> PathBuf {
    session.paths.state_dir().join("bench").join(&run.id)
}

pub fn run(session: &mut Session) -> Result<()> {
    let run = session
        .deployment
        .bench
        .clone()
        .context("no bench run was chosen; this is a bug in the step engine")?;
    let s = &run.settings;
    let d = &session.deployment;
    let dir = run_dir(session, &run);
    for sub in ["sysbench", "patterns"] {
        local::create_dir(&dir.join(sub))?;
    }
    let loadgen = deploy_services::release_dir().join("loadgen");
    if !loadgen.exists() {
        bail!(
            "{} is missing; run `cargo xtask deploy-services --force`, which builds it",
            loadgen.display()
        );
    }
    write_metadata(&dir, d, &run)?;

    let standalone = d.host(Role::Standalone)?.clone();
    let manager = d.host(Role::Manager)?.clone();
    let workers: Vec<Host> = d.hosts_with_role(Role::Worker).cloned().collect();
    let configs = sysbench_configs(session)?;
    let sysbench_out = |host: &str, workload: &str, n: u32| {
        dir.join(format!("sysbench/{host}-{workload}-run{n}.txt"))
    };
    let patterns_out = |mode: &str, n: u32| dir.join(format!("patterns/{mode}-run{n}.json"));

    // Every measurement, to count what is left for the progress line.
    let mut pending = 0u32;
    for n in 1..=s.runs {
        for workload in WORKLOADS {
            pending += u32::from(!sysbench_out("standalone", workload, n).exists());
            let cluster_host = if workload == "oltp_read_write" {
                "manager"
            } else {
                "worker-1"
            };
            pending += u32::from(!sysbench_out(cluster_host, workload, n).exists());
        }
        for mode in MODES {
            pending += u32::from(!patterns_out(mode, n).exists());
        }
    }
    let progress = Progress::new("bench", u64::from(pending) + 2);
    let left = |pending: u32| format!("about {} s left", pending * (s.seconds + 1));

    // sysbench on the standalone server.
    let standalone_left = (1..=s.runs).any(|n| {
        WORKLOADS
            .iter()
            .any(|w| !sysbench_out("standalone", w, n).exists())
    });
    if standalone_left {
        progress.task("sysbench prepare on the standalone server");
        sysbench_admin(&configs[&standalone.name], s, "cleanup")?;
        sysbench_admin(&configs[&standalone.name], s, "prepare")?;
    }
    for n in 1..=s.runs {
        for workload in WORKLOADS {
            let out = sysbench_out("standalone", workload, n);
            if out.exists() {
                continue;
            }
            progress.task(format!(
                "sysbench {workload} on the standalone server, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            sysbench_run(&[&configs[&standalone.name]], workload, s, &[out])?;
            pending -= 1;
        }
    }

    // sysbench on the cluster: writes on the manager, reads on every worker at once.
    let cluster_left = (1..=s.runs).any(|n| {
        !sysbench_out("manager", "oltp_read_write", n).exists()
            || workers.iter().any(|w| {
                WORKLOADS[1..]
                    .iter()
                    .any(|wl| !sysbench_out(&w.name, wl, n).exists())
            })
    });
    if cluster_left {
        progress.task("sysbench prepare on the manager, replicated to the workers");
        sysbench_admin(&configs[&manager.name], s, "cleanup")?;
        sysbench_admin(&configs[&manager.name], s, "prepare")?;
    }
    for n in 1..=s.runs {
        let out = sysbench_out("manager", "oltp_read_write", n);
        if !out.exists() {
            progress.task(format!(
                "sysbench oltp_read_write on the manager, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            sysbench_run(&[&configs[&manager.name]], "oltp_read_write", s, &[out])?;
            pending -= 1;
        }
        for workload in &WORKLOADS[1..] {
            if workers
                .iter()
                .all(|w| sysbench_out(&w.name, workload, n).exists())
            {
                continue;
            }
            // The replicas read what the manager wrote: they catch up first.
            wait_for_replicas(&manager, &workers)?;
            progress.task(format!(
                "sysbench {workload} on all {} workers at once, run {n}/{}, {}",
                workers.len(),
                s.runs,
                left(pending)
            ));
            let outs: Vec<PathBuf> = workers
                .iter()
                .map(|w| sysbench_out(&w.name, workload, n))
                .collect();
            let configs: Vec<&Path> = workers.iter().map(|w| configs[&w.name].as_path()).collect();
            sysbench_run(&configs, workload, s, &outs)?;
            pending -= 1;
        }
    }
    progress.task("sysbench cleanup on the standalone server and the manager");
    sysbench_admin(&configs[&standalone.name], s, "cleanup")?;
    sysbench_admin(&configs[&manager.name], s, "cleanup")?;

    // The patterns load test.
    let gatekeeper_url = d.gatekeeper_url()?;
    let films = (100 * d.settings.dataset_scale).to_string();
    for n in 1..=s.runs {
        for mode in MODES {
            let out = patterns_out(mode, n);
            if out.exists() {
                continue;
            }
            progress.task(format!(
                "load test {mode}, run {n}/{}, {}",
                s.runs,
                left(pending)
            ));
            let workload = if mode == "write" { "write" } else { "mix" };
            let mut args = vec![
                "--workload".to_string(),
                workload.to_string(),
                "--concurrency".to_string(),
                s.concurrency.to_string(),
                "--duration".to_string(),
                s.seconds.to_string(),
                "--films".to_string(),
                films.clone(),
            ];
            if mode == "direct-db" {
                args.extend([
                    "--database".to_string(),
                    format!("{}:{}", manager.address, d.settings.db_port),
                ]);
                args.extend([
                    "--user".to_string(),
                    "bench".to_string(),
                    "--name".to_string(),
                    manager.name.clone(),
                ]);
            } else {
                args.extend([
                    "--gatekeeper".to_string(),
                    gatekeeper_url.clone(),
                    "--mode".to_string(),
                    mode.to_string(),
                ]);
            }
            let tmp = out.with_extension("json.tmp");
            args.extend(["--out".to_string(), tmp.display().to_string()]);
            local::dies_with_us(duct::cmd(&loadgen, &args))
                .env("LOADGEN_DB_PASSWORD", &d.secrets.bench_password)
                .stdout_null()
                .stderr_capture()
                .unchecked()
                .run()
                .context("running the load generator")
                .and_then(|o| {
                    if o.status.success() {
                        Ok(())
                    } else {
                        bail!(
                            "the load generator failed ({mode}): {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        )
                    }
                })?;
            fs::rename(&tmp, &out).with_context(|| format!("placing {}", out.display()))?;
            pending -= 1;
        }
    }
    progress.note(format!(
        "run {} is complete in {}; `cargo xtask fetch-results` turns it into results/",
        run.id,
        dir.display()
    ));
    Ok(())
}

/// What a run was: kept with its raw outputs and copied into every row of the results.
fn write_metadata(dir: &Path, d: &Deployment, run: &BenchRun) -> Result<()> {
    let path = dir.join("run.json");
    if path.exists() {
        return Ok(());
    }
    let revision = duct::cmd!("git", "rev-parse", "--short", "HEAD")
        .dir(crate::project_root())
        .stderr_null()
        .read()
        .unwrap_or_else(|_| "unknown".to_string());
    let meta = json!({
        "run_id": run.id,
        "started_at": run.started_at,
        "provider": "local",
        "deployment": d.id,
        "git_revision": revision.trim(),
        "instance_type": "local",
        "ran_on": LOCAL_CLIENT,
        "workers": d.settings.workers,
        "dataset_scale": d.settings.dataset_scale,
        "settings": run.settings,
        "cluster_reads": "one sysbench per worker, all at the same time; the cluster row adds them up",
    });
    fs::write(&path, serde_json::to_vec_pretty(&meta)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// One sysbench connection file per database host, readable by the owner only: the password
/// must not appear on a command line.
fn sysbench_configs(session: &Session) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    let d = &session.deployment;
    let dir = session.paths.state_dir().join("bench");
    local::create_dir(&dir)?;
    let mut configs = std::collections::BTreeMap::new();
    for host in d.hosts.iter().filter(|h| h.role.runs_database()) {
        let text = format!(
            "db-driver=mysql\nmysql-host={}\nmysql-port={}\nmysql-user=bench\nmysql-password={}\nmysql-db=sbtest\n",
            host.address, d.settings.db_port, d.secrets.bench_password
        );
        let path = dir.join(format!("{}.sysbench.cfg", host.name));
        let bench_dir = Host {
            dir: dir.clone(),
            ssh: None,
            ..host.clone()
        };
        transport::put_file(
            &bench_dir,
            &format!("{}.sysbench.cfg", host.name),
            text.as_bytes(),
            false,
        )?;
        configs.insert(host.name.clone(), path);
    }
    Ok(configs)
}

fn sysbench_args(config: &Path, workload: &str, s: &BenchSettings, command: &str) -> Vec<String> {
    vec![
        format!("--config-file={}", config.display()),
        workload.to_string(),
        format!("--tables={}", s.tables),
        format!("--table-size={}", s.table_size),
        format!("--threads={}", s.threads),
        format!("--time={}", s.seconds),
        "--report-interval=0".to_string(),
        // Deadlocks and lock waits are counted and retried, as in the classic setup.
        "--mysql-ignore-errors=1213,1205,1020".to_string(),
        command.to_string(),
    ]
}

/// Prepares or cleans up sysbench's tables on one server (both safe to repeat).
fn sysbench_admin(config: &Path, s: &BenchSettings, command: &str) -> Result<()> {
    let o = local::dies_with_us(duct::cmd(
        "sysbench",
        sysbench_args(config, "oltp_read_write", s, command),
    ))
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .context("starting sysbench")?;
    if !o.status.success() {
        bail!("sysbench {command} failed: {}", tail(&o.stdout, &o.stderr));
    }
    Ok(())
}

/// Runs a workload against every config at the same time, each report into its `outs` entry,
/// written whole or not at all.
fn sysbench_run(
    configs: &[&Path],
    workload: &str,
    s: &BenchSettings,
    outs: &[PathBuf],
) -> Result<()> {
    let staged = |out: &Path| out.with_extension("txt.tmp");
    let handles = configs
        .iter()
        .zip(outs)
        .map(|(config, out)| {
            local::dies_with_us(duct::cmd(
                "sysbench",
                sysbench_args(config, workload, s, "run"),
            ))
            .stdout_path(staged(out))
            .stderr_capture()
            .unchecked()
            .start()
            .context("starting sysbench")
        })
        .collect::<Result<Vec<_>>>()?;
    for (handle, out) in handles.iter().zip(outs) {
        let o = handle.wait().context("waiting for sysbench")?;
        if !o.status.success() {
            let report = fs::read(staged(out)).unwrap_or_default();
            bail!(
                "sysbench {workload} run failed: {}",
                tail(&report, &o.stderr)
            );
        }
        fs::rename(staged(out), out).with_context(|| format!("placing {}", out.display()))?;
    }
    Ok(())
}

fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn wait_for_replicas(manager: &Host, workers: &[Host]) -> Result<()> {
    let position = db::sql(manager, "SELECT @@gtid_binlog_pos;")?
        .trim()
        .to_string();
    for worker in workers {
        let waited = db::sql(
            worker,
            &format!("SELECT MASTER_GTID_WAIT({}, 300);", sql_string(&position)),
        )?;
        if waited.trim() != "0" {
            bail!(
                "{} did not catch up with the manager within 300 s",
                worker.name
            );
        }
    }
    Ok(())
}
