//! The ssh provider: the hosts are machines the user already has, named in an inventory
//! (`--hosts FILE`, see inventory.rs) and reached over SSH as root or a user with passwordless
//! sudo. Provision checks every machine before recording anything; from then on the machines
//! are used exactly as the aws provider's instances are (providers/machines.rs), and teardown
//! removes what the deployment made on them and nothing else.

mod inventory;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{machines, Plan, PlannedHost, Provider};
use crate::state::{
    atomic_write, Deployment, Host, Paths, ProviderSettings, Role, Session, Settings, SshEndpoint,
};

pub struct Ssh;

impl Provider for Ssh {
    /// The machines the inventory gives each host, read from the file alone: provision logs in
    /// to check them.
    fn plan(
        &self,
        settings: &Settings,
        paths: &Paths,
        live: Option<&Deployment>,
        _prices: &BTreeMap<String, f64>,
    ) -> Result<Plan> {
        let ProviderSettings::Ssh(ssh) = &settings.provider else {
            anyhow::bail!("this is not an ssh deployment");
        };
        let mut notes = Vec::new();
        let hosts: Vec<(Host, String)> = match live {
            Some(d) => d
                .hosts
                .iter()
                .map(|h| (h.clone(), crate::transport::describe(h)))
                .collect(),
            None => {
                let machines = inventory::read(&ssh.hosts)?;
                let planned = super::local::plan_hosts(settings, &paths.state_dir());
                let placed = inventory::assign(&planned, &machines)?;
                let spare = spares(&machines, &placed);
                if !spare.is_empty() {
                    notes.push(spare.trim_start_matches("; ").to_string());
                }
                notes.push(
                    "provision logs in to every machine and checks it before it records anything"
                        .to_string(),
                );
                planned
                    .into_iter()
                    .zip(&placed)
                    .map(|(h, &m)| {
                        let machine = &machines[m];
                        let host = Host {
                            address: machine.private_address.clone(),
                            ..h
                        };
                        (host, format!("ssh {}@{}", machine.user, machine.address))
                    })
                    .collect()
            }
        };
        notes.push(
            "the machines are yours: the deployment makes no firewall rule and nothing is paid \
             through it"
                .to_string(),
        );
        Ok(Plan {
            hosts: hosts
                .into_iter()
                .map(|(h, login)| PlannedHost {
                    name: h.name,
                    role: h.role,
                    size: format!("a machine of {}", ssh.hosts.display()),
                    address: format!("{} ({login})", h.address),
                })
                .collect(),
            rules: Vec::new(),
            cost: Vec::new(),
            notes,
        })
    }

    fn charges(&self, _d: &Deployment) -> Option<String> {
        None
    }

    /// The hosts on the inventory's machines, once every machine passed its checks. The host
    /// keys seen (or pinned by the inventory) and the checks' logs are kept in a folder of
    /// their own until provision records them.
    fn plan_hosts(&self, settings: &Settings, paths: &Paths, id: &str) -> Result<Vec<Host>> {
        let ProviderSettings::Ssh(ssh) = &settings.provider else {
            anyhow::bail!("this is not an ssh deployment");
        };
        let machines = inventory::read(&ssh.hosts)?;
        let planned = super::local::plan_hosts(settings, &paths.state_dir());
        let placed = inventory::assign(&planned, &machines)?;
        let pending = Pending::new(id)?;
        let mut known_hosts = String::new();
        let mut hosts = Vec::new();
        for (host, &m) in planned.into_iter().zip(&placed) {
            let machine = &machines[m];
            if let Some(key) = &machine.host_key {
                let name = known_hosts_name(&machine.address, machine.port);
                known_hosts.push_str(&format!("{name} {key}\n"));
            }
            let endpoint = SshEndpoint {
                address: machine.address.clone(),
                port: machine.port,
                user: machine.user.clone(),
                key_file: machine.identity_file.clone(),
                known_hosts: pending.known_hosts(),
                host_keys_pinned: machine.host_key.is_some(),
                sudo: machine.user != "root",
                log_file: pending.dir.join(format!("{}.log", host.name)),
            };
            hosts.push(machines::place(
                host,
                machine.private_address.clone(),
                endpoint,
            ));
        }
        atomic_write(&pending.known_hosts(), known_hosts.as_bytes(), 0o600)?;
        let needs = machines::Needs::of(settings)?;
        let hosts = machines::check(settings, &needs, hosts)?;
        eprintln!(
            "provision: every machine of {} passed its checks (login, passwordless sudo, apt, \
             systemd, free ports, {} binaries){}",
            ssh.hosts.display(),
            needs.target,
            spares(&machines, &placed)
        );
        pending.keep();
        Ok(hosts)
    }

    /// Records the host keys the checks saw (each machine's is checked strictly from now on)
    /// and their logs with the deployment's.
    fn create(&self, session: &mut Session) -> Result<()> {
        let state = session.paths.state_dir();
        let known_hosts = state.join("known_hosts");
        let logs = state.join("logs");
        let pending = Pending::existing(&session.deployment.id);
        if pending.dir.exists() {
            crate::transport::local::create_dir(&logs)?;
            let keys = std::fs::read(pending.known_hosts())
                .with_context(|| format!("reading {}", pending.known_hosts().display()))?;
            atomic_write(&known_hosts, &keys, 0o600)?;
            for host in &session.deployment.hosts {
                let log = pending.dir.join(format!("{}.log", host.name));
                if log.exists() {
                    std::fs::rename(&log, logs.join(format!("{}.log", host.name)))
                        .with_context(|| format!("keeping {}", log.display()))?;
                }
            }
        }
        // Every key the checks saw is pinned now; without them (a provision interrupted after
        // its temporary folder went), the first key seen is pinned at the next login.
        let seen = pending.dir.exists();
        for host in session.deployment.hosts.iter_mut() {
            if let Some(ssh) = host.ssh.as_mut() {
                ssh.known_hosts = known_hosts.clone();
                ssh.log_file = logs.join(format!("{}.log", host.name));
                ssh.host_keys_pinned |= seen;
            }
        }
        session.save()?;
        if pending.dir.exists() {
            std::fs::remove_dir_all(&pending.dir)
                .with_context(|| format!("removing {}", pending.dir.display()))?;
        }
        let d = &session.deployment;
        eprintln!(
            "provision: deployment {} on {} machines:",
            d.id,
            d.hosts.len()
        );
        for host in &d.hosts {
            eprintln!(
                "  {:<13} {:<15} {}",
                host.name,
                host.address,
                crate::transport::describe(host)
            );
        }
        Ok(())
    }

    /// Removes from every machine what the deployment made there, then what this machine kept
    /// of them; says what stays.
    fn destroy(&self, session: &mut Session) -> Result<()> {
        let d = &session.deployment;
        let mut unreachable = Vec::new();
        for (host, cleaned) in machines::clean(d) {
            match cleaned {
                machines::Cleaned::Removed(what) if what.is_empty() => {
                    eprintln!(
                        "teardown: {}: nothing of the deployment was there",
                        host.name
                    )
                }
                machines::Cleaned::Removed(what) => {
                    eprintln!("teardown: {}: removed {}", host.name, what.join(", "))
                }
                machines::Cleaned::Unreachable(why) => unreachable.push((host, why)),
            }
        }
        for (host, why) in &unreachable {
            let unit = crate::cluster::process::unit_name(host);
            eprintln!(
                "teardown: {} ({}) could not be reached, so what the deployment made there \
                 stays: the unit {unit} and the folder {}{}. Once it is back: `sudo systemctl \
                 disable --now {unit}; sudo rm /etc/systemd/system/{unit}; sudo rm -rf {}`. \
                 ({})",
                host.name,
                crate::transport::describe(host),
                host.dir.display(),
                match crate::cluster::services::binary_name(host.role) {
                    Ok(service) => format!(", the account dbcluster-{service}"),
                    Err(_) => String::new(),
                },
                host.dir.display(),
                first_line(why)
            );
        }
        eprintln!("teardown: {}", machines::left_behind(d));
        machines::forget(&session.paths)
    }

    /// A machine of the inventory that no host uses (and whose role, if it names one, is this
    /// host or its role), checked like provision checks every machine, with its host key
    /// pinned from the inventory or as first seen.
    fn add_host(&self, session: &mut Session, name: &str, role: Role) -> Result<Host> {
        if let Some(known) = session.deployment.host_named(name) {
            return Ok(known.clone());
        }
        let d = &session.deployment;
        let ProviderSettings::Ssh(ssh) = &d.settings.provider else {
            anyhow::bail!("this is not an ssh deployment");
        };
        let machines = inventory::read(&ssh.hosts)?;
        let used: Vec<(String, u16)> = d
            .hosts
            .iter()
            .filter_map(|h| h.ssh.as_ref())
            .map(|e| (e.address.clone(), e.port))
            .collect();
        let role_name = role.to_string();
        let machine = machines
            .iter()
            .filter(|m| !used.contains(&(m.address.clone(), m.port)))
            .find(|m| {
                m.role
                    .as_deref()
                    .is_none_or(|r| r == name || r == role_name)
            })
            .with_context(|| {
                format!(
                    "every machine of {} has a host already: add one for {name} (a [[machine]] \
                     with its address), then run scale again",
                    ssh.hosts.display()
                )
            })?;
        let state = session.paths.state_dir();
        let known_hosts = state.join("known_hosts");
        if let Some(key) = &machine.host_key {
            let mut keys = std::fs::read_to_string(&known_hosts).unwrap_or_default();
            keys.push_str(&format!(
                "{} {key}\n",
                known_hosts_name(&machine.address, machine.port)
            ));
            atomic_write(&known_hosts, keys.as_bytes(), 0o600)?;
        }
        let endpoint = SshEndpoint {
            address: machine.address.clone(),
            port: machine.port,
            user: machine.user.clone(),
            key_file: machine.identity_file.clone(),
            known_hosts,
            host_keys_pinned: machine.host_key.is_some(),
            sudo: machine.user != "root",
            log_file: state.join("logs").join(format!("{name}.log")),
        };
        let planned = Host::planned(name, role);
        let host = machines::place(planned, machine.private_address.clone(), endpoint);
        let needs = machines::Needs::of(&d.settings)?;
        let host = machines::check(&d.settings, &needs, vec![host])?
            .pop()
            .context("the check returned no host")?;
        session.deployment.hosts.push(host.clone());
        session.save()?;
        Ok(host)
    }

    /// Removes what the deployment made on the host's machine (its unit, folder); the
    /// packages stay, as at teardown.
    fn remove_host(&self, session: &mut Session, host: &Host) -> Result<()> {
        if let [(_, machines::Cleaned::Unreachable(why))] =
            &machines::clean_hosts(std::slice::from_ref(host))[..]
        {
            anyhow::bail!(
                "{} ({}) could not be reached to remove what the deployment made there; run \
                 scale again once it is back ({})",
                host.name,
                crate::transport::describe(host),
                first_line(why)
            );
        }
        session.deployment.hosts.retain(|h| h.name != host.name);
        session.save()
    }

    fn client_address(&self, client: &Host) -> String {
        machines::client_address(client)
    }

    /// The gatekeeper at the address this machine reaches its machine by.
    fn public_gatekeeper_url(&self, d: &Deployment) -> Result<String> {
        let gatekeeper = d.host(crate::state::Role::Gatekeeper)?;
        let address = crate::transport::machine(gatekeeper)
            .map_or_else(|| gatekeeper.address.clone(), |(address, _)| address);
        Ok(format!("http://{address}:{}", d.settings.service_port))
    }

    fn bench_machines(&self, d: &Deployment) -> Result<(String, String)> {
        let ProviderSettings::Ssh(ssh) = &d.settings.provider else {
            anyhow::bail!("this is not an ssh deployment");
        };
        Ok((
            format!("the machines of {}", ssh.hosts.display()),
            "the proxy's machine, apart from the database hosts".to_string(),
        ))
    }
}

/// known_hosts names a host by its address, with the port when it is not 22.
fn known_hosts_name(address: &str, port: u16) -> String {
    match port {
        22 => address.to_string(),
        port => format!("[{address}]:{port}"),
    }
}

/// "; machines 8 and 9 are spares" when the inventory has more machines than hosts.
fn spares(machines: &[inventory::Machine], placed: &[usize]) -> String {
    let spare: Vec<String> = (0..machines.len())
        .filter(|m| !placed.contains(m))
        .map(|m| machines[m].label(m))
        .collect();
    match spare.len() {
        0 => String::new(),
        _ => format!("; not used: {}", spare.join(", ")),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// What the machines' checks saw before provision records them: the host keys and the logs,
/// in a private folder that is removed unless the checks pass.
struct Pending {
    dir: PathBuf,
    keep: bool,
}

impl Pending {
    fn existing(id: &str) -> Pending {
        Pending {
            dir: std::env::temp_dir().join(format!("xtask-{id}-checks")),
            keep: true,
        }
    }

    fn new(id: &str) -> Result<Pending> {
        let mut pending = Pending::existing(id);
        pending.keep = false;
        std::fs::remove_dir_all(&pending.dir).ok();
        crate::transport::local::create_dir(&pending.dir)?;
        Ok(pending)
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.keep {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names_the_port_when_it_is_not_22() {
        assert_eq!(known_hosts_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(known_hosts_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }
}
