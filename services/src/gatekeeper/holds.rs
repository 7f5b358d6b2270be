//! Clients the proxy found over their budget of database time, held at the gate until the
//! time it said: a client that keeps sending while over its budget is answered here, at the
//! cost of a lookup, not by every hop behind (whose work would slow everyone else's requests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

/// Clients held at most at once; past it, the ones whose time is up are let go first, then no
/// new one is held (the proxy still refuses them).
const MAX_HELD: usize = 4096;

#[derive(Default)]
pub struct Holds {
    until: Mutex<HashMap<IpAddr, Instant>>,
}

impl Holds {
    /// Holds `client` for `seconds` from `now`.
    pub fn hold(&self, client: IpAddr, seconds: u64, now: Instant) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.len() >= MAX_HELD {
            until.retain(|_, t| *t > now);
        }
        if until.len() < MAX_HELD {
            until.insert(client, now + Duration::from_secs(seconds));
        }
    }

    /// The refusal for a held client, with the seconds left; None when it may go on.
    pub fn check(&self, client: IpAddr, now: Instant) -> Option<ApiError> {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let end = *until.get(&client)?;
        if end <= now {
            until.remove(&client);
            return None;
        }
        let left = (end - now).as_secs_f64().ceil() as u64;
        Some(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over-budget",
                format!(
                    "this client has used its share of the database's time: try again in \
                     {left} s, or send lighter queries"
                ),
            )
            .retry_after(left),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_client_waits_its_time_and_no_longer() {
        let holds = Holds::default();
        let (held, other): (IpAddr, IpAddr) = (
            "203.0.113.1".parse().unwrap(),
            "203.0.113.2".parse().unwrap(),
        );
        let t0 = Instant::now();
        holds.hold(held, 3, t0);
        let refusal = holds.check(held, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(
            (refusal.status, refusal.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(3))
        );
        assert!(holds.check(other, t0).is_none());
        assert!(holds.check(held, t0 + Duration::from_secs(3)).is_none());
    }
}
