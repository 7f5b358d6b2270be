//! status: the steps with their records, and every host with its health, probed live.

use std::time::Duration;

use anyhow::{Context, Result};
use contract::report::DigestStats;

use crate::cluster::{server, services, sql};
use crate::providers;
use crate::state::{Deployment, Host, Paths, Role, Step};
use crate::transport;

pub fn run(paths: &Paths, queries: bool) -> Result<()> {
    // No lock: status only reads, and a step that is running keeps data.json whole.
    let Some(d) = paths.load()? else {
        println!(
            "no deployment at {}; `cargo xtask all` creates one",
            paths.data_json.display()
        );
        return Ok(());
    };
    println!(
        "deployment {} ({} provider), created {}",
        d.id,
        d.provider(),
        d.created_at
    );
    if let Some(at) = &d.torn_down_at {
        println!("torn down at {at}; `cargo xtask provision` starts a new deployment");
    }
    println!("state file: {}", paths.data_json.display());
    println!();
    println!(
        "{:<16} {:<8} {:>8}  {:<20}  {:<20}",
        "STEP", "STATUS", "ATTEMPTS", "STARTED", "FINISHED"
    );
    for step in Step::PIPELINE.into_iter().chain([Step::Teardown]) {
        let r = d.step(step);
        println!(
            "{:<16} {:<8} {:>8}  {:<20}  {:<20}",
            step.to_string(),
            r.status.to_string(),
            r.attempts,
            r.started_at.as_deref().unwrap_or("-"),
            r.finished_at.as_deref().unwrap_or("-"),
        );
        if let Some(error) = &r.error {
            println!("  error: {error}");
        }
    }
    println!();
    println!("{:<14} {:<13} {:<22} HEALTH", "HOST", "ROLE", "ADDRESS");
    for host in &d.hosts {
        let health = if d.is_live() {
            health(&d, host)
        } else {
            "-".to_string()
        };
        println!(
            "{:<14} {:<13} {:<22} {health}",
            host.name,
            host.role.to_string(),
            address(host, &d),
        );
    }
    if queries && d.is_live() {
        println!();
        print_queries(&d)?;
    }
    Ok(())
}

/// Where a host listens, and how its machine is reached.
fn address(host: &Host, d: &Deployment) -> String {
    format!(
        "{}:{} ({})",
        host.address,
        d.port_of(host),
        transport::describe(host)
    )
}

/// One line on a host's health: is its server up, and for a worker, is it replicating and how
/// far behind.
fn health(d: &Deployment, host: &Host) -> String {
    if !host.role.runs_database() {
        return service_health(d, host);
    }
    if !d.processes.contains_key(&server::process_key(host)) {
        return "not started".to_string();
    }
    if let Err(e) = sql::sql(host, "SELECT 1;") {
        return format!("DOWN (not answering: {})", first_line(&format!("{e:#}")));
    }
    if host.role != Role::Worker {
        return "up".to_string();
    }
    match sql::replica_status(host) {
        Ok(Some(s)) if s.healthy() => match s.lag_seconds {
            Some(lag) => format!("up, replicating, lag {lag} s"),
            None => "up, replicating, lag unknown".to_string(),
        },
        Ok(Some(s)) => format!(
            "up, REPLICATION STOPPED (io {}, sql {}) {}",
            yes_no(s.io_running),
            yes_no(s.sql_running),
            s.last_error
        ),
        Ok(None) => "up, not a replica yet".to_string(),
        Err(e) => format!(
            "up, replication state unknown: {}",
            first_line(&format!("{e:#}"))
        ),
    }
}

fn service_health(d: &Deployment, host: &Host) -> String {
    if !d.processes.contains_key(&services::process_key(host)) {
        return "not deployed (cargo xtask deploy-services)".to_string();
    }
    let supervisor = providers::of(d.provider()).supervisor();
    match services::check_health(d, host, supervisor, Duration::ZERO) {
        Ok(()) => "up, /health ok".to_string(),
        Err(e) => format!("DOWN ({})", first_line(&format!("{e:#}"))),
    }
}

/// The proxy's per-digest statistics as a table: the query shapes that took the most time.
fn print_queries(d: &Deployment) -> Result<()> {
    let proxy = d.host(Role::Proxy)?;
    let body = services::get(d, proxy, "/digests")
        .context("asking the proxy for its query statistics (is it deployed and up?)")?;
    let digests: Vec<DigestStats> =
        serde_json::from_str(&body).context("reading the proxy's /digests")?;
    if digests.is_empty() {
        println!("the proxy has served no query yet");
        return Ok(());
    }
    println!(
        "{:>8} {:>6} {:>9} {:>9} {:>8} {:>9}  {:<28} QUERY SHAPE",
        "COUNT", "ERRORS", "ROWS", "TOTAL s", "MEAN ms", "P99 ms", "BACKENDS"
    );
    for q in &digests {
        let backends: Vec<String> = q.backends.iter().map(|(b, n)| format!("{b}:{n}")).collect();
        let text: String = q.text.chars().take(100).collect();
        println!(
            "{:>8} {:>6} {:>9} {:>9.2} {:>8.2} {:>9.2}  {:<28} {text}",
            q.count,
            q.errors,
            q.rows,
            q.total_ms / 1000.0,
            q.mean_ms,
            q.p99_ms,
            backends.join(" "),
        );
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
