//! sysbench's text reports: parsed into numbers, and the workers' reports of one run added up
//! into the cluster's.

use anyhow::{Context, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_sysbench_reports() {
        let rw = parse_sysbench(include_str!(
            "../../tests/data/sysbench-oltp_read_write.txt"
        ))
        .unwrap();
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
        let ro =
            parse_sysbench(include_str!("../../tests/data/sysbench-oltp_read_only.txt")).unwrap();
        assert_eq!(ro.writes, 0);
        assert!(ro.tps > 0.0 && ro.reads > 0);
        let ps = parse_sysbench(include_str!(
            "../../tests/data/sysbench-oltp_point_select.txt"
        ))
        .unwrap();
        assert_eq!(ps.reads, ps.transactions);
        let err = parse_sysbench("FATAL: error 2013").unwrap_err().to_string();
        assert!(err.contains("transactions:"), "{err}");
    }

    #[test]
    fn cluster_rows_add_up_the_workers() {
        let a =
            parse_sysbench(include_str!("../../tests/data/sysbench-oltp_read_only.txt")).unwrap();
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
}
