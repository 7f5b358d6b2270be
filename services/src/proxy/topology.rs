//! Which server is the manager, as the proxy follows it: after every round of probes, the one
//! server that takes writes and replicates from nobody. Each worker is then judged against it
//! (health.rs has the rules). A failover needs no restart of the proxy, and an old manager
//! that comes back read-only (fenced) never takes writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::backend::{Backend, QueryError};
use super::health::{clock, ManagerView, SemiSync};
use super::Proxy;

impl Proxy {
    /// The manager now: where writes and direct-hit reads go.
    pub(super) fn manager(&self) -> &Arc<Backend> {
        &self.backends[self.writer.load(Ordering::Relaxed)]
    }

    pub(super) fn is_manager(&self, backend: &Backend) -> bool {
        std::ptr::eq(self.manager().as_ref(), backend)
    }

    /// Every server but the manager.
    pub(super) fn workers(&self) -> impl Iterator<Item = &Arc<Backend>> {
        let writer = self.writer.load(Ordering::Relaxed);
        self.backends
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != writer)
            .map(|(_, b)| b)
    }

    /// After every round of probes: the manager is the one server that takes writes and
    /// replicates from nobody (a promoted worker, after `cargo xtask failover`); while there is
    /// none, or more than one, it stays where it was (an old manager that comes back starts
    /// read-only, fenced). Then each worker is judged against it.
    pub(super) fn follow_topology(&self) {
        let writable: Vec<usize> = (0..self.backends.len())
            .filter(|&i| self.backends[i].is_writable())
            .collect();
        let current = self.writer.load(Ordering::Relaxed);
        if let [only] = writable[..] {
            if only != current {
                tracing::warn!(
                    from = %self.backends[current].name,
                    to = %self.backends[only].name,
                    "the manager moved: writes go to the new one"
                );
                self.writer.store(only, Ordering::Relaxed);
            }
        }
        let manager = self.manager();
        manager.judge_as_manager();
        let view = ManagerView {
            reachable: manager.is_reachable(),
            received: self
                .workers()
                .filter_map(|w| w.received())
                .reduce(|a, b| a.merged(&b)),
        };
        for worker in self.workers() {
            worker.judge(self.max_lag_seconds, &view);
        }
    }

    /// Gauges of the cluster as the monitor sees it: each backend's health, whether a worker
    /// serves without its manager, and the manager's semi-synchronous replication.
    pub(super) fn topology_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP proxy_backend_healthy Whether a backend may serve (1) or is left out (0).\n\
             # TYPE proxy_backend_healthy gauge\n",
        );
        for b in self.backends() {
            let healthy = b.with_health(|h| h.healthy);
            out += &format!(
                "proxy_backend_healthy{{backend=\"{}\"}} {}\n",
                b.name,
                u8::from(healthy)
            );
        }
        out += "# HELP proxy_semi_sync The manager's semi-synchronous replication: 1 in the \
                state named, 0 in the others.\n# TYPE proxy_semi_sync gauge\n";
        let state = self.manager().with_health(|h| h.semi_sync);
        for s in [SemiSync::On, SemiSync::FellBack, SemiSync::Disabled] {
            out += &format!(
                "proxy_semi_sync{{state=\"{}\"}} {}\n",
                s.as_str(),
                u8::from(state == Some(s))
            );
        }
        out
    }

    /// The manager's outage, if the monitor or a query found it unreachable.
    pub(super) fn manager_down(&self) -> Option<QueryError> {
        self.manager().with_health(|h| {
            h.down_since.map(|since| {
                QueryError::Unavailable(format!(
                    "unreachable since {}: {}",
                    clock(since),
                    h.problem.as_deref().unwrap_or("no answer")
                ))
            })
        })
    }
}
