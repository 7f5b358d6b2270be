//! teardown: stops every process the deployment started and removes its hosts' folders (aws:
//! terminates the instances and deletes what provision created, see `aws`).
//! Processes are identified by pid and start time, or by a command line naming one of the
//! deployment's own config files; nothing else is ever signalled.

use std::fs;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::aws;
use crate::deploy_services;
use crate::flags::TeardownArgs;
use crate::local;
use crate::progress::Progress;
use crate::state::{now, AwsSettings, Lock, Paths, ProviderKind};
use crate::steps::{self, Session, Step};

/// How long a server gets to shut down cleanly before it is killed.
const GRACE: Duration = Duration::from_secs(60);

pub fn run(paths: &Paths, args: &TeardownArgs) -> Result<()> {
    let lock = Lock::acquire(paths)?;
    let existing = paths.load()?;
    if let Some(id) = &args.aws_deployment {
        if existing
            .as_ref()
            .is_some_and(|d| d.is_live() && d.id == *id)
        {
            bail!(
                "{id} is the deployment of {}: run `cargo xtask teardown` without --aws-deployment",
                paths.data_json.display()
            );
        }
        let settings = AwsSettings {
            region: args.region.clone(),
            endpoint: args.aws_endpoint.clone(),
            ..AwsSettings::default()
        };
        return aws::teardown_lost(paths, id, &settings);
    }
    let Some(existing) = existing else {
        eprintln!(
            "teardown: nothing to do, no deployment at {}",
            paths.data_json.display()
        );
        return Ok(());
    };
    if let Some(at) = &existing.torn_down_at {
        eprintln!(
            "teardown: deployment {} was already torn down at {at}; nothing to do",
            existing.id
        );
        return Ok(());
    }
    let mut session = steps::open_live(paths, lock)?;
    steps::run_in(&mut session, Step::Teardown, false).map(drop)
}

/// The work of the step, recorded by the step engine.
pub fn execute(session: &mut Session) -> Result<()> {
    match session.deployment.provider {
        ProviderKind::Local => stop_local_hosts(session)?,
        ProviderKind::Aws => {
            aws::teardown(session)?;
            // What this machine kept of the remote hosts: their logs and pinned host keys.
            let state = session.paths.state_dir();
            for dir in [state.join("logs"), state.join("ssh")] {
                if dir.exists() {
                    fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                }
            }
            fs::remove_file(state.join("known_hosts")).ok();
            fs::remove_dir(&state).ok();
        }
    }
    session.deployment.torn_down_at = Some(now());
    eprintln!(
        "teardown: deployment {} removed ({} hosts); results/ is kept",
        session.deployment.id,
        session.deployment.hosts.len()
    );
    Ok(())
}

/// Stops every process of the local hosts and removes their folders.
fn stop_local_hosts(session: &mut Session) -> Result<()> {
    let paths = session.paths.clone();
    let hosts = session.deployment.hosts.clone();
    let progress = Progress::new("teardown", (hosts.len() + 1) as u64);
    for host in &hosts {
        progress.task(format!("stopping what runs on {}", host.name));
        let prefix = format!("{}/", host.name);
        let recorded: Vec<String> = session
            .deployment
            .processes
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for key in recorded {
            let record = session.deployment.processes[&key].clone();
            local::stop(&record, GRACE).with_context(|| format!("stopping {key}"))?;
            progress.note(format!("stopped {key} (pid {})", record.pid));
            session.deployment.processes.remove(&key);
            session.save()?;
        }
        // What an interrupted run started but did not get to record: a process whose command
        // line names this host's own config file.
        let configs = [
            format!("--defaults-file={}", host.dir.join("my.cnf").display()),
            deploy_services::config_path(host),
        ];
        for config in configs {
            for pid in local::find_processes_with_arg(&config) {
                let record = local::record_process(pid, "unrecorded")?;
                local::stop(&record, GRACE)?;
                progress.note(format!(
                    "stopped an unrecorded process of {} (pid {pid})",
                    host.name
                ));
            }
        }
    }
    progress.task("removing the hosts' folders");
    for host in &hosts {
        if host.dir.exists() {
            fs::remove_dir_all(&host.dir)
                .with_context(|| format!("removing {}", host.dir.display()))?;
        }
    }
    // The state folder goes too once it is empty; anything else in it is not ours to delete.
    fs::remove_dir(paths.state_dir()).ok();
    Ok(())
}
