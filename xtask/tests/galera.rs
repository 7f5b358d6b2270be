//! The Galera engine end to end on a real local cluster of three nodes (real MariaDB with
//! galera-4, the real services): a write readable on every node at once, a fourth node added
//! and removed under load, the writer SIGKILLed
//! under load, a node SIGKILLed and brought back by an incremental transfer, every node
//! SIGKILLed and the cluster re-formed, and install-cluster SIGKILLed midway and resumed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::load::{Load, Seen};
use common::{http, wait_for, Deployment};
use serde_json::{json, Value};

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn proxy_health(d: &Deployment) -> Value {
    let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// A read on a node that first applies every write the cluster certified before it.
fn causal(d: &Deployment, node: &str, sql: &str) -> String {
    d.root_sql(node, &format!("SET SESSION wsrep_sync_wait = 1; {sql}"))
}

fn every_node_synced(d: &Deployment) -> bool {
    NODES.iter().all(|n| {
        let status = d.root_sql(
            n,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_CLUSTER_SIZE') \
             ORDER BY VARIABLE_NAME",
        );
        status.split_whitespace().collect::<Vec<_>>() == ["3", "Synced"]
    })
}

#[test]
fn galera_serves_through_a_writer_kill_and_repair_brings_nodes_back() {
    let d = Deployment::new("galera", "127.0.41");
    d.provision(&["--engine", "galera", "--host-cpus", "unlimited"]);
    let state = d.state();
    assert_eq!(state["settings"]["engine"], "galera");
    let names: Vec<&str> = state["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["role"] == "node")
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, NODES);
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);
    assert!(every_node_synced(&d));
    // Each node's Galera ports are bound to its own address, none to every address.
    for node in NODES {
        let address = d.address(node);
        let listening = Command::new("ss").args(["-ltnH"]).output().unwrap();
        let listening = String::from_utf8_lossy(&listening.stdout).to_string();
        assert!(
            listening.contains(&format!("{address}:4567")),
            "{node}: {listening}"
        );
        assert!(!listening.contains("0.0.0.0:4567") && !listening.contains("*:4567"));
    }
    let status = d.ok(&["status"]);
    assert_eq!(
        status.matches("up, Synced, cluster size 3").count(),
        3,
        "{status}"
    );
    assert_eq!(status.matches("WRITER").count(), 1, "{status}");
    d.fails(&["failover"], "has no manager to fail over");

    // A write through the gatekeeper, then read on every node straight away: each applies it
    // before it answers (a causal read), with no waiting on the client's side.
    let (code, body) = d.api(
        "INSERT INTO actor (first_name, last_name) VALUES ('ga', 'everywhere')",
        "write",
    );
    assert_eq!(code, 200, "{body}");
    let writer = body["served_by"].as_str().unwrap().to_string();
    assert_eq!(proxy_health(&d)["writer"], writer.as_str());
    for node in NODES {
        assert_eq!(
            causal(
                &d,
                node,
                "SELECT COUNT(*) FROM filmdb.actor WHERE last_name = 'everywhere'"
            )
            .trim(),
            "1",
            "{node}"
        );
    }
    // Through the chain, a read after the write (its GTID passed back) sees it on any node.
    let gtid = body["last_gtid"].as_str().unwrap().to_string();
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (code, body) = d.api_request(json!({
            "query": "SELECT COUNT(*) AS n FROM actor WHERE last_name = 'everywhere'",
            "mode": "random",
            "after_gtid": gtid,
        }));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["rows"], json!([[1]]), "{body}");
        served.insert(body["served_by"].as_str().unwrap().to_string());
    }
    assert!(
        !served.contains(&writer),
        "random reads go to the other nodes: {served:?}"
    );
    assert_eq!(served.len(), 2, "{served:?}");

    // Scaled to four nodes and back to three under load: no query fails, the new node joins
    // by a transfer from a node that is not the writer, and serves once Synced.
    let load = Load::start(&d, &["random", "customized"], "gs");
    std::thread::sleep(Duration::from_secs(1));
    let up = d.ok(&["scale", "--workers", "4"]);
    assert!(
        up.contains("4 nodes serve: node-1, node-2, node-3, node-4"),
        "{up}"
    );
    assert!(up.contains("node-4 at "), "{up}");
    assert!(
        !up.contains(&format!("a state transfer from {writer}")),
        "the writer is never the donor: {up}"
    );
    let size = d.root_sql(
        "node-4",
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'",
    );
    assert_eq!(size.trim(), "4");
    std::thread::sleep(Duration::from_secs(2));
    let down = d.ok(&["scale", "--workers", "3"]);
    assert!(down.contains("the proxy took out node-4"), "{down}");
    std::thread::sleep(Duration::from_secs(1));
    let Seen { reads, writes, .. } = load.finish();
    let failed: Vec<_> = reads.iter().filter(|r| r.status != 200).collect();
    assert!(reads.len() > 300, "{} reads", reads.len());
    assert!(
        failed.is_empty(),
        "{} of {} reads failed while scaling, first: {:?}",
        failed.len(),
        reads.len(),
        failed.first().map(|r| &r.body)
    );
    assert!(
        reads
            .iter()
            .any(|r| r.body.contains("\"served_by\":\"node-4\"")),
        "node-4 served no read"
    );
    let failed: Vec<_> = writes.iter().filter(|w| w.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes failed while scaling, first: {:?}",
        failed.len(),
        writes.len(),
        failed.first().map(|w| &w.body)
    );
    eprintln!(
        "while scaling 3 -> 4 -> 3 nodes: {} reads, {} writes, none failed",
        reads.len(),
        writes.len()
    );
    wait_for(
        "every node Synced, three of them",
        Duration::from_secs(30),
        || every_node_synced(&d),
    );
    assert!(!d.host_dir("node-4").exists());
    d.fails(
        &["scale", "--workers", "2"],
        "between 3 and 20 for a Galera cluster",
    );

    // Load: readers in every strategy, and a writer whose acknowledged markers are kept.
    let load = Load::start(&d, &["random", "customized", "direct-hit"], "gw");
    std::thread::sleep(Duration::from_secs(2));
    d.kill_server(&writer);
    let killed = load.failed_now();
    std::thread::sleep(Duration::from_secs(12));
    let Seen {
        reads,
        acknowledged,
        writes,
    } = load.finish();

    // No read failed, the writer's (direct-hit) included: a read the dead writer could not
    // serve was served by the next one.
    let failed: Vec<_> = reads.iter().filter(|r| r.status != 200).collect();
    let after_kill = reads.iter().filter(|r| r.since_failure.is_some()).count();
    assert!(after_kill > 100, "{after_kill} reads after the kill");
    assert!(
        failed.is_empty(),
        "{} of {} reads failed, first: {:?}",
        failed.len(),
        reads.len(),
        failed.first().map(|r| (r.mode, &r.body))
    );
    // Writes resume on the next node with no command.
    let new_writer = proxy_health(&d)["writer"].as_str().unwrap().to_string();
    assert_ne!(new_writer, writer);
    let back = writes
        .iter()
        .find(|w| w.at > killed && w.status == 200)
        .map(|w| w.at.duration_since(killed))
        .expect("no write succeeded after the writer was killed");
    // Galera's own wait before it declares a member gone (evs.suspect_timeout, 5 s) holds
    // commits for that long; the proxy moves the writes at the first failure.
    assert!(back < Duration::from_secs(10), "writes back after {back:?}");
    let failed_writes: Vec<&str> = writes
        .iter()
        .filter(|w| w.at > killed && w.status != 200)
        .map(|w| w.body.as_str())
        .collect();
    // No acknowledged write is lost: every marker is on both surviving nodes.
    assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
    for node in NODES.iter().filter(|n| **n != writer) {
        let held = causal(
            &d,
            node,
            "SELECT last_name FROM filmdb.actor WHERE first_name = 'gw'",
        );
        let held: Vec<&str> = held.lines().collect();
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|m| !held.contains(&m.as_str()))
            .collect();
        assert!(lost.is_empty(), "{node} lost {lost:?}");
    }
    eprintln!(
        "writer {writer} killed: {} reads ({after_kill} after the kill), 0 failed; writes back \
         on {new_writer} after {back:?} ({} failed meanwhile: {failed_writes:?}); {} \
         acknowledged, 0 lost",
        reads.len(),
        failed_writes.len(),
        acknowledged.len()
    );

    // repair: the killed node joins again by an incremental transfer.
    let log = d.host_dir(&writer).join("mariadbd.err");
    let ist_before = std::fs::read_to_string(&log)
        .unwrap()
        .matches("IST received")
        .count();
    let started = Instant::now();
    let out = d.ok(&["repair"]);
    eprintln!("repair of {writer} took {:?}: {out}", started.elapsed());
    assert!(
        out.contains(&format!("started {writer}; it is Synced")),
        "{out}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log_text.matches("IST received").count(),
        ist_before + 1,
        "{writer} rejoined without an incremental transfer"
    );
    assert!(every_node_synced(&d));
    // The writer stays where it moved: nothing moves while all is well.
    wait_for(
        "every node healthy in the proxy",
        Duration::from_secs(10),
        || {
            proxy_health(&d)["backends"]
                .as_array()
                .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
        },
    );
    assert_eq!(proxy_health(&d)["writer"], new_writer.as_str());
    let out = d.ok(&["repair"]);
    assert!(out.contains("nothing drifted"), "{out}");

    // Every node killed: repair re-forms the cluster from the nodes' saved view.
    for node in NODES {
        d.kill_server(node);
    }
    let started = Instant::now();
    let out = d.ok(&["repair"]);
    eprintln!(
        "repair after every node was killed took {:?}",
        started.elapsed()
    );
    assert!(out.contains("start together and re-form it"), "{out}");
    assert!(every_node_synced(&d));
    let held: usize = causal(
        &d,
        "node-1",
        "SELECT COUNT(*) FROM filmdb.actor WHERE first_name = 'gw'",
    )
    .trim()
    .parse()
    .unwrap();
    // Every acknowledged write, and of the others only those the proxy said may have taken
    // effect (the writer died after the cluster certified them, before it answered): one sent
    // as the writer was killed can be answered before the test's clock for the kill starts.
    let in_doubt = writes
        .iter()
        .filter(|w| w.body.contains("\"writer-unavailable\""))
        .count();
    assert!(
        (acknowledged.len()..=acknowledged.len() + in_doubt).contains(&held),
        "{held} rows for {} acknowledged writes and {in_doubt} in doubt",
        acknowledged.len()
    );
    // A bound for liveness, not a timing: the proxy's probes see the nodes again within a
    // few health intervals, longer on a machine busy with other tests.
    let mut answer = None;
    let reformed = Instant::now();
    let deadline = reformed + Duration::from_secs(60);
    while answer.as_ref().is_none_or(|(status, _)| *status != 200) {
        assert!(
            Instant::now() < deadline,
            "no write through the chain after the cluster re-formed: {answer:?}; the proxy: {}",
            proxy_health(&d)
        );
        std::thread::sleep(Duration::from_millis(100));
        answer = Some(d.api(
            "INSERT INTO actor (first_name, last_name) VALUES ('ga', 'reformed')",
            "write",
        ));
    }
    eprintln!(
        "a write went through {:?} after the repair",
        reformed.elapsed()
    );

    // The benchmarks on the engine: sysbench's writes on the writer, reads on every node, a
    // write-scaling run on every node at once; every row says which engine.
    d.ok(&["bench", "--quick"]);
    d.ok(&["fetch-results"]);
    let results = d.dir.join("results");
    let csv = std::fs::read_to_string(results.join("sysbench.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r[at("engine")] == "galera"), "{csv}");
    let mut targets: Vec<&str> = rows.iter().map(|r| r[at("target")]).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(
        targets,
        [
            "cluster",
            "cluster-every-node-writes",
            "node-1",
            "node-2",
            "node-3",
            "standalone",
            "writer"
        ]
    );
    let summary = std::fs::read_to_string(results.join("summary.md")).unwrap();
    assert!(summary.contains("a Galera cluster of 3 nodes"), "{summary}");
    assert!(summary.contains("Every node writing at once"), "{summary}");
    let patterns = std::fs::read_to_string(results.join("patterns.csv")).unwrap();
    assert!(
        patterns.lines().skip(1).all(|l| l.contains(",galera,")),
        "{patterns}"
    );
}

#[test]
fn galera_install_killed_midway_resumes_with_one_cluster() {
    let d = Deployment::new("galera-crash", "127.0.42");
    d.provision(&["--engine", "galera", "--host-cpus", "unlimited"]);
    let mut child = d.spawn_quiet(&["install-cluster"]);
    // Killed once the first node runs and a second is starting.
    wait_for("two nodes started", Duration::from_secs(120), || {
        d.servers()
            .iter()
            .filter(|(h, _)| h.starts_with("node-"))
            .count()
            >= 2
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let started = d.servers();

    let out = d.ok(&["install-cluster"]);
    assert!(out.contains("interrupted; resuming"), "{out}");
    let servers = d.servers();
    let hosts: Vec<&str> = servers.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["node-1", "node-2", "node-3", "standalone"]);
    for server in &started {
        assert!(
            servers.contains(server),
            "{server:?} was replaced: {servers:?}"
        );
    }
    assert!(every_node_synced(&d));
    // One cluster: every node has the same cluster UUID.
    let uuids: std::collections::BTreeSet<String> = NODES
        .iter()
        .map(|n| {
            d.root_sql(n, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATE_UUID'")
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(uuids.len(), 1, "{uuids:?}");
    d.ok(&["teardown"]);
    assert_eq!(d.servers(), []);
}
