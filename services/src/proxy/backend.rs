//! One database server behind the proxy: its connection pool, its measured health, and how a
//! query runs on it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{DriverError, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row};
use serde_json::Value as Json;

use super::cost::PlanRow;
use super::health::{judge_worker, Eligible, Health, ManagerView, Replication, SemiSync};
use super::queue::FairQueue;
use contract::config::{Account, BackendConfig, ProxyConfig};
use contract::galera::{self, Engine, NodeState};
use contract::gtid::GtidPosition;
use contract::wire::Param;

/// Pinned for every session, so a query means the same on every server. PIPES_AS_CONCAT makes
/// `||` concatenation, as the trusted host's parser reads it.
const SQL_MODE: &str =
    "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,PIPES_AS_CONCAT";

/// How long an idle connection to a backend is kept for the next query.
const IDLE_CONNECTION_TTL: Duration = Duration::from_secs(60);

/// A probe (two trivial queries) that takes longer says the server is stalled: it is left
/// out well before a query would time out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// MariaDB's warning when a recursive query hits max_recursive_iterations
/// (ER_QUERY_RESULT_INCOMPLETE: "The query result may be incomplete").
const ER_QUERY_RESULT_INCOMPLETE: u32 = 1931;

/// How long a server that ran a heavy read stays apart from light reads after it: the CPU
/// quota a heavy read spent can stall the server for the rest of the quota's period (100 ms),
/// and a light read sent then would wait that long.
const HEAVY_AFTERMATH: Duration = Duration::from_millis(250);

/// Prepared templates kept per connection.
const STATEMENT_CACHE: usize = 256;

/// Which account a query runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Galera: a read that first waits until the node has applied every write the cluster
    /// committed before it (read-your-writes on any node).
    CausalRead,
    Write,
}

pub struct Backend {
    pub name: String,
    /// Where it is (what the failover account connects to as well).
    pub target: BackendConfig,
    /// Its turns, fair across clients, when the proxy shares the cluster out.
    pub queue: Option<Arc<FairQueue>>,
    engine: Engine,
    /// The connections reads run on, as the read-only account.
    reads: Pool,
    /// The connections writes run on, as the write account (opened only on the server that
    /// is the manager when a write comes).
    writes: Pool,
    /// The health probes' connection, apart from the queries'.
    probes: Pool,
    health: Mutex<Health>,
    /// Queries sent to it that have not answered yet.
    in_flight: AtomicU32,
    /// Of those, the heavy reads (their plan examines many rows).
    heavy_in_flight: AtomicU32,
    /// When the last heavy read on it ended.
    last_heavy_end: Mutex<Option<Instant>>,
    /// A query taking longer than this counts as the server's failure (past the statement
    /// time limit, which the server enforces itself).
    timeout: Duration,
    max_result_rows: usize,
    max_result_bytes: usize,
}

/// Why a query did not produce a result.
#[derive(Debug)]
pub enum QueryError {
    /// The server ran the query and refused it (bad column, constraint, time limit...):
    /// the same query would fail anywhere.
    Server { code: u16, message: String },
    /// The driver refused the request before the server saw it (its parameters do not fit
    /// the statement): the request's fault, which says nothing of the backend.
    Request(String),
    /// The backend could not be reached or broke the connection.
    Unavailable(String),
    /// The server's plan for a read examines more rows than the bound: it was not run.
    TooCostly { examined_rows: f64, bound: u64 },
}

pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Json>>,
    pub affected_rows: u64,
    /// Why the rows stop before the result's end.
    pub cut: Option<String>,
    /// The server stopped a recursive query at its iteration bound: what it said. The rows are
    /// all it produced, but not all the query asked for.
    pub recursion_stopped: Option<String>,
    /// A write's transaction.
    pub last_gtid: Option<String>,
}

/// What one probe saw.
struct Observation {
    wsrep: Option<NodeState>,
    replication: Option<Replication>,
    read_only: bool,
    binlog: Option<GtidPosition>,
    semi_sync: Option<SemiSync>,
}

/// Counts a query in flight on a backend for as long as it lives.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicU32) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A heavy read running on a backend: counted while it lives, its end noted when dropped.
pub struct HeavyRead<'a>(&'a Backend);

impl Drop for HeavyRead<'_> {
    fn drop(&mut self) {
        self.0.heavy_in_flight.fetch_sub(1, Ordering::Relaxed);
        *self
            .0
            .last_heavy_end
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

impl Backend {
    pub fn new(backend: &BackendConfig, config: &ProxyConfig) -> Backend {
        let opts = |account: &Account| {
            OptsBuilder::default()
                .ip_or_hostname(backend.address.clone())
                .tcp_port(backend.port)
                .user(Some(account.user.clone()))
                .pass(Some(account.password.clone()))
                .db_name(Some(config.database.clone()))
                // Stay on TCP to the configured address: the accounts are bound to it.
                .prefer_socket(false)
                // Room for every template of a working set: a hit is one round trip, a miss a
                // prepare too (and, past the size, a close of the oldest).
                .stmt_cache_size(STATEMENT_CACHE)
                .init(vec![
                    format!("SET SESSION sql_mode = '{SQL_MODE}'"),
                    format!(
                        "SET SESSION max_statement_time = {}",
                        config.statement_time_limit_seconds
                    ),
                    // A recursive CTE stops after this many steps (with an error): the policy
                    // accepts them because of this bound.
                    format!(
                        "SET SESSION max_recursive_iterations = {}",
                        config.max_recursive_iterations
                    ),
                ])
        };
        let pool = |max: usize| {
            PoolOpts::default()
                .with_constraints(PoolConstraints::new(0, max).expect("0 <= max"))
                // Idle connections are kept (up to the maximum) for this long: with no TTL
                // the driver keeps only `min` (0) and every query would connect anew.
                .with_inactive_connection_ttl(IDLE_CONNECTION_TTL)
                // A connection back in the pool is not reset: a reset is a round trip and
                // drops the prepared templates. Nothing a forwarded statement can do
                // outlives it (the policy admits no SET, no variables, no temporary tables,
                // no transactions), and the session's settings are set once, at connect.
                .with_reset_connection(false)
        };
        let queries = pool(config.connections_per_backend.max(1));
        Backend {
            name: backend.name.clone(),
            target: backend.clone(),
            queue: config
                .fair_share
                .as_ref()
                .map(|share| FairQueue::new(share.backend_slots, share.backend_slots_per_client)),
            engine: config.engine,
            reads: Pool::new(opts(&config.reader).pool_opts(queries.clone())),
            writes: Pool::new(opts(&config.writer).pool_opts(queries)),
            // The probes' own connection: a pool that requests have filled (or a client's
            // slow queries hold) must not make the backend look down.
            probes: Pool::new(opts(&config.reader).pool_opts(pool(1))),
            health: Mutex::new(Health::new()),
            in_flight: AtomicU32::new(0),
            heavy_in_flight: AtomicU32::new(0),
            last_heavy_end: Mutex::new(None),
            timeout: Duration::from_secs(config.statement_time_limit_seconds + 2),
            max_result_rows: config.max_result_rows,
            max_result_bytes: config.max_result_bytes,
        }
    }

    /// What a read sent here now is expected to take: the smoothed response time for each
    /// query ahead of it and itself. The `customized` strategy picks the lowest, so a slow
    /// server gets a read only when the others are that much busier.
    pub fn expected_ms(&self) -> f64 {
        let waiting = self.in_flight.load(Ordering::Relaxed) + 1;
        self.with_health(|h| h.latency_ms).unwrap_or(f64::MAX) * f64::from(waiting)
    }

    /// Queries sent to it that have not answered yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a heavy read on it for as long as the guard lives.
    pub fn runs_heavy(&self) -> HeavyRead<'_> {
        self.heavy_in_flight.fetch_add(1, Ordering::Relaxed);
        HeavyRead(self)
    }

    /// Heavy reads running on it now.
    pub fn heavy_reads(&self) -> u32 {
        self.heavy_in_flight.load(Ordering::Relaxed)
    }

    /// Whether heavy reads run on it now, or ended less than HEAVY_AFTERMATH ago.
    pub fn is_running_heavy(&self) -> bool {
        self.heavy_in_flight.load(Ordering::Relaxed) > 0
            || self
                .last_heavy_end
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|end| end.elapsed() < HEAVY_AFTERMATH)
    }

    /// A copy of everything known of its health (for /health and status).
    pub fn health(&self) -> Health {
        self.with_health(Health::clone)
    }

    /// Reads a part of its health without copying the rest (the request path's way).
    pub fn with_health<T>(&self, f: impl FnOnce(&Health) -> T) -> T {
        f(&self.health.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn update_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Leaves a server added while the proxy serves out of every choice until its first probe
    /// judges it (at start, every server is trusted until then: reads are retried elsewhere
    /// if wrong; a server just added is more likely still catching up).
    pub fn until_probed(self) -> Backend {
        self.update_health(|h| {
            h.healthy = false;
            h.problem = Some("added: serves once its probes find it eligible".to_string());
        });
        self
    }

    /// Marks the backend failed at once, from a failure seen on the request path; the next
    /// probe that succeeds brings it back.
    pub fn mark_failed(&self, problem: &str) {
        self.update_health(|h| h.failed(problem.to_string()));
    }

    /// What it has applied, as its last probe saw.
    pub fn applied(&self) -> Option<GtidPosition> {
        self.with_health(|h| h.replication.as_ref()?.applied.clone())
    }

    /// Whether it has applied `position` (as its last probe saw).
    pub fn has_applied(&self, position: &GtidPosition) -> bool {
        self.with_health(|h| {
            h.replication
                .as_ref()
                .and_then(|r| r.applied.as_ref())
                .is_some_and(|applied| applied.covers(position))
        })
    }

    /// Answering its probes.
    pub fn is_reachable(&self) -> bool {
        self.with_health(|h| h.down_since.is_none())
    }

    /// What it received from its manager, as its last probe saw (while it answers).
    pub fn received(&self) -> Option<GtidPosition> {
        self.with_health(|h| {
            h.down_since
                .is_none()
                .then(|| h.replication.as_ref()?.received.clone())
                .flatten()
        })
    }

    /// One measurement, in the background, never on the request path: on the probes' own
    /// connection, whether the server is writable, its binary log position and semi-sync
    /// state, and its replication. Which server is the manager, and whether a worker may
    /// serve, are decided after every backend's probe (the proxy's monitor), as they depend on
    /// each other.
    pub async fn probe(&self) {
        let started = Instant::now();
        let result = tokio::time::timeout(PROBE_TIMEOUT, self.observe()).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.update_health(|h| match result {
            Ok(Ok(seen)) => {
                h.answered(elapsed_ms);
                h.replication = seen.replication;
                h.read_only = Some(seen.read_only);
                h.binlog = seen.binlog;
                h.semi_sync = seen.semi_sync;
                h.wsrep = seen.wsrep;
                match h.replication.as_ref().is_some_and(|r| r.io_running) {
                    true => h.lost_manager_since = None,
                    false => {
                        h.lost_manager_since
                            .get_or_insert_with(std::time::SystemTime::now);
                    }
                }
            }
            Ok(Err(e)) => h.failed(e),
            Err(_) => h.failed(format!(
                "no answer to a probe within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        });
    }

    /// Whether it can take writes: answering, writable and replicating from nobody.
    pub fn is_writable(&self) -> bool {
        self.with_health(|h| {
            h.down_since.is_none() && h.read_only == Some(false) && h.replication.is_none()
        })
    }

    /// As the manager: answering is all it needs to serve.
    pub fn judge_as_manager(&self) {
        self.update_health(|h| {
            h.without_manager = false;
            if h.down_since.is_none() {
                h.healthy = true;
                h.problem = None;
            }
        });
    }

    /// Decides whether a worker serves reads, from its last probe and the manager's state.
    pub fn judge(&self, max_lag_seconds: u64, manager: &ManagerView) {
        self.update_health(|h| {
            if h.down_since.is_some() {
                h.without_manager = false;
                return;
            }
            match judge_worker(h.replication.as_ref(), max_lag_seconds, manager) {
                Ok(eligible) => {
                    h.healthy = true;
                    h.problem = None;
                    h.without_manager = eligible == Eligible::CaughtUpWithoutManager;
                }
                Err(problem) => {
                    h.healthy = false;
                    h.problem = Some(problem);
                    h.without_manager = false;
                }
            }
        });
    }

    async fn observe(&self) -> Result<Observation, String> {
        let mut conn = self.probes.get_conn().await.map_err(|e| e.to_string())?;
        if self.engine == Engine::Galera {
            return observe_node(&mut conn).await;
        }
        let seen: Option<(bool, String, String, bool, Option<String>)> = conn
            .query_first(
                "SELECT @@read_only, @@gtid_binlog_pos, @@gtid_slave_pos, \
                 @@rpl_semi_sync_master_enabled, \
                 (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                  WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS')",
            )
            .await
            .map_err(|e| e.to_string())?;
        let (read_only, binlog, applied, semi_sync_enabled, semi_sync_status) =
            seen.ok_or("the probe returned no row")?;
        let status: Option<Row> = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(|e| e.to_string())?;
        let replication = status.map(|row| {
            let text = |name: &str| -> Option<String> {
                row.get_opt::<Option<String>, _>(name)?.ok().flatten()
            };
            Replication {
                io_running: text("Slave_IO_Running").as_deref() == Some("Yes"),
                sql_running: text("Slave_SQL_Running").as_deref() == Some("Yes"),
                lag_seconds: text("Seconds_Behind_Master").and_then(|v| v.parse().ok()),
                applied: applied.parse().ok(),
                received: text("Gtid_IO_Pos").and_then(|p| p.parse().ok()),
            }
        });
        Ok(Observation {
            wsrep: None,
            replication,
            read_only,
            binlog: binlog.parse().ok(),
            semi_sync: Some(SemiSync::from_probe(
                semi_sync_enabled,
                semi_sync_status.as_deref() == Some("ON"),
            )),
        })
    }

    /// Waits until this worker has applied `position`, for at most `bound`; true if it has.
    pub async fn wait_for(&self, position: &str, bound: Duration) -> Result<bool, QueryError> {
        let mut conn = self.reads.get_conn().await.map_err(classify)?;
        let waited: Option<i64> = conn
            .exec_first(
                "SELECT MASTER_GTID_WAIT(?, ?)",
                (position, bound.as_secs_f64()),
            )
            .await
            .map_err(classify)?;
        Ok(waited == Some(0))
    }

    /// Galera: whether the node may serve, from its last probe; the writer is chosen among the
    /// ones that may (the proxy's monitor).
    pub fn judge_node(&self) {
        self.update_health(|h| {
            if h.down_since.is_some() {
                return;
            }
            let verdict = match &h.wsrep {
                Some(state) => state.may_serve(),
                None => Err("it reports no wsrep status: Galera is not running there".to_string()),
            };
            match verdict {
                Ok(()) => {
                    h.healthy = true;
                    h.problem = None;
                }
                Err(problem) => {
                    h.healthy = false;
                    h.problem = Some(problem);
                }
            }
        });
    }

    /// Its wsrep state while it answers (Galera).
    pub fn wsrep(&self) -> Option<NodeState> {
        self.with_health(|h| h.down_since.is_none().then(|| h.wsrep.clone()).flatten())
    }

    /// Runs one statement: the template as a prepared statement (cached per connection, so
    /// the steady state is one round trip) with the parameters bound. The server accepts only a
    /// single statement there: whatever the text holds, nothing stacked can run.
    pub async fn execute(
        &self,
        access: Access,
        template: &str,
        params: &[Param],
    ) -> Result<QueryOutput, QueryError> {
        let _in_flight = InFlight::enter(&self.in_flight);
        let started = Instant::now();
        let pool = match access {
            Access::Read | Access::CausalRead => &self.reads,
            Access::Write => &self.writes,
        };
        let result = self
            .within_timeout("answer", self.execute_once(access, pool, template, params))
            .await;
        // An answer, even a refusal, is how long the server takes now.
        if matches!(result, Ok(_) | Err(QueryError::Server { .. })) {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            self.update_health(|h| h.add_response_time(ms));
        }
        result
    }

    /// The server's plan for a read: EXPLAIN of its template with its values bound (nothing
    /// runs but the optimizer).
    pub async fn explain(
        &self,
        template: &str,
        params: &[Param],
    ) -> Result<Vec<PlanRow>, QueryError> {
        let plan = async {
            let mut conn = self.reads.get_conn().await.map_err(classify)?;
            let rows: Vec<Row> = conn
                .exec(format!("EXPLAIN {template}"), positional(params))
                .await
                .map_err(classify)?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let text = |name: &str| -> Option<String> {
                        row.get_opt::<Option<String>, _>(name)?.ok().flatten()
                    };
                    let number = |name: &str| -> Option<u64> {
                        row.get_opt::<Option<u64>, _>(name)?.ok().flatten()
                    };
                    PlanRow {
                        select_id: number("id"),
                        select_type: text("select_type").unwrap_or_default(),
                        access: text("type"),
                        rows: number("rows"),
                    }
                })
                .collect())
        };
        self.within_timeout("plan a read", plan).await
    }

    /// The rows of the database's largest table, as the server estimates them.
    pub async fn largest_table_rows(&self) -> Result<u64, QueryError> {
        let read = async {
            let mut conn = self.reads.get_conn().await.map_err(classify)?;
            conn.query_first::<Option<u64>, _>(
                "SELECT MAX(TABLE_ROWS) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE()",
            )
            .await
            .map_err(classify)
        };
        let rows = self.within_timeout("tell its tables' sizes", read).await?;
        Ok(rows.flatten().unwrap_or(0))
    }

    /// Runs `work` on this backend for at most its timeout; past it, the backend is
    /// unavailable ("worker-1 did not {what} within 7 s").
    async fn within_timeout<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(QueryError::Unavailable(format!(
                "{} did not {what} within {} s",
                self.name,
                self.timeout.as_secs()
            ))),
        }
    }

    async fn execute_once(
        &self,
        access: Access,
        pool: &Pool,
        template: &str,
        params: &[Param],
    ) -> Result<QueryOutput, QueryError> {
        let mut conn = pool.get_conn().await.map_err(classify)?;
        let params = positional(params);
        let causal;
        let template = if access == Access::CausalRead {
            causal = format!("SET STATEMENT wsrep_sync_wait = 1 FOR {template}");
            causal.as_str()
        } else {
            template
        };
        let mut result = conn.exec_iter(template, params).await.map_err(classify)?;
        let columns = result
            .columns_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut cut = None;
        while let Some(row) = result.next().await.map_err(classify)? {
            if rows.len() == self.max_result_rows {
                cut = Some(format!("the first {} rows", self.max_result_rows));
                break;
            }
            let row = row.unwrap();
            bytes += row.iter().map(value_bytes).sum::<usize>();
            if bytes > self.max_result_bytes {
                cut = Some(format!(
                    "the first {} rows, the most that fit in {} bytes",
                    rows.len(),
                    self.max_result_bytes
                ));
                break;
            }
            rows.push(row.into_iter().map(value_to_json).collect());
        }
        let affected_rows = result.affected_rows();
        if cut.is_some() {
            // The rest is read and dropped: the connection is clean for the next query.
            result.drop_result().await.map_err(classify)?;
        } else {
            drop(result);
        }
        // MariaDB ends a recursive CTE at max_recursive_iterations with only a warning: read
        // it (one more round trip, only then), so the cut is never silent.
        let recursion_stopped = if conn.get_warnings() > 0 && template.contains("RECURSIVE") {
            let warnings: Vec<(String, u32, String)> =
                conn.query("SHOW WARNINGS").await.map_err(classify)?;
            warnings
                .into_iter()
                .find(|(_, code, _)| *code == ER_QUERY_RESULT_INCOMPLETE)
                .map(|(_, _, message)| message)
        } else {
            None
        };
        // A write's GTID, for the client's later reads (`after_gtid`): one more round trip,
        // on the same session, only for writes.
        let last_gtid = if access == Access::Write {
            conn.query_first::<String, _>("SELECT @@last_gtid")
                .await
                .map_err(classify)?
                .filter(|g| !g.is_empty())
        } else {
            None
        };
        Ok(QueryOutput {
            columns,
            rows,
            affected_rows,
            cut,
            recursion_stopped,
            last_gtid,
        })
    }

    pub async fn close(&self) {
        let _ = self.reads.clone().disconnect().await;
        let _ = self.writes.clone().disconnect().await;
        let _ = self.probes.clone().disconnect().await;
    }
}

/// A Galera node's probe: its wsrep status variables, and whether it refuses writes.
async fn observe_node(conn: &mut mysql_async::Conn) -> Result<Observation, String> {
    let names: Vec<String> = galera::STATUS_VARIABLES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect();
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME IN ({})",
            names.join(", ")
        ))
        .await
        .map_err(|e| e.to_string())?;
    let read_only: Option<bool> = conn
        .query_first("SELECT @@read_only")
        .await
        .map_err(|e| e.to_string())?;
    Ok(Observation {
        wsrep: NodeState::from_status(rows.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        replication: None,
        read_only: read_only.unwrap_or(true),
        binlog: None,
        semi_sync: None,
    })
}

fn positional(params: &[Param]) -> Params {
    if params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(params.iter().map(bound).collect())
    }
}

/// A parameter as the driver binds it; a decimal goes as its digits, which the template casts.
fn bound(param: &Param) -> mysql_async::Value {
    use mysql_async::Value as V;
    match param {
        Param::Null => V::NULL,
        Param::Int(i) => V::Int(*i),
        Param::UInt(u) => V::UInt(*u),
        Param::Double(d) => V::Double(*d),
        Param::Decimal(text) | Param::Text(text) => V::Bytes(text.as_bytes().to_vec()),
    }
}

fn classify(e: mysql_async::Error) -> QueryError {
    match e {
        mysql_async::Error::Server(s) => QueryError::Server {
            code: s.code,
            message: s.message,
        },
        mysql_async::Error::Driver(
            e @ (DriverError::StmtParamsMismatch { .. }
            | DriverError::StmtParamsNumberExceedsLimit { .. }
            | DriverError::Params(_)
            | DriverError::MixedParams
            | DriverError::PacketTooLarge),
        ) => QueryError::Request(e.to_string()),
        other => QueryError::Unavailable(other.to_string()),
    }
}

/// What a value weighs in a result: its bytes as text, at least one.
fn value_bytes(value: &mysql_async::Value) -> usize {
    match value {
        mysql_async::Value::Bytes(b) => b.len().max(1),
        _ => 8,
    }
}

fn value_to_json(value: mysql_async::Value) -> Json {
    use mysql_async::Value as V;
    match value {
        V::NULL => Json::Null,
        V::Bytes(b) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        V::Int(i) => Json::from(i),
        V::UInt(u) => Json::from(u),
        V::Float(f) => Json::from(f64::from(f)),
        V::Double(d) => Json::from(d),
        V::Date(y, mo, d, h, mi, s, us) => {
            let mut text = format!("{y:04}-{mo:02}-{d:02}");
            if (h, mi, s, us) != (0, 0, 0, 0) {
                text.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
            }
            if us != 0 {
                text.push_str(&format!(".{us:06}"));
            }
            Json::String(text)
        }
        V::Time(negative, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if negative { "-" } else { "" };
            let mut text = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if us != 0 {
                text.push_str(&format!(".{us:06}"));
            }
            Json::String(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::Value as V;

    /// Only a backend's own failures count against it: a request whose parameters do not fit
    /// is the request's.
    #[test]
    fn the_requests_faults_are_not_the_backends() {
        let mismatch = mysql_async::Error::Driver(DriverError::StmtParamsMismatch {
            required: 1,
            supplied: 0,
        });
        assert!(matches!(classify(mismatch), QueryError::Request(_)));
        let closed = mysql_async::Error::Driver(DriverError::ConnectionClosed);
        assert!(matches!(classify(closed), QueryError::Unavailable(_)));
        let io = mysql_async::Error::Io(std::io::Error::other("reset").into());
        assert!(matches!(classify(io), QueryError::Unavailable(_)));
    }

    #[test]
    fn values_become_json() {
        assert_eq!(value_to_json(V::NULL), Json::Null);
        assert_eq!(value_to_json(V::Bytes(b"O'Brien".to_vec())), "O'Brien");
        assert_eq!(value_to_json(V::Int(-3)), -3);
        assert_eq!(value_to_json(V::Date(2025, 1, 2, 0, 0, 0, 0)), "2025-01-02");
        assert_eq!(
            value_to_json(V::Date(2025, 1, 2, 3, 4, 5, 0)),
            "2025-01-02 03:04:05"
        );
        assert_eq!(value_to_json(V::Time(true, 1, 2, 3, 4, 0)), "-26:03:04");
    }
}
