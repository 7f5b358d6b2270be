//! The services' routers called in process (`oneshot`), with the peer address a real listener
//! would give (`MockConnectInfo`): the guard, the rate limit, the JSON and form rejections and
//! the policy's refusals, each found where it happens. The next hop is an address where nothing
//! listens, so a request that got past a check would answer 502, not the code expected.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use services::gatekeeper::{
    self, admission::Admission, rate_limit::RateLimiter, Gatekeeper, Hygiene,
};
use services::guard::Guard;
use services::trusted_host::policy::{Limits, Policy};
use services::trusted_host::{self, TrustedHost};
use services::upstream::Upstream;

const TOKEN: &str = "test-token";
const GATEKEEPER: &str = "127.0.0.1";

/// A base URL on loopback where nothing listens.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn upstream() -> Upstream {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    Upstream::new(&nowhere(), TOKEN, local, Duration::from_secs(2), 1 << 20).unwrap()
}

fn gatekeeper_app(rate: f64, burst: u32) -> Router {
    gatekeeper_app_admitting(
        rate,
        burst,
        Admission::new(1000, 100, &[BENCH.parse().unwrap()]),
    )
}

/// The bench client's address, which neither the rate limit nor the per-client cap counts.
const BENCH: &str = "127.0.0.7";

fn gatekeeper_app_admitting(rate: f64, burst: u32, admission: Admission) -> Router {
    gatekeeper::app(
        Arc::new(Gatekeeper {
            trusted_host: upstream(),
            unlimited_clients: vec![BENCH.parse().unwrap()],
            holds: Default::default(),
        }),
        Hygiene {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            limiter: RateLimiter::new(rate, burst, &[BENCH.parse().unwrap()]),
            admission,
        },
    )
}

fn trusted_host_app() -> Router {
    let trusted_host = Arc::new(TrustedHost {
        proxy: upstream(),
        policy: Policy::new(Limits::default()),
    });
    let allowed: IpAddr = GATEKEEPER.parse().unwrap();
    trusted_host::app(trusted_host, Guard::new(&[allowed], TOKEN))
}

/// Sends one request from `peer`; returns the status and the body.
async fn send(app: &Router, peer: &str, request: Request<Body>) -> (StatusCode, String) {
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    let response = app
        .clone()
        .layer(MockConnectInfo(peer))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn json_post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_guard_wants_the_peer_and_the_token() {
    let app = trusted_host_app();
    let query = || {
        let mut r = json_post(
            "/query",
            "application/json",
            r#"{"query": "SELECT SLEEP(1)", "mode": "random"}"#,
        );
        r.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        r
    };
    let (status, body) = send(&app, "127.0.0.9", query()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    let mut no_token = query();
    no_token.headers_mut().remove(header::AUTHORIZATION);
    let (status, body) = send(&app, GATEKEEPER, no_token).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let mut wrong = query();
    wrong
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer test-tokeN".parse().unwrap());
    let (status, _) = send(&app, GATEKEEPER, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Peer and token right: the policy judges it (and refuses it, before any forwarding).
    let (status, body) = send(&app, GATEKEEPER, query()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "rejected")
    );

    // Health is for anyone, without a token.
    let health = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&app, "127.0.0.9", health).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_policy_refuses_before_anything_is_forwarded() {
    let app = trusted_host_app();
    let cases = [
        ("SELECT SLEEP(1)", "random", "function"),
        ("SELECT 1; SELECT 2", "random", "single-statement"),
        (
            "DELETE FROM film WHERE film_id = 1",
            "random",
            "accepts only SELECT",
        ),
        ("SELECT * FROM mysql.user", "direct-hit", "schema"),
        ("DROP TABLE film", "write", "rejected"),
    ];
    for (query, mode, expected) in cases {
        let mut request = json_post(
            "/query",
            "application/json",
            serde_json::json!({ "query": query, "mode": mode }).to_string(),
        );
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        let (status, body) = send(&app, GATEKEEPER, request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert!(
            body.contains(expected),
            "{query}: expected {expected:?} in {body}"
        );
    }
    // An accepted query is forwarded: to where nothing listens here, hence 502.
    let mut accepted = json_post(
        "/query",
        "application/json",
        r#"{"query": "SELECT title FROM film WHERE film_id = 1", "mode": "random"}"#,
    );
    accepted.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    let (status, body) = send(&app, GATEKEEPER, accepted).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::BAD_GATEWAY, "upstream-unavailable")
    );
}

#[tokio::test]
async fn json_rejections_are_json_errors() {
    let app = gatekeeper_app(1000.0, 1000);
    let json = "application/json";
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            json,
            b"{\"query\": \"SELECT 1\"".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json,
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            json,
            br#"{"query": 5, "mode": "random"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
        ),
        (
            json,
            br#"{"query": "SELECT 1"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
        ),
        (
            json,
            br#"{"query": "SELECT 1", "mode": "fastest"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
        ),
        // The gatekeeper passes on the bytes it got: what it does not know stays out.
        (
            json,
            br#"{"query": "SELECT 1", "mode": "random", "as": "root"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
        ),
        (
            json,
            b"{\"query\": \"SELECT '\xff'\", \"mode\": \"random\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            "text/plain",
            br#"{"query": "SELECT 1", "mode": "random"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-content-type",
        ),
        (
            json,
            format!(r#"{{"query": "{}", "mode": "random"}}"#, "a".repeat(2000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
    ];
    for (content_type, body, status, expected) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(50)]).into_owned();
        let (got, answer) = send(
            &app,
            "127.0.0.5",
            json_post("/api/query", content_type, body),
        )
        .await;
        assert_eq!(
            (got, code(&answer).as_str()),
            (status, expected),
            "{shown}: {answer}"
        );
    }
    let (status, body) = send(
        &app,
        "127.0.0.5",
        json_post(
            "/api/query",
            json,
            r#"{"query": "SELECT 1", "mode": "random"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::BAD_GATEWAY, "upstream-unavailable")
    );
}

#[tokio::test]
async fn forms_say_what_was_wrong_on_a_page() {
    let app = gatekeeper_app(1000.0, 1000);
    let form =
        |path: &str, body: &'static str| json_post(path, "application/x-www-form-urlencoded", body);
    let (status, page) = send(
        &app,
        "127.0.0.5",
        form("/read", "query=SELECT+1&strategy=fastest"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("unknown strategy") && page.contains("<html"),
        "{page}"
    );
    let (status, page) = send(&app, "127.0.0.5", form("/read", "strategy=random")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("the form could not be read"), "{page}");
    // A write form is not a read strategy.
    let (status, _) = send(
        &app,
        "127.0.0.5",
        form("/read", "query=SELECT+1&strategy=write"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, page) = send(
        &app,
        "127.0.0.5",
        form("/write", "query=UPDATE+film+SET+length%3D1"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
}

/// An error from behind the gatekeeper reaches the public as a code, a short message and the
/// request's id, which is also the answer's x-request-id header: the trusted host's address
/// stays in the log.
#[tokio::test]
async fn public_errors_carry_an_id_and_no_internals() {
    let app = gatekeeper_app(1000.0, 1000);
    let request = json_post(
        "/api/query",
        "application/json",
        r#"{"query":"SELECT 1","mode":"random"}"#,
    );
    let response = app
        .clone()
        .layer(MockConnectInfo(
            "127.0.0.5:40000".parse::<SocketAddr>().unwrap(),
        ))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 16, "{id}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "upstream-unavailable", "{body}");
    assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("127.0.0.1") && !message.contains("http"),
        "{message}"
    );
    // The pages say the same, with the id.
    let (status, page) = send(
        &app,
        "127.0.0.5",
        json_post(
            "/write",
            "application/x-www-form-urlencoded",
            "query=DELETE+FROM+film+WHERE+film_id%3D1",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        page.contains("(request id ") && !page.contains("127.0.0.1"),
        "{page}"
    );
}

/// A full gatekeeper answers 503 with Retry-After and says so; a client at its own cap gets
/// 429; the bench client is not capped per client; /health always answers.
#[tokio::test]
async fn admission_refuses_with_retry_after() {
    let query = || {
        json_post(
            "/api/query",
            "application/json",
            r#"{"query":"SELECT 1","mode":"random"}"#,
        )
    };
    let full = gatekeeper_app_admitting(1000.0, 1000, Admission::new(0, 10, &[]));
    let response = full
        .clone()
        .layer(MockConnectInfo(
            "127.0.0.5:40000".parse::<SocketAddr>().unwrap(),
        ))
        .oneshot(query())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(code(&String::from_utf8_lossy(&body)), "busy");
    let (status, _) = send(
        &full,
        "127.0.0.5",
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let capped = gatekeeper_app_admitting(
        1000.0,
        1000,
        Admission::new(10, 0, &[BENCH.parse().unwrap()]),
    );
    let (status, body) = send(&capped, "127.0.0.5", query()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "too-many-in-flight");
    let (status, body) = send(&capped, BENCH, query()).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "the bench client got in: {body}"
    );
}

/// A next hop on loopback that answers every request at once, except those whose body says
/// `held`: it tells of each of those on `reached` and answers them when `release` is notified.
struct HeldHop {
    url: String,
    reached: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: Arc<tokio::sync::Notify>,
}

async fn held_hop() -> HeldHop {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (reached_tx, reached) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let released = Arc::clone(&release);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (reached_tx, released) = (reached_tx.clone(), Arc::clone(&released));
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                    if String::from_utf8_lossy(&buffer[..n]).contains("held") {
                        let release = released.notified();
                        let _ = reached_tx.send(());
                        release.await;
                    }
                    let body = r#"{"columns":[],"rows":[]}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if socket.write_all(head.as_bytes()).await.is_err()
                        || socket.write_all(body.as_bytes()).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    HeldHop {
        url,
        reached,
        release,
    }
}

/// A gatekeeper with one slot in all, in front of `next`.
fn one_slot_gatekeeper(next: &str) -> Router {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    gatekeeper::app(
        Arc::new(Gatekeeper {
            trusted_host: Upstream::new(next, TOKEN, local, Duration::from_secs(10), 1 << 20)
                .unwrap(),
            unlimited_clients: vec![],
            holds: Default::default(),
        }),
        Hygiene {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(10),
            limiter: RateLimiter::new(1000.0, 1000, &[]),
            admission: Admission::new(1, 10, &[]),
        },
    )
}

fn api_query(sql: &str) -> Request<Body> {
    json_post(
        "/api/query",
        "application/json",
        format!(r#"{{"query":"{sql}","mode":"random"}}"#),
    )
}

/// A request from 127.0.0.5 that `hop` holds, sent and waiting there when this returns.
async fn held_request(
    app: &Router,
    hop: &mut HeldHop,
) -> tokio::task::JoinHandle<(StatusCode, String)> {
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, "127.0.0.5", api_query("SELECT 'held'")).await }
    });
    hop.reached.recv().await.unwrap();
    first
}

/// A request holds its slot until its answer is ready, not only until it is let in: with one
/// slot, a second request while the first waits on the next hop is refused as busy, and once
/// the first is answered the next gets in.
#[tokio::test]
async fn a_slot_is_held_until_the_answer() {
    let mut hop = held_hop().await;
    let app = one_slot_gatekeeper(&hop.url);
    let first = held_request(&app, &mut hop).await;
    let (status, body) = send(&app, "127.0.0.6", api_query("SELECT 1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "busy");
    hop.release.notify_waiters();
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // The slot is free again: the next request is let in.
    let (status, body) = send(&app, "127.0.0.6", api_query("SELECT 1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A request dropped before its answer (its client gone, its time up) gives its slot back.
#[tokio::test]
async fn a_dropped_request_gives_its_slot_back() {
    let mut hop = held_hop().await;
    let app = one_slot_gatekeeper(&hop.url);
    let first = held_request(&app, &mut hop).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let (status, body) = send(&app, "127.0.0.6", api_query("SELECT 1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A form posted by another site's page is refused before anything is forwarded; the
/// gatekeeper's own pages and programs without an Origin go through (to the next hop, which is
/// nowhere: 502). Every answer carries the headers that keep a browser safe.
#[tokio::test]
async fn cross_site_forms_are_refused_and_pages_are_locked_down() {
    let app = gatekeeper_app(1000.0, 1000);
    let form = |origin: Option<&str>| {
        let mut request = Request::post("/write")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "127.0.1.9:8080");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request
            .body(Body::from("query=DELETE+FROM+rental+WHERE+rental_id%3D1"))
            .unwrap()
    };
    let (status, page) = send(&app, "127.0.0.5", form(Some("http://evil.example"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(
        page.contains("this form was sent from another site"),
        "{page}"
    );
    for origin in [Some("http://127.0.1.9:8080"), None] {
        let (status, page) = send(&app, "127.0.0.5", form(origin)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{origin:?}: {page}");
    }

    for path in ["/", "/read", "/health"] {
        let response = app
            .clone()
            .layer(MockConnectInfo(
                "127.0.0.5:40000".parse::<SocketAddr>().unwrap(),
            ))
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
    }
}

#[tokio::test]
async fn the_rate_limit_is_per_client() {
    let app = gatekeeper_app(1.0, 2);
    let page = || Request::get("/read").body(Body::empty()).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&app, "127.0.0.5", page()).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let (status, body) = send(&app, "127.0.0.5", page()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate-limited")
    );
    assert_eq!(
        send(&app, "127.0.0.6", page()).await.0,
        StatusCode::OK,
        "another client"
    );
    // The unlimited client (the deployment's bench client) is never refused.
    for _ in 0..10 {
        assert_eq!(send(&app, "127.0.0.7", page()).await.0, StatusCode::OK);
    }
    // Health is not limited: monitors poll it.
    let health = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&app, "127.0.0.5", health).await.0, StatusCode::OK);
}

/// The proxy with a failover account, its backends where nothing listens.
fn proxy_app() -> Router {
    let backend = |name: &str| contract::config::BackendConfig {
        name: name.into(),
        address: "127.0.0.1".into(),
        port: 1,
    };
    let account = |user: &str| contract::config::Account {
        user: user.into(),
        password: "p".into(),
    };
    let config = contract::config::ProxyConfig {
        listen: "127.0.0.9:8080".parse().unwrap(),
        allowed_peers: vec!["127.0.0.8".parse().unwrap()],
        token: TOKEN.into(),
        engine: contract::galera::Engine::Replication,
        manager: backend("manager"),
        workers: vec![backend("worker-1")],
        database: "filmdb".into(),
        reader: account("app_read"),
        writer: account("app"),
        health_interval_ms: 500,
        max_lag_seconds: 10,
        statement_time_limit_seconds: 5,
        connections_per_backend: 2,
        max_result_rows: 10,
        max_result_bytes: 1024,
        max_recursive_iterations: 10,
        failover: Some(contract::failover::FailoverConfig {
            after_ms: 5000,
            cooldown_seconds: 300,
            account: account("failover"),
            replication: account("repl"),
            semi_sync_timeout_ms: 1000,
            token: "failover-token".into(),
        }),
        fair_share: None,
        operator_token: Some("operator-token".into()),
    };
    let proxy = services::proxy::Proxy::new(&config);
    services::proxy::app(proxy, Guard::new(&config.allowed_peers, &config.token))
}

/// Only the proxy's own host, with the failover token, may ask for a failover; anyone may read
/// what the proxy did.
#[tokio::test]
async fn a_failover_is_asked_from_the_proxys_host_with_its_token() {
    let app = proxy_app();
    let ask = |token: &str| {
        Request::post("/failover")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(r#"{"to": "worker-1"}"#))
            .unwrap()
    };
    let (status, _) = send(&app, "127.0.0.1", ask("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, "127.0.0.8", ask("failover-token")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the trusted host may not ask"
    );
    // Past both: the proxy tries, and says why it could not (nothing listens there).
    let (status, body) = send(&app, "127.0.0.9", ask("failover-token")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("worker-1 does not answer"), "{body}");
    let (status, body) = send(
        &app,
        "127.0.0.1",
        Request::get("/failovers").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history["after_ms"], 5000);
    assert_eq!(history["failovers"], serde_json::json!([]));
}

/// `scale` changes the proxy's servers from the proxy's own host, with the operator token: a
/// new one is served (unhealthy until probed), one left out is gone, and the manager cannot be
/// left out.
#[tokio::test]
async fn the_servers_change_from_the_proxys_host_and_never_lose_the_manager() {
    let app = proxy_app();
    let change = |token: &str, names: &[&str]| {
        let servers: Vec<Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n, "address": "127.0.0.1", "port": 1}))
            .collect();
        Request::post("/backends")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(
                serde_json::json!({ "servers": servers }).to_string(),
            ))
            .unwrap()
    };
    let all = ["manager", "worker-1", "worker-2"];
    let (status, _) = send(&app, "127.0.0.9", change("failover-token", &all)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, "127.0.0.8", change("operator-token", &all)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the trusted host may not");
    let served = |app: Router| async move {
        let (_, body) = send(
            &app,
            "127.0.0.1",
            Request::get("/health").body(Body::empty()).unwrap(),
        )
        .await;
        let health: Value = serde_json::from_str(&body).unwrap();
        health["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_string(),
                    b["healthy"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };

    let (status, body) = send(&app, "127.0.0.9", change("operator-token", &all)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(changed["added"], serde_json::json!(["worker-2"]));
    assert_eq!(changed["removed"], serde_json::json!([]));
    assert_eq!(
        served(app.clone()).await,
        [
            ("manager".to_string(), true),
            ("worker-1".to_string(), true),
            ("worker-2".to_string(), false)
        ],
        "a new server serves nothing until its probes find it eligible (the ones there at \
         start are trusted until their first probe)"
    );

    let (status, body) = send(
        &app,
        "127.0.0.9",
        change("operator-token", &["worker-1", "worker-2"]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("manager takes the writes now"), "{body}");
    let (status, body) = send(
        &app,
        "127.0.0.9",
        change("operator-token", &["manager", "worker-2", "worker-2"]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("worker-2 is named twice"), "{body}");

    let (status, body) = send(
        &app,
        "127.0.0.9",
        change("operator-token", &["manager", "worker-2"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(changed["removed"], serde_json::json!(["worker-1"]));
    assert_eq!(
        changed["servers"],
        serde_json::json!(["manager", "worker-2"])
    );
    assert_eq!(served(app).await.len(), 2);
}
