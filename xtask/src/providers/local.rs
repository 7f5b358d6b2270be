//! The local provider: every host is a loopback address on this machine with its own folder
//! under `.state/`, and the provider-neutral scripts run under bash as the current user.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Plan, PlannedHost, Provider};
use crate::cluster::{limits, server, services};
use crate::progress::Progress;
use crate::state::{
    Deployment, Engine, Host, HostClass, Limits, LocalSettings, Paths, ProviderSettings, Role,
    Session, Settings,
};
use crate::transport::{self, script::Script};

const HOST_REMOVE: &str = include_str!("../../scripts/host-remove.sh");

pub struct Local;

/// The hosts of a deployment: standalone, manager, the workers (Galera: the nodes), then the
/// three services, on consecutive addresses from `<prefix>.2`.
pub fn plan_hosts(settings: &Settings, state_dir: &Path) -> Vec<Host> {
    let prefix = match &settings.provider {
        ProviderSettings::Local(local) => local.loopback_prefix.as_str(),
        // Another provider's hosts take these names and folders, and their own addresses.
        ProviderSettings::Aws(_) | ProviderSettings::Ssh(_) => "",
    };
    let mut roles = vec![(Role::Standalone, "standalone".to_string())];
    match settings.engine {
        Engine::Replication => {
            roles.push((Role::Manager, "manager".to_string()));
            roles.extend((1..=settings.workers).map(|i| (Role::Worker, format!("worker-{i}"))));
        }
        Engine::Galera => {
            roles.extend((1..=settings.workers).map(|i| (Role::Node, format!("node-{i}"))));
        }
    }
    roles.push((Role::Proxy, "proxy".to_string()));
    roles.push((Role::TrustedHost, "trusted-host".to_string()));
    roles.push((Role::Gatekeeper, "gatekeeper".to_string()));
    roles
        .into_iter()
        .enumerate()
        .map(|(i, (role, name))| Host {
            address: format!("{prefix}.{}", i + 2),
            dir: state_dir.join(&name),
            ssh: None,
            connects_from: None,
            name,
            role,
        })
        .collect()
}

/// A host added to a live deployment: the address after the highest one in use, and its own
/// folder.
fn next_host(d: &Deployment, state_dir: &Path, name: &str, role: Role) -> Result<Host> {
    let ProviderSettings::Local(local) = &d.settings.provider else {
        anyhow::bail!("this is not a local deployment");
    };
    let last = d
        .hosts
        .iter()
        .filter_map(|h| h.address.rsplit_once('.')?.1.parse::<u8>().ok())
        .max()
        .unwrap_or(1);
    let next = last.checked_add(1).filter(|n| *n < 255).with_context(|| {
        format!(
            "no address is left after {}.{last} for {name}: scale down first, or provision \
                 with another --loopback-prefix",
            local.loopback_prefix
        )
    })?;
    Ok(Host {
        address: format!("{}.{next}", local.loopback_prefix),
        dir: state_dir.join(name),
        ..Host::planned(name, role)
    })
}

/// Which limits a host gets.
fn class_of(role: Role) -> HostClass {
    match role.runs_database() {
        true => HostClass::Database,
        false => HostClass::Service,
    }
}

/// Fails, naming the address, when something already listens where a host will.
fn check_free(host: &Host, port: u16) -> Result<()> {
    TcpListener::bind((host.address.as_str(), port))
        .map(drop)
        .with_context(|| {
            format!(
                "{}:{port} (for {}) is not free: another program uses it; stop it, or pick other \
                 addresses with --loopback-prefix or other ports with --db-port/--service-port",
                host.address, host.name
            )
        })
}

/// Gives every host, and the bench client, a cgroup with the quota of its class and the memory
/// limit. Where cgroups cannot be made, the groups made so far are removed again and the
/// deployment runs unlimited, with the reason recorded.
fn limit_hosts(d: &Deployment) -> Result<Limits> {
    let ProviderSettings::Local(LocalSettings {
        host_cpus,
        host_memory,
        ..
    }) = d.settings.provider
    else {
        return Ok(Limits::default());
    };
    if host_cpus.of(HostClass::Database).is_none() && host_memory.mib.is_none() {
        return Ok(Limits::default());
    }
    let mut targets: Vec<(Host, HostClass)> = d
        .hosts
        .iter()
        .map(|h| (h.clone(), class_of(h.role)))
        .collect();
    targets.push((d.bench_client()?, HostClass::BenchClient));
    let mut made = Limits::default();
    for (host, class) in &targets {
        match limits::apply(host, &d.id, &host.name, host_cpus.of(*class), host_memory)? {
            Ok((by, limit)) => {
                made.enforced_by = Some(by);
                made.hosts.insert(host.name.clone(), limit);
            }
            Err(why) => {
                let undo = Deployment {
                    limits: made,
                    ..d.clone()
                };
                limits::remove_all(&undo)?;
                return Ok(limits::off(why));
            }
        }
    }
    Ok(made)
}

impl Provider for Local {
    fn plan(
        &self,
        settings: &Settings,
        paths: &Paths,
        live: Option<&Deployment>,
        _prices: &BTreeMap<String, f64>,
    ) -> Result<Plan> {
        let ProviderSettings::Local(local) = &settings.provider else {
            anyhow::bail!("this is not a local deployment");
        };
        let hosts = match live {
            Some(d) => d.hosts.clone(),
            None => plan_hosts(settings, &paths.state_dir()),
        };
        let size = |class| {
            let cpus = local
                .host_cpus
                .of(class)
                .map_or("no CPU limit".to_string(), |c| format!("{c} CPU"));
            format!("{cpus}, {} memory", local.host_memory)
        };
        Ok(Plan {
            hosts: hosts
                .into_iter()
                .map(|h| PlannedHost {
                    size: size(class_of(h.role)),
                    name: h.name,
                    role: h.role,
                    address: h.address,
                })
                .collect(),
            rules: Vec::new(),
            cost: Vec::new(),
            notes: vec![format!(
                "every host is an address of this machine with a folder under {}, in a cgroup \
                 of its own (the bench client: {}); nothing is paid",
                paths.state_dir().display(),
                size(HostClass::BenchClient)
            )],
        })
    }

    fn charges(&self, _d: &Deployment) -> Option<String> {
        None
    }

    fn plan_hosts(&self, settings: &Settings, paths: &Paths, _id: &str) -> Result<Vec<Host>> {
        let hosts = plan_hosts(settings, &paths.state_dir());
        // Checked before anything is written, so a taken address leaves no trace.
        for host in &hosts {
            let port = if host.role.runs_database() {
                settings.db_port
            } else {
                settings.service_port
            };
            check_free(host, port)?;
        }
        Ok(hosts)
    }

    fn create(&self, session: &mut Session) -> Result<()> {
        let d = &session.deployment;
        // The transport makes a host's folder before any script runs there.
        for host in &d.hosts {
            transport::run_script(host, &Script::new("host-folder", ":\n"), b"")?;
        }
        eprintln!(
            "provision: deployment {} with {} hosts from {} under {}",
            d.id,
            d.hosts.len(),
            d.hosts.first().map_or(String::new(), |h| h.address.clone()),
            session.paths.state_dir().display()
        );
        session.deployment.limits = limit_hosts(&session.deployment)?;
        session.save()?;
        let limits = &session.deployment.limits;
        match &limits.off_because {
            Some(why) => eprintln!(
                "provision: per-host CPU and memory limits are off, every host runs unlimited: {why}"
            ),
            None => eprintln!("provision: host limits: {}", limits.describe()),
        }
        Ok(())
    }

    /// Stops every server and service of the hosts (the recorded ones and any an interrupted
    /// run started without recording) and removes the hosts' folders.
    fn destroy(&self, session: &mut Session) -> Result<()> {
        let hosts = session.deployment.hosts.clone();
        let progress = Progress::new("teardown", (hosts.len() * 2) as u64);
        for host in &hosts {
            progress.task(format!("stopping what runs on {}", host.name));
            let (stopped, key) = if host.role.runs_database() {
                (server::stop(session, host)?, server::process_key(host))
            } else {
                let stopped = services::stop(session, host)?;
                (stopped, services::process_key(host))
            };
            if let Some(pid) = stopped {
                progress.note(format!("stopped {key} (pid {pid})"));
            }
        }
        progress.task("removing the hosts' cgroups");
        limits::remove_all(&session.deployment)?;
        for host in &hosts {
            progress.task(format!("removing the folder of {}", host.name));
            let script = Script::new("host-remove", HOST_REMOVE)
                .param("HOST_DIR", host.dir.display().to_string());
            transport::run_script(host, &script, b"")?;
        }
        // The state folder goes too once it is empty; anything else in it is not ours.
        std::fs::remove_dir(session.paths.state_dir()).ok();
        Ok(())
    }

    fn add_host(&self, session: &mut Session, name: &str, role: Role) -> Result<Host> {
        let d = &session.deployment;
        let host = match d.host_named(name) {
            Some(known) => known.clone(),
            None => {
                let host = next_host(d, &session.paths.state_dir(), name, role)?;
                check_free(&host, d.port_of(&host))?;
                session.deployment.hosts.push(host.clone());
                session.save()?;
                host
            }
        };
        transport::run_script(&host, &Script::new("host-folder", ":\n"), b"")?;
        let d = &session.deployment;
        let ProviderSettings::Local(local) = &d.settings.provider else {
            anyhow::bail!("this is not a local deployment");
        };
        // Limited like the others of its class, if the others are.
        if d.limits.off_because.is_none() && !d.limits.hosts.is_empty() {
            let cpus = local.host_cpus.of(class_of(role));
            match limits::apply(&host, &d.id, &host.name, cpus, local.host_memory)? {
                Ok((_, limit)) => {
                    session
                        .deployment
                        .limits
                        .hosts
                        .insert(host.name.clone(), limit);
                    session.save()?;
                }
                Err(why) => anyhow::bail!(
                    "{} cannot have the limits the other hosts have: {why}",
                    host.name
                ),
            }
        }
        Ok(host)
    }

    fn remove_host(&self, session: &mut Session, host: &Host) -> Result<()> {
        if let Some(limit) = session.deployment.limits.hosts.get(&host.name) {
            limits::remove(host, limit)
                .with_context(|| format!("removing the cgroup of {}", host.name))?;
        }
        let script = Script::new("host-remove", HOST_REMOVE)
            .param("HOST_DIR", host.dir.display().to_string());
        transport::run_script(host, &script, b"")?;
        let d = &mut session.deployment;
        d.limits.hosts.remove(&host.name);
        d.hosts.retain(|h| h.name != host.name);
        session.save()
    }

    /// Linux routes 127.0.0.0/8 with `src 127.0.0.1`, so a connection to any loopback host
    /// comes from there, whatever the client host's own address.
    fn client_address(&self, _client: &Host) -> String {
        "127.0.0.1".to_string()
    }

    fn public_gatekeeper_url(&self, d: &Deployment) -> Result<String> {
        d.gatekeeper_url()
    }

    fn bench_machines(&self, _d: &Deployment) -> Result<(String, String)> {
        Ok((
            "local".to_string(),
            "this machine (local provider: clients and servers share its cores)".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_consecutive_addresses_and_their_own_folders() {
        let mut settings = Settings {
            workers: 2,
            ..Settings::defaults(crate::state::ProviderKind::Local)
        };
        if let ProviderSettings::Local(local) = &mut settings.provider {
            local.loopback_prefix = "127.0.9".into();
        }
        let hosts = plan_hosts(&settings, Path::new("/s"));
        let names: Vec<_> = hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "standalone",
                "manager",
                "worker-1",
                "worker-2",
                "proxy",
                "trusted-host",
                "gatekeeper"
            ]
        );
        assert_eq!(hosts[0].address, "127.0.9.2");
        assert_eq!(hosts[6].address, "127.0.9.8");
        assert_eq!(hosts[3].dir, Path::new("/s/worker-2"));
        assert_eq!(hosts[3].role, Role::Worker);
    }

    #[test]
    fn the_plan_shows_each_hosts_limits_from_the_settings() {
        let mut settings = Settings {
            workers: 1,
            ..Settings::defaults(crate::state::ProviderKind::Local)
        };
        if let ProviderSettings::Local(local) = &mut settings.provider {
            local.host_cpus = "databases=0.5,services=2".parse().unwrap();
        }
        let paths = Paths::new("/srv/d/data.json".into());
        let plan = Local
            .plan(&settings, &paths, None, &BTreeMap::new())
            .unwrap();
        let rows: Vec<(&str, &str, &str)> = plan
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.size.as_str(), h.address.as_str()))
            .collect();
        assert_eq!(rows[0], ("standalone", "0.5 CPU, 1G memory", "127.0.1.2"));
        assert_eq!(rows[3], ("proxy", "2 CPU, 1G memory", "127.0.1.5"));
        assert_eq!(rows.len(), 6);
        assert!(plan.cost.is_empty() && plan.rules.is_empty());
        assert!(
            plan.notes[0].contains("nothing is paid"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn occupied_address_is_named() {
        let listener = TcpListener::bind("127.0.9.77:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let host = Host {
            name: "manager".into(),
            role: Role::Manager,
            address: "127.0.9.77".into(),
            dir: "/x".into(),
            ssh: None,
            connects_from: None,
        };
        let err = format!("{:#}", check_free(&host, port).unwrap_err());
        assert!(
            err.contains(&format!("127.0.9.77:{port} (for manager) is not free")),
            "{err}"
        );
        drop(listener);
    }
}
