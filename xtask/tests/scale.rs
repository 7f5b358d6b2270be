//! `scale` end to end on a real local cluster: workers added and removed while readers and a
//! writer go through the gatekeeper, and a `scale` SIGKILLed while it copies data, then run
//! again to finish, or to roll back.

mod common;

use std::time::{Duration, Instant};

use common::load::{Load, Seen};
use common::{http, text, wait_for, Deployment};
use serde_json::Value;

/// The proxy's servers, with whether each may serve.
fn proxy_backends(d: &Deployment) -> Vec<(String, bool)> {
    let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
    let health: Value = serde_json::from_str(&r.body).unwrap();
    let mut backends: Vec<(String, bool)> = health["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["healthy"].as_bool().unwrap(),
            )
        })
        .collect();
    backends.sort();
    backends
}

/// The cluster's servers as data.json has them (manager and workers), sorted.
fn cluster_hosts(d: &Deployment) -> Vec<String> {
    let mut names: Vec<String> = d.state()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["role"] == "manager" || h["role"] == "worker")
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Row counts of every table of the dataset, and a checksum of the actors up to the highest id
/// the manager has now, on each server once it has applied everything the manager had.
fn data_everywhere(d: &Deployment, hosts: &[String]) -> Vec<(String, String)> {
    let position = d.root_sql("manager", "SELECT @@gtid_binlog_pos");
    let last_actor = d.root_sql("manager", "SELECT MAX(actor_id) FROM filmdb.actor");
    hosts
        .iter()
        .map(|host| {
            if host != "manager" {
                let waited = d.root_sql(
                    host,
                    &format!("SELECT MASTER_GTID_WAIT('{}', 60)", position.trim()),
                );
                assert_eq!(waited.trim(), "0", "{host} did not catch up");
            }
            let counts = d.root_sql(
                host,
                "SELECT CONCAT_WS(' ', (SELECT COUNT(*) FROM filmdb.film), \
                 (SELECT COUNT(*) FROM filmdb.customer), (SELECT COUNT(*) FROM filmdb.rental), \
                 (SELECT COUNT(*) FROM filmdb.payment), (SELECT COUNT(*) FROM filmdb.inventory))",
            );
            let actors = d.root_sql(
                host,
                &format!(
                    "SELECT CONCAT(COUNT(*), ' ', BIT_XOR(CRC32(CONCAT_WS(',', actor_id, \
                     first_name, last_name)))) FROM filmdb.actor WHERE actor_id <= {}",
                    last_actor.trim()
                ),
            );
            (
                host.clone(),
                format!("{} | {}", counts.trim(), actors.trim()),
            )
        })
        .collect()
}

fn assert_same_data(d: &Deployment, hosts: &[String]) {
    let seen = data_everywhere(d, hosts);
    let manager = seen[hosts.iter().position(|h| h == "manager").unwrap()]
        .1
        .clone();
    for (host, data) in &seen {
        assert_eq!(*data, manager, "{host} differs from the manager");
    }
}

#[test]
fn workers_join_and_leave_under_load_and_an_interrupted_scale_goes_on() {
    let d = Deployment::new("scale", "127.0.37");
    // With the default limits: a quarter of a CPU per server, lifted while a worker copies.
    d.provision(&["--workers", "2"]);
    // Before install-cluster, only the hosts change.
    let out = d.ok(&["scale", "--workers", "3"]);
    assert!(
        out.contains("3 workers planned: worker-1, worker-2, worker-3"),
        "{out}"
    );
    assert!(d.host_dir("worker-3").is_dir());
    let out = d.ok(&["scale", "--workers", "2"]);
    assert!(
        out.contains("2 workers planned: worker-1, worker-2"),
        "{out}"
    );
    assert!(!d.host_dir("worker-3").exists());
    d.ok(&["install-cluster"]);
    d.ok(&["deploy-services"]);
    let two: Vec<String> = ["manager", "worker-1", "worker-2"].map(String::from).into();
    assert_eq!(cluster_hosts(&d), two);

    // Up to 4 and back to 2 while readers in both strategies and a writer go through.
    let load = Load::start(&d, &["random", "customized"], "sc");
    std::thread::sleep(Duration::from_secs(1));
    let up = d.ok(&["scale", "--workers", "4"]);
    assert!(
        up.contains("4 workers serve: worker-1, worker-2, worker-3, worker-4"),
        "{up}"
    );
    assert!(
        up.contains("copying worker-1's data"),
        "a worker's data, not the manager's: {up}"
    );
    let four: Vec<String> = ["manager", "worker-1", "worker-2", "worker-3", "worker-4"]
        .map(String::from)
        .into();
    assert_eq!(cluster_hosts(&d), four);
    assert_eq!(
        proxy_backends(&d),
        four.iter().map(|n| (n.clone(), true)).collect::<Vec<_>>()
    );
    let status = d.ok(&["status"]);
    assert!(
        status.contains("semi-synchronous (4 workers acknowledging)"),
        "{status}"
    );
    // Reads reach the new workers.
    std::thread::sleep(Duration::from_secs(2));
    assert_same_data(&d, &four);
    let down = d.ok(&["scale", "--workers", "2"]);
    assert!(
        down.contains("the proxy took out worker-3, worker-4 once their queries had finished"),
        "{down}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let Seen { reads, writes, .. } = load.finish();

    let failed: Vec<_> = reads.iter().filter(|r| r.status != 200).collect();
    assert!(reads.len() > 500, "{} reads", reads.len());
    assert!(
        failed.is_empty(),
        "{} of {} reads failed, first: {:?}",
        failed.len(),
        reads.len(),
        failed.first().map(|r| &r.body)
    );
    let served_by_new = reads
        .iter()
        .filter(|r| {
            r.body.contains("\"served_by\":\"worker-3\"")
                || r.body.contains("\"served_by\":\"worker-4\"")
        })
        .count();
    assert!(served_by_new > 0, "no read was served by a new worker");
    eprintln!(
        "while scaling 2 -> 4 -> 2: {} reads (none failed, {served_by_new} served by the new \
         workers), {} writes",
        reads.len(),
        writes.len()
    );
    let films: Vec<Value> = reads
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["rows"].clone())
        .collect();
    assert!(
        films.windows(2).all(|w| w[0] == w[1]),
        "every server answered the same count of films"
    );
    let failed_writes: Vec<_> = writes.iter().filter(|w| w.status != 200).collect();
    assert!(
        failed_writes.is_empty(),
        "{} of {} writes failed, first: {:?}",
        failed_writes.len(),
        writes.len(),
        failed_writes.first().map(|w| &w.body)
    );
    assert_eq!(cluster_hosts(&d), two);
    assert_eq!(
        proxy_backends(&d),
        two.iter().map(|n| (n.clone(), true)).collect::<Vec<_>>()
    );
    for gone in ["worker-3", "worker-4"] {
        assert!(!d.host_dir(gone).exists(), "{gone}'s folder is left");
    }
    let servers: Vec<String> = d.servers().into_iter().map(|(h, _)| h).collect();
    assert_eq!(servers, ["manager", "standalone", "worker-1", "worker-2"]);
    assert_same_data(&d, &two);

    // SIGKILLed while it copies a worker's data: status says so; run again, it goes on.
    let copying_then_killed = |workers: &str| -> String {
        let mut scale = d.spawn_quiet(&["scale", "--workers", workers]);
        let started = Instant::now();
        let joining = loop {
            let state = d.state();
            let copying = state["scaling"]
                .as_object()
                .and_then(|s| s.iter().find(|(_, phase)| *phase == "copying"))
                .map(|(name, _)| name.clone());
            if let Some(name) = copying {
                break name;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60) && scale.try_wait().unwrap().is_none(),
                "scale never recorded a copy: {state}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        scale.kill().unwrap();
        scale.wait().unwrap();
        joining
    };
    let joining = copying_then_killed("3");
    assert_eq!(joining, "worker-3", "names follow the highest in use");
    let status = d.ok(&["status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("worker-3"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("JOINING (copying a worker's data)"), "{line}");
    assert!(
        !proxy_backends(&d).iter().any(|(n, _)| n == "worker-3"),
        "a worker that is copying is not the proxy's"
    );
    let again = d.ok(&["scale", "--workers", "3"]);
    assert!(
        again.contains("3 workers serve: worker-1, worker-2, worker-3"),
        "{again}"
    );
    let three: Vec<String> = ["manager", "worker-1", "worker-2", "worker-3"]
        .map(String::from)
        .into();
    assert_eq!(cluster_hosts(&d), three);
    assert_eq!(
        proxy_backends(&d),
        three.iter().map(|n| (n.clone(), true)).collect::<Vec<_>>()
    );
    let servers: Vec<String> = d.servers().into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        servers,
        ["manager", "standalone", "worker-1", "worker-2", "worker-3"],
        "one server per host"
    );
    assert_eq!(d.state()["scaling"], Value::Null);
    assert_same_data(&d, &three);
    // The killed run left the copy's quotas lifted; the rerun put them back (cgroup v1 here).
    for host in ["worker-1", "worker-3"] {
        let read = |file: &str| -> f64 {
            d.cgroups_of(host)
                .iter()
                .find_map(|g| std::fs::read_to_string(g.join(file)).ok())
                .unwrap_or_else(|| panic!("no {file} for {host}"))
                .trim()
                .parse()
                .unwrap()
        };
        let cpus = read("cpu.cfs_quota_us") / read("cpu.cfs_period_us");
        assert_eq!(cpus, 0.25, "{host}'s quota");
    }

    // Killed again while copying, then asked for fewer: the worker being added is rolled back.
    let joining = copying_then_killed("4");
    assert_eq!(joining, "worker-4");
    let back = d.ok(&["scale", "--workers", "3"]);
    assert!(
        back.contains("3 workers serve: worker-1, worker-2, worker-3"),
        "{back}"
    );
    assert_eq!(cluster_hosts(&d), three);
    assert!(!d.host_dir("worker-4").exists());
    let servers: Vec<String> = d.servers().into_iter().map(|(h, _)| h).collect();
    assert!(!servers.contains(&"worker-4".to_string()), "{servers:?}");
    wait_for(
        "the proxy to serve the three",
        Duration::from_secs(10),
        || proxy_backends(&d) == three.iter().map(|n| (n.clone(), true)).collect::<Vec<_>>(),
    );

    // The scaling curve, quick: scaled to 1 and 2 workers in turn, measured at each, then
    // back to 3; its rows, chart and summary section are written.
    d.ok(&["bench", "--quick", "--scaling", "1,2"]);
    assert_eq!(cluster_hosts(&d), three, "scaled back to the run's size");
    d.ok(&["fetch-results"]);
    let results = d.dir.join("results");
    let csv = std::fs::read_to_string(results.join("scaling.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 6, "2 counts x 3 workloads:\n{csv}");
    for (workers, workload) in [
        (1, "oltp_read_only"),
        (2, "oltp_point_select"),
        (2, "chain-random"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!(",{workers},{workload},1,")))
            .unwrap_or_else(|| panic!("no row for {workload} at {workers}:\n{csv}"));
        let reads: f64 = row.split(',').nth(7).unwrap().parse().unwrap();
        assert!(reads > 0.0, "{row}");
    }
    assert!(std::fs::read_to_string(results.join("scaling.svg"))
        .unwrap()
        .contains("<svg"));
    let summary = std::fs::read_to_string(results.join("summary.md")).unwrap();
    assert!(
        summary.contains("## Scaling: reads against the number of workers"),
        "{summary}"
    );
    // Every curve measurement ran with each worker at its quota (read back from the groups),
    // though the copies that made the workers ran without.
    let raw = std::fs::read_dir(results.join("raw"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (workers, what) in [(1, "oltp_read_only"), (2, "chain-random")] {
        let cpu: Value = serde_json::from_slice(
            &std::fs::read(raw.join(format!("scaling-curve/w{workers}/{what}-run1.cpu.json")))
                .unwrap(),
        )
        .unwrap();
        for worker in (1..=workers).map(|i| format!("worker-{i}")) {
            assert_eq!(
                cpu["cpu_quotas"][&worker], 0.25,
                "{worker} at {workers}: {cpu}"
            );
        }
    }

    // What scale cannot do is said before anything changes.
    let refused = d.run(&["scale", "--workers", "0"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--workers must be between 1 and 20"),
        "{}",
        text(&refused)
    );
}
