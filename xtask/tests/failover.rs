//! Failures end to end on a real local cluster (real MariaDB servers and the real services):
//! the manager SIGKILLed under load, `failover`, the old manager fenced when it comes back,
//! `repair`, and a former manager whose history diverged.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::load::{Load, Seen};
use common::{http, wait_for, Deployment};
use serde_json::{json, Value};

/// Starts a host's server by hand and waits until it answers.
fn start_by_hand(d: &Deployment, host: &str) {
    d.start_server_by_hand(host);
    wait_for("the server to answer", Duration::from_secs(30), || {
        d.root_sql_command(host, "SELECT 1")
            .output()
            .is_ok_and(|o| o.status.success())
    });
}

fn role_of(state: &Value, host: &str) -> String {
    state["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .unwrap()["role"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn failover_keeps_reads_loses_no_write_and_repair_brings_everything_back() {
    let d = Deployment::new("failover", "127.0.31");
    // A person fails over and repairs here: the proxy does neither by itself.
    d.provision(&["--host-cpus", "unlimited", "--failover-after", "0"]);
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);
    let status = d.ok(&["status"]);
    assert!(
        status.contains("up, semi-synchronous (3 workers acknowledging)"),
        "{status}"
    );

    // Load: readers in both strategies, and a writer whose every acknowledged marker is kept.
    let load = Load::start(&d, &["random", "customized"], "fo");
    std::thread::sleep(Duration::from_secs(2));
    d.kill_server("manager");
    load.failed_now();
    std::thread::sleep(Duration::from_millis(1500));
    let failover_started = Instant::now();
    let out = d.ok(&["failover"]);
    let failover_took = failover_started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let Seen {
        reads,
        acknowledged,
        writes,
    } = load.finish();

    // Reads: none failed from a second after the kill to the end, failover included.
    let after: Vec<_> = reads
        .iter()
        .filter(|r| r.since_failure.is_some_and(|s| s > Duration::from_secs(1)))
        .collect();
    let failed: Vec<_> = after.iter().filter(|r| r.status != 200).collect();
    assert!(after.len() > 100, "{} reads", after.len());
    assert!(
        failed.is_empty(),
        "{} of {} reads failed, first: {:?}",
        failed.len(),
        after.len(),
        failed.first().map(|r| &r.body)
    );
    // Writes: back within 10 s of the failover's start.
    let back = writes
        .iter()
        .find(|w| w.at > failover_started && w.status == 200)
        .map(|w| w.at.duration_since(failover_started))
        .expect("no write succeeded after the failover");
    assert!(back < Duration::from_secs(10), "writes back after {back:?}");

    // The record: the promoted worker is the manager, the old one fenced, the failover kept.
    let state = d.state();
    let promoted = state["failovers"][0]["to"].as_str().unwrap().to_string();
    assert!(promoted.starts_with("worker-"), "{state}");
    assert!(out.contains(&format!("{promoted} is the manager")), "{out}");
    assert_eq!(role_of(&state, &promoted), "manager");
    assert_eq!(role_of(&state, "manager"), "worker");
    assert_eq!(state["fenced"], json!(["manager"]));
    assert_eq!(state["failovers"][0]["from"], "manager");

    // No acknowledged write is lost: every marker is on the new manager.
    let held = d.root_sql(
        &promoted,
        "SELECT last_name FROM filmdb.actor WHERE first_name = 'fo'",
    );
    let held: Vec<&str> = held.lines().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|m| !held.contains(&m.as_str()))
        .collect();
    assert!(
        acknowledged.len() > 20,
        "{} writes acknowledged",
        acknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} acknowledged writes: {lost:?}",
        lost.len()
    );
    eprintln!(
        "failover took {failover_took:?}; writes back {back:?} after it began; {} reads after \
         the kill, 0 failed; {} writes acknowledged, 0 lost",
        after.len(),
        acknowledged.len()
    );

    // The old manager comes back by hand: it starts read-only and takes no write.
    start_by_hand(&d, "manager");
    assert_eq!(d.root_sql("manager", "SELECT @@read_only").trim(), "1");
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..10 {
        let (status, body) = d.api(
            "INSERT INTO actor (first_name, last_name) VALUES ('fo', 'fenced')",
            "write",
        );
        assert_eq!(
            (status, body["served_by"].as_str()),
            (200, Some(promoted.as_str())),
            "{body}"
        );
    }
    let status = d.ok(&["status"]);
    assert!(status.contains("FENCED"), "{status}");

    // repair: it becomes a worker of the new manager and catches up.
    let out = d.ok(&["repair"]);
    assert!(
        out.contains(&format!(
            "manager, fenced since the failover, replicates from {promoted}"
        )),
        "{out}"
    );
    assert_eq!(d.state()["fenced"], Value::Null);
    let (status, body) = d.api(
        "INSERT INTO actor (first_name, last_name) VALUES ('fo', 'after-repair')",
        "write",
    );
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the write on the old manager",
        Duration::from_secs(20),
        || {
            d.root_sql(
                "manager",
                "SELECT COUNT(*) FROM filmdb.actor WHERE last_name = 'after-repair'",
            )
            .trim()
                == "1"
        },
    );
    let out = d.ok(&["repair"]);
    assert!(out.contains("nothing drifted"), "{out}");

    // A dead worker: repair starts it again and it catches up.
    let victim = if promoted == "worker-1" {
        "worker-2"
    } else {
        "worker-1"
    };
    d.kill_server(victim);
    let started = Instant::now();
    let out = d.ok(&["repair"]);
    eprintln!("repair of a dead worker took {:?}", started.elapsed());
    assert!(out.contains(&format!("started {victim}")), "{out}");
    wait_for("every backend healthy", Duration::from_secs(20), || {
        let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
        let h: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        h["backends"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
    });
}

/// A former manager that holds a transaction the promoted worker never had is not put back
/// into replication on that history: repair says it diverged, sets its data aside and
/// rebuilds it from the new manager's, and it then replicates. Meanwhile semi-sync falls back
/// when no worker acknowledges, and status says so.
#[test]
fn a_diverged_old_manager_is_rebuilt_from_the_new_one() {
    let d = Deployment::new("diverged", "127.0.32");
    d.provision(&[
        "--host-cpus",
        "unlimited",
        "--workers",
        "2",
        "--failover-after",
        "0",
    ]);
    d.ok(&["install-cluster"]);
    // The proxy does the failover a person asks for.
    d.ok(&["deploy-services"]);

    // No worker acknowledging: the manager waits out the timeout, then goes on asynchronously.
    for worker in ["worker-1", "worker-2"] {
        d.root_sql(worker, "STOP SLAVE;");
    }
    d.root_sql(
        "manager",
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('no', 'ack')",
    );
    let status = d.ok(&["status"]);
    assert!(
        status.contains("ASYNCHRONOUS: semi-sync fell back"),
        "{status}"
    );
    let out = d.ok(&["repair"]);
    assert!(
        out.contains("worker-1 replicates from manager again"),
        "{out}"
    );
    wait_for("semi-sync back on", Duration::from_secs(20), || {
        let _ = d.root_sql(
            "manager",
            "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('ack', 'again')",
        );
        d.ok(&["status"])
            .contains("up, semi-synchronous (2 workers acknowledging)")
    });

    d.kill_server("manager");
    d.ok(&["failover", "--to", "worker-2"]);
    start_by_hand(&d, "manager");
    // Root is not bound by read_only: a transaction only the old manager has.
    d.root_sql(
        "manager",
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('only', 'here')",
    );
    let out = d.ok(&["repair"]);
    assert!(out.contains("manager diverged: it holds"), "{out}");
    assert!(out.contains("rebuilt from worker-2's data"), "{out}");
    assert_eq!(d.state()["fenced"], Value::Null);
    let kept: Vec<_> = std::fs::read_dir(d.host_dir("manager"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("data.diverged-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "its own data is kept aside");
    let only = "SELECT COUNT(*) FROM filmdb.actor WHERE first_name = 'only'";
    assert_eq!(
        d.root_sql("manager", only).trim(),
        "0",
        "the diverged row is gone"
    );
    assert_eq!(d.root_sql("manager", "SELECT @@read_only").trim(), "1");
    d.root_sql(
        "worker-2",
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('after', 'rebuild')",
    );
    wait_for(
        "the rebuilt server to replicate",
        Duration::from_secs(20),
        || {
            d.root_sql(
                "manager",
                "SELECT COUNT(*) FROM filmdb.actor WHERE first_name = 'after'",
            )
            .trim()
                == "1"
        },
    );
    let out = d.ok(&["repair"]);
    assert!(out.contains("nothing drifted"), "{out}");
}

/// A worker frozen with SIGSTOP (alive, not answering) is left out within the probe timeout
/// and every read still succeeds; after SIGCONT it is back. A killed proxy or trusted host
/// makes the gatekeeper answer at once (no hang), and repair starts it again.
#[test]
fn stalled_and_killed_parts_are_left_out_and_repaired() {
    let d = Deployment::new("stalls", "127.0.34");
    d.provision(&["--host-cpus", "unlimited", "--workers", "2"]);
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);
    let health = || -> Value {
        let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    };
    let healthy = |name: &str| {
        health()["backends"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["name"] == name && b["healthy"] == true))
    };
    wait_for("worker-1 healthy", Duration::from_secs(10), || {
        healthy("worker-1")
    });

    let pid = d.state()["processes"]["worker-1/mariadbd"]["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let frozen = Instant::now();
    // Watches the proxy's view on its own, while reads (some held by the frozen worker) go on.
    let watcher = {
        let proxy = d.service("proxy");
        std::thread::spawn(move || {
            while frozen.elapsed() < Duration::from_secs(12) {
                let r = http(None, &proxy, "GET", "/health", &[], b"");
                let h: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                let out = h["backends"].as_array().is_some_and(|b| {
                    b.iter()
                        .any(|b| b["name"] == "worker-1" && b["healthy"] == false)
                });
                if out {
                    return Some(frozen.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    };
    let mut slowest = Duration::ZERO;
    while frozen.elapsed() < Duration::from_secs(12) {
        let started = Instant::now();
        let (status, body) = d.api("SELECT COUNT(*) AS n FROM film", "random");
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    signal("-CONT");
    let left_out_after = watcher
        .join()
        .unwrap()
        .expect("the frozen worker was never left out");
    eprintln!("frozen worker left out after {left_out_after:?}; slowest read {slowest:?}");
    // The probe gives up after 2 s, and probes run every 500 ms.
    assert!(
        left_out_after < Duration::from_secs(4),
        "{left_out_after:?}"
    );
    // A read caught on it ends within the query timeout (the 5 s statement limit and 2 s),
    // retried on the other worker.
    assert!(slowest < Duration::from_secs(8), "{slowest:?}");
    wait_for("worker-1 back", Duration::from_secs(10), || {
        healthy("worker-1")
    });

    for service in ["proxy", "trusted-host"] {
        let pid = d.state()["processes"][format!("{service}/service")]["pid"]
            .as_u64()
            .unwrap();
        assert!(Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        let (status, body) = d.api("SELECT 1 AS one", "random");
        assert!(
            [502, 503].contains(&status) && started.elapsed() < Duration::from_secs(2),
            "{service} killed: {status} after {:?}: {body}",
            started.elapsed()
        );
        let status = d.ok(&["status"]);
        assert!(
            status.contains("DOWN") && status.contains(&format!("`{}` checks", d.xtask("repair"))),
            "{status}"
        );
        let out = d.ok(&["repair"]);
        assert!(out.contains(&format!("started {service}")), "{out}");
        let (status, body) = d.api("SELECT 1 AS one", "random");
        assert_eq!(status, 200, "{body}");
    }
}
