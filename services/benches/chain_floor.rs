//! The floor under the chain's cost on this machine: three services that do nothing but relay
//! (the gatekeeper's and trusted host's JSON in, the same client out, the proxy's place taken
//! by one that answers a canned row), each its own process on its own loopback address, as the
//! real ones are. What the real chain spends above these figures is the services' own work;
//! what it spends at them is what three HTTP hops cost here, whatever the services do.
//!
//! `cargo bench -p services --bench chain_floor` prints requests/s and the three relays' CPU per
//! request under 8 clients, and the p50 from one client, beside a direct measure of nothing.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use contract::report::{Report, Workload};
use contract::wire::Mode;
use services::extract::ApiJson;
use services::loadgen::{self, Plan, Target};
use services::upstream::{self, Upstream};

/// The loopback addresses the bench takes: the relays at .1 and .2, the end at .3, the load
/// generator at .9.
const PREFIX: &str = "127.0.77";
const PORT: u16 = 8080;
/// A point read's answer as the proxy gives it.
const ANSWER: &str = r#"{"columns":["film_id","title","rental_rate","length"],"rows":[[17,"Arabia Truman 17","3.99",171]],"served_by":"manager","elapsed_ms":0.3}"#;
const ROLE_VAR: &str = "CHAIN_FLOOR_ROLE";

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

async fn end(ApiJson(_): ApiJson<serde_json::Value>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
        .into_response()
}

fn address(host: u8) -> IpAddr {
    format!("{PREFIX}.{host}")
        .parse()
        .expect("a loopback address")
}

/// One hop, in this process: "relay <n>" forwards to hop n + 1, "end" answers.
async fn serve_role(role: &str) -> Result<()> {
    let (listen, app) = match role.split_once(' ') {
        Some(("relay", n)) => {
            let n: u8 = n.parse()?;
            let next = Upstream::new(
                &format!("http://{}:{PORT}", address(n + 1)),
                "floor",
                address(n),
                Duration::from_secs(10),
                8 << 20,
            )?;
            let app = Router::new()
                .route("/api/query", post(relay))
                .route("/query", post(relay))
                .with_state(Arc::new(next));
            (address(n), app)
        }
        None if role == "end" => (address(3), Router::new().route("/query", post(end))),
        _ => bail!("unknown role {role:?}"),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(listen, PORT))
        .await
        .with_context(|| format!("binding {listen}:{PORT}"))?;
    services::serve::serve_until(
        listener,
        app,
        Duration::from_secs(10),
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// The hops, each a process of this program; killed when dropped.
struct Hops(Vec<Child>);

impl Drop for Hops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

async fn load(concurrency: usize, seconds: u64) -> Result<Report> {
    loadgen::run(&Plan {
        target: Target::Gatekeeper {
            url: format!("http://{}:{PORT}", address(1)),
            mode: Mode::DirectHit,
            from: Some(address(9)),
        },
        workload: Workload::Point,
        concurrency,
        duration: Duration::from_secs(seconds),
        films: 1000,
    })
    .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        return serve_role(&role).await;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would run this too: only a bench
    // run measures.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let me = std::env::current_exe()?;
    let mut hops = Hops(Vec::new());
    for role in ["end", "relay 2", "relay 1"] {
        hops.0.push(Command::new(&me).env(ROLE_VAR, role).spawn()?);
    }
    // Until the first relay answers through the others.
    let mut ready = false;
    for _ in 0..100 {
        if load(1, 1)
            .await
            .is_ok_and(|r| r.error_count() == 0 && r.requests > 0)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        bail!("the relays did not answer on {PREFIX}.1-3:{PORT}");
    }
    let pids: Vec<u32> = hops.0.iter().map(Child::id).collect();
    let spent = || -> Result<f64> { pids.iter().map(|p| cpu_seconds(*p)).sum() };
    let before = spent()?;
    let busy = load(8, 10).await?;
    let cpu_us = (spent()? - before) * 1e6 / busy.requests.max(1) as f64;
    let one = load(1, 5).await?;
    println!(
        "three relays, 8 clients: {:.0} requests/s, {cpu_us:.0} µs of CPU per request (the three together), {} errors",
        busy.throughput_rps,
        busy.error_count()
    );
    println!(
        "three relays, 1 client: p50 {:.3} ms, p99 {:.3} ms",
        one.latency_ms.p50, one.latency_ms.p99
    );
    Ok(())
}
