//! What the public hears: every request gets an id (the `x-request-id` header of its answer,
//! passed to every hop and written in their logs), and an error from behind the gatekeeper is
//! told by its code and a short message of its own, never with internal addresses, account
//! names, server or driver text; those stay in the logs under the request's id. Errors about
//! the request itself (a policy refusal, a malformed body, a limit) are said as they are.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use contract::wire::{ErrorBody, ErrorDetail, REQUEST_ID_HEADER};

/// The id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives the request its id, and its answer the id's header and the safety headers: one
/// layer for what every answer gets (each layer is work on every request), and a plain one,
/// not `middleware::from_fn`, which boxes the rest of the request's path on every request.
#[derive(Clone)]
pub struct Answer;

impl<S> Layer<S> for Answer {
    type Service = Answered<S>;

    fn layer(&self, inner: S) -> Answered<S> {
        Answered { inner }
    }
}

/// A route whose answers carry their request's id and the safety headers.
#[derive(Clone)]
pub struct Answered<S> {
    inner: S,
}

impl<S> Service<Request> for Answered<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = WithHeaders<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = format!("{:016x}", rand::random::<u64>());
        let header = HeaderValue::from_str(&id).ok();
        request.extensions_mut().insert(RequestId(id));
        WithHeaders {
            answer: self.inner.call(request),
            id: header,
        }
    }
}

pin_project! {
    /// An answer on its way out, given its headers when ready.
    pub struct WithHeaders<F> {
        #[pin]
        answer: F,
        id: Option<HeaderValue>,
    }
}

impl<F, E> Future for WithHeaders<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.answer.poll(cx))?;
        let headers = response.headers_mut();
        if let Some(id) = this.id.take() {
            headers.insert(REQUEST_ID_HEADER, id);
        }
        super::browser::add_safety_headers(headers);
        Poll::Ready(Ok(response))
    }
}

/// Codes whose message speaks of the request itself, and is said as it is.
const ABOUT_THE_REQUEST: &[&str] = &[
    "rejected",
    "malformed-json",
    "invalid-request",
    "unsupported-content-type",
    "body-too-large",
    "bad-request",
    "rate-limited",
    "too-many-in-flight",
    "busy",
    "over-budget",
    "too-costly",
];

/// The public form of an error a hop behind answered (its body, if it could be read).
pub fn public_error(status: StatusCode, body: &[u8], request_id: &str) -> ErrorBody {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| ErrorDetail {
            code: "upstream-unreadable".to_string(),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            request_id: None,
            retry_after_seconds: None,
        });
    ErrorBody {
        error: public(status, detail, request_id),
    }
}

pub fn public(status: StatusCode, detail: ErrorDetail, request_id: &str) -> ErrorDetail {
    let request_id = Some(request_id.to_string());
    if ABOUT_THE_REQUEST.contains(&detail.code.as_str()) {
        return ErrorDetail {
            request_id,
            ..detail
        };
    }
    tracing::warn!(
        request_id = request_id.as_deref().unwrap_or("-"),
        status = status.as_u16(),
        code = %detail.code,
        message = %detail.message,
        "request failed behind the gatekeeper"
    );
    let message = match detail.code.as_str() {
        "query-failed" => match mariadb_error(&detail.message) {
            Some(n) => format!("the database refused the query (MariaDB error {n})"),
            None => "the database could not run the query".to_string(),
        },
        "query-timeout" => "the query ran past the time limit".to_string(),
        "backend-unavailable" => {
            "no database server could take the query; retry shortly".to_string()
        }
        "manager-unavailable" => "the manager, which takes the writes and direct-hit reads, is \
                                  unreachable; random and customized reads are still served"
            .to_string(),
        "writer-unavailable" => "the node taking the writes failed during this write, which \
                                 may or may not have taken effect; the next write goes to \
                                 another node"
            .to_string(),
        "upstream-timeout" => "a service behind the gatekeeper did not answer in time".to_string(),
        "upstream-unavailable" => {
            "a service behind the gatekeeper is unavailable; retry shortly".to_string()
        }
        _ => "the request failed".to_string(),
    };
    ErrorDetail {
        code: detail.code,
        message,
        request_id,
        retry_after_seconds: detail.retry_after_seconds,
    }
}

/// The server's error number in the proxy's "... (error 1054): ..." message.
fn mariadb_error(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("(error ")?;
    rest.split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(code: &str, message: &str) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: message.into(),
            request_id: None,
            retry_after_seconds: None,
        }
    }

    #[test]
    fn internals_stay_in_the_logs() {
        let said = public(
            StatusCode::UNPROCESSABLE_ENTITY,
            detail(
                "query-failed",
                "worker-2 refused the query (error 1142): SELECT command denied to user 'app'@'127.0.1.3' for table 'user'",
            ),
            "00ab",
        );
        assert_eq!(
            said.message,
            "the database refused the query (MariaDB error 1142)"
        );
        assert_eq!(said.request_id.as_deref(), Some("00ab"));
        for (code, message) in [
            (
                "upstream-unavailable",
                "http://127.0.1.8:8080/query is unreachable",
            ),
            (
                "upstream-timeout",
                "http://127.0.1.8:8080/query did not answer in time",
            ),
            (
                "backend-unavailable",
                "manager: Input/output error: Connection refused (os error 111)",
            ),
            (
                "query-failed",
                "the query could not be sent: Statement takes 1 parameters but 0 was supplied",
            ),
            ("forbidden", "requests from this address are not accepted"),
            (
                "writer-unavailable",
                "the writer (node-1) is Input/output error: Connection refused (os error 111); \
                 the write was not repeated (it may have been applied); writes go to node-2 now",
            ),
        ] {
            let said = public(StatusCode::BAD_GATEWAY, detail(code, message), "1");
            for internal in [
                "127.0.",
                "app",
                "manager",
                "os error",
                "Statement",
                "address",
                "node-",
            ] {
                assert!(!said.message.contains(internal), "{code}: {}", said.message);
            }
            assert_eq!(said.code, code);
        }
        let rejected = "rejected by rule denied-function: the function sleep() is not accepted";
        assert_eq!(
            public(
                StatusCode::UNPROCESSABLE_ENTITY,
                detail("rejected", rejected),
                "2"
            )
            .message,
            rejected
        );
        let unreadable = public_error(
            StatusCode::BAD_GATEWAY,
            b"<html>proxy 127.0.1.7</html>",
            "3",
        );
        assert_eq!(unreadable.error.message, "the request failed");
    }
}
