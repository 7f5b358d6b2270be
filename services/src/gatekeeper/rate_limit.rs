//! A token bucket per client address: a client may send `burst` requests at once and then
//! `rate` per second on average. The configured unlimited clients (the deployment's bench
//! client) are not counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Past this many tracked clients, idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    unlimited: Arc<[IpAddr]>,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32, unlimited: &[IpAddr]) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst),
            unlimited: unlimited.into(),
            buckets: Arc::default(),
        }
    }

    /// Takes one token for `client` at `now`; false when it has none left.
    pub fn allow(&self, client: IpAddr, now: Instant) -> bool {
        if self.unlimited.contains(&client) {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let (rate, burst) = (self.rate, self.burst);
            // A bucket that has refilled completely carries no information.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl RateLimiter {
    /// Lets a request of the client at `peer` in, or refuses it (429).
    pub fn check(&self, peer: SocketAddr) -> Result<(), ApiError> {
        if self.allow(peer.ip(), Instant::now()) {
            return Ok(());
        }
        super::admission::log_refusal("rate-limited", peer);
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "too many requests from this address; slow down",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let bench: IpAddr = "10.0.0.9".parse().unwrap();
        let limiter = RateLimiter::new(2.0, 3, &[bench]);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(
            (0..100).all(|_| limiter.allow(bench, Instant::now())),
            "the bench client is not limited"
        );
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow(a, t0)));
        assert!(!limiter.allow(a, t0));
        assert!(limiter.allow(b, t0), "clients have their own buckets");
        assert!(
            limiter.allow(a, t0 + Duration::from_millis(500)),
            "one token after 0.5 s at 2/s"
        );
        assert!(!limiter.allow(a, t0 + Duration::from_millis(500)));
    }
}
