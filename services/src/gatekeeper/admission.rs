//! How many requests the gatekeeper lets in at once: at most `total` in flight overall (past
//! it, 503 with Retry-After: the service is full, the client should come back) and at most
//! `per_client` from one address (past it, 429: one client may not take every slot). The
//! deployment's own bench client is not counted per client, as with the rate limit. Refusals
//! are logged sampled, not a line each: a flood of refusals must not become a flood of log.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{self, Either, Ready};
use pin_project_lite::pin_project;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::rate_limit::RateLimiter;
use crate::error::ApiError;
use crate::extract;

#[derive(Clone)]
pub struct Admission {
    total: Arc<Semaphore>,
    per_client: u32,
    unlimited: Arc<[IpAddr]>,
    in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Admission {
    pub fn new(total: usize, per_client: u32, unlimited: &[IpAddr]) -> Admission {
        Admission {
            total: Arc::new(Semaphore::new(total)),
            per_client,
            unlimited: unlimited.into(),
            in_flight: Arc::default(),
        }
    }

    /// Counts a request of `client` in, or says why it cannot be.
    fn enter(&self, client: IpAddr) -> Result<Ticket, ApiError> {
        let counted = !self.unlimited.contains(&client);
        if counted {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let n = in_flight.entry(client).or_insert(0);
            if *n >= self.per_client {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-in-flight",
                    format!(
                        "this address already has {} requests in flight; wait for their answers",
                        self.per_client
                    ),
                ));
            }
            *n += 1;
        }
        let ticket = Ticket {
            admission: self.clone(),
            client: counted.then_some(client),
            permit: Arc::clone(&self.total).try_acquire_owned().ok(),
        };
        if ticket.permit.is_none() {
            // The ticket drops here and gives the client's count back.
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the gatekeeper is serving as many requests as it takes; retry shortly",
            ));
        }
        Ok(ticket)
    }
}

/// A request let in: its slots are given back when it is dropped.
struct Ticket {
    admission: Admission,
    client: Option<IpAddr>,
    /// A slot of the total, held while the request runs.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let mut in_flight = self
            .admission
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_flight.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&client);
            }
        }
    }
}

/// Who gets in, as one layer: the client's rate, then a slot (one layer, not two: each layer
/// is work on every request; and a plain layer, not `middleware::from_fn`, which boxes the
/// rest of the request's path on every request).
#[derive(Clone)]
pub struct Gate {
    pub limiter: RateLimiter,
    pub admission: Admission,
}

impl Gate {
    /// The request's ticket, or the answer that refuses it.
    fn admit(&self, request: &Request) -> Result<Ticket, Box<Response>> {
        let Some(peer) = extract::peer(request) else {
            return Err(Box::new(
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request came without its peer's address",
                )
                .into_response(),
            ));
        };
        self.limiter
            .check(peer)
            .map_err(IntoResponse::into_response)?;
        self.admission.enter(peer.ip()).map_err(|refusal| {
            log_refusal(&refusal.code, peer);
            let mut response = refusal.into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Box::new(response)
        })
    }
}

impl<S> Layer<S> for Gate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            gate: self.clone(),
            inner,
        }
    }
}

/// A route behind the gate.
#[derive(Clone)]
pub struct Gated<S> {
    gate: Gate,
    inner: S,
}

impl<S> Service<Request> for Gated<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, Admitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.gate.admit(&request) {
            Ok(ticket) => Either::Right(Admitted {
                answer: self.inner.call(request),
                ticket: Some(ticket),
            }),
            Err(refusal) => Either::Left(future::ready(Ok(*refusal))),
        }
    }
}

pin_project! {
    /// An admitted request's answer: its slots are held until the answer is ready.
    pub struct Admitted<F> {
        #[pin]
        answer: F,
        ticket: Option<Ticket>,
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        this.ticket.take();
        Poll::Ready(answer)
    }
}

/// The second of the last logged refusal, and how many were not logged since.
static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
static NOT_LOGGED: AtomicU64 = AtomicU64::new(0);

/// Logs a refused request: at most one line a second, saying how many refusals it stands for.
pub fn log_refusal(kind: &str, peer: SocketAddr) {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if second > last
        && LAST_LOGGED
            .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let also = NOT_LOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(%peer, kind, refused_since_last_line = also, "request refused");
    } else {
        NOT_LOGGED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_per_client_and_in_all() {
        let bench: IpAddr = "10.0.0.9".parse().unwrap();
        let admission = Admission::new(3, 2, &[bench]);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = admission.enter(a).unwrap();
        let _a2 = admission.enter(a).unwrap();
        assert_eq!(admission.enter(a).err().unwrap().code, "too-many-in-flight");
        let _b1 = admission.enter(b).unwrap();
        // Three in flight: full, for everyone, the bench client too.
        assert_eq!(admission.enter(b).err().unwrap().code, "busy");
        assert_eq!(admission.enter(bench).err().unwrap().code, "busy");
        // A refused request took nothing: b still has one slot of its own once there is room.
        drop(a1);
        let _b2 = admission.enter(b).unwrap();
        assert_eq!(admission.in_flight.lock().unwrap()[&b], 2);
        assert_eq!(admission.in_flight.lock().unwrap()[&a], 1);
    }

    #[test]
    fn the_bench_client_has_no_per_client_cap() {
        let bench: IpAddr = "10.0.0.9".parse().unwrap();
        let admission = Admission::new(10, 1, &[bench]);
        let tickets: Vec<_> = (0..5).map(|_| admission.enter(bench).unwrap()).collect();
        assert_eq!(tickets.len(), 5);
        assert!(admission.in_flight.lock().unwrap().is_empty());
    }
}
