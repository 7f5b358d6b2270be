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
    /// An answer longer than this is refused unread: a broken or hostile upstream cannot make
    /// this service hold an unbounded body.
    max_answer_bytes: usize,
}

impl Upstream {
    /// `outgoing_address` is where connections leave from: the address the next service allows.
    pub fn new(
        base_url: &str,
        token: &str,
        outgoing_address: IpAddr,
        timeout: Duration,
        max_answer_bytes: usize,
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
            max_answer_bytes,
        })
    }

    /// Sends the query (the public request, or the checked template) with the request's id;
    /// returns the upstream's status and JSON body.
    pub async fn query(
        &self,
        request: &impl serde::Serialize,
        request_id: &str,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let mut response = self
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
        let too_large = || {
            tracing::warn!(url = %self.url, request_id, limit = self.max_answer_bytes, "answer too large");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream-answer-too-large",
                format!(
                    "{} answered with more than {} bytes",
                    self.url, self.max_answer_bytes
                ),
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_answer_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| upstream_error(&self.url, request_id, e))?
        {
            if body.len() + chunk.len() > self.max_answer_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Bytes::from(body)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream on loopback that answers every request with `size` bytes, streamed
    /// (no Content-Length) or not.
    async fn upstream_answering(size: usize, streamed: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/query",
            axum::routing::post(move || async move {
                let body = vec![b'x'; size];
                if streamed {
                    let chunks = body
                        .chunks(1024)
                        .map(|c| Ok::<_, std::io::Error>(c.to_vec()));
                    axum::body::Body::from_stream(futures_util::stream::iter(
                        chunks.collect::<Vec<_>>(),
                    ))
                } else {
                    axum::body::Body::from(body)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn answers_over_the_cap_are_refused() {
        for streamed in [false, true] {
            let url = upstream_answering(10_000, streamed).await;
            let local = "127.0.0.1".parse().unwrap();
            let small = Upstream::new(&url, "t", local, Duration::from_secs(5), 9_999).unwrap();
            let err = small.query(&"q", "id").await.unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (StatusCode::BAD_GATEWAY, "upstream-answer-too-large"),
                "streamed: {streamed}"
            );
            let enough = Upstream::new(&url, "t", local, Duration::from_secs(5), 10_000).unwrap();
            let (status, body) = enough.query(&"q", "id").await.unwrap();
            assert_eq!((status, body.len()), (StatusCode::OK, 10_000));
        }
    }
}
