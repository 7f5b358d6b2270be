//! The patterns load test: every mode under load with the CPU the servers and services spent on
//! it, what the chain costs with every CPU quota lifted, and the degraded-worker scenario.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use contract::report::{Workload, DIRECT_DB};
use contract::wire::Mode;

use super::{Bench, LOADGEN};
use crate::cluster::{build, floor, limits, process, services};
use crate::results::layout;
use crate::results::CpuUse;
use crate::state::{BenchSettings, Deployment, Host, HostLimit, Millicpus};
use crate::transport::{self, script::Script};

const BENCH_LOADGEN: &str = include_str!("../../../scripts/bench-loadgen.sh");

/// What every load test of a run shares.
pub(super) struct LoadTest {
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
    /// Every host with the program whose CPU is its work: its server or its service.
    measured: Vec<(Host, &'static str)>,
    /// Where the floor's load goes in: the relay beside the gatekeeper.
    floor_url: String,
    /// The relays' hosts, each with the relay as the program whose CPU is measured.
    floor_measured: Vec<(Host, &'static str)>,
}

impl LoadTest {
    /// The load tests of `seconds` each from the client; `writer` serves direct-db.
    pub(super) fn new(
        d: &Deployment,
        client: &Host,
        writer: &Host,
        seconds: u32,
    ) -> Result<LoadTest> {
        let measured = d
            .hosts
            .iter()
            .map(|h| Ok((h.clone(), program_of(h)?)))
            .collect::<Result<_>>()?;
        Ok(LoadTest {
            gatekeeper_url: d.gatekeeper_url()?,
            films: 100 * d.settings.scale,
            manager: format!("{}:{}", writer.address, d.settings.db_port),
            manager_name: writer.name.clone(),
            from: client.address.clone(),
            seconds,
            measured,
            floor_url: floor::url(d)?,
            floor_measured: floor::hosts(d)?
                .into_iter()
                .map(|h| (h, floor::PROGRAM))
                .collect(),
        })
    }

    /// The load generator's options for a mode (`direct-db`: straight to the manager).
    pub(super) fn args(&self, mode: &str, workload: Workload, concurrency: u32) -> Vec<String> {
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
        // The floor is sent what direct-hit is sent; its last relay answers in the proxy's place.
        let (url, mode) = match mode {
            layout::FLOOR => (&self.floor_url, Mode::DirectHit.as_str()),
            _ => (&self.gatekeeper_url, mode),
        };
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
            ["--gatekeeper", url, "--mode", mode, "--from", &self.from]
        };
        args.extend(target.map(String::from));
        args
    }

    /// The floor's options paced at the rate the chain served in run `n` of bench run `run_id`
    /// (its report is on the client, where the load generator reads it).
    fn floor_at_chain_rate_args(&self, run_id: &str, n: u32, concurrency: u32) -> Vec<String> {
        let mut args = self.args(layout::FLOOR, Workload::Mix, concurrency);
        let chain = layout::chain_out(Mode::DirectHit.as_str(), n);
        args.extend(["--rate-of".to_string(), format!("{run_id}/{chain}")]);
        args
    }
}

/// The degraded-worker scenario of a run: the last worker, slowed to a share of its quota.
pub(super) struct DegradedPlan {
    pub(super) worker: Host,
    limit: HostLimit,
    pub(super) normal: Millicpus,
    pub(super) degraded: Millicpus,
}

impl DegradedPlan {
    fn slow_down(&self, d: &Deployment) -> Result<()> {
        let (worker, limit) = (&self.worker, &self.limit);
        limits::set_cpus(worker, &d.id, &worker.name, limit, Some(self.degraded))
    }
}

/// The scenario, when the run asks for it and the deployment can have it: two workers (Galera:
/// nodes besides the writer) or more, with CPU quotas.
pub(super) fn degraded_plan(
    d: &Deployment,
    s: &BenchSettings,
    workers: &[Host],
) -> Option<DegradedPlan> {
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

/// The load-test measurements not done yet: each one's last output marks it done.
pub(super) fn pending(done: &BTreeSet<String>, runs: u32, degraded: bool) -> u32 {
    let mut last_outs = Vec::new();
    for n in 1..=runs {
        last_outs.extend(
            layout::modes()
                .iter()
                .map(|mode| layout::patterns_cpu_out(mode, n)),
        );
        for mode in layout::chain_modes() {
            last_outs.push(layout::chain_cpu_out(mode, n));
            last_outs.push(layout::latency_out(mode, n));
        }
        last_outs.push(layout::chain_cpu_out(layout::FLOOR_AT_CHAIN_RATE, n));
        if degraded {
            last_outs.extend(
                layout::degraded_modes()
                    .iter()
                    .map(|mode| layout::degraded_out(mode, n)),
            );
        }
    }
    let left = last_outs.iter().filter(|out| !done.contains(*out)).count();
    u32::try_from(left).unwrap_or(u32::MAX)
}

impl Bench<'_> {
    pub(super) fn loadgen(&mut self, args: &[String], out: String) -> Result<()> {
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
        measured: &[(Host, &'static str)],
        args: &[String],
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
}

/// Every mode under load, each with the CPU the servers and services spent on it.
pub(super) fn patterns(bench: &mut Bench, d: &Deployment, load: &LoadTest) -> Result<()> {
    let concurrency = bench.run.settings.concurrency;
    for n in 1..=bench.run.settings.runs {
        for mode in layout::modes() {
            let cpu_out = layout::patterns_cpu_out(mode, n);
            if bench.has(&cpu_out) {
                continue;
            }
            bench.measuring(format!("load test {mode}"), n);
            let workload = if mode == Mode::Write.as_str() {
                Workload::Write
            } else {
                Workload::Mix
            };
            let args = load.args(mode, workload, concurrency);
            bench
                .loadgen_with_cpu(
                    d,
                    &load.measured,
                    &args,
                    layout::patterns_out(mode, n),
                    &cpu_out,
                )
                .with_context(|| format!("the load test of {mode}"))?;
        }
    }
    Ok(())
}

/// What the chain costs: the manager straight, through the chain and through the chain's floor,
/// under load and from one client, with every CPU quota lifted: a capped server makes any chain
/// look free and a capped service makes it look dear. The floor's relays run only for it.
pub(super) fn chain_cost(bench: &mut Bench, d: &Deployment, load: &LoadTest) -> Result<()> {
    let relays = floor::hosts(d)?;
    let measured = chain_cost_runs(bench, d, load);
    let stopped = relays.iter().try_for_each(floor::stop);
    measured.and(stopped)
}

fn chain_cost_runs(bench: &mut Bench, d: &Deployment, load: &LoadTest) -> Result<()> {
    let runs = bench.run.settings.runs;
    let left = (1..=runs).any(|n| {
        !bench.has(&layout::chain_cpu_out(layout::FLOOR_AT_CHAIN_RATE, n))
            || layout::chain_modes().iter().any(|mode| {
                !bench.has(&layout::chain_cpu_out(mode, n))
                    || !bench.has(&layout::latency_out(mode, n))
            })
    });
    if !left {
        return Ok(());
    }
    limits::set_all_cpus(d, true)?;
    floor::start(d, &build::release_dir(d.settings.target.as_deref()))?;
    let concurrency = bench.run.settings.concurrency;
    for n in 1..=runs {
        for mode in layout::chain_modes() {
            let cpu_out = layout::chain_cpu_out(mode, n);
            if !bench.has(&cpu_out) {
                bench.measuring(format!("what the chain costs: {mode} with no CPU quota"), n);
                let args = load.args(mode, Workload::Mix, concurrency);
                let measured = match mode {
                    layout::FLOOR => &load.floor_measured,
                    _ => &load.measured,
                };
                bench
                    .loadgen_with_cpu(d, measured, &args, layout::chain_out(mode, n), &cpu_out)
                    .with_context(|| format!("the chain-cost test of {mode}"))?;
            }
            let out = layout::latency_out(mode, n);
            if !bench.has(&out) {
                bench.measuring(format!("point reads from one client, {mode}"), n);
                bench
                    .loadgen(&load.args(mode, Workload::Point, 1), out)
                    .with_context(|| format!("the latency test of {mode}"))?;
            }
        }
        // After the chain's run, whose rate it is paced at.
        let mode = layout::FLOOR_AT_CHAIN_RATE;
        let cpu_out = layout::chain_cpu_out(mode, n);
        if !bench.has(&cpu_out) {
            bench.measuring(format!("what the chain costs: {mode} with no CPU quota"), n);
            let args = load.floor_at_chain_rate_args(&bench.run.id, n, concurrency);
            bench
                .loadgen_with_cpu(
                    d,
                    &load.floor_measured,
                    &args,
                    layout::chain_out(mode, n),
                    &cpu_out,
                )
                .with_context(|| format!("the chain-cost test of {mode}"))?;
        }
    }
    limits::set_all_cpus(d, false)
}

/// The degraded-worker scenario: the strategies that choose a worker, with one of them given a
/// fraction of the others' CPU.
pub(super) fn degraded(
    bench: &mut Bench,
    d: &Deployment,
    load: &LoadTest,
    plan: &DegradedPlan,
) -> Result<()> {
    let concurrency = bench.run.settings.concurrency;
    for n in 1..=bench.run.settings.runs {
        for mode in layout::degraded_modes() {
            let out = layout::degraded_out(mode, n);
            if bench.has(&out) {
                continue;
            }
            bench.measuring(
                format!(
                    "load test {mode} with {} at {} CPU",
                    plan.worker.name, plan.degraded
                ),
                n,
            );
            plan.slow_down(d)?;
            bench
                .loadgen(&load.args(mode, Workload::Mix, concurrency), out)
                .with_context(|| format!("the degraded-worker load test of {mode}"))?;
        }
    }
    limits::set_all_cpus(d, false)
}

/// The program whose CPU a host's work is: its server or its service.
pub(super) fn program_of(host: &Host) -> Result<&'static str> {
    if host.role.runs_database() {
        Ok("mariadbd")
    } else {
        services::binary_name(host.role)
    }
}

/// The CPU seconds each host's server or service has used so far.
pub(super) fn cpu_seconds(hosts: &[(Host, &'static str)]) -> Result<BTreeMap<String, f64>> {
    hosts
        .iter()
        .map(|(host, program)| Ok((host.name.clone(), process::cpu_seconds(host, program)?)))
        .collect()
}
