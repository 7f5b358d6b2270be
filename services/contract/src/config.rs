//! Each service reads one JSON config file, written per host by `cargo xtask deploy-services`.
//! It holds the tokens (and for the proxy the database password), so it is mode 0600.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatekeeperConfig {
    pub listen: SocketAddr,
    /// Base URL of the trusted host.
    pub trusted_host_url: String,
    /// Presented to the trusted host.
    pub trusted_host_token: String,
    /// Outgoing connections leave from this address, the one the trusted host allows.
    pub outgoing_address: IpAddr,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    /// The trusted host's answers are read up to this size, no further.
    pub max_answer_bytes: usize,
    /// Requests a client may make per second, on average.
    pub rate_per_second: f64,
    /// Requests a client may make at once after being idle.
    pub rate_burst: u32,
    /// Clients the rate limit does not apply to: the deployment's own bench client, whose
    /// load test measures the chain, not the limit.
    #[serde(default)]
    pub unlimited_clients: Vec<IpAddr>,
    /// Requests served at once, in all; past it, 503 with Retry-After.
    pub max_in_flight: usize,
    /// Requests one client address may have in flight; past it, 429.
    pub max_in_flight_per_client: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedHostConfig {
    pub listen: SocketAddr,
    /// Only these peers (the gatekeeper) are served.
    pub allowed_peers: Vec<IpAddr>,
    /// What the gatekeeper must present.
    pub token: String,
    pub proxy_url: String,
    /// Presented to the proxy.
    pub proxy_token: String,
    pub outgoing_address: IpAddr,
    pub request_timeout_ms: u64,
    /// The proxy's answers are read up to this size, no further.
    pub max_answer_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Only these peers (the trusted host) are served.
    pub allowed_peers: Vec<IpAddr>,
    /// What the trusted host must present.
    pub token: String,
    /// How the cluster keeps its copies: which server takes writes follows from it.
    #[serde(default)]
    pub engine: crate::galera::Engine,
    /// Replication: the manager at first. Galera: the first node, the writer until the monitor
    /// has seen every node (then galeramon's rule decides).
    pub manager: BackendConfig,
    /// Replication: the workers. Galera: the other nodes.
    pub workers: Vec<BackendConfig>,
    pub database: String,
    /// Reads run as this account: SELECT on the dataset and the replication state, nothing
    /// else. Probes use it too.
    pub reader: Account,
    /// Writes run as this account, on the manager only.
    pub writer: Account,
    /// How often each backend's response time and replication state are measured.
    pub health_interval_ms: u64,
    /// A worker further behind than this is left out of reads.
    pub max_lag_seconds: u64,
    /// Server-side limit of a statement (MariaDB max_statement_time).
    pub statement_time_limit_seconds: u64,
    /// Connections to each backend that queries may hold at once (the health probes have
    /// their own).
    pub connections_per_backend: usize,
    /// A result is cut after this many rows, or once its values hold this many bytes; the
    /// answer says so.
    pub max_result_rows: usize,
    pub max_result_bytes: usize,
    /// How many times a recursive CTE may repeat its step (MariaDB max_recursive_iterations).
    pub max_recursive_iterations: u64,
    /// Replication: how the proxy fails over from a manager that is gone, by itself and when a
    /// person asks (Galera needs none: any Synced node takes the writes).
    #[serde(default)]
    pub failover: Option<crate::failover::FailoverConfig>,
    /// Each client's share of the database time, each backend's queue and the cost bound
    /// (none: every query runs as it comes).
    #[serde(default)]
    pub fair_share: Option<FairShare>,
    /// What `cargo xtask` presents, from the proxy's own host, to change the cluster's servers
    /// (`POST /backends`, on `scale`); none: the set is the config's for the proxy's life.
    #[serde(default)]
    pub operator_token: Option<String>,
}

/// The cluster's servers as `cargo xtask scale` wants the proxy to serve them (`POST
/// /backends`): every server, the manager (Galera: the writer) among them. The proxy keeps
/// what it knows of the servers that stay, starts probing the new ones (which serve once
/// their probes find them eligible) and stops sending to the ones left out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSet {
    pub servers: Vec<BackendConfig>,
}

/// What the proxy did with a [`BackendSet`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendsChanged {
    /// Every server it serves now, in its order.
    pub servers: Vec<String>,
    pub added: Vec<String>,
    /// Left out: nothing is sent there any more, and what was sent has finished.
    pub removed: Vec<String>,
}

/// How the proxy keeps one client from taking the cluster from the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairShare {
    /// Seconds of database time (a query's time on its server) one client may use per second,
    /// across the cluster; past it, 429 with Retry-After. The bench client is exempt.
    pub client_seconds_per_second: f64,
    /// What a client that has been idle may use at once.
    pub client_burst_seconds: f64,
    /// Queries each backend runs at once; the others wait their turn, fairly across clients.
    pub backend_slots: usize,
    /// Of those, how many one client may hold.
    pub backend_slots_per_client: usize,
    /// A read the server's plan expects to examine more rows than this is refused before it
    /// runs.
    pub max_examined_rows: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Account({:?}, password redacted)", self.user)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub address: String,
    pub port: u16,
}

/// A relay of the chain's floor (`relay --config PATH`): the bench runs one beside each service,
/// on its host, to measure what three hops that do nothing but relay cost there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// The next relay's base URL; None: this is the last hop, which answers a canned row where
    /// the proxy would ask a server.
    pub next_url: Option<String>,
    /// Where connections to the next relay leave from.
    pub outgoing_address: Option<IpAddr>,
}
