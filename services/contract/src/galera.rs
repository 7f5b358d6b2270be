//! The cluster engines, and Galera's rules, shared by the proxy (which routes by them) and
//! xtask (which installs, checks and benchmarks by them): which node may serve, and which one
//! takes the writes, the way MaxScale's galeramon chooses.

use serde::{Deserialize, Serialize};

/// How the cluster keeps its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Engine {
    /// GTID replication: one manager takes the writes, workers apply its binary log
    /// (asynchronously, or semi-synchronously).
    #[default]
    Replication,
    /// MariaDB Galera Cluster: every node certifies every write before it commits
    /// (synchronous, multi-primary).
    Galera,
}

crate::named_enum!(Engine {
    Replication = "replication",
    Galera = "galera",
});

/// What a node says of itself in its wsrep status variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// `wsrep_local_state_comment`: Synced, Donor/Desynced, Joining, Joined...
    pub state: String,
    /// `wsrep_local_index`: its place in the cluster's membership (the writer is the lowest).
    pub local_index: Option<u32>,
    /// `wsrep_cluster_status`: Primary, or non-Primary when it lost the quorum.
    pub cluster_status: String,
    /// `wsrep_ready`: it accepts queries.
    pub ready: bool,
    /// `wsrep_cluster_size`: the nodes in its component.
    pub cluster_size: u32,
    /// `wsrep_flow_control_paused`: the share of time replication was paused by flow control
    /// since the last FLUSH STATUS (0 to 1).
    pub flow_control_paused: f64,
    /// `wsrep_local_recv_queue`: write sets received and not applied yet.
    pub recv_queue: u64,
}

/// The status variables a probe reads, by their information_schema names.
pub const STATUS_VARIABLES: [&str; 7] = [
    "WSREP_LOCAL_STATE_COMMENT",
    "WSREP_LOCAL_INDEX",
    "WSREP_CLUSTER_STATUS",
    "WSREP_READY",
    "WSREP_CLUSTER_SIZE",
    "WSREP_FLOW_CONTROL_PAUSED",
    "WSREP_LOCAL_RECV_QUEUE",
];

impl NodeState {
    /// From (name, value) pairs of information_schema.GLOBAL_STATUS; None when the server has
    /// no wsrep status at all (Galera is not loaded).
    pub fn from_status<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<NodeState> {
        let mut state = NodeState {
            state: String::new(),
            local_index: None,
            cluster_status: String::new(),
            ready: false,
            cluster_size: 0,
            flow_control_paused: 0.0,
            recv_queue: 0,
        };
        let mut seen = false;
        for (name, value) in pairs {
            seen = true;
            match name.to_ascii_uppercase().as_str() {
                "WSREP_LOCAL_STATE_COMMENT" => state.state = value.to_string(),
                "WSREP_LOCAL_INDEX" => state.local_index = value.parse().ok(),
                "WSREP_CLUSTER_STATUS" => state.cluster_status = value.to_string(),
                "WSREP_READY" => state.ready = value.eq_ignore_ascii_case("ON"),
                "WSREP_CLUSTER_SIZE" => state.cluster_size = value.parse().unwrap_or(0),
                "WSREP_FLOW_CONTROL_PAUSED" => {
                    state.flow_control_paused = value.parse().unwrap_or(0.0)
                }
                "WSREP_LOCAL_RECV_QUEUE" => state.recv_queue = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        seen.then_some(state)
    }

    /// Whether the node may serve queries: in the primary component, ready, and Synced. A
    /// joining node has not the data yet; a donor or desynced one lags by choice; a node out
    /// of the primary component refuses queries (or, with reads allowed, serves stale data).
    pub fn may_serve(&self) -> Result<(), String> {
        if self.cluster_status != "Primary" {
            return Err(format!(
                "not in the primary component (cluster status {})",
                or_unknown(&self.cluster_status)
            ));
        }
        if !self.ready {
            return Err("wsrep is not ready".to_string());
        }
        if self.state != "Synced" {
            return Err(format!(
                "its state is {}, not Synced",
                or_unknown(&self.state)
            ));
        }
        Ok(())
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "unknown"
    } else {
        text
    }
}

/// The writer after a round of probes (galeramon's rule): the current one while it may serve
/// (writes stay where they are, so nothing moves while all is well); otherwise the node with
/// the lowest `wsrep_local_index` among those that may serve. None: no node may take writes.
/// `nodes[i]` is what node i said, None when it did not answer.
pub fn choose_writer(current: usize, nodes: &[Option<NodeState>]) -> Option<usize> {
    let serves = |n: &Option<NodeState>| n.as_ref().is_some_and(|s| s.may_serve().is_ok());
    if nodes.get(current).is_some_and(serves) {
        return Some(current);
    }
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| serves(n))
        .min_by_key(|(i, n)| {
            (
                n.as_ref().and_then(|s| s.local_index).unwrap_or(u32::MAX),
                *i,
            )
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(state: &str, index: u32) -> Option<NodeState> {
        Some(NodeState {
            state: state.to_string(),
            local_index: Some(index),
            cluster_status: "Primary".to_string(),
            ready: true,
            cluster_size: 3,
            flow_control_paused: 0.0,
            recv_queue: 0,
        })
    }

    #[test]
    fn only_synced_primary_ready_nodes_serve() {
        assert_eq!(node("Synced", 0).unwrap().may_serve(), Ok(()));
        for state in ["Joining", "Joined", "Donor/Desynced", ""] {
            let err = node(state, 0).unwrap().may_serve().unwrap_err();
            assert!(err.contains("not Synced"), "{err}");
        }
        let mut cut_off = node("Synced", 0).unwrap();
        cut_off.cluster_status = "non-Primary".to_string();
        assert!(cut_off
            .may_serve()
            .unwrap_err()
            .contains("primary component"));
        let mut not_ready = node("Synced", 0).unwrap();
        not_ready.ready = false;
        assert!(not_ready.may_serve().unwrap_err().contains("not ready"));
    }

    #[test]
    fn the_writer_is_the_lowest_index_and_stays_while_it_serves() {
        // At first (current 0 says index 2): node 0 still serves, so it stays.
        let nodes = [node("Synced", 2), node("Synced", 0), node("Synced", 1)];
        assert_eq!(choose_writer(0, &nodes), Some(0));
        // The current writer gone: the lowest index among the rest.
        let nodes = [None, node("Synced", 1), node("Synced", 0)];
        assert_eq!(choose_writer(0, &nodes), Some(2));
        // A donor or a joiner is never chosen, even with the lowest index.
        let nodes = [None, node("Donor/Desynced", 0), node("Synced", 1)];
        assert_eq!(choose_writer(0, &nodes), Some(2));
        let nodes = [node("Joining", 0), node("Synced", 2), node("Synced", 1)];
        assert_eq!(choose_writer(0, &nodes), Some(2));
        // Nobody serves: no writer.
        assert_eq!(choose_writer(1, &[None, node("Joined", 0)]), None);
        // A node that comes back with a lower index does not take the writes back.
        let nodes = [node("Synced", 0), node("Synced", 1), node("Synced", 2)];
        assert_eq!(choose_writer(2, &nodes), Some(2));
    }

    #[test]
    fn status_rows_are_read() {
        let state = NodeState::from_status([
            ("WSREP_LOCAL_STATE_COMMENT", "Synced"),
            ("WSREP_LOCAL_INDEX", "1"),
            ("WSREP_CLUSTER_STATUS", "Primary"),
            ("WSREP_READY", "ON"),
            ("WSREP_CLUSTER_SIZE", "3"),
            ("WSREP_FLOW_CONTROL_PAUSED", "0.25"),
            ("WSREP_LOCAL_RECV_QUEUE", "4"),
        ])
        .unwrap();
        assert_eq!(state, {
            let mut n = node("Synced", 1).unwrap();
            n.flow_control_paused = 0.25;
            n.recv_queue = 4;
            n
        });
        assert_eq!(NodeState::from_status([]), None);
        assert_eq!("galera".parse::<Engine>(), Ok(Engine::Galera));
    }
}
