//! Who may call an internal service: only the one peer address it is configured for, and only
//! with the right bearer token. Both must hold; either failing is refused before any work.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

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
}

/// Middleware: refuses any request from another address or without the token.
pub async fn check(
    State(guard): State<Guard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !guard.allowed_peers.contains(&peer.ip()) {
        tracing::warn!(%peer, "refused: peer not allowed");
        return Err(ApiError::forbidden_peer());
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), guard.token.as_bytes()) {
        tracing::warn!(%peer, "refused: missing or wrong token");
        return Err(ApiError::unauthorized());
    }
    Ok(next.run(request).await)
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
