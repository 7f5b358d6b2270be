//! provision: decides the deployment's hosts and secrets and creates the hosts (local: a folder
//! per loopback address; aws: an instance per host, see `aws`).

use anyhow::Result;

use crate::aws;
use crate::deploy_services;
use crate::flags::SettingsArgs;
use crate::local;
use crate::state::{self, Deployment, Lock, Paths, ProviderKind, Secrets};
use crate::steps::{self, Session};

/// Opens the live deployment, or plans a new one (nothing is written until the step begins).
pub fn open(paths: &Paths, lock: Lock, args: &SettingsArgs) -> Result<Session> {
    if let Some(existing) = paths.load()? {
        if existing.is_live() {
            args.check_matches(&existing.settings)?;
            return steps::open_live(paths, lock);
        }
    }
    let settings = args.to_settings()?;
    if let Some(target) = &settings.target {
        // Before any instance is paid for: deploy-services would need it.
        deploy_services::check_target(target)?;
    }
    let id = state::new_deployment_id();
    let provider = args.provider();
    let hosts = match provider {
        ProviderKind::Local => {
            let hosts = local::plan_hosts(&settings, &paths.state_dir());
            // Checked before anything is written, so a taken address leaves no trace.
            for host in &hosts {
                local::check_free(host, local::port_of(host, &settings))?;
            }
            hosts
        }
        ProviderKind::Aws => aws::plan_hosts(&settings, paths, &id),
    };
    let deployment = Deployment {
        format_version: state::FORMAT_VERSION,
        id,
        provider,
        created_at: state::now(),
        torn_down_at: None,
        settings,
        hosts,
        processes: Default::default(),
        steps: Default::default(),
        secrets: Secrets::generate(),
        bench: None,
        aws: (provider == ProviderKind::Aws).then(Default::default),
    };
    Ok(steps::new_session(paths, lock, deployment))
}

pub fn run(session: &mut Session) -> Result<()> {
    if session.deployment.provider == ProviderKind::Aws {
        return aws::provision(session);
    }
    let d = &session.deployment;
    for host in &d.hosts {
        local::create_dir(&host.dir)?;
    }
    eprintln!(
        "provision: deployment {} with {} hosts on {}.x under {}",
        d.id,
        d.hosts.len(),
        d.settings.loopback_prefix,
        session.paths.state_dir().display()
    );
    Ok(())
}
