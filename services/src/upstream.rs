//! The next service on the request path, reached over a persistent connection pool with a
//! token. Its answer, success or error, is relayed as it is.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::StatusCode;

use crate::error::ApiError;
use contract::wire::REQUEST_ID_HEADER;

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Upstream {
    /// `outgoing_address` is where connections leave from: the address the next service allows.
    pub fn new(
        base_url: &str,
        token: &str,
        outgoing_address: IpAddr,
        timeout: Duration,
    ) -> Result<Upstream> {
        let client = reqwest::Client::builder()
            .local_address(outgoing_address)
            .timeout(timeout)
            // The next service closes a connection idle for 10 s (serve.rs); letting go of it
            // first keeps a request from racing that close on a connection about to die.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Upstream {
            client,
            url: format!("{}/query", base_url.trim_end_matches('/')),
            token: token.to_string(),
        })
    }

    /// Sends the query (the public request, or the checked template) with the request's id;
    /// returns the upstream's status and JSON body.
    pub async fn query(
        &self,
        request: &impl serde::Serialize,
        request_id: &str,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(REQUEST_ID_HEADER, request_id)
            .json(request)
            .send()
            .await
            .map_err(|e| upstream_error(&self.url, request_id, e))?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = response
            .bytes()
            .await
            .map_err(|e| upstream_error(&self.url, request_id, e))?;
        Ok((status, body))
    }
}

/// The id a request carries through the services, or "-" when it came without one.
pub fn request_id(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

fn upstream_error(url: &str, request_id: &str, e: reqwest::Error) -> ApiError {
    tracing::warn!(%url, request_id, error = %e, "upstream call failed");
    if e.is_timeout() {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            format!("{url} did not answer in time"),
        )
    } else {
        ApiError::upstream(format!("{url} is unreachable"))
    }
}
