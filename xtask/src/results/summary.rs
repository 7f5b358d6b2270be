//! `summary.md`: what a person reads first, from the latest run.

use std::fmt::Write as _;

use contract::report::DIRECT_DB;
use contract::wire::Mode;

use super::{
    cpu_per_request, layout, pattern_means, share_served_by, sysbench_spread, PatternMeans,
    PatternRow, Run, Spread,
};

/// The summary of the latest run (the last of `runs`), with the engines compared when the
/// runs hold both.
pub fn summary(runs: &[Run]) -> String {
    let Some(run) = runs.last() else {
        return String::new();
    };
    let m = &run.meta;
    let s = &m.settings;
    let galera = m.engine == "galera";
    let (cluster, writer, readers) = if galera {
        (
            format!("a Galera cluster of {} nodes", m.workers),
            format!("the writer ({})", m.writer.as_deref().unwrap_or("unknown")),
            "every node",
        )
    } else {
        (
            format!("GTID replication, {} workers", m.workers),
            "the manager".to_string(),
            "every worker",
        )
    };
    let mut out = format!(
        "# Benchmark summary\n\nRun `{}` (started {}, provider {}, revision {}), {cluster}, dataset \
         scale {}; repetitions per measurement: {}. Benchmarks ran on {}. {} run(s) in all are in the CSVs.\n\n\
         Host limits: {}.{}\n\n",
        run.id, m.started_at, m.provider, m.git_revision, m.dataset_scale, s.runs, m.ran_on,
        runs.len(), if m.host_limits.is_empty() { "not recorded (a run from before they existed)" } else { &m.host_limits },
        if has_cpu_quota(&m.host_limits) {
            " The bench gives every group its quota before it measures, so the quotas are in \
             force for every measurement below unless its section says otherwise (the chain's \
             cost lifts them; the slow worker has its own cut); install-cluster loads the \
             dataset without them."
        } else {
            ""
        }
    );
    writeln!(
        out,
        "## sysbench: standalone server vs cluster\n\n{} threads per server, {} s per run, {} table(s) of {} rows. \
         The cluster's writes run on {writer}; its reads run on {readers} at once and are added up. \
         Each figure is the median of the {} run(s), with the smallest and largest in brackets.\n",
        s.threads, s.seconds, s.tables, s.table_size, s.runs
    )
    .unwrap();
    out.push_str("| workload | standalone tx/s | cluster tx/s | cluster / standalone | standalone p95 ms | cluster p95 ms |\n|---|---:|---:|---:|---:|---:|\n");
    for workload in layout::WORKLOADS {
        let (st, sp) = sysbench_spread(&run.sysbench, "standalone", workload);
        let (ct, cp) = sysbench_spread(&run.sysbench, "cluster", workload);
        writeln!(
            out,
            "| {workload} | {} | {} | {:.2}x | {:.2} | {:.2} |",
            spread(st, 1),
            spread(ct, 1),
            ct.median / st.median,
            sp.median,
            cp.median,
        )
        .unwrap();
    }
    out.push_str(&every_node_writes(run));
    out.push_str(&engines_compared(runs));
    writeln!(
        out,
        "\n## The patterns: every strategy vs the database directly\n\n{} clients for {} s per run through the \
         gatekeeper (reads: 4 point reads for every range read; write: updates by key); `direct-db` sends the \
         same reads straight to {writer}.\n",
        s.concurrency, s.seconds
    )
    .unwrap();
    let (writer_cpu, readers_cpu) = if galera {
        ("writer", "other nodes")
    } else {
        ("manager", "workers")
    };
    writeln!(
        out,
        "| mode | requests/s | vs direct-db | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | \
         services CPU µs/req | {writer_cpu} CPU µs/req | {readers_cpu} CPU µs/req |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    .unwrap();
    let direct = pattern_means(&run.patterns, DIRECT_DB);
    let mut failed = Vec::new();
    for mode in layout::modes() {
        let p = pattern_means(&run.patterns, mode);
        let errors = match p.error_count() {
            0 => "0".to_string(),
            n => {
                failed.push(format!("`{mode}`: {}", by_kind(&p)));
                format!("**{n}** ⚠")
            }
        };
        writeln!(
            out,
            "| {mode} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} | {errors} | {} | {} | {} |",
            p.throughput,
            p.throughput / direct.throughput,
            p.p50,
            p.p90,
            p.p99,
            p.p999,
            cpu(p.cpu_services),
            cpu(p.cpu_manager),
            cpu(p.cpu_workers),
        )
        .unwrap();
    }
    // The chain-cost runs count too: their table has no errors column.
    for (rows, how) in [
        (&run.chain, "under load"),
        (&run.latency, "from one client"),
    ] {
        for mode in layout::chain_modes() {
            let p = pattern_means(rows, mode);
            if p.error_count() > 0 {
                failed.push(format!(
                    "`{mode}` with every CPU quota lifted, {how}: {}",
                    by_kind(&p)
                ));
            }
        }
    }
    if failed.is_empty() {
        out.push_str("\nNo request failed.\n");
    } else {
        writeln!(
            out,
            "\n⚠ Rows with errors measure the failures too, not only the chain: {}.",
            failed.join("; ")
        )
        .unwrap();
    }
    out.push_str(&chain_cost(run));
    out.push_str(&slow_worker(run));
    out.push_str("\nCharts: `sysbench-tps.svg`, `patterns.svg`. Every number per run: `sysbench.csv`, `patterns.csv` (columns in README.md).\n");
    if let Some(curve) = runs.iter().rev().find(|r| !r.scaling.is_empty()) {
        out.push_str(&super::scaling::section(&curve.scaling));
    }
    out
}

/// Galera's write-scaling runs: every node writing at once, against the writer alone, with
/// the share of transactions that failed certification.
fn every_node_writes(run: &Run) -> String {
    let (all, _) = sysbench_spread(&run.sysbench, layout::EVERY_NODE_WRITES, "oltp_read_write");
    if all.median.is_nan() {
        return String::new();
    }
    let (one, _) = sysbench_spread(&run.sysbench, "cluster", "oltp_read_write");
    let (mut conflicts, mut attempts) = (0u64, 0u64);
    for r in run
        .sysbench
        .iter()
        .filter(|r| r.target == layout::EVERY_NODE_WRITES)
    {
        conflicts += r.stats.errors;
        attempts += r.stats.transactions + r.stats.errors;
    }
    format!(
        "\nEvery node writing at once (one sysbench per node, multi-primary): {} tx/s, {:.2}x the \
         writer alone; {:.1} % of the attempted transactions failed certification ({conflicts} \
         conflicts, reported to the client as deadlocks and retried by sysbench). That is what \
         the proxy avoids by sending every write to one node.\n",
        spread(all, 1),
        all.median / one.median,
        100.0 * conflicts as f64 / attempts.max(1) as f64,
    )
}

/// The engines side by side, from the latest run of each, when the runs hold both.
fn engines_compared(runs: &[Run]) -> String {
    let latest = |engine: &str| runs.iter().rev().find(|r| r.meta.engine == engine);
    let (Some(replication), Some(galera)) = (latest("replication"), latest("galera")) else {
        return String::new();
    };
    let mut out = format!(
        "\n### Standalone vs replication vs Galera\n\nThe latest run of each engine: replication \
         `{}` ({} workers), Galera `{}` ({} nodes). Transactions/s (median); the cluster's \
         read-write runs on one server (the manager, the writer), its reads on all.\n\n\
         | workload | standalone | replication | galera | galera / replication |\n\
         |---|---:|---:|---:|---:|\n",
        replication.id, replication.meta.workers, galera.id, galera.meta.workers
    );
    for workload in layout::WORKLOADS {
        let tps =
            |run: &Run, target: &str| sysbench_spread(&run.sysbench, target, workload).0.median;
        let (r, g) = (tps(replication, "cluster"), tps(galera, "cluster"));
        writeln!(
            out,
            "| {workload} | {:.1} | {r:.1} | {g:.1} | {:.2}x |",
            tps(galera, "standalone"),
            g / r
        )
        .unwrap();
    }
    out
}

/// "http-503 12, timeout 1"
fn by_kind(p: &PatternMeans) -> String {
    let kinds: Vec<String> = p.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    kinds.join(", ")
}

/// "1234.5 (1200.0-1250.3)"; the bracket only when the runs differ.
fn spread(s: Spread, decimals: usize) -> String {
    if s.min == s.max {
        format!("{:.decimals$}", s.median)
    } else {
        format!(
            "{:.decimals$} ({:.decimals$}-{:.decimals$})",
            s.median, s.min, s.max
        )
    }
}

/// The degraded-worker scenario: what each strategy does when one worker is slow.
fn slow_worker(run: &Run) -> String {
    let Some(degraded) = &run.meta.degraded else {
        return String::new();
    };
    let mut out = format!(
        "\n## A slow worker: random vs customized\n\n{}; {} clients, the same reads as above, {} s per run.\n\n\
         | mode | requests/s | p50 ms | p90 ms | p99 ms | errors | reads served by {} |\n|---|---:|---:|---:|---:|---:|---:|\n",
        degraded.describe(),
        run.meta.settings.concurrency,
        run.meta.settings.seconds,
        degraded.worker
    );
    let mut p99 = Vec::new();
    for mode in layout::degraded_modes() {
        let p = pattern_means(&run.degraded, mode);
        let share = share_served_by(&run.degraded, mode, &degraded.worker);
        writeln!(
            out,
            "| {mode} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1}% |",
            p.throughput,
            p.p50,
            p.p90,
            p.p99,
            p.error_count(),
            share * 100.0
        )
        .unwrap();
        p99.push(p.p99);
    }
    if let [random, customized] = p99[..] {
        writeln!(
            out,
            "\n`customized`'s p99 is {:.2}x `random`'s: it sends a read where the expected response \
             time (smoothed response time times the queries in flight) is lowest.",
            customized / random
        )
        .unwrap();
    }
    out
}

fn cpu(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.0}")
    } else {
        "-".to_string()
    }
}

/// What the chain adds to the database alone, and what of that is the services' own work: the
/// chain beside its floor (three relays that only relay), each measure against its target.
fn chain_cost(run: &Run) -> String {
    let server = if run.meta.engine == "galera" {
        "the writer"
    } else {
        "the manager"
    };
    let mut out = format!(
        "\n## What the chain costs\n\n`direct-hit` sends the reads `direct-db` sends to the same \
         server ({server}), through the gatekeeper, trusted host and proxy.",
    );
    // Runs from before the chain measurement took these figures under the hosts' quotas.
    if run.chain.is_empty() {
        out.push_str(
            " This run measured them under the hosts' quotas, where a capped server or service \
             may be what the figures show, and measured no floor.\n",
        );
        let direct = pattern_means(&run.patterns, DIRECT_DB);
        let hit = pattern_means(&run.patterns, Mode::DirectHit.as_str());
        writeln!(
            out,
            "\n`direct-hit` served {:.2}x `direct-db`'s requests/s; the services spent {} µs of \
             CPU per request.",
            hit.throughput / direct.throughput,
            cpu(hit.cpu_services)
        )
        .unwrap();
        return out;
    }
    write!(
        out,
        " `floor` sends them through three relays instead, one beside each service on its host, \
         which do nothing but the chain's plumbing: each decodes the JSON and sends it on over the \
         same pooled HTTP client, and the last answers a canned row in the proxy's place. What \
         the services spend above the floor is their own work; the floor is what any three hops \
         cost on these machines. Measured with every CPU quota lifted (a capped database makes \
         any chain look free), {} clients of the same reads as above, {} s per run, and point \
         reads from one client; means of {} run(s). `{}` is the floor again with its clients \
         paced at the requests/s the chain served in the same run: a process spends less CPU \
         per request the more requests each wake-up finds, and under the same clients the floor \
         runs faster than the chain. Each ratio is of the means; in brackets, the smallest and \
         largest ratio of a single run.",
        run.meta.settings.concurrency,
        run.meta.settings.seconds,
        run.meta.settings.runs,
        layout::FLOOR_AT_CHAIN_RATE
    )
    .unwrap();
    let direct = pattern_means(&run.chain, DIRECT_DB);
    let hit = pattern_means(&run.chain, Mode::DirectHit.as_str());
    let floor = pattern_means(&run.chain, layout::FLOOR);
    let paced = pattern_means(&run.chain, layout::FLOOR_AT_CHAIN_RATE);
    let one_direct = pattern_means(&run.latency, DIRECT_DB);
    let one_chain = pattern_means(&run.latency, Mode::DirectHit.as_str());
    let one_floor = pattern_means(&run.latency, layout::FLOOR);
    if floor.throughput.is_nan() {
        out.push_str(" This run measured no floor (it is from before the floor was measured).");
    }
    out.push_str(
        "\n\n| measure | chain | floor | chain / floor | target | |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    // Each ratio is read on the means of every run, and once per run: the brackets show how
    // far single runs stray, so a verdict near its bound is seen to be.
    let runs: std::collections::BTreeSet<u32> = run.chain.iter().map(|r| r.run).collect();
    let of_run = |rows: &[PatternRow], n: u32| -> Vec<PatternRow> {
        rows.iter().filter(|r| r.run == n).cloned().collect()
    };
    let mut row = |what: &str,
                   chain: String,
                   floor: String,
                   ratio: &dyn Fn(&[PatternRow], &[PatternRow]) -> f64,
                   target: &str,
                   met: fn(f64) -> bool| {
        let mean = ratio(&run.chain, &run.latency);
        let each = Spread::of(
            runs.iter()
                .map(|&n| ratio(&of_run(&run.chain, n), &of_run(&run.latency, n))),
        );
        let (ratio, mark) = match mean.is_finite() {
            false => ("-".to_string(), "not measured"),
            true if each.min < each.max => (
                format!("{mean:.2}x ({:.2}-{:.2})", each.min, each.max),
                if met(mean) { "met" } else { "**not met**" },
            ),
            true => (
                format!("{mean:.2}x"),
                if met(mean) { "met" } else { "**not met**" },
            ),
        };
        writeln!(
            out,
            "| {what} | {chain} | {floor} | {ratio} | {target} | {mark} |"
        )
        .unwrap();
    };
    // The floor's CPU per request is read at the chain's rate first: under the same clients
    // the floor runs faster, and a process serving more requests per wake-up spends less on
    // each.
    let at_rate = |m: &PatternMeans| match m.throughput.is_finite() {
        true => format!("{} µs at {:.0}/s", cpu(m.cpu_services), m.throughput),
        false => "-".to_string(),
    };
    for (what, floor_mode, floor) in [
        (
            "CPU per request at the same rate: the three services / the three relays paced at \
             the chain's requests/s",
            layout::FLOOR_AT_CHAIN_RATE,
            &paced,
        ),
        (
            "CPU per request under the same clients: the three services / the three relays at \
             their own rate",
            layout::FLOOR,
            &floor,
        ),
    ] {
        row(
            what,
            at_rate(&hit),
            at_rate(floor),
            &|chain, _| {
                pattern_means(chain, Mode::DirectHit.as_str()).cpu_services
                    / pattern_means(chain, floor_mode).cpu_services
            },
            "≤ 1.50x",
            |ratio| ratio <= 1.5,
        );
    }
    let added = one_chain.p50 - one_direct.p50;
    row(
        "point read p50 from one client: what the chain adds (chain minus direct) / the floor's",
        format!(
            "{added:.3} ms ({:.3} - {:.3})",
            one_chain.p50, one_direct.p50
        ),
        format!("{:.3} ms", one_floor.p50),
        &|_, latency| {
            let p50 = |mode: &str| pattern_means(latency, mode).p50;
            (p50(Mode::DirectHit.as_str()) - p50(DIRECT_DB)) / p50(layout::FLOOR)
        },
        "≤ 1.50x",
        |ratio| ratio <= 1.5,
    );
    row(
        "requests/s, direct-hit / the floor",
        format!("{:.0}", hit.throughput),
        format!("{:.0}", floor.throughput),
        &|chain, _| {
            pattern_means(chain, Mode::DirectHit.as_str()).throughput
                / pattern_means(chain, layout::FLOOR).throughput
        },
        "≥ 0.50x",
        |ratio| ratio >= 0.5,
    );
    let manager = hit.cpu_manager / direct.cpu_manager;
    writeln!(
        out,
        "\nAgainst the database alone: `direct-hit` serves {:.2}x `direct-db`'s requests/s ({:.0} \
         / {:.0}), and {server} spends {:.2}x its CPU per direct query on a chain query ({} / {} \
         µs; target ≤ 1.20x: {}).",
        hit.throughput / direct.throughput,
        hit.throughput,
        direct.throughput,
        manager,
        cpu(hit.cpu_manager),
        cpu(direct.cpu_manager),
        if manager <= 1.2 { "met" } else { "**not met**" }
    )
    .unwrap();
    if floor.throughput.is_finite() {
        out.push_str(&where_the_time_goes(run));
    }
    out
}

/// Each service's CPU per request under load beside its relay's: what of it is the service's own
/// work, and which service's own work is the most.
fn where_the_time_goes(run: &Run) -> String {
    let hit = Mode::DirectHit.as_str();
    let per_host = |mode: &str, name: &str| cpu_per_request(&run.chain, mode, |_, h| h == name);
    // The relays at the chain's rate when this run measured them there.
    let (floor, at) = if run
        .chain
        .iter()
        .any(|r| r.mode == layout::FLOOR_AT_CHAIN_RATE)
    {
        (layout::FLOOR_AT_CHAIN_RATE, "paced at the chain's rate")
    } else {
        (layout::FLOOR, "under the same clients")
    };
    let mut out = format!(
        "\n### Where the time goes\n\nCPU per request under load, in µs: each service through \
         the chain, the relay beside it in the floor {at}, and the difference, the service's own \
         work.\n\n| hop | service | its relay | its own work | share of the services' own work |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let hops: Vec<(&str, f64, f64)> = ["gatekeeper", "trusted-host", "proxy"]
        .into_iter()
        .map(|name| (name, per_host(hit, name), per_host(floor, name)))
        .collect();
    let own_total: f64 = hops.iter().map(|(_, s, r)| s - r).sum();
    for (name, service, relay) in &hops {
        let own = service - relay;
        writeln!(
            out,
            "| {name} | {} | {} | {} | {:.0} % |",
            cpu(*service),
            cpu(*relay),
            cpu(own),
            100.0 * own / own_total
        )
        .unwrap();
    }
    let (service, relay): (f64, f64) = hops
        .iter()
        .fold((0.0, 0.0), |(s, r), (_, hs, hr)| (s + hs, r + hr));
    writeln!(
        out,
        "| the three | {} | {} | {} | 100 % |",
        cpu(service),
        cpu(relay),
        cpu(own_total)
    )
    .unwrap();
    out
}

/// Whether a host-limits line gives some host a CPU quota ("0.25 CPU", not "unlimited CPU").
fn has_cpu_quota(host_limits: &str) -> bool {
    host_limits
        .match_indices(" CPU")
        .any(|(at, _)| host_limits[..at].ends_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use contract::report::{Percentiles, Report, Workload};

    use super::*;
    use crate::results::{PatternRow, RunMeta, Scenario};
    use crate::state::BenchSettings;

    fn row(mode: &str, scenario: Scenario, errors: u64) -> PatternRow {
        PatternRow {
            meta: RunMeta {
                run_id: "r".into(),
                started_at: "t".into(),
                provider: "local".into(),
                deployment: "d".into(),
                git_revision: "g".into(),
                instance_type: "i".into(),
                ran_on: "this machine".into(),
                workers: 2,
                engine: "replication".into(),
                writer: None,
                dataset_scale: 1,
                settings: BenchSettings::defaults(true),
                cluster_reads: String::new(),
                host_limits: String::new(),
                degraded: None,
            },
            mode: mode.into(),
            run: 1,
            report: Report {
                target: mode.into(),
                workload: Workload::Mix,
                concurrency: 4,
                duration_s: 3.0,
                requests: 100,
                errors: BTreeMap::from([("http-503".to_string(), errors)]),
                throughput_rps: 30.0,
                latency_ms: Percentiles {
                    p50: 1.0,
                    p90: 2.0,
                    p99: 3.0,
                    p999: 4.0,
                    max: 5.0,
                    mean: 1.5,
                },
                served_by: BTreeMap::new(),
            },
            cpu: None,
            scenario,
        }
    }

    #[test]
    fn the_quota_sentence_needs_a_quota() {
        assert!(has_cpu_quota(
            "cgroup v1: manager standalone 0.25 CPU, 1G memory; proxy 0.5 CPU, 1G memory"
        ));
        assert!(!has_cpu_quota(
            "cgroup v1: manager unlimited CPU, 1G memory"
        ));
        assert!(!has_cpu_quota(""));
    }

    #[test]
    fn a_failed_chain_cost_run_is_named() {
        let rows = |scenario, errors_of_hit| -> Vec<PatternRow> {
            layout::chain_modes()
                .iter()
                .map(|m| {
                    let errors = if *m == DIRECT_DB { 0 } else { errors_of_hit };
                    row(m, scenario, errors)
                })
                .collect()
        };
        let run = |chain_errors, latency_errors| Run {
            id: "r".into(),
            meta: row(DIRECT_DB, Scenario::Normal, 0).meta,
            sysbench: Vec::new(),
            patterns: layout::modes()
                .iter()
                .map(|m| row(m, Scenario::Normal, 0))
                .collect(),
            latency: rows(Scenario::QuotasLifted, latency_errors),
            degraded: Vec::new(),
            chain: rows(Scenario::QuotasLifted, chain_errors),
            scaling: Vec::new(),
        };
        assert!(summary(&[run(0, 0)]).contains("No request failed."));
        let text = summary(&[run(7, 0)]);
        assert!(!text.contains("No request failed."), "{text}");
        assert!(
            text.contains("`direct-hit` with every CPU quota lifted, under load: http-503 7"),
            "{text}"
        );
        let text = summary(&[run(0, 2)]);
        assert!(
            text.contains("`direct-hit` with every CPU quota lifted, from one client: http-503 2"),
            "{text}"
        );
    }

    #[test]
    fn the_chain_is_read_against_its_floor() {
        // (mode, requests/s, p50 ms, CPU µs per request of gatekeeper, trusted host, proxy)
        let measured = |mode: &str, throughput, p50, cpu: [f64; 3]| {
            let mut r = row(mode, Scenario::QuotasLifted, 0);
            r.report.throughput_rps = throughput;
            r.report.latency_ms.p50 = p50;
            let seconds = |us: f64| us * r.report.requests as f64 / 1e6;
            r.cpu = Some(crate::results::CpuUse {
                cpu_seconds: ["gatekeeper", "trusted-host", "proxy"]
                    .into_iter()
                    .zip(cpu)
                    .map(|(host, us)| (host.to_string(), seconds(us)))
                    .chain([("manager".to_string(), seconds(20.0))])
                    .collect(),
                cpu_quotas: BTreeMap::new(),
            });
            r
        };
        let measured_run = || Run {
            id: "r".into(),
            meta: row(DIRECT_DB, Scenario::Normal, 0).meta,
            sysbench: Vec::new(),
            patterns: Vec::new(),
            latency: vec![
                measured(DIRECT_DB, 900.0, 0.1, [0.0; 3]),
                measured("direct-hit", 300.0, 0.3, [0.0; 3]),
                measured(layout::FLOOR, 800.0, 0.15, [0.0; 3]),
            ],
            degraded: Vec::new(),
            chain: vec![
                measured(DIRECT_DB, 900.0, 0.1, [0.0; 3]),
                measured("direct-hit", 300.0, 0.3, [30.0, 40.0, 30.0]),
                measured(layout::FLOOR, 800.0, 0.15, [20.0, 20.0, 10.0]),
                measured(layout::FLOOR_AT_CHAIN_RATE, 300.0, 0.12, [28.0, 30.0, 12.0]),
            ],
            scaling: Vec::new(),
        };
        let run = measured_run();
        let text = chain_cost(&run);
        for line in [
            "| CPU per request at the same rate: the three services / the three relays paced at the chain's requests/s | 100 µs at 300/s | 70 µs at 300/s | 1.43x | ≤ 1.50x | met |",
            "| CPU per request under the same clients: the three services / the three relays at their own rate | 100 µs at 300/s | 50 µs at 800/s | 2.00x | ≤ 1.50x | **not met** |",
            "| point read p50 from one client: what the chain adds (chain minus direct) / the floor's | 0.200 ms (0.300 - 0.100) | 0.150 ms | 1.33x | ≤ 1.50x | met |",
            "| requests/s, direct-hit / the floor | 300 | 800 | 0.38x | ≥ 0.50x | **not met** |",
            "the relay beside it in the floor paced at the chain's rate",
            "| gatekeeper | 30 | 28 | 2 | 7 % |",
            "| trusted-host | 40 | 30 | 10 | 33 % |",
            "| proxy | 30 | 12 | 18 | 60 % |",
            "| the three | 100 | 70 | 30 | 100 % |",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // Two repetitions: each ratio is of the means, with its single runs' range when they
        // differ; the mark follows the means.
        let mut twice = measured_run();
        for (rows, slower) in [(&mut twice.chain, 1.0), (&mut twice.latency, 0.1)] {
            let again: Vec<PatternRow> = rows
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.run += 1;
                    if r.mode == "direct-hit" {
                        r.report.latency_ms.p50 += slower;
                    }
                    r
                })
                .collect();
            rows.extend(again);
        }
        let text = chain_cost(&twice);
        for line in [
            "| 0.250 ms (0.350 - 0.100) | 0.150 ms | 1.67x (1.33-2.00) | ≤ 1.50x | **not met** |",
            "| requests/s, direct-hit / the floor | 300 | 800 | 0.38x | ≥ 0.50x | **not met** |",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // A run from before the floor was paced: its relays under the same clients.
        let mut unpaced = run;
        unpaced
            .chain
            .retain(|r| r.mode != layout::FLOOR_AT_CHAIN_RATE);
        let text = chain_cost(&unpaced);
        for line in [
            "| CPU per request at the same rate: the three services / the three relays paced at the chain's requests/s | 100 µs at 300/s | - | - | ≤ 1.50x | not measured |",
            "the relay beside it in the floor under the same clients",
            "| gatekeeper | 30 | 20 | 10 | 20 % |",
            "| the three | 100 | 50 | 50 | 100 % |",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // A run that measured no floor says so instead of marking anything.
        let mut no_floor = unpaced;
        no_floor
            .chain
            .retain(|r| r.mode != layout::FLOOR && r.mode != layout::FLOOR_AT_CHAIN_RATE);
        no_floor.latency.retain(|r| r.mode != layout::FLOOR);
        let text = chain_cost(&no_floor);
        assert_eq!(text.matches("not measured").count(), 4, "{text}");
        assert!(!text.contains("| met |"), "{text}");
        assert!(text.contains("This run measured no floor"), "{text}");
        assert!(!text.contains("Where the time goes"), "{text}");
    }

    fn stats(tps: f64, transactions: u64, errors: u64) -> crate::results::sysbench::SysbenchStats {
        crate::results::sysbench::SysbenchStats {
            threads: 2,
            reads: 0,
            writes: 0,
            other: 0,
            transactions,
            tps,
            qps: tps,
            errors,
            reconnects: 0,
            seconds: 3.0,
            latency_min: 1.0,
            latency_avg: 2.0,
            latency_p95: 3.0,
            latency_max: 4.0,
        }
    }

    #[test]
    fn the_engines_are_compared_when_both_have_runs() {
        let run = |engine: &str, cluster_tps: f64| {
            let mut meta = row(DIRECT_DB, Scenario::Normal, 0).meta;
            meta.engine = engine.into();
            meta.run_id = engine.into();
            if engine == "galera" {
                meta.writer = Some("node-2".into());
                meta.workers = 3;
            }
            let mut sysbench = Vec::new();
            for workload in layout::WORKLOADS {
                for (target, tps) in [("standalone", 100.0), ("cluster", cluster_tps)] {
                    sysbench.push(crate::results::SysbenchRow {
                        meta: meta.clone(),
                        target: target.into(),
                        workload: workload.into(),
                        run: 1,
                        stats: stats(tps, 300, 0),
                    });
                }
            }
            if engine == "galera" {
                sysbench.push(crate::results::SysbenchRow {
                    meta: meta.clone(),
                    target: layout::EVERY_NODE_WRITES.into(),
                    workload: "oltp_read_write".into(),
                    run: 1,
                    stats: stats(90.0, 270, 30),
                });
            }
            Run {
                id: engine.into(),
                meta,
                sysbench,
                patterns: Vec::new(),
                latency: Vec::new(),
                degraded: Vec::new(),
                chain: Vec::new(),
                scaling: Vec::new(),
            }
        };
        let only_galera = summary(&[run("galera", 200.0)]);
        assert!(!only_galera.contains("Standalone vs replication vs Galera"));
        assert!(
            only_galera.contains("a Galera cluster of 3 nodes"),
            "{only_galera}"
        );
        assert!(
            only_galera.contains("writes run on the writer (node-2)"),
            "{only_galera}"
        );
        assert!(
            only_galera.contains("90.0 tx/s, 0.45x the writer alone; 10.0 % of the attempted"),
            "{only_galera}"
        );
        let both = summary(&[run("replication", 400.0), run("galera", 200.0)]);
        assert!(
            both.contains("replication `replication` (2 workers), Galera `galera` (3 nodes)"),
            "{both}"
        );
        assert!(
            both.contains("| oltp_read_only | 100.0 | 400.0 | 200.0 | 0.50x |"),
            "{both}"
        );
        // The replication run alone has no write-scaling line.
        let replication = summary(&[run("replication", 400.0)]);
        assert!(!replication.contains("Every node writing"), "{replication}");
        assert!(
            replication.contains("GTID replication, 2 workers"),
            "{replication}"
        );
    }
}
