//! The proxy's counters and latency histograms, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (mode, outcome, backend) -> requests
    requests: BTreeMap<(String, String, String), u64>,
    /// mode -> latency histogram
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    pub fn record(&self, mode: &str, outcome: &str, backend: &str, seconds: f64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner
            .requests
            .entry((mode.to_string(), outcome.to_string(), backend.to_string()))
            .or_default() += 1;
        let h = inner.latency.entry(mode.to_string()).or_default();
        for (bound, count) in BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP proxy_requests_total Queries handled, by mode, outcome and backend.\n",
        );
        out.push_str("# TYPE proxy_requests_total counter\n");
        for ((mode, outcome, backend), n) in &inner.requests {
            writeln!(
                out,
                "proxy_requests_total{{mode=\"{mode}\",outcome=\"{outcome}\",backend=\"{backend}\"}} {n}"
            )
            .unwrap();
        }
        out.push_str("# HELP proxy_request_duration_seconds Time to answer a query, by mode.\n");
        out.push_str("# TYPE proxy_request_duration_seconds histogram\n");
        for (mode, h) in &inner.latency {
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                writeln!(
                    out,
                    "proxy_request_duration_seconds_bucket{{mode=\"{mode}\",le=\"{bound}\"}} {count}"
                )
                .unwrap();
            }
            writeln!(
                out,
                "proxy_request_duration_seconds_bucket{{mode=\"{mode}\",le=\"+Inf\"}} {}",
                h.count
            )
            .unwrap();
            writeln!(
                out,
                "proxy_request_duration_seconds_sum{{mode=\"{mode}\"}} {}",
                h.sum
            )
            .unwrap();
            writeln!(
                out,
                "proxy_request_duration_seconds_count{{mode=\"{mode}\"}} {}",
                h.count
            )
            .unwrap();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record("random", "ok", "worker-1", 0.003);
        m.record("random", "ok", "worker-1", 0.2);
        m.record("write", "error", "manager", 20.0);
        let text = m.render();
        assert!(text.contains(
            "proxy_requests_total{mode=\"random\",outcome=\"ok\",backend=\"worker-1\"} 2"
        ));
        assert!(
            text.contains("proxy_request_duration_seconds_bucket{mode=\"random\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("proxy_request_duration_seconds_bucket{mode=\"random\",le=\"0.25\"} 2")
        );
        assert!(text.contains("proxy_request_duration_seconds_bucket{mode=\"write\",le=\"10\"} 0"));
        assert!(
            text.contains("proxy_request_duration_seconds_bucket{mode=\"write\",le=\"+Inf\"} 1")
        );
        assert!(text.contains("proxy_request_duration_seconds_count{mode=\"random\"} 2"));
    }
}
