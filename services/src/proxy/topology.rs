//! Which server is the manager, as the proxy follows it: after every round of probes, the one
//! server that takes writes and replicates from nobody. Each worker is then judged against it
//! (health.rs has the rules). A failover needs no restart of the proxy, and an old manager
//! that comes back read-only (fenced) never takes writes.
//!
//! Galera: every Synced node of the primary component may serve; the writer is chosen among
//! them like galeramon does (contract::galera), and replaced as soon as it stops serving.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use contract::galera::{self, Engine};

use super::backend::{Backend, QueryError};
use super::health::{clock, ManagerView, SemiSync};
use super::Proxy;

impl Proxy {
    /// The manager now: where writes and direct-hit reads go.
    pub(super) fn manager(&self) -> Arc<Backend> {
        Arc::clone(self.members.load().manager())
    }

    pub(super) fn is_manager(&self, backend: &Backend) -> bool {
        std::ptr::eq(self.members.load().manager().as_ref(), backend)
    }

    /// Every server but the manager.
    pub(super) fn workers(&self) -> Vec<Arc<Backend>> {
        self.members.load().workers().cloned().collect()
    }

    /// After every round of probes: the manager is the one server that takes writes and
    /// replicates from nobody (a promoted worker, after `cargo xtask failover`); while there is
    /// none, or more than one, it stays where it was (an old manager that comes back starts
    /// read-only, fenced). Then each worker is judged against it.
    pub(super) fn follow_topology(&self) {
        if self.engine == Engine::Galera {
            return self.follow_galera();
        }
        let members = self.members();
        let writable: Vec<usize> = (0..members.backends.len())
            .filter(|&i| members.backends[i].is_writable())
            .collect();
        let current = members.writer.load(Ordering::Relaxed);
        if let [only] = writable[..] {
            if only != current {
                tracing::warn!(
                    from = %members.backends[current].name,
                    to = %members.backends[only].name,
                    "the manager moved: writes go to the new one"
                );
                members.writer.store(only, Ordering::Relaxed);
            }
        }
        let manager = members.manager();
        manager.judge_as_manager();
        let view = ManagerView {
            reachable: manager.is_reachable(),
            received: members
                .workers()
                .filter_map(|w| w.received())
                .reduce(|a, b| a.merged(&b)),
        };
        for worker in members.workers() {
            worker.judge(self.max_lag_seconds, &view);
        }
    }

    /// Galera: each node serves while it is Synced in the primary component; the writer stays
    /// while it serves, else the serving node with the lowest wsrep_local_index takes over.
    pub(super) fn follow_galera(&self) {
        let members = self.members();
        for node in &members.backends {
            node.judge_node();
        }
        let states: Vec<_> = members.backends.iter().map(|b| b.wsrep()).collect();
        let current = members.writer.load(Ordering::Relaxed);
        match galera::choose_writer(current, &states) {
            Some(next) if next != current => {
                tracing::warn!(
                    from = %members.backends[current].name,
                    to = %members.backends[next].name,
                    "the writer stopped serving: writes go to the next Synced node"
                );
                members.writer.store(next, Ordering::Relaxed);
            }
            Some(_) => {}
            None => tracing::warn!("no Galera node is Synced in the primary component"),
        }
    }

    /// Gauges of the cluster as the monitor sees it: each backend's health, whether a worker
    /// serves without its manager, and the manager's semi-synchronous replication.
    pub(super) fn topology_metrics(&self) -> String {
        let mut out = String::from(
            "# HELP proxy_backend_healthy Whether a backend may serve (1) or is left out (0).\n\
             # TYPE proxy_backend_healthy gauge\n",
        );
        let members = self.members();
        for b in &members.backends {
            let healthy = b.with_health(|h| h.healthy);
            out += &format!(
                "proxy_backend_healthy{{backend=\"{}\"}} {}\n",
                b.name,
                u8::from(healthy)
            );
        }
        out += "# HELP proxy_semi_sync The manager's semi-synchronous replication: 1 in the \
                state named, 0 in the others.\n# TYPE proxy_semi_sync gauge\n";
        let state = members.manager().with_health(|h| h.semi_sync);
        for s in [SemiSync::On, SemiSync::FellBack, SemiSync::Disabled] {
            out += &format!(
                "proxy_semi_sync{{state=\"{}\"}} {}\n",
                s.as_str(),
                u8::from(state == Some(s))
            );
        }
        if self.engine == Engine::Galera {
            out += "# HELP proxy_galera_writer Whether a node takes the writes (1) or not (0).\n\
                    # TYPE proxy_galera_writer gauge\n";
            for b in &members.backends {
                out += &format!(
                    "proxy_galera_writer{{backend=\"{}\"}} {}\n",
                    b.name,
                    u8::from(Arc::ptr_eq(b, members.manager()))
                );
            }
            out += "# HELP proxy_galera_flow_control_paused The share of time a node's \
                    replication was paused by flow control, as its last probe read it.\n\
                    # TYPE proxy_galera_flow_control_paused gauge\n";
            for b in &members.backends {
                if let Some(state) = b.wsrep() {
                    out += &format!(
                        "proxy_galera_flow_control_paused{{backend=\"{}\"}} {}\n",
                        b.name, state.flow_control_paused
                    );
                }
            }
        }
        out
    }

    /// The manager's outage, if the monitor or a query found it unreachable (Galera: or no
    /// node may take writes).
    pub(super) fn manager_down(&self) -> Option<QueryError> {
        let galera = self.engine == Engine::Galera;
        self.manager().with_health(|h| {
            if galera && h.down_since.is_none() && !h.healthy {
                return Some(QueryError::Unavailable(format!(
                    "not serving: {}; no other node is Synced in the primary component",
                    h.problem.as_deref().unwrap_or("unknown")
                )));
            }
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
