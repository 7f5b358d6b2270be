//! Who may call an internal service: only the one peer address it is configured for, and only
//! with the right bearer token. Both must hold; either failing is refused before any work.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use futures_util::future::{self, Either, Ready};
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::extract;

/// The guard as a layer: a refused request is answered at once; an allowed one goes to the
/// route as it came. (A plain layer, not `middleware::from_fn`: that boxes the rest of the
/// request's path on every request, and the check itself is synchronous.)
#[derive(Clone)]
pub struct Guard {
    allowed_peers: Arc<[IpAddr]>,
    token: Arc<str>,
}

impl Guard {
    pub fn new(allowed_peers: &[IpAddr], token: &str) -> Guard {
        Guard {
            allowed_peers: allowed_peers.into(),
            token: token.into(),
        }
    }

    /// Why `request` is refused, if it is: another address, or no or a wrong token.
    fn refusal(&self, request: &Request) -> Option<ApiError> {
        let peer = extract::peer(request);
        let Some(peer) = peer.filter(|p| self.allowed_peers.contains(&p.ip())) else {
            tracing::warn!(?peer, "refused: peer not allowed");
            return Some(ApiError::forbidden_peer());
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), self.token.as_bytes()) {
            tracing::warn!(%peer, "refused: missing or wrong token");
            return Some(ApiError::unauthorized());
        }
        None
    }
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            guard: self.clone(),
            inner,
        }
    }
}

/// A route behind the guard.
#[derive(Clone)]
pub struct Guarded<S> {
    guard: Guard,
    inner: S,
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.guard.refusal(&request) {
            Some(refused) => Either::Left(future::ready(Ok(refused.into_response()))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
