//! A JSON body extractor whose rejections are the services' JSON errors, not plain text.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
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
