//! Automatic failover by the proxy, on real local clusters (127.0.35-36.x): the manager killed
//! under load with no command run, the old manager rejoining by itself (or staying fenced when
//! it diverged), the cool-down, and the cases where the proxy must not fail over (a manager
//! paused briefly, a proxy cut off from a manager that is alive).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::load::Load;
use common::{http, wait_for, Deployment};
use serde_json::Value;

/// How long the manager must be gone before the proxy fails over, in these tests.
const AFTER: u64 = 2;
/// The cool-down of the test that fails over several times in a row.
const COOLDOWN: u64 = 5;

fn role_of(d: &Deployment, host: &str) -> String {
    let state = d.state();
    let hosts = state["hosts"].as_array().unwrap();
    let found = hosts.iter().find(|h| h["name"] == host).unwrap();
    found["role"].as_str().unwrap().to_string()
}

/// The proxy's failover history (GET /failovers).
fn history(d: &Deployment) -> Value {
    let r = http(None, &d.service("proxy"), "GET", "/failovers", &[], b"");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn metrics(d: &Deployment) -> String {
    http(None, &d.service("proxy"), "GET", "/metrics", &[], b"").body
}

fn write(d: &Deployment, marker: &str) -> (u16, Value) {
    d.api(
        &format!("INSERT INTO actor (first_name, last_name) VALUES ('auto', '{marker}')"),
        "write",
    )
}

/// Kills the manager's server under load, with no command run, and waits for the first write
/// the chain accepts: returns how long after the kill it came and who took it.
fn kill_and_time_the_failover(d: &Deployment, manager: &str) -> (Duration, String) {
    d.kill_server(manager);
    first_write_after(d, Instant::now(), Duration::from_secs(AFTER + 10))
}

/// Waits for the first write the chain accepts, for at most `bound` after `since`: how long
/// after `since` it came and who took it.
fn first_write_after(d: &Deployment, since: Instant, bound: Duration) -> (Duration, String) {
    loop {
        let (code, body) = write(d, "probe");
        if code == 200 {
            return (
                since.elapsed(),
                body["served_by"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            since.elapsed() < bound,
            "no write accepted {:?} after the manager was lost: {body}",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_proxy_fails_over_by_itself_and_the_old_manager_rejoins() {
    let d = Deployment::new("auto-failover", "127.0.35");
    d.provision(&[
        "--host-cpus",
        "unlimited",
        "--workers",
        "3",
        "--failover-after",
        &AFTER.to_string(),
        "--failover-cooldown",
        "15",
    ]);
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);

    // The manager SIGKILLed under read and write load, no command run.
    let load = Load::start(&d, &["random", "customized"], "auto");
    std::thread::sleep(Duration::from_secs(2));
    let failed_at = load.failed_now();
    let (back_after, promoted) = kill_and_time_the_failover(&d, "manager");
    std::thread::sleep(Duration::from_secs(2));
    let seen = load.finish();
    eprintln!("first write accepted {back_after:?} after the kill, on {promoted}");
    assert!(
        back_after <= Duration::from_secs(AFTER + 2),
        "writes came back {back_after:?} after the kill (--failover-after {AFTER})"
    );
    assert!(promoted.starts_with("worker-"), "{promoted}");
    let after: Vec<_> = seen
        .reads
        .iter()
        .filter(|r| r.since_failure.is_some_and(|s| s > Duration::from_secs(1)))
        .collect();
    let failed: Vec<_> = after.iter().filter(|r| r.status != 200).collect();
    assert!(
        after.len() > 100,
        "only {} reads after the kill",
        after.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} reads failed after the kill, the first: {}",
        failed.len(),
        after.len(),
        failed[0].body
    );
    let held = d.root_sql(
        &promoted,
        "SELECT last_name FROM filmdb.actor WHERE first_name = 'auto'",
    );
    let held: Vec<&str> = held.lines().collect();
    assert!(seen.acknowledged.len() > 20, "{}", seen.acknowledged.len());
    for marker in &seen.acknowledged {
        assert!(
            held.contains(&marker.as_str()),
            "{marker} acknowledged and lost"
        );
    }
    assert!(failed_at.elapsed() > back_after);
    eprintln!(
        "{} reads after the kill, 0 failed; {} writes acknowledged, 0 lost",
        after.len(),
        seen.acknowledged.len()
    );

    // The proxy says what it decided and why; status records it and shows the new roles.
    let said = history(&d);
    assert_eq!(said["failovers"][0]["from"], "manager", "{said}");
    assert_eq!(said["failovers"][0]["to"], promoted.as_str(), "{said}");
    assert_eq!(said["failovers"][0]["automatic"], true, "{said}");
    let reason = said["failovers"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("every worker"), "{reason}");
    let m = metrics(&d);
    assert!(m.contains("proxy_failovers_total 1\n"), "{m}");
    assert!(
        m.contains("proxy_failover_verdicts_total{verdict=\"fail-over\"}"),
        "{m}"
    );
    assert!(
        m.contains("proxy_failover_verdicts_total{verdict=\"wait\"}"),
        "{m}"
    );
    let log = std::fs::read_to_string(d.host_dir("proxy").join("service.log")).unwrap();
    assert!(
        log.contains("failed over: writes go to the new manager"),
        "{log}"
    );
    let status = d.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "recorded from the servers and the proxy: the proxy failed over from manager to {promoted}"
        )),
        "{status}"
    );
    assert!(
        status.contains("(by itself, manager unreachable for"),
        "{status}"
    );
    assert_eq!(role_of(&d, &promoted), "manager");
    assert_eq!(role_of(&d, "manager"), "worker");
    assert_eq!(d.state()["failovers"][0]["automatic"], true);
    let failover_lines: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("proxy_failover") || l.starts_with("proxy_fenced"))
        .collect();
    eprintln!(
        "status said:\n{status}\n/metrics said:\n{}",
        failover_lines.join("\n")
    );

    // The old manager comes back with nothing more than the new one had: it becomes a worker
    // of the new manager by itself and receives new writes.
    d.start_server_by_hand("manager");
    wait_for("the old manager to rejoin", Duration::from_secs(30), || {
        history(&d)["rejoins"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["host"] == "manager" && r["rejoined"] == true)
        })
    });
    let (code, body) = write(&d, "after-rejoin");
    assert_eq!(code, 200, "{body}");
    wait_for(
        "the rejoined manager to get the write",
        Duration::from_secs(20),
        || {
            d.root_sql(
                "manager",
                "SELECT COUNT(*) FROM filmdb.actor WHERE last_name = 'after-rejoin'",
            )
            .trim()
                == "1"
        },
    );
    let status = d.ok(&["status"]);
    assert!(status.contains("manager rejoined as a worker"), "{status}");
    assert_eq!(d.state()["fenced"], Value::Null);

    // The new manager lost within the cool-down: refused, and said; after it, writes come back
    // a second time.
    let second_loss = Instant::now();
    d.kill_server(&promoted);
    wait_for(
        "the refusal within the cool-down",
        Duration::from_secs(15),
        || metrics(&d).contains("within the cool-down"),
    );
    let (code, body) = write(&d, "refused");
    assert_eq!(code, 503, "{body}");
    assert_eq!(history(&d)["failovers"].as_array().unwrap().len(), 1);
    // The cool-down (15 s) runs out within 30 s of the second loss.
    let (back_after, second) = first_write_after(&d, second_loss, Duration::from_secs(30));
    eprintln!(
        "second failover: writes back {:?} after the second loss, on {second}",
        second_loss.elapsed()
    );
    assert_ne!(second, promoted);
    let said = history(&d);
    assert_eq!(said["failovers"].as_array().unwrap().len(), 2, "{said}");
    let at =
        |i: usize| humantime::parse_rfc3339(said["failovers"][i]["at"].as_str().unwrap()).unwrap();
    let apart = at(1).duration_since(at(0)).unwrap();
    assert!(apart >= Duration::from_secs(15), "{apart:?} apart: {said}");
    assert!(back_after < Duration::from_secs(30));

    // A planned switchover still goes by `cargo xtask failover --to`.
    let target = ["worker-1", "worker-2", "worker-3", "manager"]
        .into_iter()
        .find(|h| *h != second && *h != promoted.as_str())
        .unwrap();
    let out = d.ok(&["failover", "--to", target]);
    assert!(out.contains(&format!("{target} is the manager")), "{out}");
    let (code, body) = write(&d, "switched");
    assert_eq!(
        (code, body["served_by"].as_str()),
        (200, Some(target)),
        "{body}"
    );
}

/// Drops the proxy's packets to one server's database port while it lives: the proxy (root)
/// loses it, the servers' own replication (the mysql account) does not.
struct CutOff {
    rule: Vec<String>,
}

impl CutOff {
    /// The proxy's packets (root's) to the server's database port.
    fn proxy_from(address: &str) -> CutOff {
        CutOff::new(&[
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            address,
            "--dport",
            "3306",
            "-m",
            "owner",
            "--uid-owner",
            "0",
            "-j",
            "DROP",
        ])
    }

    /// Everyone's packets to the server's database port: the proxy's and its workers'.
    fn everyone_from(address: &str) -> CutOff {
        CutOff::new(&[
            "OUTPUT", "-p", "tcp", "-d", address, "--dport", "3306", "-j", "DROP",
        ])
    }

    fn new(rule: &[&str]) -> CutOff {
        let rule: Vec<String> = rule.iter().map(|s| s.to_string()).collect();
        let added = Command::new("iptables")
            .arg("-A")
            .args(&rule)
            .status()
            .expect("running iptables (apt-get install iptables)");
        assert!(added.success());
        CutOff { rule }
    }
}

impl Drop for CutOff {
    fn drop(&mut self) {
        Command::new("iptables")
            .arg("-D")
            .args(&self.rule)
            .status()
            .ok();
    }
}

#[test]
fn no_failover_when_the_manager_only_pauses_or_only_the_proxy_lost_it() {
    let d = Deployment::new("no-failover", "127.0.36");
    d.provision(&[
        "--host-cpus",
        "unlimited",
        "--workers",
        "2",
        "--failover-after",
        "3",
        "--failover-cooldown",
        &COOLDOWN.to_string(),
    ]);
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);
    let (code, body) = write(&d, "before");
    assert_eq!(code, 200, "{body}");

    // Paused for less than --failover-after: no failover.
    let pid = d.state()["processes"]["manager/mariadbd"]["pid"]
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
    std::thread::sleep(Duration::from_millis(2000));
    signal("-CONT");
    wait_for("writes after the pause", Duration::from_secs(10), || {
        write(&d, "after-pause").0 == 200
    });
    std::thread::sleep(Duration::from_secs(4));
    assert!(history(&d)["failovers"].as_array().unwrap().is_empty());

    // The proxy cut off from the manager, which lives and serves its workers: the workers
    // still receive from it, so no failover; writes fail fast; nothing is written elsewhere.
    let manager = d.address("manager");
    let before = d
        .root_sql("worker-1", "SELECT @@gtid_slave_pos")
        .trim()
        .to_string();
    let cut = CutOff::proxy_from(&manager);
    wait_for(
        "the proxy to lose the manager",
        Duration::from_secs(10),
        || metrics(&d).contains("still receives from it"),
    );
    let started = Instant::now();
    let (code, body) = write(&d, "cut-off");
    assert_eq!(code, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body["error"]["code"], "manager-unavailable", "{body}");
    std::thread::sleep(Duration::from_secs(5));
    assert!(history(&d)["failovers"].as_array().unwrap().is_empty());
    for worker in ["worker-1", "worker-2"] {
        assert_eq!(d.root_sql(worker, "SELECT @@read_only").trim(), "1");
    }
    // The manager itself still takes writes from its own side, and its workers follow it.
    d.root_sql(
        "manager",
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('auto', 'on-the-manager')",
    );
    wait_for(
        "worker-1 to follow the manager",
        Duration::from_secs(10),
        || d.root_sql("worker-1", "SELECT @@gtid_slave_pos").trim() != before,
    );
    let log = std::fs::read_to_string(d.host_dir("proxy").join("service.log")).unwrap();
    assert!(log.contains("only the proxy lost it"), "{log}");
    drop(cut);
    wait_for(
        "writes back on the same manager",
        Duration::from_secs(15),
        || {
            let (code, body) = write(&d, "after-cut");
            code == 200 && body["served_by"] == "manager"
        },
    );
    assert!(history(&d)["failovers"].as_array().unwrap().is_empty());
    assert_eq!(role_of(&d, "manager"), "manager");
    // Nobody but the proxy can write there: the other accounts on it may not.
    let bench = d.tcp_sql(
        "manager",
        "bench",
        &d.secret("bench_password"),
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('not', 'the proxy')",
    );
    assert!(
        !bench.status.success(),
        "the bench account wrote on the manager"
    );

    // Cut off from everyone, alive and writable: once every worker lost it, the proxy fails
    // over. It commits a write nobody else has while cut off (as a write in flight at the cut
    // can, once semi-sync gives up waiting). When the cut heals, the proxy fences it at once
    // (never a second writer) and leaves it fenced.
    let cut = CutOff::everyone_from(&manager);
    let partitioned = Instant::now();
    let (back_after, promoted) = first_write_after(&d, partitioned, Duration::from_secs(40));
    eprintln!("cut off from everyone: writes back on {promoted} {back_after:?} after the cut");
    assert!(promoted.starts_with("worker-"), "{promoted}");
    assert_eq!(d.root_sql("manager", "SELECT @@read_only").trim(), "0");
    d.root_sql(
        "manager",
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('cut', 'off')",
    );
    drop(cut);
    wait_for("the old manager fenced", Duration::from_secs(30), || {
        history(&d)["rejoins"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["host"] == "manager" && r["rejoined"] == false)
        })
    });
    assert_eq!(d.root_sql("manager", "SELECT @@read_only").trim(), "1");
    let (code, body) = write(&d, "after-heal");
    assert_eq!(
        (code, body["served_by"].as_str()),
        (200, Some(promoted.as_str())),
        "{body}"
    );

    // The manager killed: the proxy fails over. It comes back holding a write nobody else has
    // (made by hand while nobody could reach it): it stays fenced, never takes a write, and
    // repair rebuilds it.
    let current = promoted;
    std::thread::sleep(Duration::from_secs(COOLDOWN));
    let (_, promoted) = kill_and_time_the_failover(&d, &current);
    let config = d.host_dir(&current).join("my.cnf");
    let mut hidden = Command::new("mariadbd")
        .arg(format!("--defaults-file={}", config.display()))
        .arg("--skip-networking")
        .env(
            "PATH",
            format!("{}:/usr/sbin", std::env::var("PATH").unwrap_or_default()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the hidden server", Duration::from_secs(30), || {
        d.root_sql_command(&current, "SELECT 1")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    d.root_sql(
        &current,
        "INSERT INTO filmdb.actor (first_name, last_name) VALUES ('only', 'here')",
    );
    assert!(Command::new("kill")
        .args(["-TERM", &hidden.id().to_string()])
        .status()
        .unwrap()
        .success());
    hidden.wait().unwrap();
    d.start_server_by_hand(&current);
    wait_for(
        "the proxy to leave it fenced",
        Duration::from_secs(30),
        || {
            history(&d)["fenced"]
                .as_array()
                .is_some_and(|f| f.iter().any(|h| *h == current.as_str()))
        },
    );
    assert!(metrics(&d).contains(&format!("proxy_fenced{{backend=\"{current}\"}} 1")));
    assert_eq!(d.root_sql(&current, "SELECT @@read_only").trim(), "1");
    for i in 0..5 {
        let (code, body) = write(&d, &format!("fenced-{i}"));
        assert_eq!(
            (code, body["served_by"].as_str()),
            (200, Some(promoted.as_str())),
            "{body}"
        );
    }
    let status = d.ok(&["status"]);
    assert!(status.contains("FENCED"), "{status}");
    assert!(status.contains("left fenced"), "{status}");
    let out = d.ok(&["repair"]);
    for host in ["manager", current.as_str()] {
        assert!(out.contains(&format!("{host} diverged: it holds")), "{out}");
    }
    wait_for(
        "the rebuilt server to serve again",
        Duration::from_secs(30),
        || {
            history(&d)["fenced"]
                .as_array()
                .is_some_and(|f| f.is_empty())
        },
    );
}
