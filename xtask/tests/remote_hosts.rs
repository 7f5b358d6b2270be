//! The provider-neutral scripts over the SSH transport: a real sshd on 127.0.0.1 stands in for
//! the remote hosts, and the whole pipeline (the cluster, the services, bench, fetch-results)
//! runs through it, as it does on aws, minus EC2 and systemd.

mod common;

use std::fs;

use common::sshd::{Sshd, SudoUser};
use common::Deployment;
use serde_json::json;

#[test]
fn the_pipeline_runs_its_scripts_over_ssh() {
    // The sshd and its login user outlive the deployment (declared first, dropped last): the
    // deployment's guard tears it down over SSH, as a failed test must too.
    let sshd_dir = std::env::temp_dir().join(format!("xtask-it-sshd-{}", std::process::id()));
    fs::remove_dir_all(&sshd_dir).ok();
    let sshd = Sshd::start(&sshd_dir);
    // Logged in as an unprivileged user with sudo, as on an instance.
    let login = SudoUser::create("xtask-remote");
    let d = Deployment::new("over-ssh", "127.0.27");
    // The services are built for an explicit target, as for instances (musl there; this
    // machine's own triple here, the one that is installed): cargo's per-target folder.
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    d.provision(&["--workers", "2", "--target", &target]);

    // Every host is reached the way an aws host is: over SSH as a user with sudo, with the
    // deployment's own known_hosts and a log per host. The folders are the same paths seen from
    // "there".
    let mut state = d.state();
    for host in state["hosts"].as_array_mut().unwrap() {
        let name = host["name"].as_str().unwrap().to_string();
        {
            host["ssh"] = json!({
                "address": "127.0.0.1",
                "port": sshd.port,
                "user": login.name,
                "key_file": sshd.key,
                "known_hosts": d.dir.join("known_hosts"),
                "sudo": true,
                "log_file": d.dir.join(format!("logs/{name}.log")),
            });
        }
    }
    fs::write(d.data_json(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    let out = d.ok(&["all", "--quick"]);
    assert!(out.contains("all steps are done"), "{out}");
    assert!(
        out.contains(&format!(
            "cargo build --release -p services --target {target}"
        )),
        "{out}"
    );

    // It went through sshd: logins with the deployment's key, and each host's log has the
    // scripts that ran there.
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    let log_of = |host: &str| fs::read_to_string(d.dir.join(format!("logs/{host}.log"))).unwrap();
    for host in ["standalone", "manager", "worker-1", "worker-2"] {
        assert!(
            log_of(host).contains(&format!("# db-start for {host}")),
            "{host}"
        );
    }
    for host in ["proxy", "trusted-host", "gatekeeper"] {
        let log = log_of(host);
        assert!(
            log.contains(&format!("# service-start for {host}")),
            "{host}: {log}"
        );
        assert!(
            log.contains(&format!("# service-health for {host}")),
            "{host}: {log}"
        );
    }
    let bench_log = log_of("proxy");
    assert!(
        bench_log.contains("# bench-sysbench for bench-client"),
        "{bench_log}"
    );
    assert!(
        bench_log.contains("# bench-loadgen for bench-client"),
        "{bench_log}"
    );
    assert!(
        bench_log.contains("# stage-folders for bench-client"),
        "{bench_log}"
    );

    // The services run and answer through the chain; status asks them over SSH.
    assert_eq!(d.services().len(), 3, "{:?}", d.services());
    let (code, body) = d.api("SELECT COUNT(*) FROM film", "random");
    assert_eq!(code, 200, "{body}");
    let status = d.ok(&["status"]);
    assert_eq!(status.matches("up, /health ok").count(), 3, "{status}");
    assert!(status.contains("(ssh xtask-remote@127.0.0.1)"), "{status}");

    // The results came back with scp: the raw files and the tables.
    let raw = d.dir.join("results/raw");
    let run = fs::read_dir(&raw).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("run.json").exists());
    assert!(run.join("patterns/random-run1.json").exists());
    let sysbench_csv = fs::read_to_string(d.dir.join("results/sysbench.csv")).unwrap();
    assert!(sysbench_csv.lines().count() > 3, "{sysbench_csv}");
    // The passwords beside the runs stayed on the bench client: no fetched file holds one.
    let password = d.secret("bench_password");
    let mut fetched = vec![raw.clone()];
    let mut files = 0;
    while let Some(path) = fetched.pop() {
        if path.is_dir() {
            fetched.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files += 1;
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            assert!(
                !text.contains(&password),
                "{} holds the password",
                path.display()
            );
        }
    }
    assert!(files > 3, "only {files} files fetched");
    assert!(fs::read_to_string(d.dir.join("known_hosts"))
        .unwrap()
        .contains("ssh-ed25519"));

    // And what it installed is a working cluster: a write on the manager reaches the workers.
    let servers = d.servers();
    assert_eq!(servers.len(), 4, "{servers:?}");
    d.insert_actor(900011, "Grace", "Hopper");
    for worker in ["worker-1", "worker-2"] {
        d.wait_for_actor(worker, 900011, "Hopper");
    }
    // The servers' config files hold no secret, yet went through put_file: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(d.host_dir("manager").join("my.cnf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The processes recorded over SSH are the real ones: teardown stops them all.
    d.ok(&["teardown"]);
    assert!(d.servers().is_empty(), "{:?}", d.servers());
    assert!(d.services().is_empty(), "{:?}", d.services());
    drop(d);
    fs::remove_dir_all(&sshd_dir).ok();
}
