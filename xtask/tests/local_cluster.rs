//! End-to-end tests of the local provider against real MariaDB servers.
//!
//! Each test owns a folder and a loopback /24 of its own, so they run in parallel. Every
//! deployment a test creates is torn down by a guard even when the test fails.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{text, wait_for, Deployment};

const TABLE_COUNTS: &str =
    "SELECT (SELECT COUNT(*) FROM filmdb.film), (SELECT COUNT(*) FROM filmdb.actor), \
     (SELECT COUNT(*) FROM filmdb.rental), (SELECT COUNT(*) FROM filmdb.payment)";

/// A group's CPU quota file says it has no quota (cgroup v1: -1; v2: "max <period>").
fn is_unlimited(quota: &str) -> bool {
    let quota = quota.trim();
    quota == "-1" || quota.starts_with("max")
}

#[test]
fn cluster_replicates_refuses_replica_writes_and_tears_down() {
    let d = Deployment::new("cluster", "127.0.21");
    d.provision(&["--workers", "2"]);
    // Quotas are for measuring, not for loading: the manager's group has none while the
    // dataset loads, and has its own again once the step is done (the burn below holds it).
    let quota_file = d
        .cgroups_of("manager")
        .into_iter()
        .map(|g| g.join("cpu.cfs_quota_us"))
        .chain(
            d.cgroups_of("manager")
                .into_iter()
                .map(|g| g.join("cpu.max")),
        )
        .find(|f| f.exists())
        .expect("the manager's group has a CPU quota file");
    let quota_now = || fs::read_to_string(&quota_file).unwrap_or_default();
    assert!(!is_unlimited(&quota_now()), "{}", quota_now());
    let installing = std::sync::atomic::AtomicBool::new(true);
    let seen_lifted = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut lifted = false;
            while installing.load(std::sync::atomic::Ordering::Relaxed) {
                lifted |= is_unlimited(&quota_now());
                std::thread::sleep(Duration::from_millis(10));
            }
            lifted
        });
        d.ok(&["install-cluster"]);
        installing.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    assert!(
        seen_lifted,
        "the manager's quota was never lifted during install-cluster"
    );
    assert!(!is_unlimited(&quota_now()), "{}", quota_now());

    let state = d.state();
    assert_eq!(state["steps"]["install-cluster"]["status"], "done");
    let servers = d.servers();
    let hosts: Vec<&str> = servers.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["manager", "standalone", "worker-1", "worker-2"]);
    for (host, pid) in &servers {
        assert_eq!(state["processes"][format!("{host}/mariadbd")]["pid"], *pid);
    }
    // With root, no server runs as root: they drop to the mysql account.
    if unsafe { libc::geteuid() } == 0 {
        let mysql = Command::new("id").args(["-u", "mysql"]).output().unwrap();
        let mysql = String::from_utf8_lossy(&mysql.stdout).trim().to_string();
        for (host, pid) in &servers {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap();
            assert_eq!(uid, mysql, "{host}'s mariadbd runs as uid {uid}");
        }
    }

    // Every server holds the same dataset.
    let counts = d.root_sql("manager", TABLE_COUNTS);
    assert_eq!(counts.split_whitespace().next(), Some("100"), "{counts}");
    for host in ["standalone", "worker-1", "worker-2"] {
        assert_eq!(d.root_sql(host, TABLE_COUNTS), counts, "{host}");
    }

    // A write through the app account on the manager reaches every worker.
    let app = d.secret("app_password");
    d.insert_actor(900001, "Ada", "O'Neill");
    for worker in ["worker-1", "worker-2"] {
        d.wait_for_actor(worker, 900001, "O'Neill");
        // Reading on a worker with the same account works; writing is refused.
        let read = d.tcp_sql(worker, "app", &app, "SELECT COUNT(*) FROM filmdb.film");
        assert_eq!(
            String::from_utf8_lossy(&read.stdout).trim(),
            "100",
            "{}",
            text(&read)
        );
        let refused = d.tcp_sql(
            worker,
            "app",
            &app,
            "INSERT INTO filmdb.actor (actor_id, first_name, last_name) VALUES (900002, 'No', 'Way')",
        );
        assert!(!refused.status.success());
        assert!(text(&refused).contains("read-only"), "{}", text(&refused));
    }
    // Least privilege: the app account cannot touch other schemas; root has no network login.
    let denied = d.tcp_sql("manager", "app", &app, "SELECT COUNT(*) FROM mysql.user");
    assert!(text(&denied).contains("denied"), "{}", text(&denied));
    // Reads run as a second account that can only read, even on the manager; both accounts
    // are capped in connections and statement time.
    let reader = d.secret("app_read_password");
    let read = d.tcp_sql(
        "manager",
        "app_read",
        &reader,
        "SELECT COUNT(*) FROM filmdb.film",
    );
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "100",
        "{}",
        text(&read)
    );
    let refused = d.tcp_sql(
        "manager",
        "app_read",
        &reader,
        "UPDATE filmdb.film SET length = length WHERE film_id = 1",
    );
    assert!(
        text(&refused).contains("UPDATE command denied"),
        "{}",
        text(&refused)
    );
    let caps = d.root_sql(
        "manager",
        "SELECT User, max_user_connections, max_statement_time FROM mysql.user \
         WHERE User LIKE 'app%' ORDER BY User",
    );
    assert_eq!(
        caps.lines().collect::<Vec<_>>(),
        ["app\t65\t5.000000", "app_read\t65\t5.000000"],
        "{caps}"
    );
    // Root has no network login at all: no password gets in, and the only root accounts are
    // local and authenticated by the socket's OS user.
    for password in ["", app.as_str(), d.secret("bench_password").as_str()] {
        let root = d.tcp_sql("manager", "root", password, "SELECT 1");
        assert!(
            !root.status.success(),
            "root must not log in over the network"
        );
    }
    let roots = d.root_sql("manager", "SELECT Host FROM mysql.user WHERE User = 'root'");
    assert_eq!(
        roots.trim(),
        "localhost",
        "root accounts beyond the socket's"
    );
    let root = d.root_sql("manager", "SHOW CREATE USER root@localhost");
    assert!(
        root.contains("USING 'invalid' OR unix_socket"),
        "root must be reachable by the socket's OS user only: {root}"
    );

    // Each host is a small machine of its own: its server runs in its cgroup, whose quota
    // holds under a load that would take two whole CPUs.
    assert!(
        state["limits"]["enforced_by"]
            .as_str()
            .is_some_and(|b| b.starts_with("cgroup v")),
        "{}",
        state["limits"]
    );
    for (host, pid) in &servers {
        for group in d.cgroups_of(host) {
            assert!(
                common::in_cgroup(*pid, &group),
                "{host}: {pid} not in {group:?}"
            );
        }
    }
    let quota = 0.25;
    let burn = "SET STATEMENT max_statement_time=4 FOR SELECT BENCHMARK(10000000000, MD5('x'))";
    let burners: Vec<_> = (0..2)
        .map(|_| {
            d.root_sql_command("worker-1", burn)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (before, started) = (d.cgroup_cpu_seconds("worker-1"), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let used = (d.cgroup_cpu_seconds("worker-1") - before) / started.elapsed().as_secs_f64();
    for mut burner in burners {
        burner.wait().unwrap();
    }
    assert!(
        used <= quota * 1.15 && used >= quota * 0.5,
        "worker-1 used {used:.3} CPUs under a quota of {quota}"
    );

    let status = d.ok(&["status"]);
    assert_eq!(
        status.matches("up, replicating, lag 0 s").count(),
        2,
        "{status}"
    );
    for host in ["standalone", "manager", "worker-1", "worker-2"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap();
        assert!(line.contains(" 0.25 CPU, 1G "), "{status}");
    }
    assert!(status.contains("host limits: cgroup v"), "{status}");
    // A quota changed behind the record's back is shown as it is.
    let set_quota = |quota_us: u32| {
        for group in d.cgroups_of("worker-1") {
            if group.join("cpu.cfs_quota_us").exists() {
                fs::write(group.join("cpu.cfs_quota_us"), quota_us.to_string()).unwrap();
            } else if group.join("cpu.max").exists() {
                fs::write(group.join("cpu.max"), format!("{quota_us} 10000")).unwrap();
            }
        }
    };
    set_quota(5000);
    let status = d.ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("worker-1 ")).unwrap();
    assert!(
        line.contains("its quota is 0.5 CPU now, not the 0.25 CPU recorded"),
        "{status}"
    );
    set_quota(2500);
    let status = d.ok(&["status"]);
    assert!(!status.contains("its quota is"), "{status}");
    assert!(status.contains("install-cluster  done"), "{status}");

    // A done step redoes nothing, and says so; the services come and go with the deployment.
    let out = d.ok(&["install-cluster"]);
    assert!(out.contains("install-cluster: already done"), "{out}");
    d.ok(&["deploy-services"]);
    let before = (d.servers(), d.services());
    assert_eq!(before.1.len(), 3, "{before:?}");
    let out = d.ok(&["deploy-services"]);
    assert!(out.contains("deploy-services: already done"), "{out}");
    assert_eq!((d.servers(), d.services()), before);
    assert_eq!(d.state()["steps"]["install-cluster"]["attempts"], 1);

    // A group per host and the bench client, in each hierarchy.
    let per_group = d.cgroups_of("manager").len();
    assert_eq!(d.cgroups_on_machine().len(), 8 * per_group);
    let out = d.ok(&["teardown"]);
    assert!(out.contains("stopped manager/mariadbd"), "{out}");
    assert!(out.contains("stopped gatekeeper/service"), "{out}");
    assert_eq!(d.servers(), []);
    assert_eq!(d.services(), []);
    assert_eq!(d.cgroups_on_machine(), Vec::<std::path::PathBuf>::new());
    assert!(
        !d.dir.join(".state").exists(),
        "the state folder must be gone"
    );
    let state = d.state();
    assert!(state["torn_down_at"].is_string());
    assert_eq!(state["processes"].as_object().unwrap().len(), 0);
    // No secret outlives the deployment.
    let secrets = state["secrets"].as_object().unwrap();
    assert_eq!(secrets.len(), 8, "{secrets:?}");
    assert!(secrets.values().all(|s| s == ""), "{secrets:?}");
    let again = d.ok(&["teardown"]);
    assert!(again.contains("already torn down"), "{again}");
    d.fails(&["install-cluster"], "was torn down");
}

#[test]
fn install_cluster_killed_midway_resumes_without_duplicates() {
    let d = Deployment::new("crash", "127.0.22");
    d.provision(&[]);
    let mut child = d.spawn_quiet(&["install-cluster"]);
    // Let it get some servers up, checking that data.json parses at every moment.
    wait_for("two servers recorded", Duration::from_secs(60), || {
        d.state()["processes"].as_object().unwrap().len() >= 2
    });
    // The lock keeps a second run out and names the one that holds it.
    d.fails(&["teardown"], &format!("pid {}", child.id()));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let state = d.state();
    assert_eq!(state["steps"]["install-cluster"]["status"], "running");
    let hosts_before = state["hosts"].clone();
    let started: Vec<(String, u32)> = d.servers();
    assert!(!started.is_empty());

    let out = d.ok(&["install-cluster"]);
    assert!(out.contains("interrupted; resuming"), "{out}");
    let state = d.state();
    assert_eq!(state["steps"]["install-cluster"]["status"], "done");
    assert_eq!(state["steps"]["install-cluster"]["attempts"], 2);
    assert_eq!(state["hosts"], hosts_before);
    // One server per database host, and those started before the kill were adopted.
    let servers = d.servers();
    let hosts: Vec<&str> = servers.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        hosts,
        ["manager", "standalone", "worker-1", "worker-2", "worker-3"]
    );
    for server in &started {
        assert!(
            servers.contains(server),
            "{server:?} was replaced: {servers:?}"
        );
    }
    let counts = d.root_sql("manager", TABLE_COUNTS);
    for worker in ["worker-1", "worker-2", "worker-3"] {
        assert_eq!(d.root_sql(worker, TABLE_COUNTS), counts, "{worker}");
    }
    // The groups made at provision were adopted: one per host and the bench client, every
    // server (those started before the kill and after) in its own.
    let per_group = d.cgroups_of("manager").len();
    assert_eq!(d.cgroups_on_machine().len(), 9 * per_group);
    for (host, pid) in &servers {
        for group in d.cgroups_of(host) {
            assert!(
                common::in_cgroup(*pid, &group),
                "{host}: {pid} not in {group:?}"
            );
        }
    }
    d.ok(&["teardown"]);
    assert_eq!(d.servers(), []);
    assert_eq!(d.cgroups_on_machine(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let d = Deployment::new("bad-input", "127.0.23");

    d.fails(&["frobnicate"], "unrecognized subcommand");
    d.fails(
        &["install-cluster"],
        &format!("run `{}` first", d.xtask("provision")),
    );
    d.fails(
        &["provision", "--workers", "0"],
        "--workers must be between 1 and 20",
    );
    d.fails(&["provision", "--workers", "many"], "invalid value 'many'");
    d.fails(
        &["provision", "--loopback-prefix", "10.1.2"],
        "inside 127.0.0.0/8",
    );

    // Something already listens where the manager would.
    let taken = TcpListener::bind("127.0.23.3:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = [
        "provision",
        "--loopback-prefix",
        "127.0.23",
        "--db-port",
        &port,
    ];
    d.fails(
        &args,
        &format!("127.0.23.3:{port} (for manager) is not free"),
    );
    drop(taken);
    assert!(
        !d.data_json().exists(),
        "a refused provision must write nothing"
    );

    // A corrupt or foreign data.json is reported and left byte for byte as it was.
    for (content, expected) in [
        ("{ \"format_version\": 1, ", "not valid JSON"),
        ("{\"format_version\": 99}", "format version 99"),
    ] {
        fs::write(d.data_json(), content).unwrap();
        for args in [
            &["provision"][..],
            &["install-cluster"],
            &["teardown"],
            &["status"],
            &["all"],
        ] {
            d.fails(args, expected);
            assert_eq!(fs::read_to_string(d.data_json()).unwrap(), content);
        }
    }
    fs::remove_file(d.data_json()).unwrap();

    // Steps out of order, and settings given to a step other than provision.
    d.provision(&["--workers", "1"]);
    d.fails(&["bench"], &format!("run `{}`", d.xtask("deploy-services")));
    d.fails(
        &["install-cluster", "--workers", "2"],
        "settings are chosen at provision",
    );
    d.fails(
        &["provision", "--workers", "2"],
        "provisioned with --workers 1, not 2",
    );
    d.ok(&["teardown"]);
}

#[test]
fn missing_packages_without_root_name_the_install_command() {
    let mut d = Deployment::new("no-root", "127.0.24");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Run as nobody, in a folder nobody may write to.
        fs::set_permissions(&d.dir, fs::Permissions::from_mode(0o777)).unwrap();
        d.as_user = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            .map(String::from)
            .to_vec();
    }
    // Without the right to make cgroups, provision says so in one line and goes on unlimited.
    let out = d.provision(&[]);
    let said: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("limits are off"))
        .collect();
    assert_eq!(said.len(), 1, "{out}");
    assert!(
        said[0].contains("every host runs unlimited: cannot create /sys/fs/cgroup/"),
        "{out}"
    );
    let limits = &d.state()["limits"];
    assert!(limits["enforced_by"].is_null(), "{limits}");
    assert_eq!(limits["hosts"].as_object().unwrap().len(), 0, "{limits}");
    let mut cmd = d.command(&["install-cluster"]);
    cmd.env("XTASK_TOOLS_PATH", "/nonexistent");
    let out = cmd.output().unwrap();
    let text = text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("sudo apt-get install -y mariadb-server mariadb-client sysbench"),
        "{text}"
    );
    let state = d.state();
    assert_eq!(state["steps"]["install-cluster"]["status"], "failed");
    assert_eq!(state["processes"].as_object().unwrap().len(), 0);
    assert_eq!(d.servers(), []);

    // With the tools found, the unlimited deployment works: its servers run outside any group
    // of ours.
    d.ok(&["install-cluster"]);
    let servers = d.servers();
    assert_eq!(servers.len(), 5, "{servers:?}");
    for (host, pid) in servers {
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(!cgroup.contains("dbcluster"), "{host}: {cgroup}");
    }
    assert_eq!(d.cgroups_on_machine(), Vec::<std::path::PathBuf>::new());
}
