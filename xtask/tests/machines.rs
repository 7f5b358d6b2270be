//! The remote path on machines like fresh cloud instances: a fleet of Debian machines booted
//! with systemd, with nothing installed, reached only over SSH as a user with passwordless
//! sudo (tests/common/fleet.rs). The ssh provider deploys on them from an inventory, as a user
//! with machines of their own would, and the aws provider's instances take the same path once
//! launched. Each test has a fleet of its own on a loopback range of its own (127.0.97-98.x);
//! the two run at once.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, LOGIN, PASSWORD_SUDO_LOGIN};
use common::load::Load;
use common::{wait_for, Deployment};
use serde_json::Value;

/// The hosts of a replication deployment with two workers, in the order the fleet's machines
/// take them.
const REPLICATION: [&str; 7] = [
    "standalone",
    "manager",
    "worker-1",
    "worker-2",
    "proxy",
    "trusted-host",
    "gatekeeper",
];
const GALERA: [&str; 7] = [
    "standalone",
    "node-1",
    "node-2",
    "node-3",
    "proxy",
    "trusted-host",
    "gatekeeper",
];

fn provision_args<'a>(inventory: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--provider",
        "ssh",
        "--hosts",
        inventory.to_str().unwrap(),
        "--scale",
        "1",
    ];
    args.extend(extra);
    args
}

/// The properties systemd reports for a unit on machine `i`, by name.
fn unit_properties(fleet: &Fleet, i: usize, unit: &str, names: &[&str]) -> Value {
    let asked: Vec<String> = names.iter().map(|n| format!("-p {n}")).collect();
    let text = fleet.root(i, &format!("systemctl show {unit} {}", asked.join(" ")));
    let map: serde_json::Map<String, Value> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(map)
}

/// A query on a host's server, as root over its socket on its machine.
fn machine_sql(fleet: &Fleet, i: usize, host: &str, sql: &str) -> String {
    fleet.root(
        i,
        &format!(
            "mariadb --no-defaults --socket=/var/lib/dbcluster/{host}/mariadbd.sock -N -B -e \"{sql}\""
        ),
    )
}

/// The line `status` prints for a host.
fn status_of(d: &Deployment, host: &str) -> String {
    let status = d.ok(&["status"]);
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{status}"))
        .to_string()
}

/// Nothing of the deployment is left on machine `i`: no unit, no account, no folder, no
/// process. (The brackets keep the check's own command line from matching it.)
fn assert_nothing_left(fleet: &Fleet, i: usize) {
    let left = fleet.root(
        i,
        "find /etc/systemd/system -name 'dbcluster*'; getent passwd | grep dbcluster; \
         ls -d /var/lib/[d]bcluster /home/*/[x]task-fetch 2> /dev/null; \
         ps -eo args | grep -e '[/]var/lib/dbcluster' -e '^[m]ariadbd'; true",
    );
    assert!(
        left.trim().is_empty(),
        "machine {} keeps: {left}",
        fleet.address(i)
    );
}

/// What a machine says of a host's server and of the distribution's own MariaDB service.
fn assert_server_under_its_unit(fleet: &Fleet, i: usize, host: &str) {
    let unit = format!("dbcluster-{host}.service");
    let props = unit_properties(
        fleet,
        i,
        &unit,
        &["ActiveState", "UnitFileState", "User", "Restart"],
    );
    assert_eq!(props["ActiveState"], "active", "{host}: {props}");
    assert_eq!(props["UnitFileState"], "enabled", "{host}: {props}");
    assert_eq!(props["User"], "mysql", "{host}: {props}");
    assert_eq!(props["Restart"], "on-failure", "{host}: {props}");
    // One server on the machine, as mysql: the package's own is stopped and disabled.
    let servers = fleet.root(i, "ps -o user= -C mariadbd");
    assert_eq!(servers.trim(), "mysql", "{host}: {servers}");
    let distribution = fleet.root(
        i,
        "systemctl is-enabled mariadb.service; systemctl is-active mariadb.service; true",
    );
    assert_eq!(
        distribution.split_whitespace().collect::<Vec<_>>(),
        ["disabled", "inactive"],
        "{host}"
    );
}

/// A role service runs under its unit as its own account, with the unit's hardening in force
/// in the kernel's view of the process.
fn assert_service_hardened(fleet: &Fleet, i: usize, service: &str) {
    let unit = format!("dbcluster-{service}.service");
    let props = unit_properties(
        fleet,
        i,
        &unit,
        &[
            "ActiveState",
            "UnitFileState",
            "User",
            "NoNewPrivileges",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "CapabilityBoundingSet",
            "MainPID",
        ],
    );
    let account = format!("dbcluster-{service}");
    for (name, wanted) in [
        ("ActiveState", "active"),
        ("UnitFileState", "enabled"),
        ("User", account.as_str()),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(props[name], wanted, "{service}'s {name}: {props}");
    }
    let pid = props["MainPID"].as_str().unwrap();
    let status = fleet.root(i, &format!("cat /proc/{pid}/status"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs"), "1", "{service}: {status}");
    assert_eq!(field("CapBnd"), "0000000000000000", "{service}: {status}");
    let user = fleet.root(i, &format!("ps -o user= -p {pid}"));
    assert_eq!(user.trim(), account, "{service}");
}

/// The markers of the actors named `first_name` on a host's server.
fn markers(fleet: &Fleet, i: usize, host: &str, first_name: &str) -> Vec<String> {
    machine_sql(
        fleet,
        i,
        host,
        &format!("SELECT last_name FROM filmdb.actor WHERE first_name = '{first_name}'"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn role_of(d: &Deployment, host: &str) -> String {
    let state = d.state();
    let hosts = state["hosts"].as_array().unwrap();
    let found = hosts.iter().find(|h| h["name"] == host).unwrap();
    found["role"].as_str().unwrap().to_string()
}

#[test]
fn replication_on_machines_like_instances() {
    // Declared before the deployment, so dropped after it: its guard tears down over SSH.
    let mut fleet = Fleet::boot("replication", "127.0.98", 7);
    // A machine that reports another architecture (i686), for the check below.
    let odd = fleet.add(Some("x86"));
    let d = Deployment::new("machines-replication", "127.0.98");
    let inventory = d.dir.join("machines.toml");

    // Fewer machines than hosts.
    fleet.inventory(&inventory, &[0, 1, 2], |_| String::new());
    d.fails(
        &["provision"]
            .into_iter()
            .chain(provision_args(&inventory, &["--workers", "2"]))
            .collect::<Vec<_>>(),
        "the deployment needs 7 machines, one per host (standalone, manager, worker-1, \
         worker-2, proxy, trusted-host, gatekeeper); the inventory names 3: add 4 more",
    );
    assert!(!d.data_json().exists());

    // Every other mistake at once, one per machine: each is named with its host and its fix.
    let stranger = d.dir.join("stranger_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(made.success());
    let _taken = TcpListener::bind((fleet.address(1), 3306)).unwrap();
    fleet.root(2, "mv /usr/bin/apt-get /usr/bin/apt-get.hidden");
    let not_its_key = fs::read_to_string(fleet.key.with_extension("pub")).unwrap();
    let not_its_key: Vec<&str> = not_its_key.split_whitespace().take(2).collect();
    let mut text = fs::read_to_string({
        fleet.inventory(&inventory, &[0, 1, 2, 3, odd, 5], |i| match i {
            0 => format!("identity_file = \"{}\"\n", stranger.display()),
            3 => format!("user = \"{PASSWORD_SUDO_LOGIN}\"\n"),
            5 => format!("host_key = \"{}\"\n", not_its_key.join(" ")),
            _ => String::new(),
        });
        &inventory
    })
    .unwrap();
    text.push_str("\n[[machine]]\naddress = \"127.0.98.200\"\n");
    fs::write(&inventory, text).unwrap();
    let out = d.fails(
        &["provision"]
            .into_iter()
            .chain(provision_args(&inventory, &["--workers", "2"]))
            .collect::<Vec<_>>(),
        "of the machines cannot be used yet; nothing was recorded",
    );
    for said in [
        format!(
            "- standalone (ssh {LOGIN}@127.0.98.2): the login as {LOGIN} with {} was refused",
            stranger.display()
        ),
        format!("- manager (ssh {LOGIN}@127.0.98.3): 127.0.98.3:3306 is already taken"),
        format!("- worker-1 (ssh {LOGIN}@127.0.98.4): it is not an apt-based system"),
        format!(
            "- worker-2 (ssh {PASSWORD_SUDO_LOGIN}@127.0.98.5): {PASSWORD_SUDO_LOGIN} cannot use \
             sudo without a password"
        ),
        format!(
            "- proxy (ssh {LOGIN}@127.0.98.9): it is an i686 machine, and the services are \
             built for x86_64-unknown-linux-gnu"
        ),
        format!(
            "- trusted-host (ssh {LOGIN}@127.0.98.7): its SSH host key is not the one the \
             inventory pins"
        ),
        format!(
            "- gatekeeper (ssh {LOGIN}@127.0.98.200): nothing accepts SSH at 127.0.98.200 port 22"
        ),
    ] {
        assert!(out.contains(&said), "{said:?} not in:\n{out}");
    }
    assert_eq!(out.matches("\n- ").count(), 7, "{out}");
    assert!(!d.data_json().exists());
    assert!(!d.dir.join(".state").exists());
    drop(_taken);
    fleet.root(2, "mv /usr/bin/apt-get.hidden /usr/bin/apt-get");

    // The machines as a user would list them, two of them with the host they must take and one
    // with its host key pinned (as ssh-keyscan or the machine's owner gives it).
    let trusted_key = fleet.root(5, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    let trusted_key: Vec<&str> = trusted_key.split_whitespace().take(2).collect();
    fleet.inventory(&inventory, &[6, 1, 0, 2, 3, 4, 5], |i| match i {
        6 => "role = \"gatekeeper\"\n".to_string(),
        1 => "role = \"manager\"\n".to_string(),
        5 => format!("host_key = \"{}\"\n", trusted_key.join(" ")),
        _ => String::new(),
    });
    let out = d.ok(&["all", "--quick"]
        .into_iter()
        .chain(provision_args(&inventory, &["--workers", "2"]))
        .collect::<Vec<_>>());
    assert!(out.contains("all steps are done"), "{out}");
    assert!(
        out.contains("every machine of") && out.contains("passed its checks"),
        "{out}"
    );
    let state = d.state();
    for (i, host) in REPLICATION.iter().enumerate() {
        let hosts = state["hosts"].as_array().unwrap();
        let found = hosts.iter().find(|h| h["name"] == *host).unwrap();
        assert_eq!(found["address"], fleet.address(i), "{host}");
        assert_eq!(found["ssh"]["host_keys_pinned"], true, "{host}");
    }
    assert_eq!(state["settings"]["provider"]["kind"], "ssh");
    for (i, host) in REPLICATION.iter().enumerate().take(4) {
        assert_server_under_its_unit(&fleet, i, host);
    }
    for (i, service) in REPLICATION.iter().enumerate().skip(4) {
        assert_service_hardened(&fleet, i, service);
    }
    // Each machine's key, the pinned one as the inventory gave it.
    let known = fs::read_to_string(d.dir.join(".state/known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 7, "{known}");
    assert!(
        known.contains(&format!("127.0.98.7 {}", trusted_key.join(" "))),
        "{known}"
    );
    let (code, body) = d.api("SELECT COUNT(*) AS n FROM film", "random");
    assert_eq!(code, 200, "{body}");
    assert!(
        body["served_by"].as_str().unwrap().starts_with("worker-"),
        "{body}"
    );
    let raw = d.dir.join("results/raw");
    let run = fs::read_dir(&raw).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("run.json").exists());
    assert!(run.join("patterns/random-run1.json").exists());
    let sysbench = fs::read_to_string(d.dir.join("results/sysbench.csv")).unwrap();
    assert!(sysbench.lines().count() > 3, "{sysbench}");

    // A worker's machine and the proxy's lose power under load and boot again: their server
    // and service come back by themselves, the worker replicates again, and every write the
    // chain acknowledged is on the manager and on the worker.
    let load = Load::start(&d, &["random"], "Reboot");
    std::thread::sleep(Duration::from_secs(2));
    fleet.power_cut(2);
    fleet.power_cut(4);
    let cut_at = Instant::now();
    assert!(
        status_of(&d, "worker-1").contains("DOWN"),
        "{}",
        status_of(&d, "worker-1")
    );
    assert!(
        status_of(&d, "proxy").contains("DOWN"),
        "{}",
        status_of(&d, "proxy")
    );
    fleet.boot_again(2);
    fleet.boot_again(4);
    wait_for(
        "the rebooted worker to replicate and the proxy to answer",
        Duration::from_secs(120),
        || {
            status_of(&d, "worker-1").contains("up, replicating")
                && status_of(&d, "proxy").contains("up, /health ok")
        },
    );
    let back_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let seen = load.finish();
    let after_reboot = seen
        .writes
        .iter()
        .filter(|w| w.at > back_at && w.status == 200)
        .count();
    assert!(
        after_reboot > 0,
        "no write was acknowledged after the reboot"
    );
    assert!(
        seen.writes.iter().any(|w| w.at > cut_at && w.status != 200),
        "the proxy's machine was off, yet every write succeeded"
    );
    let manager = d.address("manager");
    assert_eq!(manager, fleet.address(1));
    wait_for(
        "worker-1 to hold every acknowledged write",
        Duration::from_secs(30),
        || {
            let on_worker = markers(&fleet, 2, "worker-1", "Reboot");
            seen.acknowledged.iter().all(|m| on_worker.contains(m))
        },
    );
    let on_manager = markers(&fleet, 1, "manager", "Reboot");
    for marker in &seen.acknowledged {
        assert!(
            on_manager.contains(marker),
            "{marker} was acknowledged and lost"
        );
    }
    d.ok(&["status"]);

    // A machine added to the inventory takes a third worker, live, under load; removed again,
    // nothing of the deployment is left on it.
    let spare = fleet.add(None);
    fleet.inventory(&inventory, &[6, 1, 0, 2, 3, 4, 5, spare], |i| match i {
        6 => "role = \"gatekeeper\"\n".to_string(),
        1 => "role = \"manager\"\n".to_string(),
        5 => format!("host_key = \"{}\"\n", trusted_key.join(" ")),
        _ => String::new(),
    });
    let load = Load::start(&d, &["random"], "Scale");
    let out = d.ok(&["scale", "--workers", "3"]);
    assert!(
        out.contains("3 workers serve: worker-1, worker-2, worker-3"),
        "{out}"
    );
    assert_eq!(d.address("worker-3"), fleet.address(spare));
    assert_server_under_its_unit(&fleet, spare, "worker-3");
    let status = status_of(&d, "worker-3");
    assert!(
        status.contains("up, replicating") && status.contains("gets reads"),
        "{status}"
    );
    let known = fs::read_to_string(d.dir.join(".state/known_hosts")).unwrap();
    assert_eq!(
        known.lines().count(),
        8,
        "the new machine's key is pinned: {known}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let out = d.ok(&["scale", "--workers", "2"]);
    assert!(out.contains("the proxy took out worker-3"), "{out}");
    let seen = load.finish();
    let failed: Vec<_> = seen.reads.iter().filter(|r| r.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} reads failed while scaling, the first: {}",
        failed.len(),
        seen.reads.len(),
        failed[0].body
    );
    assert!(
        seen.reads
            .iter()
            .any(|r| r.body.contains("\"served_by\":\"worker-3\"")),
        "worker-3 served no read"
    );
    assert_nothing_left(&fleet, spare);

    // The manager's machine is lost for good (its workers notice only when its heartbeats
    // stop): reads go on, the proxy promotes a worker by itself, writes come back with no
    // command run, status records the new roles, and `repair` mends what it can reach and
    // names the lost machine.
    let load = Load::start(&d, &["random", "customized"], "Lost");
    std::thread::sleep(Duration::from_secs(2));
    let lost_at = load.failed_now();
    fleet.power_cut(1);
    wait_for(
        "writes to come back by themselves",
        Duration::from_secs(40),
        || {
            let (code, _) = d.api(
                "INSERT INTO actor (first_name, last_name) VALUES ('Lost', 'probe')",
                "write",
            );
            code == 200
        },
    );
    eprintln!(
        "writes came back {:?} after the manager's machine was lost",
        lost_at.elapsed()
    );
    let status = d.ok(&["status"]);
    assert!(
        status.contains("the proxy failed over from manager to"),
        "{status}"
    );
    let promoted = ["worker-1", "worker-2"]
        .into_iter()
        .find(|w| role_of(&d, w) == "manager")
        .unwrap_or_else(|| panic!("no worker became the manager:\n{status}"));
    let other = if promoted == "worker-1" {
        "worker-2"
    } else {
        "worker-1"
    };
    // A replica stopped by hand is something repair mends while the old manager stays lost.
    let other_index = REPLICATION.iter().position(|h| *h == other).unwrap();
    machine_sql(&fleet, other_index, other, "STOP SLAVE");
    let out = d.fails(&["repair"], "repair mended what it could");
    assert!(
        out.contains(&format!("{other} replicates from {promoted} again")),
        "{out}"
    );
    assert!(out.contains("manager's server"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    let seen = load.finish();
    let failed: Vec<_> = seen
        .reads
        .iter()
        .filter(|r| r.since_failure.is_some_and(|s| s > Duration::from_secs(1)))
        .filter(|r| r.status != 200)
        .collect();
    let after: usize = seen
        .reads
        .iter()
        .filter(|r| r.since_failure.is_some_and(|s| s > Duration::from_secs(1)))
        .count();
    assert!(after > 50, "only {after} reads after the manager was lost");
    assert!(
        failed.is_empty(),
        "{} of {after} reads failed after the manager was lost, the first: {} {}",
        failed.len(),
        failed[0].status,
        failed[0].body
    );
    let promoted_index = REPLICATION.iter().position(|h| *h == promoted).unwrap();
    let on_new_manager = markers(&fleet, promoted_index, promoted, "Lost");
    for marker in &seen.acknowledged {
        assert!(
            on_new_manager.contains(marker),
            "{marker} was acknowledged and lost"
        );
    }
    assert!(lost_at.elapsed() > Duration::from_secs(1));
    assert!(status_of(&d, promoted).contains("manager"));
    assert!(status_of(&d, "manager").contains("DOWN"));

    // teardown removes what the deployment made on every machine it reaches, says what stays
    // on the lost one, and leaves the packages, saying which.
    let out = d.ok(&["teardown"]);
    assert!(
        out.contains(&format!(
            "manager (ssh {LOGIN}@127.0.98.3) could not be reached, so what the deployment \
             made there stays: the unit dbcluster-manager.service"
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "packages stay on the machines: the deployment installed mariadb-client \
             mariadb-server sysbench on "
        ),
        "{out}"
    );
    for i in [0, 2, 3, 4, 5, 6] {
        assert_nothing_left(&fleet, i);
    }
    let state = d.state();
    assert!(state["torn_down_at"].is_string());
    assert_eq!(state["secrets"]["app_password"], "");
    assert!(!d.dir.join(".state").exists());
}

#[test]
fn galera_on_machines_resumes_after_a_kill_and_leaves_nothing() {
    let mut fleet = Fleet::boot("galera", "127.0.97", 7);
    let d = Deployment::new("machines-galera", "127.0.97");
    let inventory = d.dir.join("machines.toml");
    fleet.inventory(&inventory, &[0, 1, 2, 3, 4, 5, 6], |_| String::new());
    d.ok(&["provision"]
        .into_iter()
        .chain(provision_args(
            &inventory,
            &["--engine", "galera", "--workers", "3"],
        ))
        .collect::<Vec<_>>());

    // install-cluster is killed once the cluster's first node runs: in the middle of starting
    // the nodes, over SSH.
    let mut install = d.spawn_quiet(&["install-cluster"]);
    wait_for(
        "install-cluster to start the first node",
        Duration::from_secs(300),
        || d.state()["processes"].get("node-1/mariadbd").is_some(),
    );
    install.kill().unwrap();
    install.wait().unwrap();
    assert_eq!(d.state()["steps"]["install-cluster"]["status"], "running");

    let out = d.ok(&["all", "--quick"]);
    assert!(out.contains("all steps are done"), "{out}");
    assert!(
        out.contains("install-cluster: the previous attempt was interrupted"),
        "{out}"
    );
    // One server per database machine, under its unit.
    for (i, host) in GALERA.iter().enumerate().take(4) {
        assert_server_under_its_unit(&fleet, i, host);
    }
    let status = d.ok(&["status"]);
    assert_eq!(
        status.matches("up, Synced, cluster size 3").count(),
        3,
        "{status}"
    );
    let patterns = fs::read_to_string(d.dir.join("results/patterns.csv")).unwrap();
    assert!(patterns.contains(",galera,"), "{patterns}");

    // The machine of the node that bootstrapped the cluster loses power and boots again: its
    // server starts by itself and joins the running cluster, never starting one of its own.
    let first = d.state()["processes"]["node-1/mariadbd"].clone();
    assert!(first.is_object(), "{first}");
    fleet.power_cut(1);
    fleet.boot_again(1);
    wait_for(
        "node-1 to join the cluster again by itself",
        Duration::from_secs(180),
        || status_of(&d, "node-1").contains("up, Synced, cluster size 3"),
    );
    let (code, body) = d.api(
        "INSERT INTO actor (first_name, last_name) VALUES ('Galera', 'after the reboot')",
        "write",
    );
    assert_eq!(code, 200, "{body}");

    d.ok(&["teardown"]);
    for i in 0..7 {
        assert_nothing_left(&fleet, i);
    }
}
