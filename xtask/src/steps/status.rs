//! status: the steps with their records, and every host with its health, probed live.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use contract::report::DigestStats;

use crate::cluster::{galera, limits, server, services, sql, topology};
use crate::providers;
use crate::state::{
    self, Deployment, Host, HostMemory, Lock, Paths, Role, ScalePhase, Session, Step, StepStatus,
};
use crate::transport;

pub fn run(paths: &Paths, queries: bool) -> Result<()> {
    // The record is brought up to what the servers and the proxy say when no other run holds
    // the deployment; otherwise status only reads (a running step keeps data.json whole).
    let mut followed = Vec::new();
    if let Ok(lock) = Lock::acquire(paths) {
        if let Ok(mut session) = Session::open_live(paths, lock) {
            followed = topology::follow(&mut session)?;
        }
    }
    let Some(d) = paths.load()? else {
        println!(
            "no deployment at {}; `{}` creates one",
            paths.data_json.display(),
            state::command("all")
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
        println!(
            "torn down at {at}; `{}` starts a new deployment",
            state::command("provision")
        );
    }
    println!("state file: {}", paths.data_json.display());
    for change in &followed {
        println!("recorded from the servers and the proxy: {change}");
    }
    if let Some(charges) = d
        .is_live()
        .then(|| providers::of(d.provider()).charges(&d))
        .flatten()
    {
        println!("{charges}");
    }
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
    println!("host limits: {}", d.limits.describe());
    let usage = if d.is_live() {
        cpu_use(&d)
    } else {
        BTreeMap::new()
    };
    let width = d
        .hosts
        .iter()
        .map(|h| address(h, &d).len())
        .max()
        .unwrap_or(0);
    println!(
        "{:<14} {:<13} {:<width$} {:<14} {:>7}  HEALTH",
        "HOST", "ROLE", "ADDRESS", "LIMIT", "CPU NOW"
    );
    let mut drifted = false;
    let reads = if d.is_live() {
        proxy_reads(&d)
    } else {
        BTreeMap::new()
    };
    for host in &d.hosts {
        let mut health = if d.is_live() {
            health(&d, host)
        } else {
            "-".to_string()
        };
        if let Some(phase) = d.scaling.get(&host.name) {
            health = format!("{}: {health}", scale_phase(*phase));
        } else if let Some((serves, problem)) = reads.get(&host.name) {
            health += &match serves {
                true => "; gets reads".to_string(),
                false => format!("; gets NO reads ({problem})"),
            };
        }
        drifted |= ["DOWN", "STOPPED", "FENCED", "READ-ONLY", "not a replica"]
            .iter()
            .any(|sign| health.contains(sign));
        println!(
            "{:<14} {:<13} {:<width$} {:<14} {:>7}  {health}{}",
            host.name,
            host.role.to_string(),
            address(host, &d),
            limit(&d, &host.name),
            cpu_now(&host.name, &usage),
            drift(&host.name, &usage),
        );
    }
    if let Ok(client) = d.bench_client() {
        if limits::of(&d, &client.name).is_some() {
            println!(
                "{:<14} {:<13} {:<width$} {:<14} {:>7}  runs sysbench and the load generator",
                client.name,
                "",
                "",
                limit(&d, &client.name),
                cpu_now(&client.name, &usage),
            );
        }
    }
    if drifted {
        println!();
        println!(
            "something is down or out of place: `{}` checks every server, service and replica \
             and fixes what drifted",
            state::command("repair")
        );
    }
    if d.is_live() {
        print_failover(&d);
    }
    if queries && d.is_live() {
        println!();
        print_queries(&d)?;
    }
    Ok(())
}

/// How long status watches the hosts' cgroups to say how much CPU each uses.
const CPU_WATCH: Duration = Duration::from_secs(1);

/// What each limited host (and the bench client) uses now, by name, from its cgroup's
/// accounting over one second: CPUs, and the quota in force when it is not the recorded one.
fn cpu_use(d: &Deployment) -> BTreeMap<String, (f64, Option<String>)> {
    let Ok(client) = d.bench_client() else {
        return BTreeMap::new();
    };
    let hosts: Vec<&Host> = d.hosts.iter().chain([&client]).collect();
    let sample = || -> BTreeMap<String, limits::GroupUse> {
        hosts
            .iter()
            .filter_map(|h| {
                let used = limits::usage(h, limits::of(d, &h.name)?).ok()?;
                Some((h.name.clone(), used))
            })
            .collect()
    };
    let (before, started) = (sample(), Instant::now());
    if before.is_empty() {
        return BTreeMap::new();
    }
    std::thread::sleep(CPU_WATCH);
    let after = sample();
    let seconds = started.elapsed().as_secs_f64();
    after
        .into_iter()
        .filter_map(|(name, now)| {
            let cpus = (now.cpu_seconds - before.get(&name)?.cpu_seconds) / seconds;
            let recorded = limits::of(d, &name)?.cpus.map(|c| c.as_cpus());
            let same = match (now.quota_cpus, recorded) {
                (Some(a), Some(b)) => (a - b).abs() < 0.001,
                (a, b) => a.is_none() && b.is_none(),
            };
            let drifted = (!same).then(|| {
                let now = now
                    .quota_cpus
                    .map_or("none".to_string(), |q| format!("{q} CPU"));
                format!(
                    "its quota is {now} now, not the {} recorded (an interrupted bench left it \
                     slowed? `{}` restores it)",
                    recorded.map_or("none".to_string(), |q| format!("{q} CPU")),
                    state::command("bench")
                )
            });
            Some((name, (cpus, drifted)))
        })
        .collect()
}

/// "0.25 CPU, 1G": a host's limits.
fn limit(d: &Deployment, name: &str) -> String {
    let Some(limit) = limits::of(d, name) else {
        return "unlimited".to_string();
    };
    let cpus = limit
        .cpus
        .map_or("no CPU limit".to_string(), |c| format!("{c} CPU"));
    let memory = HostMemory {
        mib: limit.memory_mib,
    };
    format!("{cpus}, {memory}")
}

/// The CPUs a host uses now, where its group says.
fn cpu_now(name: &str, usage: &BTreeMap<String, (f64, Option<String>)>) -> String {
    usage
        .get(name)
        .map_or("-".to_string(), |(used, _)| format!("{used:.2}"))
}

/// What the host's group says that the record does not.
fn drift(name: &str, usage: &BTreeMap<String, (f64, Option<String>)>) -> String {
    match usage.get(name) {
        Some((_, Some(why))) => format!("; {why}"),
        _ => String::new(),
    }
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
    if d.fenced.contains(&host.name) {
        return format!(
            "up, FENCED: a former manager, read-only until `{}` makes it a worker of the manager",
            state::command("repair")
        );
    }
    if host.role == Role::Manager {
        if sql::sql(host, "SELECT @@read_only;").is_ok_and(|r| r.trim() != "0") {
            return format!(
                "up, READ-ONLY: it started again on its own (a crash, a reboot) and takes no \
                 write until `{}` opens it",
                state::command("repair")
            );
        }
        return match sql::semi_sync(host) {
            Ok(sql::SemiSync::On { workers }) => {
                format!("up, semi-synchronous ({workers} workers acknowledging)")
            }
            Ok(sql::SemiSync::FellBack) => "up, ASYNCHRONOUS: semi-sync fell back (no worker \
                                            acknowledged within the timeout)"
                .to_string(),
            Ok(sql::SemiSync::Disabled) => "up, asynchronous replication".to_string(),
            Err(e) => format!("up, semi-sync unknown: {}", first_line(&format!("{e:#}"))),
        };
    }
    if host.role == Role::Node {
        return node_health(d, host);
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

/// What `scale` is doing with a worker, as status says it.
fn scale_phase(phase: ScalePhase) -> &'static str {
    match phase {
        ScalePhase::Made => "JOINING (host made)",
        ScalePhase::Copying => "JOINING (copying a worker's data)",
        ScalePhase::CatchingUp => "JOINING (catching up with the manager)",
        ScalePhase::Leaving => "LEAVING (its reads finish, then it goes)",
    }
}

/// Whether the proxy sends each worker reads, and if not why, as its /health says (nothing
/// when the services are not deployed or the proxy does not answer).
fn proxy_reads(d: &Deployment) -> BTreeMap<String, (bool, String)> {
    let Ok(proxy) = d.host(Role::Proxy) else {
        return BTreeMap::new();
    };
    if d.step(Step::DeployServices).status != StepStatus::Done {
        return BTreeMap::new();
    }
    let Some(health) = services::get(d, proxy, "/health")
        .ok()
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
    else {
        return BTreeMap::new();
    };
    health["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == "worker" || b["role"] == "node")
        .filter_map(|b| {
            let name = b["name"].as_str()?.to_string();
            let problem = b["problem"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string();
            Some((name, (b["healthy"] == true, problem)))
        })
        .collect()
}

/// A Galera node: its wsrep state, its component's size, flow control, and whether the proxy
/// sends it the writes.
fn node_health(d: &Deployment, host: &Host) -> String {
    let state = match galera::node_state(host) {
        Ok(state) => state,
        Err(e) => return format!("up, wsrep state unknown: {}", first_line(&format!("{e:#}"))),
    };
    let verdict = match state.may_serve() {
        Ok(()) => state.state.clone(),
        Err(why) => format!("NOT SERVING: {why}"),
    };
    let writer = d
        .host(Role::Proxy)
        .ok()
        .and_then(|proxy| services::get(d, proxy, "/health").ok())
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|health| Some(health.get("writer")?.as_str()? == host.name));
    format!(
        "up, {verdict}, cluster size {}, flow control paused {:.1} %, receive queue {}{}",
        state.cluster_size,
        state.flow_control_paused * 100.0,
        state.recv_queue,
        match writer {
            Some(true) => ", WRITER (the proxy sends it the writes)",
            _ => "",
        }
    )
}

fn service_health(d: &Deployment, host: &Host) -> String {
    if !d.processes.contains_key(&services::process_key(host)) {
        return format!("not deployed (`{}`)", state::command("deploy-services"));
    }
    match services::check_health(d, host, Duration::ZERO) {
        Ok(()) => "up, /health ok".to_string(),
        Err(e) => format!("DOWN ({})", first_line(&format!("{e:#}"))),
    }
}

/// How the proxy fails over, what it did and what it thinks now (replication).
fn print_failover(d: &Deployment) {
    if d.engine() != crate::state::Engine::Replication
        || d.step(Step::DeployServices).status != crate::state::StepStatus::Done
    {
        return;
    }
    println!();
    match services::failover_history(d) {
        Err(e) => println!(
            "automatic failover: the proxy does not say ({})",
            first_line(&format!("{e:#}"))
        ),
        Ok(h) if h.after_ms == 0 => println!(
            "automatic failover: off (--failover-after 0): `{}` promotes a worker",
            state::command("failover")
        ),
        Ok(h) => {
            println!(
                "automatic failover: after the manager is unreachable for {} s (and every \
                 worker lost it); cool-down {} s",
                h.after_ms / 1000,
                h.cooldown_seconds
            );
            for f in &h.failovers {
                println!(
                    "  failover at {}: {} -> {} ({}, {})",
                    f.at,
                    f.from,
                    f.to,
                    if f.automatic { "by itself" } else { "asked" },
                    f.reason
                );
            }
            for r in &h.rejoins {
                println!(
                    "  {} at {}: {}",
                    r.host,
                    r.at,
                    if r.rejoined {
                        "rejoined"
                    } else {
                        "left fenced"
                    }
                );
            }
            if let Some((verdict, reason, at)) = &h.last_verdict {
                println!("  last verdict ({verdict}, {at}): {reason}");
            }
        }
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
