//! The inventory of the ssh provider: the machines a user already has, in a TOML file.
//!
//! ```toml
//! [defaults]                      # shared by every machine unless it says otherwise
//! user = "ubuntu"                 # the login user: root, or one with passwordless sudo
//! identity_file = "~/.ssh/lab"    # its private key (relative paths: from this file's folder)
//! port = 22                       # SSH's port (default 22)
//!
//! [[machine]]
//! address = "203.0.113.10"        # where SSH reaches it from here
//! private_address = "10.0.0.10"   # where the other machines reach it (default: address)
//! role = "gatekeeper"             # optional: a host (manager, worker-2, ...) or a role
//! host_key = "ssh-ed25519 AAAA…"  # optional: pinned; otherwise the first key seen is kept
//! ```

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::state::{Host, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    machine: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: String,
    private_address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<PathBuf>,
    role: Option<String>,
    host_key: Option<String>,
}

/// One machine of the inventory, with the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Where SSH reaches it from this machine.
    pub address: String,
    /// Where the other machines reach it: its servers and services listen there.
    pub private_address: String,
    pub port: u16,
    pub user: String,
    /// The private key that logs in, as an absolute path.
    pub identity_file: PathBuf,
    /// The host or role it must take, if the inventory says.
    pub role: Option<String>,
    /// Its SSH host key (`type base64`), if pinned.
    pub host_key: Option<String>,
}

impl Machine {
    /// How messages name it: its place in the file and its address.
    pub fn label(&self, index: usize) -> String {
        format!("machine {} ({})", index + 1, self.address)
    }
}

/// Reads and checks the inventory at `path`.
pub fn read(path: &Path) -> Result<Vec<Machine>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the inventory {} (--hosts): write one as shown under \"The ssh provider\" in \
             the README",
            path.display()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let machines = parse(&text, base, &home())
        .with_context(|| format!("the inventory {} is not usable", path.display()))?;
    for (i, machine) in machines.iter().enumerate() {
        check_key_file(&machine.identity_file)
            .with_context(|| format!("{} in {}", machine.label(i), path.display()))?;
    }
    Ok(machines)
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The machines of an inventory's text; relative key paths are taken from `base`, `~/` from
/// `home`.
pub fn parse(text: &str, base: &Path, home: &Path) -> Result<Vec<Machine>> {
    let file: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    if file.machine.is_empty() {
        bail!("it names no machine: add a [[machine]] table with its address for each");
    }
    let mut machines = Vec::new();
    for (i, entry) in file.machine.into_iter().enumerate() {
        let label = format!("machine {} ({})", i + 1, entry.address);
        let user = entry.user.or(file.defaults.user.clone()).with_context(|| {
            format!("{label} has no login `user`: set it there or in [defaults]")
        })?;
        let key = entry
            .identity_file
            .or(file.defaults.identity_file.clone())
            .with_context(|| {
                format!(
                    "{label} has no `identity_file` (the private key that logs in as {user}): \
                     set it there or in [defaults]"
                )
            })?;
        let identity_file = match key.strip_prefix("~") {
            Ok(rest) => home.join(rest),
            Err(_) => base.join(&key),
        };
        let private_address = entry
            .private_address
            .unwrap_or_else(|| entry.address.clone());
        if private_address.parse::<IpAddr>().is_err() {
            bail!(
                "{label}: its servers and services listen on an IP address, and {private_address:?} \
                 is none: give `private_address`, the IP address the other machines reach it at"
            );
        }
        if let Some(key) = &entry.host_key {
            let words: Vec<&str> = key.split_whitespace().collect();
            let is_key = words.len() >= 2
                && (words[0].starts_with("ssh-") || words[0].starts_with("ecdsa-"))
                && words[1].len() >= 32;
            if !is_key {
                bail!(
                    "{label}: host_key must be a key as known_hosts holds it, such as \
                     \"ssh-ed25519 AAAAC3Nz…\" (ssh-keyscan prints it), got {key:?}"
                );
            }
        }
        machines.push(Machine {
            address: entry.address,
            private_address,
            port: entry.port.or(file.defaults.port).unwrap_or(22),
            user,
            identity_file,
            role: entry.role,
            host_key: entry.host_key,
        });
    }
    for (i, a) in machines.iter().enumerate() {
        if let Some(j) = machines[..i]
            .iter()
            .position(|b| b.address == a.address && b.port == a.port)
        {
            bail!(
                "{} and {} are the same machine: each host needs one of its own",
                machines[j].label(j),
                a.label(i)
            );
        }
        if let Some(j) = machines[..i]
            .iter()
            .position(|b| b.private_address == a.private_address)
        {
            bail!(
                "{} and {} have the same private address {}: each host listens on its own",
                machines[j].label(j),
                a.label(i),
                a.private_address
            );
        }
    }
    Ok(machines)
}

/// ssh refuses a private key that others may read, and one it cannot read.
fn check_key_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "its identity_file {} cannot be read: give the path of the private key that logs in",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "its identity_file {} may be read by others (mode {mode:o}), which ssh refuses: run \
             `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Which machine each planned host goes to (an index into `machines` per host): a machine
/// whose `role` names a host takes it, one naming a role takes the next host of that role, the
/// others take the remaining hosts in order. Machines left over are spares.
pub fn assign(hosts: &[Host], machines: &[Machine]) -> Result<Vec<usize>> {
    if machines.len() < hosts.len() {
        bail!(
            "the deployment needs {} machines, one per host ({}); the inventory names {}: add {} \
             more, or lower --workers",
            hosts.len(),
            hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            machines.len(),
            hosts.len() - machines.len()
        );
    }
    let mut of_host: Vec<Option<usize>> = vec![None; hosts.len()];
    let host_names = || {
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Hosts named exactly, then roles, then the rest.
    let mut by_role = Vec::new();
    for (m, machine) in machines.iter().enumerate() {
        let Some(wanted) = &machine.role else {
            continue;
        };
        if let Some(h) = hosts.iter().position(|h| h.name == *wanted) {
            if let Some(other) = of_host[h] {
                bail!(
                    "{} and {} both have role {wanted}; it is one host",
                    machines[other].label(other),
                    machine.label(m)
                );
            }
            of_host[h] = Some(m);
            continue;
        }
        let role: Option<Role> = serde_json::from_value(serde_json::json!(wanted)).ok();
        match role {
            Some(role) if hosts.iter().any(|h| h.role == role) => by_role.push((m, role)),
            _ => bail!(
                "{} has role {wanted:?}, which is no host of this deployment: its hosts are {}, \
                 and a role with several hosts may be given as worker or node",
                machine.label(m),
                host_names()
            ),
        }
    }
    for (m, role) in by_role {
        let free = (0..hosts.len()).find(|&h| hosts[h].role == role && of_host[h].is_none());
        let Some(h) = free else {
            bail!(
                "more machines have role {role} than the deployment has {role} hosts ({}); {} is \
                 one too many",
                hosts.iter().filter(|h| h.role == role).count(),
                machines[m].label(m)
            );
        };
        of_host[h] = Some(m);
    }
    let mut unplaced = (0..machines.len()).filter(|m| machines[*m].role.is_none());
    let mut placed = Vec::new();
    for (h, slot) in of_host.iter_mut().enumerate() {
        if slot.is_none() {
            *slot = unplaced.next();
        }
        let Some(m) = *slot else {
            bail!(
                "no machine is left for {}: the machines with a role took the others; remove a \
                 role or add a machine",
                hosts[h].name
            );
        };
        placed.push(m);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProviderKind, Settings};

    fn parsed(text: &str) -> Result<Vec<Machine>> {
        parse(text, Path::new("/inv"), Path::new("/home/me"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", parsed(text).unwrap_err())
    }

    #[test]
    fn defaults_apply_and_paths_resolve() {
        let machines = parsed(
            r#"
            [defaults]
            user = "ubuntu"
            identity_file = "~/.ssh/lab"

            [[machine]]
            address = "203.0.113.10"
            private_address = "10.0.0.10"
            role = "gatekeeper"
            host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhC6Pn7u0nO4n9bEtU6mF9Ck8Q9l4Oj"

            [[machine]]
            address = "10.0.0.11"
            port = 2222
            user = "root"
            identity_file = "keys/root"
            "#,
        )
        .unwrap();
        assert_eq!(machines.len(), 2);
        assert_eq!(machines[0].identity_file, Path::new("/home/me/.ssh/lab"));
        assert_eq!(machines[0].private_address, "10.0.0.10");
        assert_eq!(
            (machines[0].port, machines[0].user.as_str()),
            (22, "ubuntu")
        );
        assert_eq!(machines[0].role.as_deref(), Some("gatekeeper"));
        assert_eq!(machines[1].identity_file, Path::new("/inv/keys/root"));
        assert_eq!(machines[1].private_address, "10.0.0.11");
        assert_eq!(
            (machines[1].port, machines[1].user.as_str()),
            (2222, "root")
        );
        assert_eq!(machines[1].host_key, None);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err("[[machine]]\naddress = \"10.0.0.1\"\n").contains("has no login `user`"));
        assert!(err("[[machine]]\naddress = \"10.0.0.1\"\nuser = \"u\"\n")
            .contains("has no `identity_file`"));
        assert!(err("[defaults]\nuser = \"u\"\n").contains("names no machine"));
        let typo = err("[[machine]]\nadress = \"10.0.0.1\"\n");
        assert!(typo.contains("unknown field `adress`"), "{typo}");
        let syntax = err("[[machine]\naddress = 1\n");
        assert!(syntax.contains("line 1"), "{syntax}");
        let base = "[defaults]\nuser = \"u\"\nidentity_file = \"k\"\n";
        let named = err(&format!(
            "{base}[[machine]]\naddress = \"db.example.org\"\n"
        ));
        assert!(named.contains("give `private_address`"), "{named}");
        let twice = err(&format!(
            "{base}[[machine]]\naddress = \"10.0.0.1\"\n[[machine]]\naddress = \"10.0.0.1\"\n"
        ));
        assert!(twice.contains("are the same machine"), "{twice}");
        let key = err(&format!(
            "{base}[[machine]]\naddress = \"10.0.0.1\"\nhost_key = \"AAAA\"\n"
        ));
        assert!(key.contains("host_key must be a key"), "{key}");
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-inventory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, "not really a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let said = format!("{:#}", check_key_file(&key).unwrap_err());
        assert!(
            said.contains("mode 644") && said.contains("chmod 600"),
            "{said}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_file(&key).unwrap();
        let said = format!("{:#}", check_key_file(&dir.join("missing")).unwrap_err());
        assert!(said.contains("cannot be read"), "{said}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn machines(roles: &[Option<&str>]) -> Vec<Machine> {
        roles
            .iter()
            .enumerate()
            .map(|(i, role)| Machine {
                address: format!("10.0.0.{}", i + 1),
                private_address: format!("10.0.0.{}", i + 1),
                port: 22,
                user: "u".into(),
                identity_file: "/k".into(),
                role: role.map(str::to_string),
                host_key: None,
            })
            .collect()
    }

    fn hosts() -> Vec<Host> {
        let settings = Settings {
            workers: 2,
            ..Settings::defaults(ProviderKind::Local)
        };
        crate::providers::local::plan_hosts(&settings, Path::new("/s"))
    }

    #[test]
    fn machines_take_their_roles_then_the_rest_in_order() {
        let hosts = hosts();
        // standalone, manager, worker-1, worker-2, proxy, trusted-host, gatekeeper
        let placed = assign(
            &hosts,
            &machines(&[
                None,
                Some("gatekeeper"),
                Some("worker"),
                None,
                Some("worker-1"),
                None,
                None,
                None,
            ]),
        )
        .unwrap();
        assert_eq!(placed, [0, 3, 4, 2, 5, 6, 1]);
        assert_eq!(
            assign(&hosts, &machines(&[None; 7])).unwrap(),
            [0, 1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn impossible_placements_are_explained() {
        let hosts = hosts();
        let said =
            |roles: &[Option<&str>]| format!("{:#}", assign(&hosts, &machines(roles)).unwrap_err());
        let few = said(&[None; 3]);
        assert!(
            few.contains("needs 7 machines, one per host (standalone, manager, worker-1, worker-2, proxy, trusted-host, gatekeeper); the inventory names 3: add 4 more"),
            "{few}"
        );
        let mut roles = [None; 7];
        roles[0] = Some("manager");
        roles[1] = Some("manager");
        assert!(said(&roles).contains("both have role manager"));
        roles[1] = Some("node-1");
        assert!(said(&roles).contains("role \"node-1\", which is no host of this deployment"));
        let mut roles = [None; 8];
        roles[0] = Some("worker");
        roles[1] = Some("worker");
        roles[2] = Some("worker");
        assert!(said(&roles)
            .contains("more machines have role worker than the deployment has worker hosts (2)"));
    }
}
