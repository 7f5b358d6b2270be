//! Per-digest statistics, as ProxySQL's `stats_mysql_query_digest`: for every shape of query
//! (the trusted host's digest), how often it ran, how it failed, the rows it returned, its time
//! (total, mean, p99) and which backends served it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use std::fmt::Write;

use contract::report::DigestStats;
use hdrhistogram::Histogram;

/// Shapes tracked at most; past this, new shapes are counted together under one entry, so a
/// client sending endless new shapes cannot grow the proxy's memory.
const MAX_DIGESTS: usize = 2000;
/// The entry that holds what did not fit.
const OTHERS: &str = "others";

#[derive(Default)]
pub struct Digests {
    inner: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    text: String,
    count: u64,
    errors: u64,
    rows: u64,
    total_seconds: f64,
    /// Microseconds, 1 µs to 60 s, 2 significant digits.
    latency: Histogram<u64>,
    backends: BTreeMap<String, u64>,
}

impl Digests {
    /// Records one query of the shape `digest`.
    pub fn record(
        &self,
        digest: &str,
        text: &str,
        backend: &str,
        ok: bool,
        rows: u64,
        seconds: f64,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = if inner.contains_key(digest) || inner.len() < MAX_DIGESTS {
            digest
        } else {
            OTHERS
        };
        if !inner.contains_key(key) {
            let text = if key == OTHERS {
                "(shapes past the limit)"
            } else {
                text
            };
            inner.insert(
                key.to_string(),
                Entry {
                    text: text.to_string(),
                    count: 0,
                    errors: 0,
                    rows: 0,
                    total_seconds: 0.0,
                    latency: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
                    backends: BTreeMap::new(),
                },
            );
        }
        let entry = inner.get_mut(key).expect("inserted above");
        entry.count += 1;
        entry.errors += u64::from(!ok);
        entry.rows += rows;
        entry.total_seconds += seconds;
        entry
            .latency
            .saturating_record((seconds * 1_000_000.0) as u64);
        match entry.backends.get_mut(backend) {
            Some(n) => *n += 1,
            None => {
                entry.backends.insert(backend.to_string(), 1);
            }
        }
    }

    /// The `limit` shapes that took the most time in all, most first.
    pub fn top(&self, limit: usize) -> Vec<DigestStats> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<DigestStats> = inner
            .iter()
            .map(|(digest, e)| DigestStats {
                digest: digest.clone(),
                text: e.text.clone(),
                count: e.count,
                errors: e.errors,
                rows: e.rows,
                total_ms: e.total_seconds * 1000.0,
                mean_ms: e.total_seconds * 1000.0 / e.count.max(1) as f64,
                p99_ms: e.latency.value_at_quantile(0.99) as f64 / 1000.0,
                backends: e.backends.clone(),
            })
            .collect();
        all.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        all.truncate(limit);
        all
    }
}

/// The top shapes in the Prometheus text format: queries, errors, rows and seconds per digest,
/// with the shape's text as a label.
pub fn render(top: &[DigestStats]) -> String {
    let mut out = String::new();
    type Value = fn(&DigestStats) -> f64;
    let families: [(&str, &str, Value); 4] = [
        (
            "proxy_digest_queries_total",
            "Queries of each shape.",
            |d| d.count as f64,
        ),
        (
            "proxy_digest_errors_total",
            "Failed queries of each shape.",
            |d| d.errors as f64,
        ),
        (
            "proxy_digest_rows_total",
            "Rows returned by each shape.",
            |d| d.rows as f64,
        ),
        (
            "proxy_digest_seconds_total",
            "Time spent on each shape.",
            |d| d.total_ms / 1000.0,
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for d in top {
            let _ = writeln!(
                out,
                "{name}{{digest=\"{}\",text=\"{}\"}} {}",
                d.digest,
                label(&d.text),
                value(d)
            );
        }
    }
    out
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_shape_and_bounds_the_shapes() {
        let d = Digests::default();
        for i in 0..10 {
            d.record(
                "a",
                "SELECT ?",
                "worker-1",
                true,
                1,
                0.001 * f64::from(i + 1),
            );
        }
        d.record("a", "SELECT ?", "worker-2", false, 0, 0.5);
        d.record("b", "SELECT ? FROM t", "manager", true, 20, 0.002);
        let top = d.top(10);
        assert_eq!(top.len(), 2);
        let a = &top[0];
        assert_eq!(
            (a.digest.as_str(), a.count, a.errors, a.rows),
            ("a", 11, 1, 10)
        );
        assert_eq!(a.backends["worker-1"], 10);
        assert_eq!(a.backends["worker-2"], 1);
        assert!((a.total_ms - 555.0).abs() < 1e-6, "{a:?}");
        assert!(a.p99_ms >= 10.0 && a.p99_ms <= 510.0, "{a:?}");
        assert_eq!(d.top(1).len(), 1);
        let text = render(&d.top(2));
        assert!(
            text.contains("proxy_digest_queries_total{digest=\"a\",text=\"SELECT ?\"} 11"),
            "{text}"
        );
        assert!(
            text.contains("proxy_digest_rows_total{digest=\"b\",text=\"SELECT ? FROM t\"} 20"),
            "{text}"
        );
        assert_eq!(label("a \"q\" \\ \n"), "a \\\"q\\\" \\\\ \\n");

        for i in 0..MAX_DIGESTS + 5 {
            d.record(&format!("s{i}"), "SELECT ?", "manager", true, 0, 0.001);
        }
        let all = d.top(usize::MAX);
        assert_eq!(
            all.len(),
            MAX_DIGESTS + 1,
            "the shapes past the limit share one entry"
        );
        assert!(all.iter().any(|s| s.digest == OTHERS && s.count >= 5));
    }
}
