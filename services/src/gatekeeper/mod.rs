//! The gatekeeper: the only public role. It serves the web pages and the JSON API, keeps the
//! transport clean (body size, UTF-8, content type, time limits, a rate limit per client) and
//! forwards every query to the trusted host. It holds no database credentials and judges no SQL.

pub mod admission;
pub mod browser;
pub mod holds;
pub mod pages;
pub mod public;
pub mod rate_limit;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Extension, Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::extract::JsonWithBytes;
use crate::upstream::Upstream;
use admission::{Admission, Gate};
use axum::body::Bytes;
use contract::wire::{Client, ErrorBody, Mode, QueryRequest, QueryResponse};
use holds::Holds;
use public::RequestId;
use rate_limit::RateLimiter;

pub struct Gatekeeper {
    pub trusted_host: Upstream,
    /// Clients named exempt to the hops behind: the deployment's own bench client, which the
    /// rate limit and the proxy's budget of database time leave alone.
    pub unlimited_clients: Vec<IpAddr>,
    pub holds: Holds,
}

impl Gatekeeper {
    /// How the hops behind hear of the client at `peer`.
    fn client(&self, peer: SocketAddr) -> Client {
        match self.unlimited_clients.contains(&peer.ip()) {
            true => Client::Exempt(peer.ip()),
            false => Client::Public(peer.ip()),
        }
    }

    /// Sends a query down the chain for the client at `peer`, unless it is held for a budget
    /// spent; a refusal for one holds it for the time the proxy said.
    /// `request` is a `QueryRequest` as JSON: the API's body as it came, which decoded as one.
    async fn forward(
        &self,
        request: Bytes,
        id: &str,
        peer: SocketAddr,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let now = Instant::now();
        if let Some(refusal) = self.holds.check(peer.ip(), now) {
            admission::log_refusal("over-budget", peer);
            return Err(refusal);
        }
        let (status, body) = self
            .trusted_host
            .send(request, id, &self.client(peer))
            .await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            if let Ok(ErrorBody { error }) = serde_json::from_slice(&body) {
                if let ("over-budget", Some(seconds)) =
                    (error.code.as_str(), error.retry_after_seconds)
                {
                    self.holds.hold(peer.ip(), seconds, now);
                }
            }
        }
        Ok((status, body))
    }
}

/// Tells the client when to come back, when the refusal says.
fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub struct Hygiene {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub limiter: RateLimiter,
    pub admission: Admission,
}

pub fn app(gatekeeper: Arc<Gatekeeper>, hygiene: Hygiene) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/read", get(read_page).post(read_submit))
        .route("/write", get(write_page).post(write_submit))
        .route_layer(middleware::from_fn(browser::same_origin_forms))
        .route("/api/query", axum::routing::post(api_query))
        .route_layer(Gate {
            limiter: hygiene.limiter,
            admission: hygiene.admission,
        })
        .route("/health", get(health))
        .layer(public::Answer)
        .layer(DefaultBodyLimit::max(hygiene.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            hygiene.request_timeout,
        ))
        .with_state(gatekeeper)
}

async fn index() -> Html<String> {
    Html(pages::index())
}

async fn read_page() -> Html<String> {
    Html(pages::read(
        "SELECT film_id, title, rating FROM film ORDER BY film_id LIMIT 10",
        Mode::Random,
    ))
}

async fn write_page() -> Html<String> {
    Html(pages::write(
        "UPDATE film SET rental_rate = 2.99 WHERE film_id = 1",
    ))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "service": "gatekeeper" }))
}

/// The JSON API: the trusted host's answer is relayed as it is, status included, except that
/// an error says only what the public may hear (and when to try again, if it says).
async fn api_query(
    State(gk): State<Arc<Gatekeeper>>,
    Extension(RequestId(id)): Extension<RequestId>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    // Decoded to refuse what is not a query request here; what is sent on is its bytes.
    request: JsonWithBytes<QueryRequest>,
) -> Response {
    match gk.forward(request.bytes, &id, peer).await {
        Ok((status, body)) if status.is_success() => {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok((status, body)) => {
            let said = public::public_error(status, &body, &id);
            let retry_after = said.error.retry_after_seconds;
            with_retry_after((status, Json(said)).into_response(), retry_after)
        }
        Err(e) => {
            let said = public::public(e.status, e.body().error, &id);
            let retry_after = said.retry_after_seconds;
            with_retry_after(
                (e.status, Json(ErrorBody { error: said })).into_response(),
                retry_after,
            )
        }
    }
}

#[derive(Deserialize)]
struct ReadForm {
    query: String,
    strategy: String,
}

#[derive(Deserialize)]
struct WriteForm {
    query: String,
}

/// The cookie that carries the GTID of a visitor's last write from the Write page to the
/// Read page, so a read after a write shows it (read-your-writes).
const LAST_WRITE_COOKIE: &str = "last_write_gtid";

/// The GTID position the visitor's last write left, from its cookie (commas, which a cookie
/// value cannot hold, travel as dots); None when absent or not a position.
fn last_write(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get_all(header::COOKIE);
    let value = cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(LAST_WRITE_COOKIE)?
                .strip_prefix('=')
        })?;
    let position = value.replace('.', ",");
    position
        .parse::<contract::gtid::GtidPosition>()
        .is_ok()
        .then_some(position)
}

async fn read_submit(
    State(gk): State<Arc<Gatekeeper>>,
    Extension(RequestId(id)): Extension<RequestId>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<ReadForm>, FormRejection>,
) -> (StatusCode, Html<String>) {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return form_error(e, Mode::Random),
    };
    let Some(mode) = form.strategy.parse::<Mode>().ok().filter(|m| m.is_read()) else {
        let message = format!(
            "unknown strategy {:?}: choose direct-hit, random or customized",
            form.strategy
        );
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::result(&form.query, Mode::Random, &Err(message))),
        );
    };
    let (status, _, page) = submit(&gk, form.query, mode, last_write(&headers), &id, peer).await;
    (status, page)
}

async fn write_submit(
    State(gk): State<Arc<Gatekeeper>>,
    Extension(RequestId(id)): Extension<RequestId>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<WriteForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return form_error(e, Mode::Write).into_response(),
    };
    let (status, last_gtid, page) = submit(&gk, f.query, Mode::Write, None, &id, peer).await;
    let mut response = (status, page).into_response();
    let cookie = last_gtid.and_then(|gtid| {
        let value = format!(
            "{LAST_WRITE_COOKIE}={}; Path=/; Max-Age=600; HttpOnly; SameSite=Strict",
            gtid.replace(',', ".")
        );
        HeaderValue::from_str(&value).ok()
    });
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn form_error(rejection: FormRejection, mode: Mode) -> (StatusCode, Html<String>) {
    let message = format!("the form could not be read: {}", rejection.body_text());
    (
        rejection.status(),
        Html(pages::result("", mode, &Err(message))),
    )
}

/// Sends a page's query down the chain and renders whatever comes back; an error as the
/// public may hear it, with the request's id.
async fn submit(
    gk: &Gatekeeper,
    query: String,
    mode: Mode,
    after_gtid: Option<String>,
    id: &str,
    peer: SocketAddr,
) -> (StatusCode, Option<String>, Html<String>) {
    let request = QueryRequest {
        query,
        mode,
        after_gtid,
    };
    let said = |e: ErrorBody| format!("{} (request id {id})", e.error.message);
    let encoded = match serde_json::to_vec(&request) {
        Ok(encoded) => Bytes::from(encoded),
        Err(e) => {
            let message = format!("encoding the request: {e} (request id {id})");
            let page = pages::result(&request.query, mode, &Err(message));
            return (StatusCode::INTERNAL_SERVER_ERROR, None, Html(page));
        }
    };
    let (status, outcome) = match gk.forward(encoded, id, peer).await {
        Ok((status, body)) if status.is_success() => {
            match serde_json::from_slice::<QueryResponse>(&body) {
                Ok(response) => (status, Ok(response)),
                Err(_) => (
                    StatusCode::BAD_GATEWAY,
                    Err(format!(
                        "a service behind the gatekeeper answered unreadably (request id {id})"
                    )),
                ),
            }
        }
        Ok((status, body)) => (status, Err(said(public::public_error(status, &body, id)))),
        Err(e) => (
            e.status,
            Err(said(ErrorBody {
                error: public::public(e.status, e.body().error, id),
            })),
        ),
    };
    let last_gtid = outcome.as_ref().ok().and_then(|r| r.last_gtid.clone());
    (
        status,
        last_gtid,
        Html(pages::result(&request.query, mode, &outcome)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_write_is_read_from_its_cookie() {
        let headers = |cookies: &[&str]| {
            let mut map = HeaderMap::new();
            for c in cookies {
                map.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
            }
            map
        };
        assert_eq!(
            last_write(&headers(&["theme=dark; last_write_gtid=0-1-42.1-3-7"])).as_deref(),
            Some("0-1-42,1-3-7")
        );
        assert_eq!(
            last_write(&headers(&["a=b", "last_write_gtid=0-1-5"])).as_deref(),
            Some("0-1-5")
        );
        for cookies in [
            &["last_write_gtid=1 OR 1"][..],
            &["last_write_gtidx=0-1-5"],
            &[],
        ] {
            assert_eq!(last_write(&headers(cookies)), None, "{cookies:?}");
        }
    }
}
