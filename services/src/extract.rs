//! A JSON body extractor whose rejections are the services' JSON errors, not plain text; and
//! the peer's address, for the layers that look at it before any extractor runs.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use std::net::SocketAddr;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        decode(request, state)
            .await
            .map(|(value, _)| ApiJson(value))
    }
}

/// A JSON body decoded, with the bytes it came in: a hop that passes the request on as it is
/// sends those bytes rather than encoding the value again.
pub struct JsonWithBytes<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<T: DeserializeOwned + Serialize, S: Send + Sync> FromRequest<S> for JsonWithBytes<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (value, bytes) = decode(request, state).await?;
        let bytes = match bytes {
            Some(bytes) => bytes,
            // A content type other than plain `application/json` (with a charset, say): the
            // value is sent on as JSON of that type.
            None => Bytes::from(serde_json::to_vec(&value).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("encoding the request: {e}"),
                )
            })?),
        };
        Ok(JsonWithBytes { value, bytes })
    }
}

/// The body decoded, and its bytes when it came as plain `application/json`.
async fn decode<T: DeserializeOwned, S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<(T, Option<Bytes>), ApiError> {
    // What every caller of the services sends takes the short way: the body decoded
    // straight. axum's Json tracks the path of every field as it decodes, for its error
    // message, which is work on every request for the rare one that fails; a body that
    // does not decode is decoded again by it, for that message.
    let plain_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !plain_json {
        return match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok((value, None)),
            Err(rejection) => Err(json_error(rejection)),
        };
    }
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body-too-large"
            } else {
                "bad-request"
            };
            ApiError::new(rejection.status(), code, rejection.body_text())
        })?;
    match serde_json::from_slice(&body) {
        Ok(value) => Ok((value, Some(body))),
        Err(_) => match Json::<T>::from_bytes(&body) {
            Ok(Json(value)) => Ok((value, Some(body))),
            Err(rejection) => Err(json_error(rejection)),
        },
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    let code = match &rejection {
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        JsonRejection::MissingJsonContentType(_) => "unsupported-content-type",
        JsonRejection::JsonSyntaxError(_) => "malformed-json",
        JsonRejection::JsonDataError(_) => "invalid-request",
        _ => "bad-request",
    };
    ApiError::new(rejection.status(), code, rejection.body_text())
}

/// The address a request came from, found where the `ConnectInfo` extractor finds it (the
/// server's, or in tests the one `MockConnectInfo` gives).
pub fn peer(request: &Request) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(peer)| *peer)
        })
}
