//! How the proxy keeps one client from taking the cluster from the others: a budget of
//! database time per client (budget.rs), a fair queue at each backend (queue.rs), and the cost
//! bound that refuses a read the server's plan says is too big before it runs (cost.rs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::backend::{Access, Backend, QueryError, QueryOutput};
use super::budget::Budgets;
use super::cost::{Estimate, Estimates, HEAVY_ROWS};
use super::queue::FairQueue;
use crate::error::ApiError;
use contract::config::FairShare;
use contract::wire::{Client, ForwardedQuery};

/// The rule a read over the cost bound is refused by.
pub const COST_RULE: &str = "estimated-cost";

/// What a query may take on its server before its time counts against its client's budget:
/// a key lookup's time on a busy server, so the budget holds back heavy queries, not many
/// light ones (the gatekeeper's rate limit does that).
pub const FREE_PER_QUERY: Duration = Duration::from_millis(1);

pub struct Sharing {
    budgets: Budgets,
    estimates: Estimates,
    max_examined_rows: u64,
    /// What the cost bound costs: reads checked against a kept plan, plans read and the time
    /// reading them took.
    plans: Mutex<PlanCounts>,
    /// The rows of the dataset's largest table, and when they were read.
    largest: Mutex<Option<(f64, Instant)>>,
}

/// How long the size of the largest table is taken as it was read.
const TABLES_KEPT_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
struct PlanCounts {
    kept: u64,
    read: u64,
    read_seconds: f64,
}

/// A query let in: what was charged for it in advance.
pub struct Admitted {
    estimate: f64,
}

impl Sharing {
    pub fn new(config: &FairShare) -> Sharing {
        Sharing {
            budgets: Budgets::new(
                config.client_seconds_per_second,
                config.client_burst_seconds,
                FREE_PER_QUERY.as_secs_f64(),
            ),
            estimates: Estimates::default(),
            max_examined_rows: config.max_examined_rows,
            plans: Mutex::default(),
            largest: Mutex::default(),
        }
    }

    /// Lets the query in on its client's budget, or refuses it before anything runs.
    pub fn admit(&self, client: &Client, digest: &str) -> Result<Admitted, ApiError> {
        let usual = self.budgets.usual_seconds(digest).unwrap_or(0.0);
        match self.budgets.admit(client, usual, Instant::now()) {
            Ok(estimate) => Ok(Admitted { estimate }),
            Err(over) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over-budget",
                format!(
                    "this client has used its share of the database's time ({} s of query time \
                     per second past each query's first {} ms; {:.1} s more were used than it \
                     had): try again in {} s, or send lighter queries",
                    self.budgets.rate(),
                    FREE_PER_QUERY.as_millis(),
                    over.owed_seconds,
                    over.retry_after.as_secs()
                ),
            )
            .retry_after(over.retry_after.as_secs())),
        }
    }

    /// Charges the query's real time on its servers.
    pub fn settle(&self, client: &Client, digest: &str, admitted: Admitted, seconds: f64) {
        self.budgets
            .settle(client, digest, admitted.estimate, seconds);
    }

    /// Runs the query on `backend` in its turn, a read only under the cost bound; returns the
    /// outcome and the time it took on the server (not its wait) to charge: a read's, when the
    /// server answered.
    pub async fn run(
        &self,
        backend: &Backend,
        client: &Client,
        access: Access,
        request: &ForwardedQuery,
    ) -> (Result<QueryOutput, QueryError>, f64) {
        let heavy = match access {
            Access::Write => false,
            _ => match self.check_cost(backend, request).await {
                Ok(examined) => examined > HEAVY_ROWS,
                Err(refused) => return (Err(refused), 0.0),
            },
        };
        let _heavy = heavy.then(|| backend.runs_heavy());
        let usual = self.budgets.usual_seconds(&request.digest).unwrap_or(0.0);
        let slot = match &backend.queue {
            Some(queue) => Some(queue.enter(client, Duration::from_secs_f64(usual)).await),
            None => None,
        };
        let started = Instant::now();
        let result = backend
            .execute(access, &request.template, &request.params)
            .await;
        let took = started.elapsed();
        if let Some(mut slot) = slot {
            slot.took(took);
        }
        // Reads are charged, when the server answered. A write is bounded by the policy (a
        // hundred rows by key at most) and its time is mostly the commit waiting for a
        // replica's acknowledgement; the time a backend that broke or never answered took is
        // not the client's doing either.
        let charged = match (&result, access) {
            (_, Access::Write) => 0.0,
            (Ok(_) | Err(QueryError::Server { .. }), _) => took.as_secs_f64(),
            (Err(_), _) => 0.0,
        };
        (result, charged)
    }

    /// Whether the shape's reads are heavy, as its last plan said: the proxy sends them where
    /// light reads need not go.
    pub fn is_heavy(&self, digest: &str) -> bool {
        self.estimates.heavy(digest)
    }

    /// Refuses a read whose plan examines more rows than the bound; a shape's plan that does
    /// not depend on its values is read once. Returns the rows it examines.
    async fn check_cost(
        &self,
        backend: &Backend,
        request: &ForwardedQuery,
    ) -> Result<f64, QueryError> {
        let started = Instant::now();
        let bound = self.max_examined_rows as f64;
        let examined = match self.estimates.kept(&request.digest, started, bound) {
            Some(examined) => {
                self.plan_counts().kept += 1;
                examined
            }
            None => {
                let plan = backend.explain(&request.template, &request.params).await?;
                let largest_table = self.largest_table(backend, started).await?;
                let estimate =
                    Estimate::from_plan(&plan, !request.params.is_empty(), largest_table);
                self.estimates.keep(&request.digest, estimate, started);
                let mut counts = self.plan_counts();
                counts.read += 1;
                counts.read_seconds += started.elapsed().as_secs_f64();
                estimate.examined_rows
            }
        };
        if examined > bound {
            return Err(QueryError::TooCostly {
                examined_rows: examined,
                bound: self.max_examined_rows,
            });
        }
        Ok(examined)
    }

    /// The rows of the dataset's largest table, as the server estimates them (read again
    /// after a minute).
    async fn largest_table(&self, backend: &Backend, now: Instant) -> Result<f64, QueryError> {
        let known = *self.largest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rows, _)) =
            known.filter(|(_, at)| now.saturating_duration_since(*at) < TABLES_KEPT_FOR)
        {
            return Ok(rows);
        }
        let rows = backend.largest_table_rows().await? as f64;
        *self.largest.lock().unwrap_or_else(|e| e.into_inner()) = Some((rows, now));
        Ok(rows)
    }

    fn plan_counts(&self) -> std::sync::MutexGuard<'_, PlanCounts> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each backend's queue and what the cost bound costs, for /metrics.
    pub fn render(&self, backends: &[Arc<Backend>]) -> String {
        let plans = self.plan_counts();
        format!(
            "# HELP proxy_plans_total Reads checked against the cost bound, by whether their \
             shape's plan was kept or read for them.\n\
             # TYPE proxy_plans_total counter\n\
             proxy_plans_total{{plan=\"kept\"}} {}\n\
             proxy_plans_total{{plan=\"read\"}} {}\n\
             # HELP proxy_plan_read_seconds_total Time spent reading plans (EXPLAIN).\n\
             # TYPE proxy_plan_read_seconds_total counter\n\
             proxy_plan_read_seconds_total {}\n",
            plans.kept, plans.read, plans.read_seconds
        ) + &Self::render_queues(backends)
    }

    fn render_queues(backends: &[Arc<Backend>]) -> String {
        let mut queues: Vec<(&str, &FairQueue)> = backends
            .iter()
            .filter_map(|b| Some((b.name.as_str(), b.queue.as_deref()?)))
            .collect();
        queues.sort_by_key(|(name, _)| *name);
        let mut out = String::from(
            "# HELP proxy_queue_waiting Queries waiting for a slot of their backend.\n\
             # TYPE proxy_queue_waiting gauge\n",
        );
        let counts: Vec<(usize, u64)> = queues.iter().map(|(_, q)| q.waiting()).collect();
        let names = queues.iter().map(|(name, _)| name);
        for (name, (now, _)) in names.clone().zip(&counts) {
            out.push_str(&format!(
                "proxy_queue_waiting{{backend=\"{name}\"}} {now}\n"
            ));
        }
        out.push_str(
            "# HELP proxy_queue_waited_total Queries that waited for a slot of their backend.\n\
             # TYPE proxy_queue_waited_total counter\n",
        );
        for (name, (_, all)) in names.zip(&counts) {
            out.push_str(&format!(
                "proxy_queue_waited_total{{backend=\"{name}\"}} {all}\n"
            ));
        }
        out
    }
}

/// What a read over the bound is told.
pub fn too_costly(examined_rows: f64, bound: u64) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "too-costly",
        format!(
            "rejected by rule {COST_RULE}: the server's plan for this read examines about {} \
             rows, over the bound of {bound}; narrow it: a WHERE on a key or an indexed column \
             (an id, a title, a last name), joins on the tables' keys, fewer tables",
            examined_rows.round() as u64
        ),
    )
}
