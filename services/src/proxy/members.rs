//! The cluster's servers as the proxy serves them, and how `cargo xtask scale` changes them
//! while it serves (`POST /backends`): a new server is probed like the others and gets reads
//! once its probes find it eligible (replicating within the lag bound; Galera: Synced); a
//! server left out gets nothing new, and is closed once what was sent to it has finished.
//! The set is replaced whole, so a request sees either the old servers or the new ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use contract::config::{BackendSet, BackendsChanged};

use super::backend::Backend;
use super::Proxy;
use crate::error::ApiError;
use crate::extract::ApiJson;

/// How often a server left out is looked at until what was sent to it has finished.
const FINISHED_POLL: Duration = Duration::from_millis(50);

pub struct Members {
    /// Every server of the cluster.
    pub backends: Vec<Arc<Backend>>,
    /// Which of them is the manager now: the monitor follows the servers' own state (the
    /// one writable server that replicates from nobody), so a failover needs no restart.
    pub writer: AtomicUsize,
}

impl Members {
    pub fn new(backends: Vec<Arc<Backend>>, writer: usize) -> Members {
        Members {
            backends,
            writer: AtomicUsize::new(writer),
        }
    }

    pub fn manager(&self) -> &Arc<Backend> {
        &self.backends[self.writer.load(Ordering::Relaxed)]
    }

    /// Every server but the manager.
    pub fn workers(&self) -> impl Iterator<Item = &Arc<Backend>> {
        let writer = self.writer.load(Ordering::Relaxed);
        self.backends
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != writer)
            .map(|(_, b)| b)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

impl Proxy {
    /// Serves `set` from now on: the servers that stay keep their health and connections, the
    /// new ones start unhealthy until probed, and the ones left out are closed once every
    /// query sent to them has answered (at most the statement time limit and a margin). Waits
    /// for a running failover and a running round of probes; the manager cannot be left out.
    pub async fn change_backends(&self, set: &BackendSet) -> Result<BackendsChanged, ApiError> {
        let refused = |message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-backends", message)
        };
        let mut names: Vec<&str> = set.servers.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(refused(format!("{} is named twice", twice[0])));
        }
        let _failover = match &self.failover {
            Some(failover) => Some(failover.wait_idle().await),
            None => None,
        };
        let round = self.rounds.lock().await;
        let current = self.members();
        let writer = current.manager().name.clone();
        let Some(writer_index) = set.servers.iter().position(|s| s.name == writer) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "writer-kept",
                format!(
                    "{writer} takes the writes now: it cannot be left out; move the writes to \
                     another server first (`cargo xtask failover`)"
                ),
            ));
        };
        let mut backends = Vec::with_capacity(set.servers.len());
        let mut added = Vec::new();
        for server in &set.servers {
            match current.backends.iter().find(|b| b.name == server.name) {
                Some(known) if known.target == *server => backends.push(Arc::clone(known)),
                Some(known) => {
                    return Err(refused(format!(
                        "{} is served at {}:{}, not {}:{}: leave it out first, then add it \
                         again",
                        server.name,
                        known.target.address,
                        known.target.port,
                        server.address,
                        server.port
                    )))
                }
                None => {
                    backends.push(Arc::new(Backend::new(server, &self.config).until_probed()));
                    added.push(server.name.clone());
                }
            }
        }
        let left: Vec<Arc<Backend>> = current
            .backends
            .iter()
            .filter(|b| !set.servers.iter().any(|s| s.name == b.name))
            .cloned()
            .collect();
        drop(current);
        self.members
            .store(Arc::new(Members::new(backends, writer_index)));
        drop(round);
        tracing::warn!(?added, removed = ?left.iter().map(|b| &b.name).collect::<Vec<_>>(), "the cluster's servers changed");
        let finish_within = Duration::from_secs(self.config.statement_time_limit_seconds + 5);
        let mut removed = Vec::new();
        for backend in left {
            let deadline = tokio::time::Instant::now() + finish_within;
            // Ours is the last reference once no request holds it (nor the old set).
            while Arc::strong_count(&backend) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(FINISHED_POLL).await;
            }
            if Arc::strong_count(&backend) > 1 {
                tracing::warn!(backend = %backend.name, "queries sent to a server left out did not finish in time: closed anyway");
            }
            backend.close().await;
            removed.push(backend.name.clone());
        }
        Ok(BackendsChanged {
            servers: self
                .members()
                .backends
                .iter()
                .map(|b| b.name.clone())
                .collect(),
            added,
            removed,
        })
    }
}

/// `POST /backends`: `cargo xtask scale`'s new set of servers.
pub async fn change(
    State(proxy): State<Arc<Proxy>>,
    ApiJson(set): ApiJson<BackendSet>,
) -> Result<Json<BackendsChanged>, ApiError> {
    proxy.change_backends(&set).await.map(Json)
}
