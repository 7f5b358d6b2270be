//! The load generator: a fixed number of clients send queries for a fixed time, either through
//! the gatekeeper's JSON API (one of the four modes) or straight to a database server (the
//! baseline that shows what the chain costs). Latencies go into HDR histograms.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mysql_async::prelude::Queryable;
use rand::Rng;
use tokio::sync::Semaphore;

use contract::report::{Percentiles, Report, Workload, DIRECT_DB};
use contract::wire::{Mode, QueryRequest, QueryResponse};

/// How long one request through the gatekeeper may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The next query of a workload, for films numbered 1..=films.
pub fn query(workload: Workload, rng: &mut impl Rng, films: u32) -> String {
    let id = rng.random_range(1..=films);
    let point =
        || format!("SELECT film_id, title, rental_rate, length FROM film WHERE film_id = {id}");
    let range = || {
        let start = rng_start(id, films);
        format!(
            "SELECT film_id, title FROM film WHERE film_id BETWEEN {start} AND {} ORDER BY film_id",
            start + 19
        )
    };
    match workload {
        Workload::Point => point(),
        Workload::Range => range(),
        Workload::Mix if id % 5 == 0 => range(),
        Workload::Mix => point(),
        Workload::Write => format!(
            "UPDATE film SET rental_duration = {} WHERE film_id = {id}",
            3 + id % 5
        ),
    }
}

fn rng_start(id: u32, films: u32) -> u32 {
    id.min(films.saturating_sub(19).max(1))
}

/// Where the queries go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The gatekeeper's JSON API at this base URL, in this mode; connections leave from
    /// `from` when given (the bench client's address, which the gatekeeper does not limit).
    Gatekeeper {
        url: String,
        mode: Mode,
        from: Option<IpAddr>,
    },
    /// A database server, with an account that may read (and for writes, write) filmdb.
    Database {
        address: String,
        port: u16,
        user: String,
        password: String,
        /// How the server is named in the report ("manager").
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub workload: Workload,
    pub concurrency: usize,
    pub duration: Duration,
    /// Number of films in the dataset (100 per unit of scale).
    pub films: u32,
    /// Requests per second, all clients together, when the load is paced; else each client
    /// sends its next query as soon as it has the answer to the last.
    pub rate: Option<f64>,
}

/// What one client saw.
struct ClientTally {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    served_by: BTreeMap<String, u64>,
}

impl ClientTally {
    fn new() -> ClientTally {
        ClientTally {
            // 1 µs to 60 s at 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
            served_by: BTreeMap::new(),
        }
    }

    fn record(&mut self, elapsed: Duration, outcome: Result<String, String>) {
        match outcome {
            Ok(served_by) => {
                self.histogram.saturating_record(elapsed.as_micros() as u64);
                *self.served_by.entry(served_by).or_default() += 1;
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }
}

pub async fn run(plan: &Plan) -> Result<Report> {
    if plan.concurrency == 0 || plan.films == 0 {
        bail!("concurrency and the number of films must be at least 1");
    }
    if let Some(rate) = plan.rate {
        if !(rate.is_finite() && rate >= 1.0) {
            bail!("the rate must be at least 1 request/s, got {rate}");
        }
    }
    let sender = Sender::new(&plan.target, plan.concurrency)?;
    let started = Instant::now();
    let deadline = started + plan.duration;
    let pace = plan.rate.map(|rate| pace(rate, plan.concurrency, deadline));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (sender, plan, pace) = (sender.clone(), plan.clone(), pace.clone());
        clients.spawn(async move {
            let mut tally = ClientTally::new();
            while Instant::now() < deadline {
                if let Some(pace) = &pace {
                    // Closed at the deadline: the client stops waiting then.
                    match pace.acquire().await {
                        Ok(turn) => turn.forget(),
                        Err(_) => break,
                    }
                }
                let query = query(plan.workload, &mut rand::rng(), plan.films);
                let sent = Instant::now();
                let outcome = sender.send(&query, plan.workload).await;
                tally.record(sent.elapsed(), outcome);
            }
            tally
        });
    }
    let mut total = ClientTally::new();
    for tally in clients.join_all().await {
        total
            .histogram
            .add(&tally.histogram)
            .context("merging histograms")?;
        for (k, v) in tally.errors {
            *total.errors.entry(k).or_default() += v;
        }
        for (k, v) in tally.served_by {
            *total.served_by.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    sender.close().await;

    let h = &total.histogram;
    let ms = |us: u64| us as f64 / 1000.0;
    let ok = h.len();
    Ok(Report {
        target: sender.describe(),
        workload: plan.workload,
        concurrency: plan.concurrency,
        duration_s: elapsed,
        requests: ok + total.errors.values().sum::<u64>(),
        errors: total.errors,
        throughput_rps: ok as f64 / elapsed,
        latency_ms: Percentiles {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        },
        served_by: total.served_by,
    })
}

/// Turns to send, given out at `rate` per second until the deadline from a thread of its own:
/// tokio's timers tick in milliseconds, several times the gap between two turns. At most
/// `clients` turns wait unused, so a target that falls behind is not sent a burst after.
fn pace(rate: f64, clients: usize, deadline: Instant) -> Arc<Semaphore> {
    let turns = Arc::new(Semaphore::new(0));
    let given = Arc::clone(&turns);
    std::thread::spawn(move || {
        let (started, gap) = (Instant::now(), Duration::from_secs_f64(1.0 / rate));
        let mut due = 0_u64;
        while Instant::now() < deadline {
            // Every turn due by now, counted from the start so that late wake-ups even out.
            let now = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            let unused = given.available_permits();
            given.add_permits(((now - due) as usize).min(clients.saturating_sub(unused)));
            due = now;
            // Not past the deadline, where the clients are let go.
            std::thread::sleep(gap.min(deadline.saturating_duration_since(Instant::now())));
        }
        given.close();
    });
    turns
}

/// Sends one query and says who served it, or what kind of error it met.
#[derive(Clone)]
enum Sender {
    Gatekeeper {
        // Boxed: the client is several times the size of the other variant.
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        url: Uri,
        mode: Mode,
    },
    Database {
        pool: mysql_async::Pool,
        name: String,
    },
}

impl Sender {
    fn new(target: &Target, concurrency: usize) -> Result<Sender> {
        Ok(match target {
            Target::Gatekeeper { url, mode, from } => {
                // hyper's pooled client, as the services' own hops use (upstream.rs): the
                // client's cost is on the same cores as what it measures.
                let mut connector = HttpConnector::new();
                connector.set_local_address(*from);
                connector.set_nodelay(true);
                Sender::Gatekeeper {
                    client: Box::new(
                        Client::builder(TokioExecutor::new())
                            .pool_max_idle_per_host(concurrency)
                            // Before the gatekeeper's own 10 s idle close (serve.rs).
                            .pool_idle_timeout(Duration::from_secs(5))
                            .build(connector),
                    ),
                    url: format!("{}/api/query", url.trim_end_matches('/'))
                        .parse()
                        .with_context(|| format!("{url} is not an http:// URL"))?,
                    mode: *mode,
                }
            }
            Target::Database {
                address,
                port,
                user,
                password,
                name,
            } => {
                let opts = mysql_async::OptsBuilder::default()
                    .ip_or_hostname(address.clone())
                    .tcp_port(*port)
                    .user(Some(user.clone()))
                    .pass(Some(password.clone()))
                    .db_name(Some("filmdb"))
                    .prefer_socket(false)
                    .pool_opts(
                        mysql_async::PoolOpts::default()
                            .with_constraints(
                                mysql_async::PoolConstraints::new(0, concurrency.max(1))
                                    .context("pool size")?,
                            )
                            // Each client keeps its connection as an application would:
                            // idle ones are kept (with no TTL the driver keeps none and
                            // connects anew for every query), and not reset (a round trip)
                            // between queries.
                            .with_inactive_connection_ttl(Duration::from_secs(60))
                            .with_reset_connection(false),
                    );
                Sender::Database {
                    pool: mysql_async::Pool::new(opts),
                    name: name.clone(),
                }
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Sender::Gatekeeper { mode, .. } => mode.as_str().to_string(),
            Sender::Database { .. } => DIRECT_DB.to_string(),
        }
    }

    async fn send(&self, query: &str, workload: Workload) -> Result<String, String> {
        match self {
            Sender::Gatekeeper { client, url, mode } => {
                let request = QueryRequest {
                    query: query.to_string(),
                    mode: *mode,
                    after_gtid: None,
                };
                let body = serde_json::to_vec(&request).map_err(|_| "encoding".to_string())?;
                let request = Request::post(url.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|_| "encoding".to_string())?;
                let exchange = async {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|_| "connect".to_string())?;
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|_| "connect".to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, body))
                };
                let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                    .await
                    .map_err(|_| "timeout".to_string())??;
                if !status.is_success() {
                    return Err(format!("http-{}", status.as_u16()));
                }
                let body: QueryResponse =
                    serde_json::from_slice(&body).map_err(|_| "bad-response".to_string())?;
                Ok(body.served_by)
            }
            Sender::Database { pool, name } => {
                let result = async {
                    let mut conn = pool.get_conn().await?;
                    if workload == Workload::Write {
                        conn.query_drop(query).await
                    } else {
                        conn.query::<mysql_async::Row, _>(query).await.map(drop)
                    }
                }
                .await;
                match result {
                    Ok(()) => Ok(name.clone()),
                    Err(mysql_async::Error::Server(e)) => Err(format!("server-{}", e.code)),
                    Err(_) => Err("connect".to_string()),
                }
            }
        }
    }

    async fn close(&self) {
        if let Sender::Database { pool, .. } = self {
            let _ = pool.clone().disconnect().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_stay_inside_the_dataset() {
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let q = query(Workload::Range, &mut rng, 100);
            let numbers: Vec<u32> = q
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            let (start, end) = (numbers[0], numbers[1]);
            assert!(start >= 1 && end <= 100 && end - start == 19, "{q}");
        }
        let q = query(Workload::Point, &mut rng, 1);
        assert!(q.ends_with("film_id = 1"), "{q}");
        assert!(query(Workload::Write, &mut rng, 10).starts_with("UPDATE film SET rental_duration"));
    }
}
