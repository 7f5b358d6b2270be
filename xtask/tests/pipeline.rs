//! The whole pipeline on the local provider with the quick profile: `all` killed in the middle
//! of bench, `all` again, then the results a person reads.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{text, wait_for, Deployment};

const PREFIX: &str = "127.0.26";

/// The raw sysbench reports bench has finished so far.
fn finished_reports(d: &Deployment) -> usize {
    let bench = d.dir.join(".state/proxy/bench");
    fs::read_dir(&bench)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|run| fs::read_dir(run.path().join("sysbench")).ok())
        .flatten()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|e| e == "txt"))
        .count()
}

/// A CSV of results/ as the header and the rows, read with the csv crate.
fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn column<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    &row[header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))]
}

#[test]
fn all_quick_survives_a_killed_bench_and_leaves_readable_results() {
    let d = Deployment::new("pipeline", PREFIX);
    let results = d.dir.join("results"); // where Deployment points XTASK_RESULTS
    let all = [
        "all",
        "--quick",
        "--loopback-prefix",
        PREFIX,
        "--scale",
        "1",
        "--workers",
        "2",
    ];

    let mut first = d
        .command(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "bench to finish a few measurements",
        Duration::from_secs(900),
        || {
            if let Some(status) = first.try_wait().unwrap() {
                panic!(
                    "all exited ({status}) before bench got going: {}",
                    d.state()["steps"]
                );
            }
            finished_reports(&d) >= 2
        },
    );
    first.kill().unwrap(); // SIGKILL, in the middle of bench
    first.wait().unwrap();
    assert_eq!(d.state()["steps"]["bench"]["status"], "running");
    let run_id = d.state()["bench"]["id"].as_str().unwrap().to_string();

    let out = d.command(&all).output().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("bench: the previous attempt was interrupted; resuming"),
        "{said}"
    );
    assert!(said.contains("all steps are done"), "{said}");
    assert!(said.contains(&format!("http://{PREFIX}.8:8080/")), "{said}");
    assert_eq!(
        d.state()["bench"]["id"],
        run_id.as_str(),
        "the resumed run is the same run"
    );

    // sysbench.csv: every server and workload once, the cluster rows added, real numbers.
    let (header, rows) = csv(&results.join("sysbench.csv"));
    let keys: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                column(&header, r, "target").to_string(),
                column(&header, r, "workload").to_string(),
            )
        })
        .collect();
    assert_eq!(keys.len(), rows.len(), "duplicate rows: {rows:?}");
    let expected = [
        ("cluster", "oltp_point_select"),
        ("cluster", "oltp_read_only"),
        ("cluster", "oltp_read_write"),
        ("manager", "oltp_read_write"),
        ("standalone", "oltp_point_select"),
        ("standalone", "oltp_read_only"),
        ("standalone", "oltp_read_write"),
        ("worker-1", "oltp_point_select"),
        ("worker-1", "oltp_read_only"),
        ("worker-2", "oltp_point_select"),
        ("worker-2", "oltp_read_only"),
    ];
    let expected: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(keys, expected);
    for r in &rows {
        assert_eq!(column(&header, r, "run_id"), run_id);
        let tps: f64 = column(&header, r, "transactions_per_s").parse().unwrap();
        let avg: f64 = column(&header, r, "latency_avg_ms").parse().unwrap();
        assert!(tps > 1.0 && avg > 0.0, "{r:?}");
        assert_eq!(column(&header, r, "reconnects"), "0", "{r:?}");
        if column(&header, r, "workload") != "oltp_read_write" {
            // Read-only work cannot deadlock; read-write may retry a deadlock, by design.
            assert_eq!(column(&header, r, "errors"), "0", "{r:?}");
        }
        assert_eq!(column(&header, r, "table_size"), "1000");
    }

    // patterns.csv: one row per mode, no errors, each mode served where it should be.
    let (header, rows) = csv(&results.join("patterns.csv"));
    let modes: Vec<&str> = rows.iter().map(|r| column(&header, r, "mode")).collect();
    assert_eq!(
        modes,
        ["direct-db", "direct-hit", "random", "customized", "write"]
    );
    for r in &rows {
        let throughput: f64 = column(&header, r, "throughput_rps").parse().unwrap();
        let p50: f64 = column(&header, r, "p50_ms").parse().unwrap();
        let p99: f64 = column(&header, r, "p99_ms").parse().unwrap();
        assert!(throughput > 1.0 && p50 > 0.0 && p99 >= p50, "{r:?}");
        assert_eq!(column(&header, r, "errors"), "0", "{r:?}");
        assert_eq!(column(&header, r, "errors_by_kind"), "", "{r:?}");
        // The CPU each process spent per request was measured around the run.
        let cpu = |name: &str| -> f64 { column(&header, r, name).parse().unwrap() };
        // The servers that served the mode worked for it.
        let served = match column(&header, r, "mode") {
            "random" | "customized" => "cpu_us_per_request_workers",
            _ => "cpu_us_per_request_manager",
        };
        assert!(cpu(served) > 0.0, "{served}: {r:?}");
        if column(&header, r, "mode") == "direct-db" {
            // Only the proxy's health probes run in the services meanwhile.
            assert!(cpu("cpu_us_per_request_services") < 5.0, "{r:?}");
        } else {
            assert!(cpu("cpu_us_per_request_services") > 0.0, "{r:?}");
        }
        let by_host = column(&header, r, "cpu_us_per_request_by_host");
        for host in [
            "gatekeeper=",
            "trusted-host=",
            "proxy=",
            "manager=",
            "worker-2=",
        ] {
            assert!(by_host.contains(host), "{by_host}");
        }
        let shares = column(&header, r, "backend_shares");
        match column(&header, r, "mode") {
            "random" | "customized" => assert!(
                shares.split(';').all(|s| s.starts_with("worker-")),
                "{shares}"
            ),
            _ => assert_eq!(shares, "manager=100.0%"),
        }
    }

    let summary = fs::read_to_string(results.join("summary.md")).unwrap();
    assert!(
        summary.contains("| oltp_read_only |") && summary.contains("| customized |"),
        "{summary}"
    );
    assert!(summary.contains("No request failed."), "{summary}");
    assert!(
        summary.contains("## What the chain costs")
            && summary.contains("| point read p50 from one client, chain minus direct |"),
        "{summary}"
    );
    for (chart, label) in [
        ("sysbench-tps.svg", "standalone"),
        ("patterns-latency.svg", "p99"),
    ] {
        let svg = fs::read_to_string(results.join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
        assert!(svg.matches("<rect").count() > 5, "{chart} has no bars");
        assert!(svg.contains(label), "{chart} has no legend");
    }
    assert!(results.join(format!("raw/{run_id}/run.json")).exists());

    // Fetching again adds nothing: the rows come from the raw runs, keyed by run id.
    let before = fs::read_to_string(results.join("patterns.csv")).unwrap();
    d.ok(&["fetch-results", "--force"]);
    assert_eq!(
        fs::read_to_string(results.join("patterns.csv")).unwrap(),
        before
    );
    // And `all` on a finished deployment redoes nothing, and says so.
    let processes = (d.servers(), d.services());
    let again = d.ok(&["all"]);
    for step in [
        "provision",
        "install-cluster",
        "deploy-services",
        "bench",
        "fetch-results",
    ] {
        assert!(again.contains(&format!("{step}: already done")), "{again}");
    }
    assert_eq!((d.servers(), d.services()), processes);

    d.ok(&["teardown"]);
    assert_eq!(d.servers(), []);
    assert_eq!(d.services(), []);
    assert!(
        results.join("summary.md").exists(),
        "teardown keeps the results"
    );
}
