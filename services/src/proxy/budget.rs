//! Each client's budget of database time: a query's time on its server is charged to the client
//! the gatekeeper named, from a bucket that refills at `rate` seconds per second up to `burst`.
//! A client whose bucket is empty is refused before anything runs, and told when it will have
//! time again; clients within their budget never wait for it. The bench client is exempt.
//!
//! A query is charged its time past the first `free` seconds (what a key lookup takes on a
//! busy server, its network and the proxy's own turn included): the budget holds back the
//! heavy queries, the gatekeeper's rate limit the many light ones. It is charged twice: its
//! shape's usual time when it is let in (so forty copies sent at once are not all let in on a
//! full bucket), then the difference once its real time is known.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use contract::wire::Client;

/// Clients remembered at most; past this, the ones whose bucket is full again are forgotten
/// (they lose nothing: a new bucket is full).
const MAX_CLIENTS: usize = 4096;

/// Shapes whose usual server time is remembered at most (new shapes past it are charged as
/// unknown: only their real time, after they ran).
const MAX_SHAPES: usize = 4096;

/// How much of a new measurement the usual time of a shape takes in.
const SMOOTHING: f64 = 0.2;

pub struct Budgets {
    rate: f64,
    burst: f64,
    free: f64,
    buckets: Mutex<HashMap<Client, Bucket>>,
    usual: Mutex<HashMap<String, f64>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Seconds of database time left (negative: owed).
    balance: f64,
    at: Instant,
}

/// A client over its budget: when it has time again.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub retry_after: Duration,
    pub owed_seconds: f64,
}

impl Budgets {
    pub fn new(rate: f64, burst: f64, free: f64) -> Budgets {
        Budgets {
            rate: rate.max(f64::MIN_POSITIVE),
            burst: burst.max(0.0),
            free: free.max(0.0),
            buckets: Mutex::default(),
            usual: Mutex::default(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The usual server time of a shape (seconds), once it has run.
    pub fn usual_seconds(&self, digest: &str) -> Option<f64> {
        self.usual
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .copied()
    }

    /// What a query that took `seconds` is charged.
    fn charge(&self, seconds: f64) -> f64 {
        (seconds - self.free).max(0.0)
    }

    /// Lets a query of `client` that usually takes `usual` seconds in and charges it in
    /// advance, or says when the client may come back. The exempt client always gets in.
    /// Returns what was charged.
    pub fn admit(&self, client: &Client, usual: f64, now: Instant) -> Result<f64, OverBudget> {
        if client.is_exempt() {
            return Ok(0.0);
        }
        let estimate = self.charge(usual);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refilled(*b, rate, burst, now) < burst);
        }
        let bucket = buckets.entry(client.clone()).or_insert(Bucket {
            balance: self.burst,
            at: now,
        });
        let balance = refilled(*bucket, self.rate, self.burst, now);
        *bucket = Bucket { balance, at: now };
        if balance <= 0.0 {
            let owed = -balance;
            return Err(OverBudget {
                // Until the bucket holds something again, in whole seconds (at least one).
                retry_after: Duration::from_secs(((owed / self.rate).floor() as u64) + 1),
                owed_seconds: owed,
            });
        }
        bucket.balance -= estimate;
        Ok(estimate)
    }

    /// Settles a query charged `estimate` when let in: it took `actual` seconds on its server.
    pub fn settle(&self, client: &Client, digest: &str, estimate: f64, actual: f64) {
        {
            let mut usual = self.usual.lock().unwrap_or_else(|e| e.into_inner());
            let room = usual.len() < MAX_SHAPES;
            match usual.get_mut(digest) {
                Some(seconds) => *seconds += SMOOTHING * (actual - *seconds),
                None if room => {
                    usual.insert(digest.to_string(), actual);
                }
                None => {}
            }
        }
        if client.is_exempt() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(client) {
            bucket.balance += estimate - self.charge(actual);
        }
    }
}

/// A bucket's balance at `now`: what it had plus what refilled since, at most `burst`.
fn refilled(bucket: Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let since = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.balance + rate * since).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> Client {
        Client::Public(std::net::IpAddr::from([203, 0, 113, n]))
    }

    #[test]
    fn a_client_over_its_budget_waits_for_the_refill() {
        // One second of database time per second, two at once; the first 0.1 s of each query
        // free.
        let budgets = Budgets::new(1.0, 2.0, 0.1);
        let (heavy, light) = (client(1), client(2));
        let t0 = Instant::now();
        // Three queries of 0.9 s each (charged 0.8 s): let in while something is left, then
        // refused.
        for _ in 0..3 {
            assert!((budgets.admit(&heavy, 0.9, t0).unwrap() - 0.8).abs() < 1e-9);
        }
        let refused = budgets.admit(&heavy, 0.9, t0).unwrap_err();
        assert!((refused.owed_seconds - 0.4).abs() < 1e-9, "{refused:?}");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // Another client is not touched by it, and a light query costs nothing.
        for _ in 0..1000 {
            assert_eq!(budgets.admit(&light, 0.001, t0), Ok(0.0));
            budgets.settle(&light, "key", 0.0, 0.05);
        }
        // Their real time was more than thought: the debt grows, and so does the wait.
        for _ in 0..3 {
            budgets.settle(&heavy, "join", 0.8, 1.5);
        }
        let refused = budgets.admit(&heavy, 0.9, t0).unwrap_err();
        assert!((refused.owed_seconds - 2.2).abs() < 1e-9, "{refused:?}");
        assert_eq!(refused.retry_after, Duration::from_secs(3));
        // Refilled at one second per second: in again once something is left.
        assert!(budgets
            .admit(&heavy, 0.9, t0 + Duration::from_secs(2))
            .is_err());
        budgets
            .admit(&heavy, 0.9, t0 + Duration::from_secs(3))
            .unwrap();
        // The shape's usual time follows what it took.
        assert!((budgets.usual_seconds("join").unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn the_bench_client_has_no_budget() {
        let budgets = Budgets::new(0.001, 0.0, 0.0);
        let bench = Client::Exempt("10.0.0.9".parse().unwrap());
        for _ in 0..100 {
            budgets.admit(&bench, 10.0, Instant::now()).unwrap();
            budgets.settle(&bench, "x", 10.0, 10.0);
        }
        assert!(budgets.admit(&client(3), 0.0, Instant::now()).is_err());
    }

    #[test]
    fn idle_clients_are_forgotten_not_refilled_past_their_burst() {
        let budgets = Budgets::new(1.0, 1.0, 0.0);
        let t0 = Instant::now();
        budgets.admit(&client(1), 0.5, t0).unwrap();
        let later = t0 + Duration::from_secs(3600);
        // An hour later it holds its burst, no more.
        for _ in 0..2 {
            budgets.admit(&client(1), 0.6, later).unwrap();
        }
        assert!(budgets.admit(&client(1), 0.6, later).is_err());
    }
}
