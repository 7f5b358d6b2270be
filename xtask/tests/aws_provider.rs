//! The aws provider's provision and teardown against the moto EC2 emulator on 127.0.0.1.
//! Only provision and teardown run: the later steps would SSH to the addresses moto made up.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::{text, Deployment};
use serde_json::{json, Value};

const OPERATOR: &str = "198.51.100.7/32";

fn aws_deployment(name: &str, moto: &Moto) -> Deployment {
    let mut d = Deployment::new(name, "127.0.28");
    d.env = moto.env();
    d
}

/// provision on moto; the endpoint is recorded, so later steps need no flag for it.
fn provision_args<'a>(moto: &'a Moto, workers: &'a str) -> Vec<&'a str> {
    vec![
        "provision",
        "--provider",
        "aws",
        "--aws-endpoint",
        &moto.endpoint,
        "--region",
        "us-east-1",
        "--ssh-cidr",
        OPERATOR,
        // moto's console output is a fixed text without host keys.
        "--host-keys",
        "first-use",
        "--workers",
        workers,
        // The instances' default target (musl) cannot be installed here; provision checks it.
        "--target",
        &HOST_TARGET,
    ]
}

/// This machine's own Rust target: always installed.
static HOST_TARGET: LazyLock<String> =
    LazyLock::new(|| format!("{}-unknown-linux-gnu", std::env::consts::ARCH));

/// What teardown must leave: no live instance, security group or key pair with the
/// deployment's tag or name in moto, and no key file.
fn assert_nothing_left(moto: &Moto, d: &Deployment, id: &str) {
    let after = moto.resources(id);
    assert!(live_instances(&after).is_empty(), "{after}");
    assert!(after["groups"].as_array().unwrap().is_empty(), "{after}");
    assert!(
        !after["keys"].as_array().unwrap().contains(&Value::from(id)),
        "{after}"
    );
    assert!(!d.dir.join(format!("{id}.pem")).exists());
}

/// The deployment's instances that are not terminated, by host name.
fn live_instances(resources: &Value) -> BTreeMap<String, Value> {
    let mut live = BTreeMap::new();
    for instance in resources["instances"].as_array().unwrap() {
        if instance["state"] != "terminated" {
            let host = instance["tags"]["Name"].as_str().unwrap();
            let host = host.split_once('-').unwrap().1.split_once('-').unwrap().1;
            let previous = live.insert(host.to_string(), instance.clone());
            assert!(
                previous.is_none(),
                "two live instances for {host}: {resources}"
            );
        }
    }
    live
}

fn group<'a>(resources: &'a Value, id: &str, role: &str) -> &'a Value {
    let name = format!("{id}-{role}");
    resources["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no group {name}: {resources}"))
}

/// The rules of a group as (port, source) pairs, a source being a CIDR or a group's role.
fn rules(resources: &Value, id: &str, role: &str) -> Vec<(u64, String)> {
    let roles: BTreeMap<String, String> = resources["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let role = g["name"]
                .as_str()
                .unwrap()
                .strip_prefix(&format!("{id}-"))
                .unwrap();
            (g["id"].as_str().unwrap().to_string(), role.to_string())
        })
        .collect();
    let mut found = Vec::new();
    for rule in group(resources, id, role)["rules"].as_array().unwrap() {
        let port = rule["port"].as_u64().unwrap();
        for cidr in rule["cidrs"].as_array().unwrap() {
            found.push((port, cidr.as_str().unwrap().to_string()));
        }
        for g in rule["groups"].as_array().unwrap() {
            found.push((port, format!("group:{}", roles[g.as_str().unwrap()])));
        }
    }
    found.sort();
    found
}

#[test]
fn provision_creates_tagged_resources_adopts_them_and_teardown_removes_them() {
    let moto = Moto::start();
    let d = aws_deployment("aws", &moto);
    d.ok(&provision_args(&moto, "2"));
    let state = d.state();
    let id = state["id"].as_str().unwrap().to_string();
    let resources = moto.resources(&id);

    // One running instance per host, of the configured type, with the deployment's key, the
    // newest Ubuntu LTS image moto knows (16.04 beside 14.04) and its role's group.
    let live = live_instances(&resources);
    let hosts: Vec<&str> = live.keys().map(String::as_str).collect();
    assert_eq!(
        hosts,
        [
            "gatekeeper",
            "manager",
            "proxy",
            "standalone",
            "trusted-host",
            "worker-1",
            "worker-2"
        ]
    );
    for (host, instance) in &live {
        let database = ["standalone", "manager", "worker-1", "worker-2"].contains(&host.as_str());
        let expected_type = if database { "t2.micro" } else { "t2.large" };
        assert_eq!(instance["type"], expected_type, "{host}");
        assert_eq!(instance["key"], id.as_str(), "{host}");
        assert_eq!(instance["image"], "ami-785db401", "{host}");
        assert_eq!(instance["tags"]["deployment"], id.as_str());
        // IMDSv2 only; the root volume encrypted.
        assert_eq!(instance["metadata_tokens"], "required", "{host}");
        assert_eq!(
            instance["volumes"],
            json!([{"device": "/dev/sda1", "encrypted": true}]),
            "{host}"
        );
        let role_group = if database { "database" } else { host.as_str() };
        assert_eq!(
            instance["groups"][0],
            group(&resources, &id, role_group)["id"],
            "{host}"
        );
        // data.json has its addresses: the private one to talk on, the public one for SSH.
        let recorded = &state["aws"]["instances"][host.as_str()];
        assert_eq!(recorded["instance_id"], instance["id"]);
        let h = state["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host.as_str())
            .unwrap();
        assert_eq!(h["address"], recorded["private_ip"]);
        assert_eq!(h["ssh"]["address"], recorded["public_ip"]);
        assert_eq!(h["ssh"]["user"], "ubuntu");
    }
    assert_eq!(live["worker-2"]["tags"]["role"], "worker");

    // Each tier is reachable only from the one in front of it, by group reference (the bench's
    // floor relays, on the port after the services', the same way); SSH only from the
    // operator; the world only reaches the gatekeeper.
    let ssh = (22, OPERATOR.to_string());
    let g = |role: &str| format!("group:{role}");
    assert_eq!(
        rules(&resources, &id, "gatekeeper"),
        [
            ssh.clone(),
            (8080, "0.0.0.0/0".into()),
            (8080, g("proxy")),
            (8081, g("proxy"))
        ]
    );
    assert_eq!(
        rules(&resources, &id, "trusted-host"),
        [
            ssh.clone(),
            (8080, g("gatekeeper")),
            (8081, g("gatekeeper"))
        ]
    );
    assert_eq!(
        rules(&resources, &id, "proxy"),
        [
            ssh.clone(),
            (8080, g("trusted-host")),
            (8081, g("trusted-host"))
        ]
    );
    assert_eq!(
        rules(&resources, &id, "database"),
        [ssh, (3306, g("database")), (3306, g("proxy"))]
    );

    // The key pair, with its private half next to data.json, owner-only.
    assert!(resources["keys"]
        .as_array()
        .unwrap()
        .contains(&Value::from(id.as_str())));
    let key = d.dir.join(format!("{id}.pem"));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_text = fs::read_to_string(&key).unwrap();
    assert!(key_text.contains("PRIVATE KEY"));

    // A launch whose response was lost: data.json knows the tokens but no instance ids. The
    // rerun finds the instances by their tags and launches nothing.
    let mut lost = d.state();
    for instance in lost["aws"]["instances"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        instance["instance_id"] = Value::Null;
    }
    fs::write(d.data_json(), serde_json::to_vec_pretty(&lost).unwrap()).unwrap();
    let out = d.ok(&["provision", "--force"]);
    let again = moto.resources(&id);
    assert_eq!(live_instances(&again).len(), 7, "{out}");
    assert_eq!(
        again["instances"].as_array().unwrap().len(),
        7,
        "nothing new was launched"
    );
    assert_eq!(
        d.state()["aws"]["instances"]["manager"]["instance_id"],
        live["manager"]["id"]
    );
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        key_text,
        "the key is reused, never replaced"
    );

    // Teardown removes everything with the tag and says what it removed.
    let out = d.ok(&["teardown"]);
    assert!(out.contains("terminated 7 instances"), "{out}");
    assert!(
        out.contains(&format!("deleted security group {id}-database")),
        "{out}"
    );
    assert!(out.contains(&format!("deleted key pair {id}")), "{out}");
    assert_nothing_left(&moto, &d, &id);
    let out = d.ok(&["teardown"]);
    assert!(out.contains("already torn down"), "{out}");
}

#[test]
fn provision_killed_midway_resumes_without_duplicates() {
    let moto = Moto::start();
    let d = aws_deployment("aws-killed", &moto);
    let mut child = d
        .command(&provision_args(&moto, "3"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as the launches are about to start (a client token is saved); data.json
    // must parse at every point. The emulator is frozen first, so provision cannot finish the
    // launches between the moment they are seen and the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("provision exited ({status}) before it could be killed while launching");
        }
        if let Ok(text) = fs::read_to_string(d.data_json()) {
            let state: Value = serde_json::from_str(&text).expect("data.json must always parse");
            let launching = state["aws"]["instances"]
                .as_object()
                .is_some_and(|m| !m.is_empty());
            if launching {
                moto.freeze();
                let running = child.try_wait().unwrap().is_none();
                child.kill().unwrap();
                moto.resume();
                assert!(running, "provision finished before it could be killed");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "provision did not get to the launches"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait().unwrap();
    assert_eq!(d.state()["steps"]["provision"]["status"], "running");
    let state = d.state();
    let id = state["id"].as_str().unwrap().to_string();

    let out = d.ok(&["provision"]);
    let resources = moto.resources(&id);
    let live = live_instances(&resources);
    assert_eq!(
        live.len(),
        8,
        "one instance per host after the rerun: {out}"
    );
    assert_eq!(d.state()["steps"]["provision"]["status"], "done");
    let groups = resources["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{resources}");
    d.ok(&["teardown"]);
    assert!(live_instances(&moto.resources(&id)).is_empty());
}

#[test]
fn missing_credentials_are_named_and_nothing_is_lost() {
    let moto = Moto::start();
    let mut d = aws_deployment("aws-nocreds", &moto);
    d.env
        .retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY_ID") && !k.starts_with("AWS_SECRET"));
    let out = d
        .command(&provision_args(&moto, "1"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(message.contains("AWS_SESSION_TOKEN"), "{message}");
    let state = d.state();
    assert_eq!(state["steps"]["provision"]["status"], "failed");
    // With credentials, the same deployment goes on.
    d.env = moto.env();
    d.ok(&["provision"]);
    d.ok(&["teardown"]);
}

#[test]
fn a_missing_rust_target_stops_provision_before_anything_is_made() {
    let moto = Moto::start();
    let d = aws_deployment("aws-notarget", &moto);
    let mut args = provision_args(&moto, "1");
    *args.last_mut().unwrap() = "sparc64-unknown-linux-gnu";
    let out = d.command(&args).output().unwrap();
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("rustup target add sparc64-unknown-linux-gnu"),
        "{message}"
    );
    assert!(!d.data_json().exists(), "{message}");
    let resources = moto.resources("");
    assert!(
        resources["keys"].as_array().unwrap().is_empty(),
        "{resources}"
    );
}

#[test]
fn refused_credentials_are_explained() {
    let moto = Moto::start_checking_credentials();
    let d = aws_deployment("aws-refused", &moto);
    let out = d.command(&provision_args(&moto, "1")).output().unwrap();
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("AWS refused the credentials (AuthFailure"),
        "{message}"
    );
    assert!(
        message.contains("AWS_SESSION_TOKEN") && message.contains("copy fresh ones"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(d.state()["steps"]["provision"]["status"], "failed");
}

#[test]
fn a_lost_data_json_leaks_nothing() {
    let moto = Moto::start();
    let d = aws_deployment("aws-lost", &moto);
    d.ok(&provision_args(&moto, "1"));
    let id = d.state()["id"].as_str().unwrap().to_string();
    assert_eq!(live_instances(&moto.resources(&id)).len(), 6);
    fs::remove_file(d.data_json()).unwrap();

    // Plain teardown knows of nothing; by id, the tags say what to remove.
    let out = d.ok(&["teardown"]);
    assert!(out.contains("nothing to do"), "{out}");
    d.fails(
        &[
            "teardown",
            "--aws-deployment",
            "dbc-nosuchid",
            "--region",
            "us-east-1",
            "--aws-endpoint",
            &moto.endpoint,
        ],
        "found nothing tagged deployment=dbc-nosuchid",
    );
    let out = d.ok(&[
        "teardown",
        "--aws-deployment",
        &id,
        "--region",
        "us-east-1",
        "--aws-endpoint",
        &moto.endpoint,
    ]);
    assert!(out.contains("terminated 6 instances"), "{out}");
    assert_nothing_left(&moto, &d, &id);
}

#[test]
fn galera_nodes_open_their_ports_to_the_database_hosts_only() {
    let moto = Moto::start();
    let d = aws_deployment("aws-galera", &moto);
    let mut args = provision_args(&moto, "3");
    args.extend(["--engine", "galera"]);
    d.ok(&args);
    let id = d.state()["id"].as_str().unwrap().to_string();
    let resources = moto.resources(&id);
    let hosts: Vec<String> = live_instances(&resources).into_keys().collect();
    assert_eq!(
        hosts,
        [
            "gatekeeper",
            "node-1",
            "node-2",
            "node-3",
            "proxy",
            "standalone",
            "trusted-host"
        ]
    );
    let g = |role: &str| format!("group:{role}");
    assert_eq!(
        rules(&resources, &id, "database"),
        [
            (22, OPERATOR.to_string()),
            (3306, g("database")),
            (3306, g("proxy")),
            (4444, g("database")),
            (4567, g("database")),
            (4568, g("database")),
        ]
    );
    // The services' groups get none of them.
    for role in ["gatekeeper", "trusted-host", "proxy"] {
        assert!(
            rules(&resources, &id, role)
                .iter()
                .all(|(port, _)| ![4444, 4567, 4568].contains(port)),
            "{role}"
        );
    }
    d.ok(&["teardown"]);
    assert_nothing_left(&moto, &d, &id);
}

#[test]
fn plan_shows_what_it_costs_and_contacts_nothing_and_status_counts_the_hours() {
    let moto = Moto::start();
    let d = aws_deployment("aws-plan", &moto);
    // An endpoint where nothing answers: a plan that called the EC2 API would fail.
    let out = d.ok(&[
        "plan",
        "--provider",
        "aws",
        "--aws-endpoint",
        "http://127.0.0.1:9",
        "--region",
        "us-east-1",
        "--db-instance-type",
        "t3.micro",
        "--service-instance-type",
        "x9.huge",
        "--price-per-hour",
        "x9.huge=0.1",
    ]);
    for said in [
        "a new deployment (aws provider): nothing exists yet",
        "standalone     standalone    t3.micro",
        "gatekeeper     gatekeeper    x9.huge",
        "trusted-host: port 8080 from the gatekeeper group (requests from the gatekeeper)",
        "trusted-host: port 8081 from the gatekeeper group (the bench's floor relays)",
        "gatekeeper: port 8081 from the proxy group (the bench's floor relay, from the bench client)",
        "5 × t3.micro: $0.0104 per hour each, $0.0520 per hour",
        "3 × x9.huge: $0.1000 per hour each, $0.3000 per hour",
        "8 × public IPv4 address: $0.0050 per hour each, $0.0400 per hour",
        // 0.052 + 0.3 + 8 × 20 × 0.08 / 730 + 0.04
        "in all about $0.41 per hour ($9.83 per day) from provision until teardown",
    ] {
        assert!(out.contains(said), "{said:?} not in:\n{out}");
    }
    assert!(!d.data_json().exists(), "plan recorded a deployment");
    // Without the price, the type is said to have none.
    let out = d.ok(&[
        "plan",
        "--provider",
        "aws",
        "--service-instance-type",
        "x9.huge",
    ]);
    assert!(out.contains("3 × x9.huge: price unknown"), "{out}");
    assert!(out.contains("in all at least $0.12 per hour"), "{out}");

    // provision says the hourly figure before it creates anything; status and plan then say
    // since when the instances run and what they have cost.
    let out = d.ok(&provision_args(&moto, "2"));
    // 4 × t2.micro + 3 × t2.large, with their volumes and addresses.
    let figure = out
        .find("7 instances: about $0.38 per hour")
        .unwrap_or_else(|| panic!("{out}"));
    let first_call = out
        .find("connecting to EC2")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        figure < first_call,
        "the figure came after EC2 was called:\n{out}"
    );
    let status = d.ok(&["status"]);
    assert!(
        status.contains("7 instances have run since ")
            && status.contains("so far; they cost about $0.38 per hour until `"),
        "{status}"
    );
    let plan = d.ok(&["plan"]);
    assert!(plan.contains("(aws provider, provisioned "), "{plan}");
    assert!(plan.contains("(public "), "{plan}");
    let id = d.state()["id"].as_str().unwrap().to_string();
    d.ok(&["teardown"]);
    assert_nothing_left(&moto, &d, &id);
}

/// Before the cluster is installed, scale changes only the hosts: a new worker gets an
/// instance of its own, in the databases' group and tagged like the others, and one that goes
/// has its instance terminated; a worker added again gets a new instance.
#[test]
fn scale_before_install_launches_and_terminates_instances() {
    let moto = Moto::start();
    let d = aws_deployment("aws-scale", &moto);
    d.ok(&provision_args(&moto, "2"));
    let id = d.state()["id"].as_str().unwrap().to_string();

    let out = d.ok(&["scale", "--workers", "3"]);
    assert!(
        out.contains("3 workers planned: worker-1, worker-2, worker-3"),
        "{out}"
    );
    let resources = moto.resources(&id);
    let live = live_instances(&resources);
    let added = &live["worker-3"];
    assert_eq!(added["tags"]["role"], "worker", "{added}");
    assert_eq!(
        added["groups"],
        json!([group(&resources, &id, "database")["id"]]),
        "{added}"
    );
    assert_eq!(added["type"], live["worker-1"]["type"]);
    let state = d.state();
    assert_eq!(
        state["aws"]["instances"]["worker-3"]["instance_id"],
        added["id"]
    );
    let host = state["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "worker-3")
        .unwrap()
        .clone();
    assert_eq!(
        host["address"],
        state["aws"]["instances"]["worker-3"]["private_ip"]
    );
    assert_eq!(host["dir"], "/var/lib/dbcluster/worker-3");

    let out = d.ok(&["scale", "--workers", "1"]);
    assert!(out.contains("1 workers planned: worker-1"), "{out}");
    let live = live_instances(&moto.resources(&id));
    assert!(
        !live.contains_key("worker-2") && !live.contains_key("worker-3"),
        "{live:?}"
    );
    assert_eq!(live.len(), 6, "{live:?}");
    let state = d.state();
    assert!(
        state["aws"]["instances"].get("worker-3").is_none(),
        "{state}"
    );

    // The name comes back with an instance of its own, not the terminated one.
    let terminated = added["id"].clone();
    d.ok(&["scale", "--workers", "3"]);
    let live = live_instances(&moto.resources(&id));
    assert_ne!(live["worker-3"]["id"], terminated);

    d.ok(&["teardown"]);
    assert_nothing_left(&moto, &d, &id);
}
