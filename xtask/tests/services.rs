//! End-to-end tests of the role services on a real local cluster, deployed by the real
//! `deploy-services` step: client -> gatekeeper -> trusted host -> proxy -> MariaDB.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use common::{http, wait_for, Deployment};
use serde_json::{json, Value};

const PREFIX: &str = "127.0.25";

/// Kills, when dropped, every process whose command line mentions `marker` (a path of the
/// test's own): the browser chromedriver started, even when the test failed half-way.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("pkill").arg("-f").arg(&self.0).status();
    }
}

/// A process the test started itself; killed when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The deployment every scenario here runs on: deployed by the first scenario that needs it,
/// used by one scenario at a time (each leaves it as it found it), torn down when the test
/// binary exits, whichever scenarios ran.
static SHARED: OnceLock<Mutex<Deployment>> = OnceLock::new();

fn shared() -> MutexGuard<'static, Deployment> {
    let deployment = SHARED.get_or_init(|| {
        let d = Deployment::new("services", PREFIX);
        d.provision(&[]);
        d.ok(&["install-cluster"]);
        let out = d.ok(&["deploy-services"]);
        assert!(out.contains(&format!("http://{PREFIX}.9:8080/")), "{out}");
        let status = d.ok(&["status"]);
        assert_eq!(status.matches("up, /health ok").count(), 3, "{status}");
        // SAFETY: registers a plain function, once.
        unsafe { libc::atexit(tear_down_shared) };
        Mutex::new(d)
    });
    // A scenario that failed does not stop the others.
    deployment.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tears the shared deployment down, checks that nothing of it is left (a failure makes the
/// test binary fail) and removes its folder.
extern "C" fn tear_down_shared() {
    let Some(deployment) = SHARED.get() else {
        return;
    };
    let d = deployment.lock().unwrap_or_else(PoisonError::into_inner);
    let out = d.run(&["teardown"]);
    let left = (d.services(), d.servers());
    if !out.status.success() || left != (vec![], vec![]) {
        eprintln!(
            "teardown of the shared deployment failed or left {left:?}:\n{}",
            common::text(&out)
        );
        // SAFETY: ends the process at once, which is all that is left to do.
        unsafe { libc::_exit(1) };
    }
    // Its folder goes too, as a test's own deployment's does when dropped: data.json there
    // holds the deployment's secrets.
    let _ = std::fs::remove_dir_all(&d.dir);
}

#[test]
fn the_proxy_counts_requests_by_mode_and_outcome() {
    let guard = shared();
    let d = &*guard;
    assert_eq!(d.api("SELECT 1 AS one", "random").0, 200);
    assert_eq!(
        d.api("UPDATE film SET length = length WHERE film_id = 1", "write")
            .0,
        200
    );
    let metrics = http(None, &d.service("proxy"), "GET", "/metrics", &[], b"");
    assert!(
        metrics
            .body
            .contains("proxy_requests_total{mode=\"random\",outcome=\"ok\""),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("proxy_request_duration_seconds_bucket{mode=\"write\",le=\"+Inf\"}"));
}

#[test]
fn redeploying_replaces_every_service() {
    let guard = shared();
    let d = &*guard;
    let before = d.services();
    d.ok(&["deploy-services", "--force"]);
    let after = d.services();
    assert_eq!(after.len(), 3);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.0, new.0);
        assert_ne!(old.1, new.1, "{} was not replaced", old.0);
    }
    assert_eq!(d.api("SELECT 1 AS one", "direct-hit").0, 200);
}

#[test]
fn every_mode_returns_the_rows() {
    let guard = shared();
    let d = &*guard;
    let sql =
        "SELECT film_id, title, rental_rate FROM film WHERE film_id IN (1, 2, 3) ORDER BY film_id";
    let expected: Vec<Vec<String>> = d
        .root_sql("manager", &format!("USE filmdb; {sql}"))
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    assert_eq!(expected.len(), 3);
    for mode in ["direct-hit", "random", "customized"] {
        let (status, body) = d.api(sql, mode);
        assert_eq!(status, 200, "{mode}: {body}");
        assert_eq!(body["columns"], json!(["film_id", "title", "rental_rate"]));
        let rows: Vec<Vec<String>> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .collect()
            })
            .collect();
        assert_eq!(rows, expected, "{mode}");
        let served_by = body["served_by"].as_str().unwrap();
        if mode == "direct-hit" {
            assert_eq!(served_by, "manager");
        } else {
            assert!(
                served_by.starts_with("worker-"),
                "{mode} was served by {served_by}: {body}"
            );
        }
        assert!(body["elapsed_ms"].as_f64().unwrap() > 0.0);
    }
}

/// The load generator deploy-services built beside the services, for one second each way.
#[test]
fn the_load_generator_measures_chain_and_database() {
    let guard = shared();
    let d = &*guard;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let loadgen = target.join("release/loadgen");
    let run = |args: &[&str]| -> Value {
        let out = Command::new(&loadgen)
            .args(args)
            .args(["--duration", "1", "--concurrency", "2", "--films", "100"])
            .env("LOADGEN_DB_PASSWORD", d.secret("bench_password"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let gatekeeper = format!("http://{}", d.service("gatekeeper"));
    let chain = run(&[
        "--gatekeeper",
        &gatekeeper,
        "--mode",
        "random",
        "--workload",
        "mix",
    ]);
    let direct = run(&[
        "--database",
        &format!("{}:3306", d.address("manager")),
        "--user",
        "bench",
        "--workload",
        "mix",
    ]);
    for report in [&chain, &direct] {
        assert!(report["requests"].as_u64().unwrap() > 10, "{report}");
        assert_eq!(report["errors"], json!({}), "{report}");
        assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        // The report is the contract fetch-results reads.
        let typed: contract::report::Report = serde_json::from_value(report.clone()).unwrap();
        assert_eq!(typed.requests, report["requests"].as_u64().unwrap());
    }
    let served: Vec<&String> = chain["served_by"].as_object().unwrap().keys().collect();
    assert!(
        served.iter().all(|s| s.starts_with("worker-")),
        "{served:?}"
    );
    assert_eq!(direct["target"], "direct-db");

    // Paced: about the rate asked (unpaced, it sends many times more), given as a number or
    // as what another report measured.
    let database = format!("{}:3306", d.address("manager"));
    let paced = |rate: &[&str]| -> f64 {
        let report = run(&[&["--database", &database, "--user", "bench"], rate].concat());
        assert_eq!(report["errors"], json!({}), "{report}");
        report["requests"].as_u64().unwrap() as f64
    };
    let sent = paced(&["--rate", "200"]);
    assert!((140.0..=215.0).contains(&sent), "{sent} requests at 200/s");
    let measured = std::env::temp_dir().join(format!("loadgen-{}.json", std::process::id()));
    let mut report = direct.clone();
    report["throughput_rps"] = json!(150.0);
    fs::write(&measured, report.to_string()).unwrap();
    let sent = paced(&["--rate-of", measured.to_str().unwrap()]);
    assert!((100.0..=165.0).contains(&sent), "{sent} requests at 150/s");
    // A run whose every request failed measured no rate: what is paced at it gets one a
    // second (the first at once), rather than a refusal that would stop every rerun.
    report["throughput_rps"] = json!(0.0);
    fs::write(&measured, report.to_string()).unwrap();
    let sent = paced(&["--rate-of", measured.to_str().unwrap()]);
    assert!((1.0..=2.0).contains(&sent), "{sent} requests at 1/s");
    // Something that is not a report is refused, saying what it is.
    fs::write(&measured, "{}").unwrap();
    let out = Command::new(&loadgen)
        .args(["--database", &database, "--user", "bench", "--rate-of"])
        .arg(&measured)
        .env("LOADGEN_DB_PASSWORD", d.secret("bench_password"))
        .output()
        .unwrap();
    let _ = fs::remove_file(&measured);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("is not a load generator's report"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn a_write_reaches_the_workers() {
    let guard = shared();
    let d = &*guard;
    let (status, body) = d.api(
        "INSERT INTO actor (actor_id, first_name, last_name) VALUES (990001, 'Zoe', 'O''Hara')",
        "write",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served_by"], "manager");
    assert_eq!(body["affected_rows"], 1);
    for worker in ["worker-1", "worker-2", "worker-3"] {
        wait_for("the write on every worker", Duration::from_secs(30), || {
            d.root_sql(
                worker,
                "SELECT last_name FROM filmdb.actor WHERE actor_id = 990001",
            )
            .trim()
                == "O'Hara"
        });
    }
    let (status, body) = d.api(
        "SELECT last_name FROM actor WHERE actor_id = 990001",
        "random",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([["O'Hara"]]));
}

/// The servers behind the proxy.
const SERVERS: [&str; 4] = ["manager", "worker-1", "worker-2", "worker-3"];

/// Starts every server's general log afresh (a file in its host's folder).
fn general_logs_on(d: &Deployment) {
    for host in SERVERS {
        let log = d.host_dir(host).join("general.log");
        let _ = fs::remove_file(&log);
        d.root_sql(
            host,
            &format!(
                "SET GLOBAL general_log_file = '{}'; SET GLOBAL general_log = ON;",
                log.display()
            ),
        );
    }
}

/// Stops every server's general log; returns what they logged.
fn general_logs_off(d: &Deployment) -> String {
    let mut logs = String::new();
    for host in SERVERS {
        d.root_sql(host, "SET GLOBAL general_log = OFF;");
        logs.push_str(&fs::read_to_string(d.host_dir(host).join("general.log")).unwrap());
    }
    logs
}

#[test]
fn a_rejected_query_never_reaches_a_database() {
    let guard = shared();
    let d = &*guard;
    general_logs_on(d);
    let rejected = format!("marker-rejected-{}", std::process::id());
    let accepted = format!("marker-accepted-{}", std::process::id());
    for (query, mode) in [
        (format!("SELECT '{rejected}' UNION SELECT 1"), "direct-hit"),
        (format!("SELECT '{rejected}', SLEEP(1)"), "random"),
        (
            format!("SELECT '{rejected}'; DROP TABLE film"),
            "customized",
        ),
        (
            format!("UPDATE actor SET last_name = '{rejected}'"),
            "write",
        ),
        (format!("SELECT '{rejected}', sl\u{e9}ep(1)"), "random"),
        (format!("SELECT '{rejected}', CURRENT_USER"), "random"),
        (
            format!("SELECT '{rejected}' FROM sbtest.sbtest1"),
            "customized",
        ),
        (format!("SELECT '{rejected}', UUID()"), "direct-hit"),
        (
            format!("UPDATE actor SET last_name = '{rejected}' WHERE 1 = 1"),
            "write",
        ),
        (
            format!("DELETE FROM actor WHERE last_name = '{rejected}'"),
            "write",
        ),
        (
            format!("SELECT '{rejected}', \u{ff53}\u{ff4c}\u{ff45}\u{ff45}\u{ff50}(1)"),
            "random",
        ),
        (format!("SELECT '{rejected}', SLEEP\u{200b}(1)"), "random"),
        (
            format!("SELECT '{rejected}', BINLOG_GTID_POS('x', 1)"),
            "random",
        ),
        (format!("SELECT '{rejected}', sys.version_major()"), "random"),
        (
            format!("SELECT '{rejected}', mysql.user.authentication_string FROM film"),
            "random",
        ),
        (
            format!("SELECT '{rejected}' FROM film WHERE EXISTS (DELETE FROM actor WHERE actor_id = 1)"),
            "random",
        ),
        (
            format!("UPDATE film f JOIN actor a ON a.actor_id = f.film_id SET f.title = '{rejected}' WHERE f.film_id = 1"),
            "write",
        ),
        (
            format!("INSERT INTO actor (first_name, last_name) SELECT '{rejected}', 'x' FROM seq_1_to_1000"),
            "write",
        ),
        (
            format!("WITH RECURSIVE x AS (SELECT '{rejected}' AS a UNION SELECT a FROM x) SELECT * FROM x"),
            "random",
        ),
        // Only the dataset's tables and columns: not a storage engine's virtual table, not a
        // name the server would answer with its own error.
        (format!("SELECT '{rejected}', seq FROM seq_1_to_10"), "random"),
        (format!("SELECT '{rejected}' FROM no_such_table"), "direct-hit"),
        (format!("SELECT '{rejected}', secret FROM film"), "customized"),
        (
            format!("UPDATE film SET rental_rate = 1 WHERE film_id BETWEEN 1 AND 1000 AND title = '{rejected}'"),
            "write",
        ),
    ] {
        let (status, body) = d.api(&query, mode);
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["code"], "rejected");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("rejected by rule "),
            "{body}"
        );
    }
    let (status, body) = d.api(&format!("SELECT '{accepted}' AS marker"), "direct-hit");
    assert_eq!(status, 200, "{body}");
    let logs = general_logs_off(d);
    assert!(
        logs.contains(&accepted),
        "the general log does not work: the accepted query is missing"
    );
    assert!(
        !logs.contains(&rejected),
        "a rejected query reached a database"
    );
}

#[test]
fn internal_services_refuse_strangers() {
    let guard = shared();
    let d = &*guard;
    let query = json!({ "query": "SELECT 1", "mode": "direct-hit" }).to_string();
    let template = forwarded("SELECT 1", "direct-hit");
    let call = |source: Option<&str>, host: &str, token: Option<&str>| {
        // The proxy takes what the trusted host forwards; the trusted host, the public form.
        let body = if host == "proxy" { &template } else { &query };
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        http(
            source,
            &d.service(host),
            "POST",
            "/query",
            &headers,
            body.as_bytes(),
        )
        .status
    };
    let (proxy_token, trusted_token) =
        (d.secret("trusted_host_token"), d.secret("gatekeeper_token"));
    let (trusted_address, gatekeeper_address) =
        (d.address("trusted-host"), d.address("gatekeeper"));

    // The proxy: only from the trusted host's address, only with its token.
    assert_eq!(
        call(None, "proxy", Some(&proxy_token)),
        403,
        "right token, wrong address"
    );
    assert_eq!(
        call(Some(&gatekeeper_address), "proxy", Some(&proxy_token)),
        403
    );
    assert_eq!(
        call(Some(&trusted_address), "proxy", None),
        401,
        "right address, no token"
    );
    assert_eq!(
        call(Some(&trusted_address), "proxy", Some(&trusted_token)),
        401,
        "another token"
    );
    assert_eq!(
        call(Some(&trusted_address), "proxy", Some(&proxy_token)),
        200,
        "both right"
    );

    // The trusted host: only from the gatekeeper's address, only with the gatekeeper's token.
    assert_eq!(call(None, "trusted-host", Some(&trusted_token)), 403);
    assert_eq!(call(Some(&gatekeeper_address), "trusted-host", None), 401);
    assert_eq!(
        call(
            Some(&gatekeeper_address),
            "trusted-host",
            Some(&proxy_token)
        ),
        401
    );
    assert_eq!(
        call(
            Some(&gatekeeper_address),
            "trusted-host",
            Some(&trusted_token)
        ),
        200
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let guard = shared();
    let d = &*guard;
    let gatekeeper = d.service("gatekeeper");
    let post = |content_type: &str, body: &[u8]| {
        http(
            None,
            &gatekeeper,
            "POST",
            "/api/query",
            &[("Content-Type", content_type)],
            body,
        )
    };
    let json_type = "application/json";
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{\"query\": \"SELECT 1\"".to_vec(),
            json_type,
            400,
            "malformed-json",
        ),
        (
            b"not json at all".to_vec(),
            json_type,
            400,
            "malformed-json",
        ),
        (
            br#"{"query": 5, "mode": "random"}"#.to_vec(),
            json_type,
            422,
            "invalid-request",
        ),
        (
            br#"{"query": "SELECT 1"}"#.to_vec(),
            json_type,
            422,
            "invalid-request",
        ),
        (
            br#"{"query": "SELECT 1", "mode": "fastest"}"#.to_vec(),
            json_type,
            422,
            "unknown mode",
        ),
        (
            br#"{"query": "", "mode": "random"}"#.to_vec(),
            json_type,
            422,
            "single-statement",
        ),
        (
            b"{\"query\": \"SELECT '\xff\xfe'\", \"mode\": \"random\"}".to_vec(),
            json_type,
            400,
            "malformed-json",
        ),
        (
            br#"{"query": "SELECT 1", "mode": "random"}"#.to_vec(),
            "text/plain",
            415,
            "unsupported-content-type",
        ),
        (
            format!(
                r#"{{"query": "SELECT '{}'", "mode": "random"}}"#,
                "a".repeat(5000)
            )
            .into_bytes(),
            json_type,
            422,
            "query-length",
        ),
        (
            format!(
                r#"{{"query": "SELECT '{}'", "mode": "random"}}"#,
                "a".repeat(100_000)
            )
            .into_bytes(),
            json_type,
            413,
            "body-too-large",
        ),
    ];
    for (body, content_type, status, expected) in cases {
        let r = post(content_type, &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        assert_eq!(r.status, status, "{shown}: {}", r.body);
        assert!(
            r.body.contains(expected),
            "{shown}: expected {expected:?} in {}",
            r.body
        );
    }
    let r = http(None, &gatekeeper, "GET", "/api/query", &[], b"");
    assert_eq!(r.status, 405);

    // A client of its own with tight limits: a slow client is cut off, a greedy one throttled.
    let (_tight, tight) = start_variant(d, "gatekeeper", 18080, |c| {
        c["request_timeout_ms"] = json!(1000);
        c["rate_per_second"] = json!(1.0);
        c["rate_burst"] = json!(3);
    });

    let started = Instant::now();
    let mut slow = TcpStream::connect(&tight).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(slow, "POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"query\"").unwrap();
    let answer = common::parse_response(&common::read_response(&mut slow));
    assert_eq!(
        answer.status, 408,
        "a body that never arrives: {}",
        answer.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let statuses: Vec<u16> = (0..6)
        .map(|_| http(None, &tight, "GET", "/read", &[], b"").status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses[0], 200, "{statuses:?}");
    let limited = http(None, &tight, "GET", "/read", &[], b"");
    assert!(limited.body.contains("rate-limited"), "{}", limited.body);

    // The public gatekeeper kept serving through all of it.
    assert_eq!(
        http(None, &gatekeeper, "GET", "/health", &[], b"").status,
        200
    );
    assert_eq!(d.api("SELECT 1 AS one", "random").0, 200);
}

/// A backend whose query connections are all taken (slow queries fill the pool) is still
/// measured: the probes have a connection of their own, so it stays healthy and its checks go
/// on, and a query waiting for a connection is not what decides its health.
#[test]
fn a_full_pool_does_not_stop_the_probes() {
    let guard = shared();
    let d = &*guard;
    let token = format!("test-token-{}", std::process::id());
    let (_proxy, proxy) = start_variant(d, "proxy", 18083, |c| {
        c["allowed_peers"] = json!(["127.0.0.1"]);
        c["token"] = json!(token);
        c["health_interval_ms"] = json!(100);
        c["connections_per_backend"] = json!(2);
    });
    let auth = format!("Bearer {token}");
    let manager = |h: &Value| -> Value {
        h["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == "manager").cloned())
            .unwrap_or(Value::Null)
    };
    let health = || -> Value {
        let r = http(None, &proxy, "GET", "/health", &[], b"");
        manager(&serde_json::from_str(&r.body).unwrap_or(Value::Null))
    };
    wait_for("the first probes", Duration::from_secs(10), || {
        health()["checks"].as_u64() >= Some(3)
    });
    // Two slow reads on the manager take both of its query connections for 3 s.
    let slow = forwarded("SELECT SLEEP(3)", "direct-hit");
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (proxy, slow, auth) = (proxy.clone(), slow.clone(), auth.clone());
            std::thread::spawn(move || {
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Authorization", auth.as_str()),
                ];
                http(None, &proxy, "POST", "/query", &headers, slow.as_bytes()).status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = health()["checks"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let during = health();
    let checks = during["checks"].as_u64().unwrap() - before;
    assert!(
        checks >= 5,
        "{checks} probes in 1.5 s while the pool was full: {during}"
    );
    assert_eq!(during["healthy"], true, "{during}");
    for holder in holders {
        assert_eq!(holder.join().unwrap(), 200);
    }
}

#[test]
fn a_slow_worker_is_avoided_by_customized() {
    let guard = shared();
    let d = &*guard;
    // A forwarder in front of worker-3 that holds every answer back by 30 ms.
    let slow = Forwarder::start(
        &format!("{PREFIX}.60"),
        format!("{}:3306", d.address("worker-3")),
        Duration::from_millis(30),
    );

    let token = format!("test-token-{}", std::process::id());
    let (_proxy, proxy) = start_variant(d, "proxy", 18081, |c| {
        c["allowed_peers"] = json!(["127.0.0.1"]);
        c["token"] = json!(token);
        c["health_interval_ms"] = json!(100);
        c["workers"] = json!([
            { "name": "worker-1", "address": d.address("worker-1"), "port": 3306 },
            { "name": "worker-slow", "address": format!("{PREFIX}.60"), "port": slow.port() },
            { "name": "worker-2", "address": d.address("worker-2"), "port": 3306 },
        ]);
    });
    let health = || -> Value {
        let r = http(None, &proxy, "GET", "/health", &[], b"");
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    };
    let latency = |h: &Value, name: &str| -> Option<f64> {
        h["backends"]
            .as_array()?
            .iter()
            .find(|b| b["name"] == name)?["latency_ms"]
            .as_f64()
    };
    // Enough probes for the moving averages to settle.
    wait_for("measured latencies", Duration::from_secs(30), || {
        let h = health();
        h["backends"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["checks"].as_u64() >= Some(10)))
    });
    let h = health();
    let slow = latency(&h, "worker-slow").unwrap();
    assert!(slow >= 30.0, "the delay is measured: {h}");
    assert!(
        latency(&h, "worker-1").unwrap() < slow && latency(&h, "worker-2").unwrap() < slow,
        "{h}"
    );

    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let query = forwarded("SELECT COUNT(*) FROM film", "customized");
    for _ in 0..20 {
        let r = http(None, &proxy, "POST", "/query", &headers, query.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_ne!(
            body["served_by"], "worker-slow",
            "customized chose the slow worker: {h}"
        );
    }
    // Random still spreads over all three: the slow one is healthy, only slower.
    let random = forwarded("SELECT 1", "random");
    let served: Vec<String> = (0..60)
        .map(|_| {
            let r = http(None, &proxy, "POST", "/query", &headers, random.as_bytes());
            serde_json::from_str::<Value>(&r.body).unwrap()["served_by"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(served.iter().any(|s| s == "worker-slow"), "{served:?}");
}

/// A worker that dies between two health probes: the read that finds out is retried elsewhere
/// and still answers.
#[test]
fn a_failed_read_is_retried_elsewhere() {
    let guard = shared();
    let d = &*guard;
    let flaky = Forwarder::start(
        &format!("{PREFIX}.61"),
        format!("{}:3306", d.address("worker-2")),
        Duration::ZERO,
    );
    let token = format!("retry-token-{}", std::process::id());
    let (_proxy, proxy) = start_variant(d, "proxy", 18082, |c| {
        c["allowed_peers"] = json!(["127.0.0.1"]);
        c["token"] = json!(token);
        // One probe at start, then none for an hour: only the request path can notice a failure.
        c["health_interval_ms"] = json!(3_600_000);
        c["workers"] = json!([{ "name": "worker-flaky", "address": format!("{PREFIX}.61"), "port": flaky.port() }]);
    });
    let health = || -> Value {
        serde_json::from_str(&http(None, &proxy, "GET", "/health", &[], b"").body).unwrap()
    };
    wait_for("the first probe", Duration::from_secs(20), || {
        health()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["checks"] == 1)
    });

    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let read = forwarded("SELECT COUNT(*) FROM film", "random");
    let send = || -> (u16, Value) {
        let r = http(None, &proxy, "POST", "/query", &headers, read.as_bytes());
        (r.status, serde_json::from_str(&r.body).unwrap())
    };
    let (status, body) = send();
    assert_eq!(
        (status, body["served_by"].as_str()),
        (200, Some("worker-flaky")),
        "{body}"
    );

    flaky.cut();
    let (status, body) = send();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served_by"], "manager", "{body}");
    let note = body["note"].as_str().unwrap();
    assert!(
        note.starts_with("worker-flaky failed") && note.contains("retried on manager"),
        "{note}"
    );
    let h = health();
    let flaky_health = h["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "worker-flaky")
        .unwrap();
    assert_eq!(flaky_health["healthy"], false, "{h}");
    assert_eq!(
        flaky_health["checks"], 1,
        "marked down by the request, not by a probe: {h}"
    );
}

#[test]
fn a_killed_worker_is_routed_around_and_restarted() {
    let guard = shared();
    let d = &*guard;
    let pid = d.state()["processes"]["worker-1/mariadbd"]["pid"]
        .as_u64()
        .unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    // The proxy's monitor sees it within a few of its 500 ms probes.
    wait_for(
        "the proxy to leave worker-1 out",
        Duration::from_secs(10),
        || {
            let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
            let h: Value = serde_json::from_str(&r.body).unwrap();
            h["backends"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["name"] == "worker-1" && b["healthy"] == false)
        },
    );
    for mode in ["random", "customized"] {
        for _ in 0..30 {
            let (status, body) = d.api("SELECT COUNT(*) AS n FROM film", mode);
            assert_eq!(status, 200, "{mode}: {body}");
            assert_ne!(body["served_by"], "worker-1", "{mode}: {body}");
        }
    }
    let status = d.ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("worker-1 ")).unwrap();
    assert!(line.contains("DOWN (not answering"), "{status}");

    // Started again on its own config, it resumes replicating and rejoins the reads.
    d.start_server_by_hand("worker-1");
    wait_for(
        "worker-1 back in the reads",
        Duration::from_secs(60),
        || {
            let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
            let h: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            h["backends"].as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b["name"] == "worker-1" && b["healthy"] == true)
            })
        },
    );
}

/// Drives the pages in headless Chromium through chromedriver (WebDriver): fill the form,
/// submit, see the rows.
#[test]
fn pages_work_in_a_browser() {
    let guard = shared();
    let d = &*guard;
    let driver_port = free_port();
    let _driver = Spawned(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed"),
    );
    let driver = format!("127.0.0.1:{driver_port}");
    wait_for("chromedriver", Duration::from_secs(20), || {
        TcpStream::connect(&driver).is_ok()
    });
    let profile = d.dir.join("chromium-profile");
    let _browser = KillOnDrop(profile.display().to_string());
    let capabilities = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-quic",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let webdriver = |method: &str, path: &str, body: Value| -> Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let r = http(
            None,
            &driver,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{path}: {}", r.body));
        assert!(r.status == 200, "{method} {path}: {}", r.body);
        v["value"].clone()
    };
    let session = webdriver("POST", "/session", capabilities)["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let s = format!("/session/{session}");
    // Element lookups wait for the page a click navigated to.
    webdriver(
        "POST",
        &format!("{s}/timeouts"),
        json!({ "implicit": 10_000 }),
    );
    let find = |css: &str| -> String {
        let found = webdriver(
            "POST",
            &format!("{s}/element"),
            json!({ "using": "css selector", "value": css }),
        );
        found
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };
    let text_of = |css: &str| -> String {
        webdriver(
            "GET",
            &format!("{s}/element/{}/text", find(css)),
            Value::Null,
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    let base = format!("http://{}", d.service("gatekeeper"));
    // Opens a page, types the query, picks the strategy (on /read) and submits, as a person would.
    let submit = |page: &str, sql: &str, strategy: Option<&str>| {
        webdriver(
            "POST",
            &format!("{s}/url"),
            json!({ "url": format!("{base}/{page}") }),
        );
        let query = find("#query");
        webdriver("POST", &format!("{s}/element/{query}/clear"), json!({}));
        webdriver(
            "POST",
            &format!("{s}/element/{query}/value"),
            json!({ "text": sql }),
        );
        if let Some(strategy) = strategy {
            let option = find(&format!("#strategy option[value='{strategy}']"));
            webdriver("POST", &format!("{s}/element/{option}/click"), json!({}));
        }
        let button = find("button[type='submit']");
        webdriver("POST", &format!("{s}/element/{button}/click"), json!({}));
    };

    // A row of its own, on every worker, so the test does not depend on another's.
    let (status, body) = d.api(
        "INSERT INTO actor (actor_id, first_name, last_name) VALUES (990005, 'Ann', 'O''Hara')",
        "write",
    );
    assert_eq!(status, 200, "{body}");
    for worker in ["worker-1", "worker-2", "worker-3"] {
        wait_for("the row on every worker", Duration::from_secs(30), || {
            d.root_sql(
                worker,
                "SELECT last_name FROM filmdb.actor WHERE actor_id = 990005",
            )
            .trim()
                == "O'Hara"
        });
    }
    let sql = "SELECT actor_id, last_name FROM actor WHERE actor_id = 990005";
    submit("read", sql, Some("customized"));
    let rows = text_of("#rows");
    assert!(rows.contains("990005") && rows.contains("O'Hara"), "{rows}");
    let served = text_of("#served-by");
    assert!(
        served.contains("worker-") && served.contains("customized"),
        "{served}"
    );

    submit(
        "write",
        "UPDATE actor SET first_name = 'Zed' WHERE actor_id = 990005",
        None,
    );
    assert_eq!(text_of("#affected"), "1 row(s) changed.");

    // A rejected query shows the rule, as text, not markup.
    submit("read", "SELECT '<b>x</b>' UNION SELECT 1", Some("random"));
    assert!(text_of("#error").contains("rejected by rule set-operation"));
    let source = webdriver("GET", &format!("{s}/source"), Value::Null);
    assert!(
        source.as_str().unwrap().contains("&lt;b&gt;x&lt;/b&gt;"),
        "the query is escaped in the page"
    );
    webdriver("DELETE", &s, Value::Null);
}

/// What the trusted host forwards to the proxy for a query without literals.
fn forwarded(template: &str, mode: &str) -> String {
    json!({
        "mode": mode,
        "template": template,
        "params": [],
        "digest": "0000000000000000",
        "digest_text": template,
    })
    .to_string()
}

fn write_private(path: &std::path::Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Starts another instance of a deployed service on `port` of the same host, with the deployed
/// config changed by `change`; returns it once it listens, with its address.
fn start_variant(
    d: &Deployment,
    host: &str,
    port: u16,
    change: impl FnOnce(&mut Value),
) -> (Spawned, String) {
    let deployed = fs::read_to_string(d.host_dir(host).join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&deployed).unwrap();
    let listen = format!("{}:{port}", d.address(host));
    config["listen"] = json!(listen);
    change(&mut config);
    let path = d.dir.join(format!("{host}-{port}.json"));
    write_private(&path, &config.to_string());
    let log = fs::File::create(d.dir.join(format!("{host}-{port}.log"))).unwrap();
    let process = Spawned(
        Command::new(d.host_dir(host).join(host))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(
        &format!("{host} on {listen}"),
        Duration::from_secs(20),
        || TcpStream::connect(&listen).is_ok(),
    );
    (process, listen)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP relay to `upstream` that holds back what comes back by `delay`, and can be cut: every
/// connection through it is closed and new ones are refused, as when a host dies.
struct Forwarder {
    address: String,
    cut: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(address: &str, upstream: String, delay: Duration) -> Forwarder {
        let listener = TcpListener::bind(format!("{address}:0")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let forwarder = Forwarder {
            address: listener.local_addr().unwrap().to_string(),
            cut: Arc::default(),
            connections: Arc::default(),
        };
        let (cut, connections) = (
            Arc::clone(&forwarder.cut),
            Arc::clone(&forwarder.connections),
        );
        std::thread::spawn(move || {
            while !cut.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                connections
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (mut client_r, mut server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_r, &mut server_w);
                    let _ = server_w.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_r, mut client_w) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = server_r.read(&mut buf) {
                        std::thread::sleep(delay);
                        if client_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client_w.shutdown(std::net::Shutdown::Write);
                });
            }
            // The listener is dropped here: new connections are refused.
        });
        forwarder
    }

    fn port(&self) -> u16 {
        self.address.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Two printed results hold the same values: the same text in each cell, or the same number
/// (a double travels as JSON's shortest form; the command line client prints its column's
/// decimals: 0.25 and 0.2500000000).
fn same_values(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            let (x, y): (Vec<&str>, Vec<&str>) = (x.split('\t').collect(), y.split('\t').collect());
            x.len() == y.len()
                && x.iter().zip(&y).all(|(u, v)| {
                    u == v
                        || matches!((u.parse::<f64>(), v.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
                })
        })
}

/// The trusted host forwards a template and its parameters: run that way, every kind of literal
/// gives the rows and the column names the same text gives run directly on the server.
#[test]
fn templates_answer_what_the_text_answers() {
    let guard = shared();
    let d = &*guard;
    let corpus = [
        // Strings: quotes doubled and escaped, backslashes, a tab (hexed: the command line
        // client escapes tabs in what it prints).
        r#"SELECT HEX(CONCAT('it''s', ' \\ ', 'a\'b', 'tab\there', "dq"""))"#,
        "SELECT film_id, title FROM film WHERE title = (SELECT title FROM film WHERE film_id = 3)",
        r"SELECT COUNT(*) FROM film WHERE title LIKE 'A%' OR title LIKE '100\%'",
        // Numbers: negative, exact decimals, exponents, past 64 bits signed, booleans.
        "SELECT 1 + 2, -5, 0.1 + 0.2, 2.50 * 4, 1e3 * 2, 18446744073709551615, TRUE, FALSE",
        "SELECT film_id FROM film WHERE rental_rate = 2.99 AND film_id < 40",
        "SELECT film_id FROM film WHERE film_id = -1 OR length > -5 ORDER BY film_id LIMIT 3",
        // NULL, dates and intervals.
        "SELECT COALESCE(NULL, 'x'), NULL IS NULL, NULL",
        "SELECT DATE_ADD('2025-01-31', INTERVAL 1 MONTH), DATEDIFF('2025-03-01', '2025-02-01')",
        // IN lists of different lengths, LIMIT and OFFSET, a column position kept as one.
        "SELECT COUNT(*) FROM film WHERE film_id IN (1, 2, 3)",
        "SELECT COUNT(*) FROM film WHERE film_id IN (4, 5)",
        "SELECT film_id, title FROM film ORDER BY film_id LIMIT 3 OFFSET 2",
        "SELECT film_id, length FROM film ORDER BY 2 DESC, 1 LIMIT 2",
        "SELECT rating, COUNT(*) FROM film GROUP BY 1 HAVING COUNT(*) > 1 ORDER BY 1",
        // Names: a bare string names its column by its value; an alias stays.
        "SELECT 'x' AS y, 'abc', 42",
        // Window functions: ranking, offsets, aggregates over frames, named windows.
        "SELECT film_id, ROW_NUMBER() OVER (ORDER BY length DESC, film_id) AS n, \
         RANK() OVER (PARTITION BY rating ORDER BY length) AS r, \
         DENSE_RANK() OVER (ORDER BY rating) FROM film WHERE film_id <= 20 ORDER BY film_id",
        "SELECT film_id, LAG(length, 2) OVER w AS two_before, LEAD(length) OVER w AS next, \
         NTILE(4) OVER w AS quartile, FIRST_VALUE(title) OVER w AS first \
         FROM film WHERE film_id < 15 WINDOW w AS (ORDER BY film_id) ORDER BY film_id",
        "SELECT payment_id, SUM(amount) OVER (PARTITION BY customer_id ORDER BY payment_id \
         ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS running, \
         AVG(amount) OVER (PARTITION BY customer_id) AS mean, \
         PERCENT_RANK() OVER (ORDER BY amount, payment_id) AS pr \
         FROM payment WHERE customer_id <= 3 ORDER BY payment_id",
        // JSON constructors and extractors.
        "SELECT JSON_OBJECT('id', film_id, 'title', title, 'rate', rental_rate) \
         FROM film WHERE film_id < 4 ORDER BY film_id",
        "SELECT JSON_ARRAYAGG(film_id), JSON_OBJECTAGG(film_id, length) FROM film WHERE film_id < 6",
        "SELECT JSON_EXTRACT(JSON_OBJECT('a', length, 'b', JSON_ARRAY(1, 2)), '$.b[1]') AS b, \
         JSON_VALUE(JSON_OBJECT('t', title), '$.t') AS t, JSON_LENGTH(JSON_ARRAY(1, 2, 3)), \
         JSON_UNQUOTE(JSON_QUOTE(title)) FROM film WHERE film_id = 2",
    ];
    for sql in corpus {
        let direct = d.root_sql_with_names("manager", sql);

        let (status, body) = d.api(sql, "direct-hit");
        assert_eq!(status, 200, "{sql}: {body}");
        // As the command line client prints values (a double without a fraction has no ".0").
        let text = |v: &Value| match v {
            Value::Null => "NULL".to_string(),
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_f64() && n.as_f64().unwrap().fract() == 0.0 => {
                format!("{}", n.as_f64().unwrap() as i64)
            }
            other => other.to_string(),
        };
        let mut lines = vec![body["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join("\t")];
        for row in body["rows"].as_array().unwrap() {
            lines.push(
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>()
                    .join("\t"),
            );
        }
        let through_chain = lines.join("\n") + "\n";
        if through_chain != direct {
            assert!(
                same_values(&through_chain, &direct),
                "{sql}\n{through_chain}\n{direct}"
            );
        }
    }

    // A write with a decimal, read back exactly.
    let (status, body) = d.api(
        "UPDATE film SET rental_rate = 3.49 WHERE film_id = 7",
        "write",
    );
    assert_eq!(
        (status, body["affected_rows"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (_, body) = d.api(
        "SELECT rental_rate FROM film WHERE film_id = 7",
        "direct-hit",
    );
    assert_eq!(body["rows"][0][0], "3.49", "{body}");
    // A narrow key range of constants bounds a write as an IN list does.
    let (status, body) = d.api(
        "UPDATE film SET rental_duration = rental_duration + 1 WHERE film_id BETWEEN 8 AND 12",
        "write",
    );
    assert_eq!(
        (status, body["affected_rows"].as_u64()),
        (200, Some(5)),
        "{body}"
    );

    // Each shape is one line of the proxy's statistics, whatever its values.
    let digests = http(None, &d.service("proxy"), "GET", "/digests", &[], b"");
    let digests: Vec<Value> = serde_json::from_str(&digests.body).unwrap();
    let in_lists: Vec<&Value> = digests
        .iter()
        .filter(|q| q["text"] == "SELECT COUNT(*) FROM film WHERE film_id IN (?) LIMIT ?")
        .collect();
    assert_eq!(in_lists.len(), 1, "{digests:?}");
    assert!(in_lists[0]["count"].as_u64() >= Some(2), "{digests:?}");
    assert!(
        in_lists[0]["backends"]["manager"].as_u64() >= Some(2),
        "{digests:?}"
    );
}

/// A result over the proxy's size cap comes back cut, and says so; the connection it came on
/// serves the next query. Recursive CTEs run, bounded by the server; `MOD` is an operator.
#[test]
fn big_results_are_cut_and_recursion_is_bounded() {
    let guard = shared();
    let d = &*guard;
    for mode in ["direct-hit", "random"] {
        // About 1000 rows of 20 kB each: 20 MB, over the 1 MiB cap.
        let (status, body) = d.api("SELECT film_id, REPEAT(title, 2000) AS t FROM film", mode);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["truncated"], true, "{mode}");
        let rows = body["rows"].as_array().unwrap().len();
        assert!((1..100).contains(&rows), "{mode}: {rows} rows");
        let note = body["note"].as_str().unwrap_or_default();
        assert!(
            note.contains(&format!("result cut to the first {rows} rows")),
            "{note}"
        );
        let (status, body) = d.api("SELECT COUNT(*) AS n FROM film", mode);
        assert_eq!((status, &body["rows"]), (200, &json!([[100]])), "{body}");
        assert!(body.get("truncated").is_none(), "{body}");
    }

    let (status, body) = d.api(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12) \
         SELECT SUM(i) AS total, COUNT(*) AS steps FROM n",
        "random",
    );
    assert_eq!(status, 200, "{body}");
    // SUM is a DECIMAL, which travels as its digits.
    assert_eq!(body["rows"], json!([["78", 12]]), "{body}");
    assert!(body.get("note").is_none(), "{body}");
    // Without a stop of its own, the server's bound ends it, and the answer says so.
    let (status, body) = d.api(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
         SELECT COUNT(*) AS steps FROM n",
        "customized",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[1001]]), "{body}");
    assert_eq!(body["truncated"], true, "{body}");
    let note = body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("a recursive query was stopped at its bound")
            && note.contains("max_recursive_iterations"),
        "{body}"
    );

    let (status, body) = d.api(
        "SELECT length MOD 60 AS minutes FROM film WHERE film_id = 7",
        "direct-hit",
    );
    assert_eq!(status, 200, "{body}");
    let expected = d.root_sql(
        "manager",
        "SELECT length % 60 FROM filmdb.film WHERE film_id = 7",
    );
    assert_eq!(body["rows"][0][0].to_string(), expected.trim(), "{body}");
}

/// A write form posted from another site is refused before anything is forwarded; the same
/// form from the gatekeeper's own page goes through.
#[test]
fn a_cross_site_form_post_changes_nothing() {
    let guard = shared();
    let d = &*guard;
    let gatekeeper = d.service("gatekeeper");
    let own_origin = format!("http://{gatekeeper}");
    let read = || {
        d.root_sql(
            "manager",
            "SELECT last_name FROM filmdb.actor WHERE actor_id = 3",
        )
    };
    let before = read();
    let post = |origin: &str, name: &str| {
        let body =
            format!("query=UPDATE+actor+SET+last_name+%3D+%27{name}%27+WHERE+actor_id+%3D+3");
        http(
            None,
            &gatekeeper,
            "POST",
            "/write",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", origin),
            ],
            body.as_bytes(),
        )
    };
    for origin in ["http://evil.example", "null"] {
        let r = post(origin, "Forged");
        assert_eq!(r.status, 403, "{origin}: {}", r.body);
        assert!(r.body.contains("another site"), "{}", r.body);
    }
    assert_eq!(read(), before, "a forged form changed the row");
    let r = post(&own_origin, "Owned");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("the write", Duration::from_secs(10), || {
        read().trim() == "Owned"
    });
    let restore = format!(
        "UPDATE actor SET last_name = '{}' WHERE actor_id = 3",
        before.trim().replace('\'', "''")
    );
    assert_eq!(d.api(&restore, "write").0, 200);
}

fn proxy_health(d: &Deployment) -> Value {
    let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn all_backends_healthy(d: &Deployment) -> bool {
    proxy_health(d)["backends"]
        .as_array()
        .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
}

/// The manager SIGKILLed under read and write load: once the proxy has seen it (one probe
/// interval), random and customized reads go on from the workers, which had applied everything,
/// and say so; writes and direct-hit reads fail at once with manager-unavailable. Restarted,
/// the manager takes writes again and the workers resume.
#[test]
fn the_managers_loss_stops_writes_not_reads() {
    let guard = shared();
    let d = &*guard;
    assert_eq!(
        d.api("UPDATE film SET length = length WHERE film_id = 1", "write")
            .0,
        200
    );
    wait_for("every backend healthy", Duration::from_secs(20), || {
        all_backends_healthy(d)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    // Readers: every answer with when it came, relative to the kill.
    let readers: Vec<_> = ["random", "customized", "random", "customized"]
        .into_iter()
        .map(|mode| {
            let (stop, killed_at) = (Arc::clone(&stop), Arc::clone(&killed_at));
            let gatekeeper = d.service("gatekeeper");
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let body =
                    json!({"query": "SELECT COUNT(*) AS n FROM film", "mode": mode}).to_string();
                while !stop.load(Ordering::Relaxed) {
                    let r = http(
                        None,
                        &gatekeeper,
                        "POST",
                        "/api/query",
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    );
                    let since_kill = killed_at.lock().unwrap().map(|k| k.elapsed());
                    seen.push((since_kill, r.status, r.body));
                    // Paced below the gatekeeper's rate limit (2,000 requests/s from one
                    // address), which this test measures nothing of.
                    std::thread::sleep(Duration::from_millis(2));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.state()["processes"]["manager/mariadbd"]["pid"]
        .as_u64()
        .unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
    // One probe interval (500 ms) and the judging after it; then writes for a while.
    std::thread::sleep(Duration::from_millis(1200));
    let mut write_ms = Vec::new();
    for i in 0..40 {
        let started = Instant::now();
        let (status, body) = d.api(
            &format!("UPDATE actor SET last_name = 'Gone{i}' WHERE actor_id = 7"),
            "write",
        );
        write_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "manager-unavailable", "{body}");
        let (status, body) = d.api("SELECT 1 AS one", "direct-hit");
        assert_eq!(
            (status, &body["error"]["code"]),
            (503, &json!("manager-unavailable")),
            "{body}"
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<_> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();

    let after: Vec<_> = seen
        .iter()
        .filter(|(since, _, _)| since.is_some_and(|s| s > Duration::from_millis(1000)))
        .collect();
    assert!(
        after.len() > 50,
        "only {} reads after the kill",
        after.len()
    );
    let failed: Vec<_> = after
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed: {:?}",
        failed.len(),
        after.len(),
        failed.first()
    );
    let noted = after
        .iter()
        .filter(|(_, _, body)| body.contains("the manager is unreachable since"))
        .count();
    assert_eq!(
        noted,
        after.len(),
        "every read after the kill says the manager is gone"
    );
    write_ms.sort_by(f64::total_cmp);
    let p99 = write_ms[write_ms.len() * 99 / 100];
    assert!(
        p99 < 50.0,
        "writes took {p99:.1} ms (p99) to fail: {write_ms:?}"
    );

    // repair starts it again on its config (which starts read-only) and opens it to writes.
    let out = d.ok(&["repair"]);
    assert!(out.contains("started manager"), "{out}");
    assert_eq!(
        d.api(
            "UPDATE actor SET last_name = last_name WHERE actor_id = 7",
            "write"
        )
        .0,
        200
    );
    wait_for(
        "every backend healthy again",
        Duration::from_secs(30),
        || all_backends_healthy(d),
    );
}

/// Read-your-writes: with two workers applying 3 s late, a read carrying the write's
/// `last_gtid` as `after_gtid` sees the write every time; without it, reads see old values.
#[test]
fn a_read_after_a_write_sees_it() {
    let guard = shared();
    let d = &*guard;
    let delay = |seconds: u32| {
        for worker in ["worker-1", "worker-2"] {
            d.root_sql(
                worker,
                &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {seconds}; START SLAVE;"),
            );
        }
    };
    delay(3);
    let write = |value: &str| -> String {
        let (status, body) = d.api(
            &format!("UPDATE actor SET last_name = '{value}' WHERE actor_id = 11"),
            "write",
        );
        assert_eq!(status, 200, "{body}");
        body["last_gtid"].as_str().unwrap().to_string()
    };
    let read = |after: Option<&str>| -> Value {
        let mut request = json!({
            "query": "SELECT last_name FROM actor WHERE actor_id = 11",
            "mode": "random",
        });
        if let Some(after) = after {
            request["after_gtid"] = json!(after);
        }
        let (status, body) = d.api_request(request);
        assert_eq!(status, 200, "{body}");
        body
    };
    // Without after_gtid, the delayed workers answer with what they had.
    write("Before");
    std::thread::sleep(Duration::from_secs(4));
    write("After");
    let stale = (0..30)
        .filter(|_| read(None)["rows"][0][0] == "Before")
        .count();
    assert!(stale > 0, "no read was stale: the delay does not work");
    for i in 0..1000 {
        let value = format!("V{i}");
        let gtid = write(&value);
        let body = read(Some(&gtid));
        assert_eq!(body["rows"][0][0], value.as_str(), "{i}: {body}");
    }

    // The pages do it for a person: the Write page's answer sets a cookie with the write's
    // GTID, and the Read page, sent with it, shows the write.
    let gatekeeper = d.service("gatekeeper");
    let origin = format!("http://{gatekeeper}");
    for i in 0..20 {
        let value = format!("Page{i}");
        let form =
            format!("query=UPDATE+actor+SET+last_name+%3D+%27{value}%27+WHERE+actor_id+%3D+11");
        let written = http(
            None,
            &gatekeeper,
            "POST",
            "/write",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", origin.as_str()),
            ],
            form.as_bytes(),
        );
        assert_eq!(written.status, 200, "{}", written.body);
        let cookie = written
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .expect("the write page sets the last write's cookie");
        assert!(cookie.starts_with("last_write_gtid="), "{cookie}");
        let read = http(
            None,
            &gatekeeper,
            "POST",
            "/read",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", origin.as_str()),
                ("Cookie", cookie.as_str()),
            ],
            b"strategy=random&query=SELECT+last_name+FROM+actor+WHERE+actor_id+%3D+11",
        );
        assert_eq!(read.status, 200, "{}", read.body);
        assert!(
            read.body.contains(&format!("<td>{value}</td>")),
            "{i}: {}",
            read.body
        );
    }
    delay(0);
    let (status, body) = d.api_request(json!({
        "query": "SELECT 1", "mode": "random", "after_gtid": "not a gtid"
    }));
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid-request")),
        "{body}"
    );
}

/// The schema's keys are AUTO_INCREMENT: the natural INSERT, without the key, works.
#[test]
fn a_natural_insert_gets_its_key() {
    let guard = shared();
    let d = &*guard;
    let (status, body) = d.api(
        "INSERT INTO actor (first_name, last_name) VALUES ('Jean', 'Reno')",
        "write",
    );
    assert_eq!(
        (status, body["affected_rows"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = d.api(
        "SELECT actor_id FROM actor WHERE first_name = 'Jean' AND last_name = 'Reno'",
        "direct-hit",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["rows"][0][0].as_u64() > Some(0), "{body}");
}

/// What a client sends cannot take backends out of rotation: a `?` is refused by the trusted
/// host, and a template whose parameters do not fit, sent to the proxy itself, is the request's
/// error (422), not the backend's.
#[test]
fn requests_that_do_not_fit_leave_the_backends_healthy() {
    let guard = shared();
    let d = &*guard;
    for _ in 0..100 {
        let (status, body) = d.api("SELECT ?", "random");
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("placeholder"),
            "{body}"
        );
    }
    let token = format!("Bearer {}", d.secret("trusted_host_token"));
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", token.as_str()),
    ];
    let unfit = forwarded("SELECT ?", "random");
    for _ in 0..100 {
        let r = http(
            Some(&d.address("trusted-host")),
            &d.service("proxy"),
            "POST",
            "/query",
            &headers,
            unfit.as_bytes(),
        );
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("query-failed"), "{}", r.body);
    }
    let r = http(None, &d.service("proxy"), "GET", "/health", &[], b"");
    let h: Value = serde_json::from_str(&r.body).unwrap();
    let backends = h["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 4, "{h}");
    assert!(backends.iter().all(|b| b["healthy"] == true), "{h}");
}

/// What one request of a client's loop got: how long it took, its status, its Retry-After and
/// its body.
struct Answer {
    took: Duration,
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

/// `threads` loops sending `body` from `source` to the gatekeeper, one request after the other
/// with `pause` between them, until `stop` is set; after a 429 a loop pauses `after_refusal`
/// (a client that does not wait as long as it was told).
fn client_loops(
    d: &Deployment,
    source: &str,
    threads: usize,
    body: impl Fn(usize) -> String + Send + Sync + 'static,
    stop: &Arc<AtomicBool>,
    (pause, after_refusal): (Duration, Duration),
) -> Vec<std::thread::JoinHandle<Vec<Answer>>> {
    let body = Arc::new(body);
    (0..threads)
        .map(|thread| {
            let (gatekeeper, source, stop, body) = (
                d.service("gatekeeper"),
                source.to_string(),
                Arc::clone(stop),
                Arc::clone(&body),
            );
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut i = thread;
                while !stop.load(Ordering::Relaxed) {
                    i += threads;
                    let started = Instant::now();
                    let r = http(
                        Some(&source),
                        &gatekeeper,
                        "POST",
                        "/api/query",
                        &[("Content-Type", "application/json")],
                        body(i).as_bytes(),
                    );
                    let retry_after = r
                        .headers
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                        .and_then(|(_, v)| v.trim().parse().ok());
                    answers.push(Answer {
                        took: started.elapsed(),
                        status: r.status,
                        retry_after,
                        body: r.body,
                    });
                    std::thread::sleep(match r.status {
                        429 => after_refusal,
                        _ => pause,
                    });
                }
                answers
            })
        })
        .collect()
}

/// Answers per second and the 99th percentile of a client's answered requests.
fn throughput_and_p99(answers: &[Answer], seconds: f64) -> (f64, Duration) {
    let mut took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    took.sort();
    let p99 = took
        .get((took.len() * 99 / 100).min(took.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    (answers.len() as f64 / seconds, p99)
}

/// One client floods the gatekeeper with a heavy read the policy and the cost bound allow (a
/// join on columns with no index, 40 at once, retrying 200 ms after each refusal); another
/// client's point reads keep at least half their throughput and at most four times their p99
/// of the same test without the flood, with no request failed. The flooder gets its share, then
/// 429 with Retry-After, and is served again once it waits.
#[test]
fn a_flooding_client_gets_its_share_and_the_others_keep_theirs() {
    let guard = shared();
    let d = &*guard;
    let (victim, flooder) = (format!("{PREFIX}.201"), format!("{PREFIX}.202"));
    let point = |i: usize| {
        json!({
            "query": format!("SELECT film_id, title FROM film WHERE film_id = {}", i % 100 + 1),
            "mode": "random",
        })
        .to_string()
    };
    let heavy = "SELECT COUNT(*) AS n FROM rental r JOIN payment p ON p.amount < r.inventory_id";
    let heavy_body = json!({ "query": heavy, "mode": "random" }).to_string();
    let measure = |stop: &Arc<AtomicBool>| {
        // Paced below the gatekeeper's rate limit of 2,000 requests/s per address.
        let pace = (Duration::from_millis(1), Duration::ZERO);
        let loops = client_loops(d, &victim, 2, point, stop, pace);
        std::thread::sleep(Duration::from_secs(6));
        stop.store(true, Ordering::Relaxed);
        loops
            .into_iter()
            .flat_map(|l| l.join().unwrap())
            .collect::<Vec<Answer>>()
    };

    let alone = measure(&Arc::new(AtomicBool::new(false)));
    let flood_stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let heavy_body = heavy_body.clone();
        client_loops(
            d,
            &flooder,
            40,
            move |_| heavy_body.clone(),
            &flood_stop,
            (Duration::ZERO, Duration::from_millis(200)),
        )
    };
    std::thread::sleep(Duration::from_secs(2));
    let during = measure(&Arc::new(AtomicBool::new(false)));
    flood_stop.store(true, Ordering::Relaxed);
    let flooded: Vec<Answer> = flood.into_iter().flat_map(|l| l.join().unwrap()).collect();

    for answers in [&alone, &during] {
        let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
        assert!(
            failed.is_empty(),
            "{} of the victim's {} reads failed, as {}: {}",
            failed.len(),
            answers.len(),
            failed[0].status,
            failed[0].body
        );
    }
    let (alone_rate, alone_p99) = throughput_and_p99(&alone, 6.0);
    let (during_rate, during_p99) = throughput_and_p99(&during, 6.0);
    let served = flooded.iter().filter(|a| a.status == 200).count();
    let refused: Vec<&Answer> = flooded.iter().filter(|a| a.status == 429).collect();
    let other: Vec<&Answer> = flooded
        .iter()
        .filter(|a| ![200, 429].contains(&a.status))
        .collect();
    eprintln!(
        "victim alone: {alone_rate:.0} reads/s, p99 {alone_p99:?}; during the flood: \
         {during_rate:.0} reads/s ({:.2}x), p99 {during_p99:?} ({:.2}x); flooder: {served} \
         answered, {} refused (429), {} other",
        during_rate / alone_rate,
        during_p99.as_secs_f64() / alone_p99.as_secs_f64(),
        refused.len(),
        other.len()
    );
    let served_by = |answers: &[Answer]| {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for a in answers.iter().filter(|a| a.status == 200) {
            let body: Value = serde_json::from_str(&a.body).unwrap();
            *by.entry(body["served_by"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        by
    };
    eprintln!(
        "served by: victim {:?}, flooder {:?}",
        served_by(&during),
        served_by(&flooded)
    );
    assert!(
        during_rate >= 0.5 * alone_rate,
        "the victim's reads fell from {alone_rate:.0}/s to {during_rate:.0}/s"
    );
    // The bound catches a starved victim (37x without the budget and the lane), not this
    // 2-core machine's noise: with the same code the ratio swings from 1.2x to 2.8x between
    // runs, as the alone run's p99 does (1.1 to 1.6 ms). That the budget is what holds the
    // flooder is checked below, by its refusals.
    assert!(
        during_p99 <= alone_p99 * 4,
        "the victim's p99 rose from {alone_p99:?} to {during_p99:?}"
    );
    assert!(served > 0, "the flooder got nothing");
    let over_budget = refused
        .iter()
        .find(|a| a.body.contains("\"over-budget\""))
        .unwrap_or_else(|| panic!("no refusal for the budget among {} 429s", refused.len()));
    assert!(
        over_budget.body.contains("share of the database's time"),
        "{}",
        over_budget.body
    );
    let wait = over_budget
        .retry_after
        .expect("a Retry-After on the refusal");
    assert!(wait >= 1, "Retry-After: {wait}");
    assert!(
        other.is_empty(),
        "the flooder got {} answers that were neither served nor refused: {} {}",
        other.len(),
        other[0].status,
        other[0].body
    );

    // The proxy counted its refusals, and the point reads' plan was read once, then kept.
    let metrics = http(None, &d.service("proxy"), "GET", "/metrics", &[], b"").body;
    let value = |line_start: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{metrics}"))
    };
    assert!(
        value("proxy_requests_total{mode=\"random\",outcome=\"over-budget\",backend=\"-\"}") >= 1.0
    );
    let (kept, read) = (
        value("proxy_plans_total{plan=\"kept\"}"),
        value("proxy_plans_total{plan=\"read\"}"),
    );
    assert!(
        kept >= (alone.len() + during.len()) as f64,
        "{kept} reads on a kept plan"
    );
    eprintln!(
        "plans: {kept} reads checked on a kept plan, {read} plans read, {:.3} ms a plan",
        value("proxy_plan_read_seconds_total") * 1000.0 / read
    );

    // Once it waited as long as it was told (the longest it was told), it is served again.
    let longest = refused.iter().filter_map(|a| a.retry_after).max().unwrap();
    std::thread::sleep(Duration::from_secs(longest));
    let again = http(
        Some(&flooder),
        &d.service("gatekeeper"),
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        heavy_body.as_bytes(),
    );
    assert_eq!(again.status, 200, "{}", again.body);
}

/// A read whose plan examines more rows than the bound is refused with its rule, and never
/// runs on a server (the general log holds only the plan's EXPLAIN of it); the same read
/// narrowed to keys runs.
#[test]
fn a_read_over_the_cost_bound_never_runs() {
    let guard = shared();
    let d = &*guard;
    general_logs_on(d);
    let (wide, narrow) = (
        format!("costly-wide-{}", std::process::id()),
        format!("costly-narrow-{}", std::process::id()),
    );
    // Three tables joined on columns with no index: about 400 x 363 x 100 rows at scale 1.
    let query = |marker: &str, narrowed: &str| {
        format!(
            "SELECT '{marker}' AS m, COUNT(*) AS n FROM rental r JOIN payment p ON p.amount < \
             r.inventory_id JOIN film f ON f.length > p.amount{narrowed}"
        )
    };
    for mode in ["random", "direct-hit"] {
        let (status, body) = d.api(&query(&wide, ""), mode);
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "too-costly", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("rejected by rule estimated-cost: ") && message.contains("narrow"),
            "{message}"
        );
    }
    let narrowed = " WHERE r.rental_id = 7 AND p.payment_id = 7 AND f.film_id = 7";
    let (status, body) = d.api(&query(&narrow, narrowed), "random");
    assert_eq!(status, 200, "{body}");
    let logs = general_logs_off(d);
    let lines =
        |marker: &str| -> Vec<&str> { logs.lines().filter(|l| l.contains(marker)).collect() };
    assert!(
        !lines(&wide).is_empty() && lines(&wide).iter().all(|l| l.contains("EXPLAIN SELECT")),
        "the refused read ran (or its plan was never read): {:?}",
        lines(&wide)
    );
    assert!(
        lines(&narrow).iter().any(|l| !l.contains("EXPLAIN")),
        "the narrowed read did not run: {:?}",
        lines(&narrow)
    );
}
