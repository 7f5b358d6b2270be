//! `sysbench.csv` and `patterns.csv`: one row struct each, written with the csv crate (the
//! header is the struct's fields; results/README.md documents them).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{is_service, PatternRow, SysbenchRow};

#[derive(Debug, Serialize, Deserialize)]
pub struct SysbenchCsvRow {
    pub run_id: String,
    pub timestamp: String,
    pub provider: String,
    /// `replication` or `galera`.
    pub engine: String,
    pub target: String,
    pub workload: String,
    pub run: u32,
    pub threads: u64,
    pub table_size: u32,
    pub duration_s: f64,
    pub transactions_per_s: f64,
    pub queries_per_s: f64,
    pub reads: u64,
    pub writes: u64,
    pub other: u64,
    pub latency_min_ms: f64,
    pub latency_avg_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_max_ms: f64,
    pub errors: u64,
    pub reconnects: u64,
    pub git_revision: String,
    pub instance_type: String,
    pub ran_on: String,
    /// The per-host CPU and memory limits in force.
    pub host_limits: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PatternsCsvRow {
    pub run_id: String,
    pub timestamp: String,
    pub provider: String,
    /// `replication` or `galera`.
    pub engine: String,
    pub mode: String,
    /// "normal", or "degraded: worker-3 at 0.05 CPU, ...".
    pub scenario: String,
    pub run: u32,
    pub workload: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub errors: u64,
    /// "http-429=12;timeout=1": the failed requests by kind.
    pub errors_by_kind: String,
    /// "worker-1=33.3%;worker-2=66.7%": who served the successful requests.
    pub backend_shares: String,
    /// CPU microseconds per request: the gatekeeper, trusted host and proxy together.
    pub cpu_us_per_request_services: Option<f64>,
    /// ... the manager's server.
    pub cpu_us_per_request_manager: Option<f64>,
    /// ... the workers' servers together.
    pub cpu_us_per_request_workers: Option<f64>,
    /// "gatekeeper=41.2;proxy=60.3;...": each process's CPU microseconds per request.
    pub cpu_us_per_request_by_host: String,
    /// "gatekeeper=0.50;manager=none;...": the CPU quota each host had when the load test ended
    /// (none: no quota), read back from its group.
    pub cpu_quotas: String,
    pub git_revision: String,
    /// The per-host CPU and memory limits in force.
    pub host_limits: String,
}

/// Two decimals are what the measurements carry; more is noise in a table.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

pub fn sysbench_csv(rows: &[SysbenchRow]) -> Result<Vec<u8>> {
    write(rows.iter().map(|r| {
        let s = &r.stats;
        SysbenchCsvRow {
            run_id: r.meta.run_id.clone(),
            timestamp: r.meta.started_at.clone(),
            provider: r.meta.provider.clone(),
            engine: r.meta.engine.clone(),
            target: r.target.clone(),
            workload: r.workload.clone(),
            run: r.run,
            threads: s.threads,
            table_size: r.meta.settings.table_size,
            duration_s: round(s.seconds, 2),
            transactions_per_s: round(s.tps, 2),
            queries_per_s: round(s.qps, 2),
            reads: s.reads,
            writes: s.writes,
            other: s.other,
            latency_min_ms: round(s.latency_min, 2),
            latency_avg_ms: round(s.latency_avg, 2),
            latency_p95_ms: round(s.latency_p95, 2),
            latency_max_ms: round(s.latency_max, 2),
            errors: s.errors,
            reconnects: s.reconnects,
            git_revision: r.meta.git_revision.clone(),
            instance_type: r.meta.instance_type.clone(),
            ran_on: r.meta.ran_on.clone(),
            host_limits: r.meta.host_limits.clone(),
        }
    }))
}

pub fn patterns_csv(rows: &[PatternRow]) -> Result<Vec<u8>> {
    write(rows.iter().map(|r| {
        let rep = &r.report;
        let lat = &rep.latency_ms;
        PatternsCsvRow {
            run_id: r.meta.run_id.clone(),
            timestamp: r.meta.started_at.clone(),
            provider: r.meta.provider.clone(),
            engine: r.meta.engine.clone(),
            mode: r.mode.clone(),
            scenario: r.scenario(),
            run: r.run,
            workload: rep.workload.to_string(),
            concurrency: rep.concurrency,
            duration_s: round(rep.duration_s, 2),
            requests: rep.requests,
            throughput_rps: round(rep.throughput_rps, 1),
            p50_ms: round(lat.p50, 3),
            p90_ms: round(lat.p90, 3),
            p99_ms: round(lat.p99, 3),
            p999_ms: round(lat.p999, 3),
            max_ms: round(lat.max, 3),
            mean_ms: round(lat.mean, 3),
            errors: rep.error_count(),
            errors_by_kind: joined(rep.errors.iter().map(|(k, n)| format!("{k}={n}"))),
            backend_shares: shares(&rep.served_by),
            cpu_us_per_request_services: cpu(r, is_service),
            cpu_us_per_request_manager: cpu(r, |h| r.meta.is_writer(h)),
            cpu_us_per_request_workers: cpu(r, |h| r.meta.is_reader(h)),
            cpu_us_per_request_by_host: r.cpu.as_ref().map_or(String::new(), |c| {
                joined(c.cpu_seconds.keys().map(|host| {
                    format!("{host}={:.1}", c.per_request(rep.requests, |h| h == host))
                }))
            }),
            cpu_quotas: r.cpu.as_ref().map_or(String::new(), |c| {
                joined(c.cpu_quotas.iter().map(|(host, quota)| match quota {
                    Some(cpus) => format!("{host}={cpus:.2}"),
                    None => format!("{host}=none"),
                }))
            }),
            git_revision: r.meta.git_revision.clone(),
            host_limits: r.meta.host_limits.clone(),
        }
    }))
}

fn cpu(row: &PatternRow, which: impl Fn(&str) -> bool) -> Option<f64> {
    let cpu = row.cpu.as_ref()?;
    Some(round(cpu.per_request(row.report.requests, which), 1))
}

fn joined(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(";")
}

fn write<T: Serialize>(rows: impl Iterator<Item = T>) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).context("writing a CSV row")?;
    }
    writer.into_inner().context("finishing the CSV")
}

/// "worker-1=33.3%;worker-2=66.7%" from the served-by counts.
fn shares(served: &BTreeMap<String, u64>) -> String {
    let total: u64 = served.values().sum();
    served
        .iter()
        .map(|(name, n)| format!("{name}={:.1}%", 100.0 * *n as f64 / total.max(1) as f64))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quoting() {
        let served = BTreeMap::from([("worker-1".to_string(), 1), ("worker-2".to_string(), 3)]);
        assert_eq!(shares(&served), "worker-1=25.0%;worker-2=75.0%");
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["a, \"b\"", "plain"]).unwrap();
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert_eq!(text, "\"a, \"\"b\"\"\",plain\n");
        assert_eq!(round(2.0066, 2), 2.01);
    }
}
