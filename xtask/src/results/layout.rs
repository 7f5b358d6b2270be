//! How a bench run's raw outputs are laid out in its folder: written by `bench` on the bench
//! client, read back by `fetch-results`. One place for the names keeps both sides in step.

use contract::report::DIRECT_DB;
use contract::wire::Mode;

/// The sysbench workloads, in the order they run.
pub const WORKLOADS: [&str; 3] = ["oltp_read_write", "oltp_read_only", "oltp_point_select"];

/// Galera: the target of sysbench's read-write runs on the cluster, the node that takes the
/// writes (which one is in run.json).
pub const WRITER: &str = "writer";

/// Galera: the cluster row of the write-scaling runs, read-write on every node at once.
pub const EVERY_NODE_WRITES: &str = "cluster-every-node-writes";

/// `scaling/<node>-oltp_read_write-run<n>.txt`: Galera's write-scaling run, one report per node,
/// all writing at the same time.
pub fn scaling_out(node: &str, n: u32) -> String {
    format!("scaling/{node}-oltp_read_write-run{n}.txt")
}

/// The scaling curve's folder: `scaling-curve/w<N>/` holds what was measured with N workers.
pub const CURVE: &str = "scaling-curve";

/// `scaling-curve/w<N>`
pub fn curve_dir(workers: u8) -> String {
    format!("{CURVE}/w{workers}")
}

/// "w4" -> 4
pub fn curve_workers(dir_name: &str) -> Option<u8> {
    dir_name.strip_prefix('w')?.parse().ok()
}

/// `scaling-curve/w<N>/<host>-<workload>-run<n>.txt`: one worker's sysbench report.
pub fn curve_sysbench_out(workers: u8, host: &str, workload: &str, n: u32) -> String {
    format!("{}/{host}-{workload}-run{n}.txt", curve_dir(workers))
}

/// `scaling-curve/w<N>/<load>-run<n>.json`: the chain's load report.
pub fn curve_report_out(workers: u8, load: &str, n: u32) -> String {
    format!("{}/{load}-run{n}.json", curve_dir(workers))
}

/// `<what>-run<n>.cpu.json`: the CPU a curve measurement used, written last (it is complete).
pub fn curve_cpu_file(what: &str, n: u32) -> String {
    format!("{what}-run{n}.cpu.json")
}

/// `scaling-curve/w<N>/<what>-run<n>.cpu.json`
pub fn curve_cpu_out(workers: u8, what: &str, n: u32) -> String {
    format!("{}/{}", curve_dir(workers), curve_cpu_file(what, n))
}

/// The run's description, beside its outputs.
pub const METADATA: &str = "run.json";

/// The load test's modes, in order: `direct-db` (the baseline: the same reads straight to the
/// manager), then every mode of the chain.
pub fn modes() -> Vec<&'static str> {
    std::iter::once(DIRECT_DB)
        .chain(Mode::ALL.iter().map(|m| m.as_str()))
        .collect()
}

/// `sysbench/<host>-<workload>-run<n>.txt`
pub fn sysbench_out(host: &str, workload: &str, n: u32) -> String {
    format!("sysbench/{host}-{workload}-run{n}.txt")
}

/// `patterns/<mode>-run<n>.json`: the load generator's report.
pub fn patterns_out(mode: &str, n: u32) -> String {
    format!("patterns/{mode}-run{n}.json")
}

/// `patterns/<mode>-run<n>.cpu.json`: the CPU the servers and services used during that load
/// test. Written last: it marks the measurement complete.
pub fn patterns_cpu_out(mode: &str, n: u32) -> String {
    format!("patterns/{mode}-run{n}.cpu.json")
}

/// The chain's floor in the names of its outputs: the same load through three relays that do
/// nothing but relay, each beside its service (`cluster::floor`).
pub const FLOOR: &str = "floor";

/// The floor again, under load paced at the requests/s the chain (`direct-hit`) served in the
/// same run: a process's CPU per request falls as its rate rises (more requests per wake-up),
/// and under the same clients the floor runs at about twice the chain's rate.
pub const FLOOR_AT_CHAIN_RATE: &str = "floor-at-chain-rate";

/// What the chain costs is measured on the same server both ways, with every CPU quota lifted:
/// `direct-db` (straight to the manager) and `direct-hit` (the manager through the chain), and
/// beside them the chain's `floor`. Each under load (`chain/`) and as point reads from one
/// client (`latency/`), so the differences are what the chain adds and what of that is the
/// services' own work.
pub fn chain_modes() -> [&'static str; 3] {
    [DIRECT_DB, Mode::DirectHit.as_str(), FLOOR]
}

/// `chain/<mode>-run<n>.json`: a chain-cost load test's report.
pub fn chain_out(mode: &str, n: u32) -> String {
    format!("chain/{mode}-run{n}.json")
}

/// `chain/<mode>-run<n>.cpu.json`: its CPU samples, written last (the measurement is complete).
pub fn chain_cpu_out(mode: &str, n: u32) -> String {
    format!("chain/{mode}-run{n}.cpu.json")
}

/// `latency/<mode>-run<n>.json`
pub fn latency_out(mode: &str, n: u32) -> String {
    format!("latency/{mode}-run{n}.json")
}

/// The modes the degraded-worker scenario runs: the two that choose between workers.
pub fn degraded_modes() -> [&'static str; 2] {
    [Mode::Random.as_str(), Mode::Customized.as_str()]
}

/// `degraded/<mode>-run<n>.json`: a load test with one worker slowed down.
pub fn degraded_out(mode: &str, n: u32) -> String {
    format!("degraded/{mode}-run{n}.json")
}

/// "worker-1-oltp_read_only-run2" -> ("worker-1", "oltp_read_only", 2)
pub fn split_sysbench(stem: &str) -> Option<(String, String, u32)> {
    let (rest, run) = stem.rsplit_once("-run")?;
    let at = rest.find("-oltp_")?;
    Some((
        rest[..at].to_string(),
        rest[at + 1..].to_string(),
        run.parse().ok()?,
    ))
}

/// "customized-run3" -> ("customized", 3) (the stem of a report of `patterns/` or `latency/`)
pub fn split_patterns(stem: &str) -> Option<(String, u32)> {
    let (mode, run) = stem.rsplit_once("-run")?;
    Some((mode.to_string(), run.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_written() {
        let path = sysbench_out("worker-12", "oltp_point_select", 3);
        let stem = path
            .strip_prefix("sysbench/")
            .unwrap()
            .strip_suffix(".txt")
            .unwrap();
        assert_eq!(
            split_sysbench(stem),
            Some(("worker-12".into(), "oltp_point_select".into(), 3))
        );
        assert_eq!(
            split_sysbench("standalone-oltp_read_write-run1"),
            Some(("standalone".into(), "oltp_read_write".into(), 1))
        );
        assert_eq!(split_sysbench("junk"), None);
        let path = patterns_out("direct-hit", 2);
        let stem = path
            .strip_prefix("patterns/")
            .unwrap()
            .strip_suffix(".json")
            .unwrap();
        assert_eq!(split_patterns(stem), Some(("direct-hit".into(), 2)));
        let cpu = patterns_cpu_out("direct-hit", 2);
        assert_eq!(cpu.strip_suffix(".cpu.json"), path.strip_suffix(".json"));
        let chain = chain_out("direct-hit", 2);
        assert_eq!(
            chain_cpu_out("direct-hit", 2).strip_suffix(".cpu.json"),
            chain.strip_suffix(".json")
        );
        let latency = latency_out("direct-db", 1);
        let stem = latency
            .strip_prefix("latency/")
            .unwrap()
            .strip_suffix(".json")
            .unwrap();
        assert_eq!(split_patterns(stem), Some(("direct-db".into(), 1)));
        assert_eq!(
            modes(),
            ["direct-db", "direct-hit", "random", "customized", "write"]
        );
    }
}
