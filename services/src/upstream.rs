//! The next service on the request path, reached over a persistent connection pool with a
//! token. Its answer, success or error, is relayed as it is.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

use crate::error::ApiError;
use contract::wire::{Client, CLIENT_HEADER, REQUEST_ID_HEADER};

/// hyper's own pooled HTTP/1 client: what an HTTP library adds on top of it (URL parsing per
/// request, redirect and retry layers) is work on every request of the chain, for features a
/// hop between two of our services never uses.
#[derive(Clone)]
pub struct Upstream {
    client: HttpClient<HttpConnector, Full<Bytes>>,
    url: Uri,
    authorization: HeaderValue,
    timeout: Duration,
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
        let url: Uri = format!("{}/query", base_url.trim_end_matches('/'))
            .parse()
            .with_context(|| format!("{base_url} is not an http:// URL"))?;
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(outgoing_address));
        // A request and its answer are one write each way: nothing to gain from Nagle's
        // coalescing, a round trip to lose.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = HttpClient::builder(TokioExecutor::new())
            // The next service closes a connection idle for 10 s (serve.rs); letting go of it
            // first keeps a request from racing that close on a connection about to die.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build(connector);
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        authorization.set_sensitive(true);
        Ok(Upstream {
            client,
            url,
            authorization,
            timeout,
            max_answer_bytes,
        })
    }

    /// Sends the query (the public request, or the checked template) with the request's id
    /// and its client; returns the upstream's status and JSON body.
    pub async fn query(
        &self,
        request: &impl serde::Serialize,
        request_id: &str,
        client: &Client,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let body = serde_json::to_vec(request).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("encoding the request: {e}"),
            )
        })?;
        self.send(Bytes::from(body), request_id, client).await
    }

    /// Sends a request already encoded as JSON, as [`Upstream::query`] does.
    pub async fn send(
        &self,
        body: Bytes,
        request_id: &str,
        client: &Client,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let mut builder = Request::post(self.url.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Ok(id) = HeaderValue::from_str(request_id) {
            builder = builder.header(REQUEST_ID_HEADER, id);
        }
        if let Ok(value) = HeaderValue::from_str(&client.header_value()) {
            builder = builder.header(CLIENT_HEADER, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ApiError::upstream(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.unreachable(request_id, &e))?;
            let status = response.status();
            if response
                .body()
                .size_hint()
                .upper()
                .is_some_and(|n| n > self.max_answer_bytes as u64)
            {
                return Err(self.too_large(request_id));
            }
            match Limited::new(response.into_body(), self.max_answer_bytes)
                .collect()
                .await
            {
                Ok(body) => Ok((status, body.to_bytes())),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    Err(self.too_large(request_id))
                }
                Err(e) => Err(self.unreachable(request_id, &*e)),
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(url = %self.url, request_id, "upstream timed out");
                Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream-timeout",
                    format!("{} did not answer in time", self.url),
                ))
            }
        }
    }

    fn too_large(&self, request_id: &str) -> ApiError {
        tracing::warn!(url = %self.url, request_id, limit = self.max_answer_bytes, "answer too large");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream-answer-too-large",
            format!(
                "{} answered with more than {} bytes",
                self.url, self.max_answer_bytes
            ),
        )
    }

    fn unreachable(&self, request_id: &str, e: &dyn std::error::Error) -> ApiError {
        tracing::warn!(url = %self.url, request_id, error = %e, "upstream call failed");
        ApiError::upstream(format!("{} is unreachable", self.url))
    }
}

/// The client a request came from, as the gatekeeper named it.
pub fn client(headers: &axum::http::HeaderMap) -> Client {
    Client::from_header(headers.get(CLIENT_HEADER).and_then(|v| v.to_str().ok()))
}

/// The id a request carries through the services, or "-" when it came without one.
pub fn request_id(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
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
            let err = small.query(&"q", "id", &Client::Unnamed).await.unwrap_err();
            assert_eq!(
                (err.status, err.code.as_str()),
                (StatusCode::BAD_GATEWAY, "upstream-answer-too-large"),
                "streamed: {streamed}"
            );
            let enough = Upstream::new(&url, "t", local, Duration::from_secs(5), 10_000).unwrap();
            let (status, body) = enough.query(&"q", "id", &Client::Unnamed).await.unwrap();
            assert_eq!((status, body.len()), (StatusCode::OK, 10_000));
        }
    }
}
