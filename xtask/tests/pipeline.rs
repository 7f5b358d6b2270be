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
const BLUE: [u8; 3] = [90, 120, 180];
const ORANGE: [u8; 3] = [220, 130, 50];
const GREEN: [u8; 3] = [90, 160, 90];
const RED: [u8; 3] = [200, 80, 80];

/// A chart rendered to pixels.
struct Picture {
    width: usize,
    /// Bytes per pixel: 3 (RGB) or 4 (RGBA).
    channels: usize,
    pixels: Vec<u8>,
}

impl Picture {
    /// How many pixels of a color lie between two x positions.
    fn pixels_in(&self, (from, to): (usize, usize), color: [u8; 3]) -> usize {
        self.pixels
            .chunks_exact(self.channels)
            .enumerate()
            .filter(|(i, p)| {
                let x = i % self.width;
                x >= from && x < to && p[..3] == color
            })
            .count()
    }
}

/// Renders an SVG with headless Chromium, as a browser shows it, and decodes the PNG.
fn render(svg: &Path, (width, height): (u32, u32)) -> Picture {
    let png = svg.with_extension("png");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium (Debian package chromium) must be installed");
    assert!(png.exists(), "{}", text(&out));
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("{}: {other:?} pixels", png.display()),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", png.display());
    assert_eq!((info.width, info.height), (width, height));
    pixels.truncate(info.buffer_size());
    Picture {
        width: info.width as usize,
        channels,
        pixels,
    }
}

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
    // Each host a small machine: reads spread over the workers scale with them. Read-only
    // transactions are CPU-bound on the servers, so two workers show it even in the quick
    // profile's one 3-second run; point selects from 2 threads are bound by each round trip as
    // much as by the servers' CPU, and their ratio there (1.14x in one CI rehearsal, 1.70x in a
    // run just after on the same machine) says more about the run than about the topology.
    let tps = |target: &str, workload: &str| -> f64 {
        let row = rows
            .iter()
            .find(|r| {
                column(&header, r, "target") == target && column(&header, r, "workload") == workload
            })
            .unwrap();
        column(&header, row, "transactions_per_s").parse().unwrap()
    };
    let read_only = tps("cluster", "oltp_read_only") / tps("standalone", "oltp_read_only");
    assert!(
        read_only > 1.5,
        "read-only cluster/standalone with 2 workers: {read_only:.2}x"
    );
    for r in &rows {
        assert_eq!(column(&header, r, "run_id"), run_id);
        assert!(
            column(&header, r, "host_limits").starts_with("cgroup v"),
            "{r:?}"
        );
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

    // patterns.csv: one row per mode, no errors, each mode served where it should be; then
    // the degraded-worker scenario's rows; then the chain-cost rows, with every quota lifted:
    // under load (with CPU) and from one client.
    let (header, all_rows) = csv(&results.join("patterns.csv"));
    let (lifted, all_rows): (Vec<Vec<String>>, Vec<Vec<String>>) = all_rows
        .into_iter()
        .partition(|r| column(&header, r, "scenario") == "every CPU quota lifted");
    let lifted_runs: Vec<(&str, &str)> = lifted
        .iter()
        .map(|r| {
            (
                column(&header, r, "mode"),
                column(&header, r, "concurrency"),
            )
        })
        .collect();
    assert_eq!(
        lifted_runs,
        [
            ("direct-db", "4"),
            ("direct-hit", "4"),
            ("floor", "4"),
            ("floor-at-chain-rate", "4"),
            ("direct-db", "1"),
            ("direct-hit", "1"),
            ("floor", "1")
        ]
    );
    // The floor's relays ran beside the services, each measured on its service's host, and
    // were stopped after: only the three services run.
    let floor = lifted
        .iter()
        .find(|r| column(&header, r, "mode") == "floor" && column(&header, r, "concurrency") == "4")
        .unwrap();
    let relays: Vec<&str> = column(&header, floor, "cpu_us_per_request_by_host")
        .split(';')
        .filter_map(|part| part.split_once('=').map(|(host, _)| host))
        .collect();
    assert_eq!(relays, ["gatekeeper", "proxy", "trusted-host"], "{floor:?}");
    // The floor again, paced at the rate the chain served: not at its own (about twice).
    let lifted_rate = |mode: &str| -> f64 {
        let r = lifted
            .iter()
            .find(|r| {
                column(&header, r, "mode") == mode && column(&header, r, "concurrency") == "4"
            })
            .unwrap();
        column(&header, r, "throughput_rps").parse().unwrap()
    };
    let paced = lifted_rate("floor-at-chain-rate") / lifted_rate("direct-hit");
    assert!(
        (0.5..1.1).contains(&paced),
        "the paced floor ran at {paced:.2}x the chain's rate"
    );
    let services: Vec<String> = d.services().into_iter().map(|(host, _)| host).collect();
    assert_eq!(services, ["gatekeeper", "proxy", "trusted-host"]);
    let (rows, degraded): (Vec<Vec<String>>, Vec<Vec<String>>) = all_rows
        .into_iter()
        .partition(|r| column(&header, r, "scenario") == "normal");
    let modes: Vec<&str> = rows.iter().map(|r| column(&header, r, "mode")).collect();
    assert_eq!(
        modes,
        ["direct-db", "direct-hit", "random", "customized", "write"]
    );
    let modes: Vec<&str> = degraded
        .iter()
        .map(|r| column(&header, r, "mode"))
        .collect();
    assert_eq!(modes, ["random", "customized"]);
    let (random, customized) = (&degraded[0], &degraded[1]);
    let share_of_slow = |r: &[String]| -> f64 {
        let shares = column(&header, r, "backend_shares");
        shares
            .split(';')
            .find_map(|s| s.strip_prefix("worker-2="))
            .map_or(0.0, |p| p.trim_end_matches('%').parse().unwrap())
    };
    assert!(
        column(&header, random, "scenario")
            .starts_with("degraded: worker-2 at 0.05 CPU, the other workers at 0.25 CPU"),
        "{random:?}"
    );
    // random cannot tell the slow worker; customized sends it little, and waits less.
    assert!(share_of_slow(random) > 25.0, "{random:?}");
    assert!(share_of_slow(customized) < 20.0, "{customized:?}");
    let p99 = |r: &[String]| -> f64 { column(&header, r, "p99_ms").parse().unwrap() };
    assert!(
        p99(customized) < p99(random),
        "{customized:?} vs {random:?}"
    );
    for r in &degraded {
        assert_eq!(column(&header, r, "errors"), "0", "{r:?}");
    }
    for r in lifted.iter().chain(&rows) {
        let throughput: f64 = column(&header, r, "throughput_rps").parse().unwrap();
        let p50: f64 = column(&header, r, "p50_ms").parse().unwrap();
        let p99: f64 = column(&header, r, "p99_ms").parse().unwrap();
        assert!(throughput > 1.0 && p50 > 0.0 && p99 >= p50, "{r:?}");
        assert_eq!(column(&header, r, "errors"), "0", "{r:?}");
        assert_eq!(column(&header, r, "errors_by_kind"), "", "{r:?}");
        if column(&header, r, "concurrency") == "1" {
            // The one-client runs measure latency only.
            continue;
        }
        // The CPU each process spent per request was measured around the run.
        let cpu = |name: &str| -> f64 { column(&header, r, name).parse().unwrap() };
        // The servers that served the mode worked for it (the floor's relays, for it).
        let served = match column(&header, r, "mode") {
            "random" | "customized" => "cpu_us_per_request_workers",
            "floor" | "floor-at-chain-rate" => "cpu_us_per_request_services",
            _ => "cpu_us_per_request_manager",
        };
        assert!(cpu(served) > 0.0, "{served}: {r:?}");
        if column(&header, r, "mode") == "direct-db" {
            // Only the proxy's health probes run in the services meanwhile: a small fraction
            // of what the chain costs them per request in the same scenario. (An absolute
            // bound fails on a slow machine, where fewer requests share the probes' CPU.)
            let scenario = column(&header, r, "scenario");
            let chain = lifted
                .iter()
                .chain(&rows)
                .find(|c| {
                    column(&header, c, "mode") == "direct-hit"
                        && column(&header, c, "scenario") == scenario
                        && column(&header, c, "concurrency") != "1"
                })
                .expect("a direct-hit run beside every direct-db run");
            let chain_cpu: f64 = column(&header, chain, "cpu_us_per_request_services")
                .parse()
                .unwrap();
            assert!(
                cpu("cpu_us_per_request_services") < chain_cpu / 10.0,
                "{r:?} vs {chain:?}"
            );
        } else {
            assert!(cpu("cpu_us_per_request_services") > 0.0, "{r:?}");
        }
        // Under the quotas of the scenario, read back from the groups.
        let quotas = column(&header, r, "cpu_quotas");
        if column(&header, r, "mode").starts_with("floor") {
            // The relays, measured on their services' hosts (above), every quota lifted.
            assert_eq!(quotas, "gatekeeper=none;proxy=none;trusted-host=none");
            continue;
        }
        if column(&header, r, "scenario") == "normal" {
            assert!(
                quotas.contains("manager=0.25") && quotas.contains("proxy=0.50"),
                "{quotas}"
            );
        } else {
            assert!(
                quotas.split(';').all(|q| q.ends_with("=none")) && quotas.contains("manager="),
                "{quotas}"
            );
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
    assert!(summary.contains("\nHost limits: cgroup v"), "{summary}");
    assert!(
        summary.contains("the quotas are in force for every measurement below"),
        "{summary}"
    );
    assert!(
        summary.contains("## A slow worker: random vs customized")
            && summary.contains("| reads served by worker-2 |"),
        "{summary}"
    );
    assert!(
        summary.contains("## What the chain costs")
            && summary.contains("Measured with every CPU quota lifted")
            && summary.contains(
                "| CPU per request at the same rate: the three services / the three relays paced"
            )
            && summary.contains("| requests/s, direct-hit / the floor |")
            && summary.contains("| ≤ 1.50x |")
            && summary.contains("### Where the time goes")
            && summary.contains("| trusted-host |"),
        "{summary}"
    );
    // The charts as a person sees them: rendered by a browser, each panel has its bars (more
    // of each color than its legend's 120 pixels).
    let sysbench = render(&results.join("sysbench-tps.svg"), (1200, 420));
    for workload in 0..3 {
        let panel = (workload * 400, (workload + 1) * 400);
        for (series, color) in [("standalone", BLUE), ("cluster", ORANGE)] {
            assert!(
                sysbench.pixels_in(panel, color) > 1000,
                "sysbench-tps.svg: no {series} bar in panel {workload}"
            );
        }
    }
    let patterns = render(&results.join("patterns.svg"), (1800, 480));
    for (series, color) in [("p50", GREEN), ("p90", BLUE), ("p99", RED)] {
        assert!(
            patterns.pixels_in((0, 900), color) > 400,
            "patterns.svg: no {series} bars in the latency panel"
        );
    }
    assert!(
        patterns.pixels_in((900, 1800), ORANGE) > 1000,
        "patterns.svg: no throughput bars"
    );
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
    assert!(!again.contains("drifted"), "{again}");

    // A done deployment that drifted: `all` says so and names repair, which mends it.
    let worker = d.state()["processes"]["worker-2/mariadbd"]["pid"]
        .as_u64()
        .unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &worker.to_string()])
        .status()
        .unwrap()
        .success());
    let again = d.ok(&["all"]);
    assert!(
        again.contains("the deployment drifted since: worker-2's server does not answer")
            && again.contains(&format!("`{}`", d.xtask("repair"))),
        "{again}"
    );
    let repaired = d.ok(&["repair"]);
    assert!(repaired.contains("started worker-2"), "{repaired}");
    assert!(!d.ok(&["all"]).contains("drifted"));

    // A relay a killed bench left behind: teardown stops it with the services.
    let gatekeeper = d.host_dir("gatekeeper");
    let mut relay = std::process::Command::new(gatekeeper.join("relay"))
        .arg("--config")
        .arg(gatekeeper.join("relay.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the relay to run", Duration::from_secs(10), || {
        d.services().len() == 4
    });
    d.ok(&["teardown"]);
    assert!(
        relay.try_wait().unwrap().is_some(),
        "teardown stopped the relay"
    );
    assert_eq!(d.servers(), []);
    assert_eq!(d.services(), []);
    assert!(
        results.join("summary.md").exists(),
        "teardown keeps the results"
    );
}
