//! Failover by the proxy, which watches every server and routes every write. After each round of
//! probes it asks contract::failover whether the manager is gone for good (unreachable for long
//! enough, and every reachable worker lost it as long); if so, it promotes the worker that has
//! applied the most and points the others at it. A person's failover (`cargo xtask failover`,
//! `POST /failover`) takes the same path, one at a time with the proxy's own. A former manager
//! that answers again becomes a worker of the new one, unless it holds writes nobody else has:
//! then it stays fenced (read-only, as every server starts) until `cargo xtask repair` rebuilds
//! it. Every statement runs as the failover account, which may do only this.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures_util::future::join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use serde::Deserialize;

use super::backend::Backend;
use super::Proxy;
use crate::error::ApiError;
use crate::extract::ApiJson;
use contract::config::BackendConfig;
use contract::failover::{
    self, FailoverConfig, FailoverEvent, FailoverHistory, Rejoin, Verdict, WorkerSeen,
};
use contract::gtid::GtidPosition;

/// How long a statement of a failover may take to connect and run.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failover tries to reach (and fence) a manager the probes lost.
const LOST_MANAGER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a worker gets to apply what it received before the promotion goes on without it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a failed automatic failover the proxy tries again.
const RETRY_AFTER: Duration = Duration::from_secs(15);
/// A verdict said again while it stays the same, at most this often.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Failover {
    config: FailoverConfig,
    /// One failover or rejoin at a time, whoever asked.
    busy: tokio::sync::Mutex<()>,
    state: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    history: FailoverHistory,
    last_failover: Option<SystemTime>,
    /// The verdict last logged, and when.
    logged: Option<(String, SystemTime)>,
    /// When an automatic failover last failed: the next waits RETRY_AFTER.
    failed_attempt: Option<SystemTime>,
    /// Verdicts reached, by kind.
    counts: std::collections::BTreeMap<&'static str, u64>,
    failovers: u64,
}

/// What a person asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The worker to promote; the one that has applied the most when not given.
    pub to: Option<String>,
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Failover {
    pub fn new(config: FailoverConfig) -> Failover {
        let history = FailoverHistory {
            after_ms: config.after_ms,
            cooldown_seconds: config.cooldown_seconds,
            ..FailoverHistory::default()
        };
        Failover {
            config,
            busy: tokio::sync::Mutex::new(()),
            state: Mutex::new(Record {
                history,
                ..Record::default()
            }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until no failover or rejoin runs, and keeps them from starting while held.
    pub(super) async fn wait_idle(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.busy.lock().await
    }

    pub fn history(&self) -> FailoverHistory {
        self.with_state(|s| s.history.clone())
    }

    /// A connection to a backend as the failover account.
    async fn connect(&self, target: &BackendConfig) -> Result<Conn, String> {
        self.connect_within(target, STATEMENT_TIMEOUT).await
    }

    async fn connect_within(
        &self,
        target: &BackendConfig,
        limit: Duration,
    ) -> Result<Conn, String> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(target.address.clone())
            .tcp_port(target.port)
            .user(Some(self.config.account.user.clone()))
            .pass(Some(self.config.account.password.clone()))
            .prefer_socket(false);
        match tokio::time::timeout(limit, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(format!("{}: {e}", target.name)),
            Err(_) => Err(format!("{}: no connection within {:?}", target.name, limit)),
        }
    }

    /// Runs statements on a backend, as the failover account.
    async fn run(&self, target: &BackendConfig, sql: &str) -> Result<(), String> {
        self.run_connecting_within(target, sql, STATEMENT_TIMEOUT)
            .await
    }

    /// Runs statements on a backend, giving up on connecting after `limit`.
    async fn run_connecting_within(
        &self,
        target: &BackendConfig,
        sql: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let mut conn = self.connect_within(target, limit).await?;
        let ran = tokio::time::timeout(STATEMENT_TIMEOUT, conn.query_drop(sql)).await;
        conn.disconnect().await.ok();
        match ran {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}", target.name)),
            Err(_) => Err(format!("{}: no answer within 5 s", target.name)),
        }
    }

    /// Stops a worker receiving and waits until it has applied all it received; returns what
    /// it has applied then.
    async fn drain(&self, target: &BackendConfig) -> Result<GtidPosition, String> {
        let name = &target.name;
        let mut conn = self.connect(target).await?;
        let outcome = async {
            conn.query_drop(failover::STOP_RECEIVING)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
            loop {
                let applied: Option<String> = conn
                    .query_first("SELECT @@gtid_slave_pos")
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                let status: Option<Row> = conn
                    .query_first("SHOW SLAVE STATUS")
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                let applied: GtidPosition = applied.unwrap_or_default().parse()?;
                let received: Option<GtidPosition> = status
                    .and_then(|row| row.get_opt::<Option<String>, _>("Gtid_IO_Pos")?.ok()?)
                    .and_then(|p| p.parse().ok());
                if received.as_ref().is_none_or(|r| applied.covers(r)) {
                    return Ok(applied);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "{name} did not apply what it received within {} s (applied {applied})",
                        DRAIN_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        .await;
        conn.disconnect().await.ok();
        outcome
    }
}

impl Proxy {
    /// After a round of probes: whether the manager is gone for good, and what to do about
    /// it; and whether a former manager that answers again can rejoin.
    pub(super) fn follow_failover(self: &Arc<Proxy>) {
        let Some(failover) = &self.failover else {
            return;
        };
        // A failover is running: it says how it ends.
        if failover.busy.try_lock().is_err() {
            return;
        }
        let members = self.members();
        let manager = members.manager();
        let workers: Vec<WorkerSeen> = members
            .workers()
            .filter(|w| !self.is_fenced(w))
            .map(|w| {
                w.with_health(|h| WorkerSeen {
                    name: w.name.clone(),
                    answers: h.down_since.is_none(),
                    lost_manager_since: h.lost_manager_since,
                })
            })
            .collect();
        let last = failover.with_state(|s| s.last_failover);
        let verdict = failover::decide(
            SystemTime::now(),
            &failover.config,
            &manager.name,
            manager.with_health(|h| h.down_since),
            &workers,
            last,
        );
        self.say(&verdict);
        let retry_at = failover
            .with_state(|s| s.failed_attempt)
            .map(|at| at + RETRY_AFTER);
        let may_try = retry_at.is_none_or(|at| SystemTime::now() >= at);
        if let (Verdict::FailOver(reason), true) = (verdict, may_try) {
            let proxy = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = proxy.fail_over(None, true, reason).await {
                    tracing::error!(
                        problem = %e,
                        retry_in_seconds = RETRY_AFTER.as_secs(),
                        "the automatic failover did not complete"
                    );
                    if let Some(failover) = &proxy.failover {
                        failover.with_state(|s| s.failed_attempt = Some(SystemTime::now()));
                    }
                }
            });
        }
        // Off (a person fails over and repairs): nothing happens by itself.
        if failover.config.after_ms > 0 {
            self.rejoin_former_managers();
        }
    }

    /// Logs and counts a verdict: each change at once, the same one again every few seconds.
    fn say(&self, verdict: &Verdict) {
        let Some(failover) = &self.failover else {
            return;
        };
        let Some(reason) = verdict.reason() else {
            return;
        };
        let now = SystemTime::now();
        let kind = verdict.kind();
        let log = failover.with_state(|s| {
            *s.counts.entry(kind).or_default() += 1;
            s.history.last_verdict = Some((kind.to_string(), reason.to_string(), now_text()));
            let repeat = s.logged.as_ref().is_some_and(|(k, at)| {
                k == kind && now.duration_since(*at).unwrap_or_default() < REPEAT_LOG_EVERY
            });
            if !repeat {
                s.logged = Some((kind.to_string(), now));
            }
            !repeat
        });
        if log {
            match verdict {
                Verdict::Wait(_) => tracing::info!(verdict = kind, reason, "failover"),
                _ => tracing::warn!(verdict = kind, reason, "failover"),
            }
        }
    }

    fn is_fenced(&self, backend: &Backend) -> bool {
        self.failover
            .as_ref()
            .is_some_and(|f| f.with_state(|s| s.history.fenced.contains(&backend.name)))
    }

    /// Promotes a worker: `to`, or the one that has applied the most once every worker that
    /// answers has applied all it received. The manager is fenced first if it answers (a
    /// planned switchover); the other workers replicate from the new one; writes go there.
    pub async fn fail_over(
        &self,
        to: Option<&str>,
        automatic: bool,
        reason: String,
    ) -> Result<FailoverEvent, String> {
        let failover = self
            .failover
            .as_ref()
            .ok_or("this proxy has no failover account (a Galera cluster needs none)")?;
        let _busy = failover
            .busy
            .try_lock()
            .map_err(|_| "a failover is already running".to_string())?;
        // The servers cannot change while a failover runs (a change waits for `busy`).
        let members = self.members();
        let old = members.writer.load(Ordering::Relaxed);
        let old_name = members.backends[old].name.clone();
        if let Some(name) = to {
            let known = members.index_of(name).filter(|&i| i != old);
            if known.is_none() {
                return Err(format!("{name} is not a worker of this proxy"));
            }
        }
        // A manager the probes lost is tried briefly: it rarely answers, and writes wait.
        let connect_limit = if members.backends[old].is_reachable() {
            STATEMENT_TIMEOUT
        } else {
            LOST_MANAGER_CONNECT_TIMEOUT
        };
        let old_answered = match failover
            .run_connecting_within(
                &members.backends[old].target,
                failover::FENCE,
                connect_limit,
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(problem = %e, "the old manager does not answer: it starts read-only whenever it comes back");
                false
            }
        };
        // Drained at once: stopping a receiver that is still connecting to a lost manager
        // takes a while on each.
        let drainable: Vec<usize> = (0..members.backends.len())
            .filter(|&i| {
                let worker = &members.backends[i];
                i != old && !self.is_fenced(worker) && worker.is_reachable()
            })
            .collect();
        let drained = join_all(
            drainable
                .iter()
                .map(|&i| failover.drain(&members.backends[i].target)),
        )
        .await;
        let mut candidates: Vec<(String, GtidPosition)> = Vec::new();
        let mut indexes = Vec::new();
        for (i, outcome) in drainable.into_iter().zip(drained) {
            match outcome {
                Ok(position) => {
                    candidates.push((members.backends[i].name.clone(), position));
                    indexes.push(i);
                }
                Err(e) => tracing::warn!(problem = %e, "a worker is left out of the failover"),
            }
        }
        let chosen = match to {
            Some(name) => candidates
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| format!("{name} does not answer: it cannot be promoted"))?,
            None => failover::most_advanced(&candidates)?,
        };
        let (chosen_name, position) = candidates[chosen].clone();
        let chosen_index = indexes[chosen];
        if let Err(e) = failover
            .run(
                &members.backends[chosen_index].target,
                &failover::promote(failover.config.semi_sync_timeout_ms),
            )
            .await
        {
            // The workers drained for it receive again from wherever they did.
            for &i in &indexes {
                failover
                    .run(&members.backends[i].target, "START SLAVE;")
                    .await
                    .ok();
            }
            return Err(format!("promoting {chosen_name}: {e}"));
        }
        let event = FailoverEvent {
            at: now_text(),
            from: old_name,
            to: chosen_name,
            position: position.to_string(),
            old_manager_answered: old_answered,
            automatic,
            reason,
        };
        // Writes go to the new manager from here, and the history says so from the same moment:
        // a client whose write succeeded finds the failover that made it possible.
        members.writer.store(chosen_index, Ordering::Relaxed);
        failover.with_state(|s| {
            s.last_failover = Some(SystemTime::now());
            s.failovers += 1;
            s.history.failovers.push(event.clone());
        });
        tracing::warn!(
            from = %event.from,
            to = %event.to,
            position = %event.position,
            automatic,
            reason = %event.reason,
            "failed over: writes go to the new manager"
        );
        let target = &members.backends[chosen_index].target;
        let repoint = failover::replicate_from(
            &target.address,
            target.port,
            &failover.config.replication.password,
        );
        for &i in indexes.iter().filter(|&&i| i != chosen_index) {
            if let Err(e) = failover.run(&members.backends[i].target, &repoint).await {
                tracing::warn!(problem = %e, "a worker was not pointed at the new manager; `cargo xtask repair` does it");
            }
        }
        Ok(event)
    }

    /// A former manager that answers again and replicates from nobody (back read-only, or cut
    /// off from everyone and still writable): it is fenced at once, then becomes a worker of the
    /// manager when its binary log holds nothing beyond what the promoted worker had, else it
    /// stays fenced (it holds writes nobody else has).
    fn rejoin_former_managers(self: &Arc<Proxy>) {
        let Some(failover) = &self.failover else {
            return;
        };
        let history = failover.history();
        let members = self.members();
        // A fenced one that replicates again was rebuilt (`cargo xtask repair`): it serves again.
        for name in &history.fenced {
            let Some(i) = members.index_of(name) else {
                continue;
            };
            let replicating = members.backends[i].with_health(|h| {
                h.down_since.is_none()
                    && h.replication
                        .as_ref()
                        .is_some_and(|r| r.io_running && r.sql_running)
            });
            if replicating {
                tracing::warn!(host = %name, "a fenced former manager replicates again: it was rebuilt");
                failover.with_state(|s| {
                    s.history.fenced.retain(|f| f != name);
                    s.history.rejoins.push(Rejoin {
                        at: now_text(),
                        host: name.clone(),
                        rejoined: true,
                        reason: "it was rebuilt and replicates from the manager".to_string(),
                    });
                });
            }
        }
        for (i, backend) in members.backends.iter().enumerate() {
            let Some(event) = history.last_from(&backend.name) else {
                continue;
            };
            let settled = history.fenced.contains(&backend.name)
                || history
                    .rejoins
                    .iter()
                    .any(|r| r.host == backend.name && r.at >= event.at);
            // Answering and replicating from nobody: back, read-only, or never stopped
            // (cut off from everyone, and maybe still writable).
            let waiting =
                backend.with_health(|h| h.down_since.is_none() && h.replication.is_none());
            if settled || !waiting || i == members.writer.load(Ordering::Relaxed) {
                continue;
            }
            let proxy = Arc::clone(self);
            let backend = Arc::clone(backend);
            tokio::spawn(async move { proxy.rejoin(&backend).await });
        }
    }

    async fn rejoin(&self, backend: &Backend) {
        let Some(failover) = &self.failover else {
            return;
        };
        let Ok(_busy) = failover.busy.try_lock() else {
            return;
        };
        let history = failover.history();
        let Some(event) = history.last_from(&backend.name) else {
            return;
        };
        // Fenced first, whatever it holds: a former manager that was only cut off from
        // everyone may still be writable, and two writers must never be.
        if let Err(e) = failover.run(&backend.target, failover::FENCE).await {
            tracing::warn!(problem = %e, "a former manager could not be fenced; retried after the next probes");
            return;
        }
        let promoted_at: GtidPosition = event.position.parse().unwrap_or_default();
        let holds = backend
            .with_health(|h| h.binlog.clone())
            .unwrap_or_default();
        let manager = self.manager();
        let (rejoined, reason) = if promoted_at.covers(&holds) {
            let target = &manager.target;
            let sql = format!(
                "{} {}",
                failover::BEFORE_REJOIN,
                failover::replicate_from(
                    &target.address,
                    target.port,
                    &failover.config.replication.password
                )
            );
            match failover.run(&backend.target, &sql).await {
                Ok(()) => (
                    true,
                    format!(
                        "it held nothing beyond {promoted_at}: it replicates from {}",
                        manager.name
                    ),
                ),
                Err(e) => {
                    tracing::warn!(problem = %e, "a former manager could not rejoin; retried after the next probes");
                    return;
                }
            }
        } else {
            (
                false,
                format!(
                    "it holds {holds}, beyond what {} had when promoted ({promoted_at}): it \
                     stays fenced until `cargo xtask repair` rebuilds it",
                    event.to
                ),
            )
        };
        tracing::warn!(host = %backend.name, rejoined, reason, "a former manager answers again");
        failover.with_state(|s| {
            if !rejoined {
                s.history.fenced.push(backend.name.clone());
            }
            s.history.rejoins.push(Rejoin {
                at: now_text(),
                host: backend.name.clone(),
                rejoined,
                reason,
            });
        });
    }

    /// The failover's gauges and counters, with the last verdict's reason.
    pub(super) fn failover_metrics(&self) -> String {
        let Some(failover) = &self.failover else {
            return String::new();
        };
        failover.with_state(|s| {
            let mut out = String::from(
                "# HELP proxy_failover_verdicts_total Rounds of probes after which the proxy \
                 judged the manager gone, by what it decided.\n\
                 # TYPE proxy_failover_verdicts_total counter\n",
            );
            for (kind, n) in &s.counts {
                out += &format!("proxy_failover_verdicts_total{{verdict=\"{kind}\"}} {n}\n");
            }
            out += &format!(
                "# HELP proxy_failovers_total Failovers done.\n# TYPE proxy_failovers_total \
                 counter\nproxy_failovers_total {}\n",
                s.failovers
            );
            if let Some((kind, reason, at)) = &s.history.last_verdict {
                let reason = reason.replace('\\', "\\\\").replace('"', "\\\"");
                out += &format!(
                    "# HELP proxy_failover_last_verdict The last verdict on a manager that was \
                     gone, with its reason.\n# TYPE proxy_failover_last_verdict gauge\n\
                     proxy_failover_last_verdict{{verdict=\"{kind}\",at=\"{at}\",reason=\"{reason}\"}} 1\n"
                );
            }
            out += "# HELP proxy_fenced Former managers left fenced (they hold writes nobody \
                    else has).\n# TYPE proxy_fenced gauge\n";
            for name in &s.history.fenced {
                out += &format!("proxy_fenced{{backend=\"{name}\"}} 1\n");
            }
            out
        })
    }
}

/// `GET /failovers`: the settings, every failover and rejoin, and the last verdict.
pub async fn history(State(proxy): State<Arc<Proxy>>) -> Json<FailoverHistory> {
    Json(
        proxy
            .failover
            .as_ref()
            .map(Failover::history)
            .unwrap_or_default(),
    )
}

/// `POST /failover`: a person's failover (`cargo xtask failover`), past the cool-down.
pub async fn requested(
    State(proxy): State<Arc<Proxy>>,
    ApiJson(request): ApiJson<FailoverRequest>,
) -> Result<Json<FailoverEvent>, ApiError> {
    let reason = match &request.to {
        Some(to) => format!("a person asked for {to}"),
        None => "a person asked".to_string(),
    };
    proxy
        .fail_over(request.to.as_deref(), false, reason)
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "failover-failed", e))
}
