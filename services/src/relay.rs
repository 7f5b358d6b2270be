//! The floor under the chain's cost: a hop that does nothing but the chain's plumbing. It
//! decodes the JSON it is sent, as every service does, and sends it on to the next hop over the
//! same pooled client with the request's id and client (or, as the last hop, answers a canned
//! row where the proxy would ask a server). Three of them, each on its service's host, cost
//! what any three HTTP hops cost there; what the real services spend above that is their own
//! work.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use contract::config::RelayConfig;

use crate::extract::ApiJson;
use crate::upstream::{self, Upstream};

/// A point read's answer as the proxy gives it.
const ANSWER: &str = r#"{"columns":["film_id","title","rental_rate","length"],"rows":[[17,"Arabia Truman 17","3.99",171]],"served_by":"manager","elapsed_ms":0.3}"#;

/// The relay's routes: the gatekeeper's `/api/query` and the hops' `/query`, both relayed.
pub fn app(config: &RelayConfig) -> Result<Router> {
    Ok(match &config.next_url {
        Some(next) => {
            let next = Upstream::new(
                next,
                "floor",
                config.outgoing_address.unwrap_or(config.listen.ip()),
                Duration::from_secs(10),
                8 << 20,
            )?;
            Router::new()
                .route("/api/query", post(relay))
                .route("/query", post(relay))
                .with_state(Arc::new(next))
        }
        None => Router::new()
            .route("/api/query", post(answer))
            .route("/query", post(answer)),
    })
}

async fn relay(
    State(next): State<Arc<Upstream>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Response {
    match next
        .query(
            &body,
            upstream::request_id(&headers),
            &upstream::client(&headers),
        )
        .await
    {
        Ok((status, body)) => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn answer(ApiJson(_): ApiJson<serde_json::Value>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
        .into_response()
}
