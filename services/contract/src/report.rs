//! The load generator's report: one JSON file per run, written by `loadgen --out` and read by
//! `cargo xtask fetch-results`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the load generator's clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// One film by primary key.
    Point,
    /// Twenty consecutive films.
    Range,
    /// Four point reads for every range read.
    Mix,
    /// One film's rental duration changed by primary key.
    Write,
}

crate::named_enum!(Workload {
    Point = "point",
    Range = "range",
    Mix = "mix",
    Write = "write",
});

/// Where the load went: a mode of the chain, or `direct-db` (the same queries straight to a
/// server: the baseline).
pub const DIRECT_DB: &str = "direct-db";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// A mode of the chain (`random`, ...) or `direct-db`.
    pub target: String,
    pub workload: Workload,
    pub concurrency: usize,
    pub duration_s: f64,
    /// Every request sent, failed ones included.
    pub requests: u64,
    /// Failed requests by kind (`http-503`, `timeout`, `server-1205`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Of the successful requests.
    pub latency_ms: Percentiles,
    /// Successful requests per host that served them.
    pub served_by: BTreeMap<String, u64>,
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The proxy's statistics of one query shape (`GET /digests` on the proxy, most total time
/// first), as ProxySQL's query digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestStats {
    pub digest: String,
    /// The shape: the query with `?` for its literals.
    pub text: String,
    pub count: u64,
    pub errors: u64,
    /// Rows returned, in all.
    pub rows: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub p99_ms: f64,
    /// Queries served per backend.
    pub backends: BTreeMap<String, u64>,
}
