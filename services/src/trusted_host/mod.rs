//! The trusted host: between the public gatekeeper and the proxy. It holds no database
//! credentials; it checks every query against the policy and forwards only what passed, as a
//! template and its parameters.

pub mod policy;
pub mod template;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::guard::Guard;
use crate::upstream;
use crate::upstream::Upstream;
use axum::http::HeaderMap;
use contract::gtid::GtidPosition;
use contract::wire::{ForwardedQuery, QueryRequest};
use policy::Policy;

pub struct TrustedHost {
    pub proxy: Upstream,
    pub policy: Policy,
}

pub fn app(trusted_host: Arc<TrustedHost>, guard: Guard) -> Router {
    Router::new()
        .route("/query", post(query))
        .route_layer(guard)
        .route("/health", get(health))
        .with_state(trusted_host)
}

async fn query(
    State(th): State<Arc<TrustedHost>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Response, ApiError> {
    let request_id = upstream::request_id(&headers);
    let checked = th.policy.validate(&request.query, request.mode).map_err(|r| {
        tracing::warn!(request_id, rule = r.rule, mode = request.mode.as_str(), reason = %r.reason, "query rejected");
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", r.to_string())
    })?;
    if let Some(after) = &request.after_gtid {
        after.parse::<GtidPosition>().map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                format!("after_gtid: {e}"),
            )
        })?;
    }
    let forwarded = ForwardedQuery {
        mode: request.mode,
        template: checked.template,
        params: checked.params,
        digest: checked.digest,
        digest_text: checked.digest_text,
        after_gtid: request.after_gtid.clone(),
    };
    let (status, body) = th
        .proxy
        .query(&forwarded, request_id, &upstream::client(&headers))
        .await?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "service": "trusted-host" }))
}
