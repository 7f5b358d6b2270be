//! `summary.md`: what a person reads first, from the latest run.

use std::fmt::Write as _;

use super::{layout, pattern_means, sysbench_means, Run};

pub fn summary(run: &Run, total_runs: usize) -> String {
    let m = &run.meta;
    let s = &m.settings;
    let mut out = format!(
        "# Benchmark summary\n\nRun `{}` (started {}, provider {}, revision {}), {} workers, dataset \
         scale {}; repetitions per measurement: {}. Benchmarks ran on {}. {} run(s) in all are in the CSVs.\n\n",
        run.id, m.started_at, m.provider, m.git_revision, m.workers, m.dataset_scale, s.runs, m.ran_on,
        total_runs
    );
    writeln!(
        out,
        "## sysbench: standalone server vs cluster\n\n{} threads per server, {} s per run, {} table(s) of {} rows. \
         The cluster's writes run on the manager; its reads run on every worker at once and are added up.\n",
        s.threads, s.seconds, s.tables, s.table_size
    )
    .unwrap();
    out.push_str("| workload | standalone tx/s | cluster tx/s | cluster / standalone | standalone p95 ms | cluster p95 ms |\n|---|---:|---:|---:|---:|---:|\n");
    for workload in layout::WORKLOADS {
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
        s.concurrency, s.seconds
    )
    .unwrap();
    out.push_str("| mode | requests/s | vs direct-db | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let direct = pattern_means(&run.patterns, "direct-db");
    for mode in layout::modes() {
        let p = pattern_means(&run.patterns, mode);
        writeln!(
            out,
            "| {mode} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            p.throughput,
            p.throughput / direct.throughput,
            p.p50,
            p.p90,
            p.p99,
            p.p999,
            p.errors
        )
        .unwrap();
    }
    out.push_str("\nCharts: `sysbench-tps.svg`, `patterns-latency.svg`. Every number per run: `sysbench.csv`, `patterns.csv` (columns in README.md).\n");
    out
}
