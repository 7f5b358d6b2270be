//! status: the steps with their records, and every host with its health, probed live.

use std::time::Duration;

use anyhow::Result;

use crate::db;
use crate::deploy_services;
use crate::local;
use crate::state::{Deployment, Host, Paths, Role, StepStatus};
use crate::steps::Step;

pub fn run(paths: &Paths) -> Result<()> {
    // No lock: status only reads, and a step that is running keeps data.json whole.
    let Some(d) = paths.load()? else {
        println!(
            "no deployment at {}; `cargo xtask all` creates one",
            paths.data_json.display()
        );
        return Ok(());
    };
    println!(
        "deployment {} ({:?} provider), created {}",
        d.id, d.provider, d.created_at
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
            step.name(),
            status_word(r.status),
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
            host.role.as_str(),
            address(host, &d),
        );
    }
    Ok(())
}

/// Where a host listens, and for a remote host where SSH reaches it.
fn address(host: &Host, d: &Deployment) -> String {
    let listen = format!("{}:{}", host.address, local::port_of(host, &d.settings));
    match &host.ssh {
        Some(ssh) => format!("{listen} (ssh {})", ssh.address),
        None => listen,
    }
}

fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
    }
}

/// One line on a host's health: is its server up, and for a worker, is it replicating and how
/// far behind.
fn health(d: &Deployment, host: &Host) -> String {
    if !host.role.runs_database() {
        return service_health(d, host);
    }
    let recorded = d.processes.get(&format!("{}/mariadbd", host.name));
    match recorded {
        None => return "not started".to_string(),
        // Only a process of this machine can be checked by pid; a remote one is asked below.
        Some(p) if host.ssh.is_none() && !local::is_running(p) => {
            return format!("DOWN (pid {} is gone)", p.pid)
        }
        Some(_) => {}
    }
    if let Err(e) = db::sql(host, "SELECT 1;") {
        return format!("DOWN (not answering: {})", first_line(&format!("{e:#}")));
    }
    if host.role != Role::Worker {
        return "up".to_string();
    }
    match db::replica_status(host) {
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
    match d.processes.get(&format!("{}/service", host.name)) {
        None => return "not deployed (cargo xtask deploy-services)".to_string(),
        Some(p) if host.ssh.is_none() && !local::is_running(p) => {
            return format!("DOWN (pid {} is gone)", p.pid)
        }
        Some(_) => {}
    }
    if host.ssh.is_some() {
        return match deploy_services::check_health(d, host, Duration::ZERO) {
            Ok(()) => "up, /health ok".to_string(),
            Err(e) => format!("DOWN ({})", first_line(&format!("{e:#}"))),
        };
    }
    match local::http_get(&host.address, d.settings.service_port, "/health") {
        Ok((200, _)) => "up, /health ok".to_string(),
        Ok((code, _)) => format!("UNHEALTHY (/health answered {code})"),
        Err(e) => format!("DOWN (/health: {e})"),
    }
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
