//! The proxy: the only role with database credentials. Writes go to the manager; reads go where
//! their strategy says, among the workers the background monitor finds healthy.

pub mod backend;
pub mod budget;
pub mod cost;
pub mod digests;
pub mod failover;
pub mod fair_share;
pub mod health;
mod members;
pub mod metrics;
pub mod queue;
mod topology;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::json;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::guard::Guard;
use crate::upstream;
use axum::http::HeaderMap;
use backend::{Access, Backend, QueryError, QueryOutput};
use contract::config::ProxyConfig;
use contract::galera::Engine;
use contract::gtid::GtidPosition;
use contract::wire::{Client, ForwardedQuery, Mode, QueryResponse};
use digests::Digests;
use fair_share::Sharing;
use health::clock;
use members::Members;
use metrics::Metrics;

/// How many query shapes `/digests` lists.
const DIGESTS_LISTED: usize = 50;
/// How many query shapes `/metrics` carries (each is a label set of its own).
const DIGESTS_IN_METRICS: usize = 20;

/// How long a read with `after_gtid` waits for a worker to apply it before it goes to the
/// manager instead.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_millis(500);

/// MariaDB's error when max_statement_time stops a statement.
const STATEMENT_TIMEOUT: u16 = 1969;

pub struct Proxy {
    /// Every server of the cluster and which is the manager now, replaced whole when `scale`
    /// changes the servers (`POST /backends`).
    members: ArcSwap<Members>,
    /// Held by each round of probes and by a change of the servers, so neither sees half of
    /// the other.
    rounds: tokio::sync::Mutex<()>,
    /// What a backend added later is made with.
    config: ProxyConfig,
    engine: Engine,
    metrics: Metrics,
    digests: Digests,
    max_lag_seconds: u64,
    health_interval: Duration,
    /// Replication: who fails over, and how (Galera's writer moves by itself).
    failover: Option<failover::Failover>,
    /// Who may ask for a failover: the proxy's own host (where `cargo xtask failover` asks
    /// from), with the failover token.
    failover_guard: Option<Guard>,
    /// Each client's budget, the backends' fair queues and the cost bound.
    sharing: Option<Sharing>,
    /// Who may change the servers: the proxy's own host, with the operator token.
    operator_guard: Option<Guard>,
}

impl Proxy {
    pub fn new(config: &ProxyConfig) -> Arc<Proxy> {
        let own_host = |token: &String| {
            Guard::new(
                &[config.listen.ip(), std::net::Ipv4Addr::LOCALHOST.into()],
                token,
            )
        };
        Arc::new(Proxy {
            members: ArcSwap::from_pointee(Members::new(
                std::iter::once(&config.manager)
                    .chain(&config.workers)
                    .map(|b| Arc::new(Backend::new(b, config)))
                    .collect(),
                0,
            )),
            rounds: tokio::sync::Mutex::new(()),
            config: config.clone(),
            engine: config.engine,
            metrics: Metrics::default(),
            digests: Digests::default(),
            max_lag_seconds: config.max_lag_seconds,
            health_interval: Duration::from_millis(config.health_interval_ms),
            failover: config
                .failover
                .clone()
                .filter(|_| config.engine == Engine::Replication)
                .map(failover::Failover::new),
            failover_guard: config.failover.as_ref().map(|f| own_host(&f.token)),
            sharing: config.fair_share.as_ref().map(Sharing::new),
            operator_guard: config.operator_token.as_ref().map(own_host),
        })
    }

    /// The servers now (a snapshot: a change of the servers replaces it whole).
    fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Measures every backend once per interval, all at the same time, for as long as the
    /// proxy lives.
    pub fn spawn_monitor(self: &Arc<Proxy>) -> tokio::task::JoinHandle<()> {
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(proxy.health_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _round = proxy.rounds.lock().await;
                let mut probes = tokio::task::JoinSet::new();
                for backend in &proxy.members().backends {
                    let backend = Arc::clone(backend);
                    probes.spawn(async move { backend.probe().await });
                }
                probes.join_all().await;
                proxy.follow_topology();
                proxy.follow_failover();
            }
        })
    }

    /// Where a read of this strategy goes now, leaving out `failed`; with a note when it is not
    /// where the strategy wanted. With `after`, only where that position has been applied: a
    /// worker whose probe saw it (by the strategy), else the most advanced worker if it applies
    /// it within READ_YOUR_WRITES_WAIT, else the manager. Heavy reads are kept apart from
    /// light ones: a heavy read goes to the worker running the most heavy reads (the last one
    /// when none runs any), and light reads go to workers that run none, while one serves.
    async fn choose_read(
        &self,
        mode: Mode,
        failed: Option<&str>,
        after: Option<(&str, &GtidPosition)>,
        heavy: bool,
    ) -> (Arc<Backend>, Option<String>) {
        if mode == Mode::DirectHit {
            return (self.manager(), None);
        }
        let workers = self.workers();
        let mut healthy: Vec<&Arc<Backend>> = workers
            .iter()
            .filter(|w| Some(w.name.as_str()) != failed && w.with_health(|h| h.healthy))
            .collect();
        let mut must_wait = None;
        if let Some((text, position)) = after {
            let applied: Vec<&Arc<Backend>> = healthy
                .iter()
                .copied()
                .filter(|w| w.has_applied(position))
                .collect();
            if applied.is_empty() {
                must_wait = Some(text);
            } else {
                healthy = applied;
            }
        }
        if must_wait.is_none() && healthy.len() > 1 {
            if heavy {
                // One lane: the worker with the most heavy reads (the last one among equals).
                let lane = healthy.iter().copied().max_by_key(|w| w.heavy_reads());
                healthy = lane.into_iter().collect();
            } else {
                let apart: Vec<&Arc<Backend>> = healthy
                    .iter()
                    .copied()
                    .filter(|w| !w.is_running_heavy())
                    .collect();
                if !apart.is_empty() {
                    healthy = apart;
                }
            }
        }
        let chosen = match mode {
            // Nobody is known to have it: wait on the one most likely to have it soon.
            _ if must_wait.is_some() => healthy
                .into_iter()
                .max_by(|a, b| match (a.applied(), b.applied()) {
                    (Some(a), Some(b)) => a.compare(&b).unwrap_or(std::cmp::Ordering::Equal),
                    (a, b) => a.is_some().cmp(&b.is_some()),
                })
                .map(Arc::clone),
            Mode::Customized => {
                // In a random order first, so equally good workers share the reads.
                healthy.shuffle(&mut rand::rng());
                healthy
                    .into_iter()
                    .map(|w| (w, w.expected_ms()))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(w, _)| Arc::clone(w))
            }
            _ => healthy.choose(&mut rand::rng()).map(|w| Arc::clone(w)),
        };
        let Some(worker) = chosen else {
            return (
                self.manager(),
                Some(match self.engine {
                    Engine::Replication => "no healthy worker: served by the manager".to_string(),
                    Engine::Galera => "no other node is Synced: served by the writer".to_string(),
                }),
            );
        };
        if let Some(position) = must_wait {
            if !matches!(
                worker.wait_for(position, READ_YOUR_WRITES_WAIT).await,
                Ok(true)
            ) {
                return (
                    self.manager(),
                    Some(format!(
                        "no worker had applied {position} within {} ms: served by the manager",
                        READ_YOUR_WRITES_WAIT.as_millis()
                    )),
                );
            }
        }
        let note = self
            .manager()
            .with_health(|h| h.down_since)
            .and_then(|since| {
                worker.with_health(|h| h.without_manager).then(|| {
                    format!(
                        "the manager is unreachable since {}: served by {}, which has applied \
                     everything the workers received from it",
                        clock(since),
                        worker.name
                    )
                })
            });
        (worker, note)
    }

    /// Runs the query on `backend`: in its turn and under the cost bound when the proxy shares
    /// the cluster out; adds its time on the server to `server_seconds`.
    async fn run(
        &self,
        backend: &Backend,
        client: &Client,
        access: Access,
        request: &ForwardedQuery,
        server_seconds: &mut f64,
    ) -> Result<QueryOutput, QueryError> {
        match &self.sharing {
            Some(sharing) => {
                let (result, seconds) = sharing.run(backend, client, access, request).await;
                *server_seconds += seconds;
                result
            }
            None => {
                backend
                    .execute(access, &request.template, &request.params)
                    .await
            }
        }
    }

    pub async fn handle(
        &self,
        request: &ForwardedQuery,
        request_id: &str,
        client: &Client,
    ) -> Result<QueryResponse, ApiError> {
        let started = Instant::now();
        let mode = request.mode;
        let admitted = match &self.sharing {
            Some(sharing) => Some(sharing.admit(client, &request.digest).inspect_err(|_| {
                self.metrics.record(mode.as_str(), "over-budget", "-", 0.0);
            })?),
            None => None,
        };
        let mut server_seconds = 0.0;
        let after_text = request.after_gtid.as_deref();
        // Galera: a read after a write waits on its node until the cluster's commits before it
        // are applied there (wsrep_sync_wait), so any node serves it; positions are not compared.
        let causal = self.engine == Engine::Galera && after_text.is_some();
        let after = after_text
            .filter(|_| !causal)
            .and_then(|t| Some((t, t.parse::<GtidPosition>().ok()?)));
        let after = after.as_ref().map(|(t, p)| (*t, p));
        let heavy = self
            .sharing
            .as_ref()
            .is_some_and(|s| s.is_heavy(&request.digest));
        let (backend, mut note) = if mode.is_read() {
            self.choose_read(mode, None, after, heavy).await
        } else {
            (self.manager(), None)
        };
        let access = match mode.is_read() {
            true if causal => Access::CausalRead,
            true => Access::Read,
            false => Access::Write,
        };
        // What goes to a manager known to be down fails at once: a write is never sent
        // elsewhere, and waiting for a connection to time out helps nobody.
        let fast_failed = self.manager_down().filter(|_| self.is_manager(&backend));
        let known_down = fast_failed.is_some();
        let mut result = match fast_failed {
            Some(down) => Err(down),
            None => {
                self.run(&backend, client, access, request, &mut server_seconds)
                    .await
            }
        };
        let mut served_by = backend;

        // A read that could not reach its worker is tried once more elsewhere. A write is
        // never repeated: it may have been applied before the connection broke.
        if let Err(QueryError::Unavailable(problem)) = &result {
            if self.is_manager(&served_by) {
                if !known_down {
                    served_by.mark_failed(problem);
                    if self.engine == Engine::Galera {
                        // Every node holds the data: the next write goes to the next
                        // Synced node at once, not after the next round of probes.
                        self.follow_galera();
                    }
                }
                // Galera: a read of the writer is served by the new one (a write is never
                // repeated).
                let next = self.manager();
                if self.engine == Engine::Galera
                    && mode.is_read()
                    && !Arc::ptr_eq(&next, &served_by)
                {
                    tracing::warn!(request_id, backend = %served_by.name, %problem, "read failed; retrying on the new writer");
                    note = Some(format!(
                        "{} failed ({problem}); retried on {}, the writer now",
                        served_by.name, next.name
                    ));
                    result = self
                        .run(&next, client, access, request, &mut server_seconds)
                        .await;
                    served_by = next;
                }
            } else if mode.is_read() {
                tracing::warn!(request_id, backend = %served_by.name, %problem, "read failed; retrying elsewhere");
                served_by.mark_failed(problem);
                let (retry, retry_note) = self
                    .choose_read(mode, Some(&served_by.name), after, heavy)
                    .await;
                note = Some(format!(
                    "{} failed ({problem}); retried on {}{}",
                    served_by.name,
                    retry.name,
                    retry_note.map(|n| format!("; {n}")).unwrap_or_default()
                ));
                result = match self.manager_down() {
                    Some(down) if self.is_manager(&retry) => Err(down),
                    _ => {
                        self.run(&retry, client, access, request, &mut server_seconds)
                            .await
                    }
                };
                served_by = retry;
            }
        }

        if let (Some(sharing), Some(admitted)) = (&self.sharing, admitted) {
            sharing.settle(client, &request.digest, admitted, server_seconds);
        }
        let seconds = started.elapsed().as_secs_f64();
        let rows = result.as_ref().map_or(0, |out| out.rows.len() as u64);
        let (outcome, response) = match result {
            Ok(out) => {
                let truncated = out.cut.is_some() || out.recursion_stopped.is_some();
                let mut add_note = |said: String| {
                    note = Some(match note.take() {
                        Some(earlier) => format!("{earlier}; {said}"),
                        None => said,
                    });
                };
                if let Some(kept) = out.cut {
                    add_note(format!(
                        "result cut to {kept}: add a LIMIT or a narrower WHERE for the rest"
                    ));
                }
                if let Some(said) = out.recursion_stopped {
                    add_note(format!(
                        "a recursive query was stopped at its bound, so its result is incomplete \
                         (the server: {said}); give the recursion a stop of its own in its WHERE"
                    ));
                }
                (
                    "ok",
                    Ok(QueryResponse {
                        columns: out.columns,
                        rows: out.rows,
                        affected_rows: (!mode.is_read()).then_some(out.affected_rows),
                        served_by: served_by.name.clone(),
                        elapsed_ms: seconds * 1000.0,
                        note,
                        truncated,
                        last_gtid: out.last_gtid,
                    }),
                )
            }
            Err(QueryError::Server { code, message }) if code == STATEMENT_TIMEOUT => (
                "timeout",
                Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "query-timeout",
                    format!("{}: {message}", served_by.name),
                )),
            ),
            Err(QueryError::Server { code, message }) => (
                "query-error",
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "query-failed",
                    format!(
                        "{} refused the query (error {code}): {message}",
                        served_by.name
                    ),
                )),
            ),
            Err(QueryError::TooCostly {
                examined_rows,
                bound,
            }) => {
                tracing::warn!(request_id, examined_rows, bound, digest = %request.digest, "read refused by the cost bound");
                (
                    "too-costly",
                    Err(fair_share::too_costly(examined_rows, bound)),
                )
            }
            Err(QueryError::Request(problem)) => (
                "query-error",
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "query-failed",
                    format!("the query could not be sent: {problem}"),
                )),
            ),
            Err(QueryError::Unavailable(problem))
                if self.engine == Engine::Galera && !mode.is_read() =>
            {
                (
                    "unavailable",
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "writer-unavailable",
                        format!(
                        "the writer ({}) is {problem}; the write was not repeated (it may have \
                         been applied); writes go to {} now",
                        served_by.name,
                        self.manager().name
                    ),
                    )),
                )
            }
            Err(QueryError::Unavailable(problem)) if self.is_manager(&served_by) => (
                "unavailable",
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "manager-unavailable",
                    format!(
                        "the manager ({}) is {problem}; writes and direct-hit reads wait for it \
                         and are never sent to a worker",
                        served_by.name
                    ),
                )),
            ),
            Err(QueryError::Unavailable(problem)) => (
                "unavailable",
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backend-unavailable",
                    format!("{}: {problem}", served_by.name),
                )),
            ),
        };
        self.metrics
            .record(mode.as_str(), outcome, &served_by.name, seconds);
        self.digests.record(
            &request.digest,
            &request.digest_text,
            &served_by.name,
            response.is_ok(),
            rows,
            seconds,
        );
        response
    }

    pub async fn close(&self) {
        for b in &self.members().backends {
            b.close().await;
        }
    }
}

pub fn app(proxy: Arc<Proxy>, guard: Guard) -> Router {
    let mut router = Router::new()
        .route("/query", post(query))
        .route_layer(guard);
    if let Some(operator_guard) = proxy.operator_guard.clone() {
        router = router.merge(
            Router::new()
                .route("/backends", post(members::change))
                .route_layer(operator_guard),
        );
    }
    if let Some(failover_guard) = proxy.failover_guard.clone() {
        router = router.merge(
            Router::new()
                .route("/failover", post(failover::requested))
                .route_layer(failover_guard),
        );
    }
    router
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/digests", get(digests))
        .route("/failovers", get(failover::history))
        .with_state(proxy)
}

async fn query(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ForwardedQuery>,
) -> Result<Json<QueryResponse>, ApiError> {
    let request_id = upstream::request_id(&headers);
    proxy
        .handle(&request, request_id, &upstream::client(&headers))
        .await
        .map(Json)
}

/// The query shapes that took the most time, with their statistics.
async fn digests(State(proxy): State<Arc<Proxy>>) -> Json<Vec<contract::report::DigestStats>> {
    Json(proxy.digests.top(DIGESTS_LISTED))
}

async fn health(State(proxy): State<Arc<Proxy>>) -> Json<serde_json::Value> {
    let members = proxy.members();
    let backends: Vec<_> = members
        .backends
        .iter()
        .map(|b| {
            let h = b.health();
            let r = h.replication.as_ref();
            json!({
                "name": b.name,
                "role": match (proxy.engine, proxy.is_manager(b)) {
                    (Engine::Replication, true) => "manager",
                    (Engine::Replication, false) => "worker",
                    (Engine::Galera, true) => "writer",
                    (Engine::Galera, false) => "node",
                },
                "healthy": h.healthy,
                "latency_ms": h.latency_ms,
                "lag_seconds": r.and_then(|r| r.lag_seconds),
                "problem": h.problem,
                "checks": h.checks,
                "down_since": h.down_since.map(clock),
                "binlog_position": h.binlog.as_ref().map(ToString::to_string),
                "applied_position": r.and_then(|r| r.applied.as_ref()).map(ToString::to_string),
                "serving_without_manager": h.without_manager,
                "semi_sync": h.semi_sync.map(|s| s.as_str()),
                "wsrep": h.wsrep.as_ref().map(|w| json!({
                    "state": w.state,
                    "local_index": w.local_index,
                    "cluster_status": w.cluster_status,
                    "cluster_size": w.cluster_size,
                    "flow_control_paused": w.flow_control_paused,
                    "recv_queue": w.recv_queue,
                })),
            })
        })
        .collect();
    Json(json!({
        "status": "ok",
        "service": "proxy",
        "engine": proxy.engine.as_str(),
        "writer": proxy.manager().name,
        "backends": backends,
    }))
}

async fn metrics_text(State(proxy): State<Arc<Proxy>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        proxy.metrics.render()
            + &proxy.topology_metrics()
            + &proxy.failover_metrics()
            + &proxy
                .sharing
                .as_ref()
                .map(|sharing| sharing.render(&proxy.members().backends))
                .unwrap_or_default()
            + &digests::render(&proxy.digests.top(DIGESTS_IN_METRICS)),
    )
}
