//! Machines of their own, reached over SSH, however they came to be: EC2 instances the aws
//! provider launched, or the machines of an inventory the ssh provider was given. From here on
//! the two are the same: where the deployment keeps its files on a machine, where its
//! connections come from, what a machine must offer before it is used, and what teardown
//! removes from a machine the deployment does not own. Every step after provision reaches these
//! hosts through the transport and never asks which provider made them.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::state::{Deployment, Host, Paths, Role, Settings, SshEndpoint};
use crate::transport::{self, script::Script};

/// Where the deployment keeps each host's folder on its machine (scripts run there through
/// sudo); teardown removes it.
pub const REMOTE_ROOT: &str = "/var/lib/dbcluster";

const MACHINE_CHECK: &str = include_str!("../../scripts/machine-check.sh");
/// How many times a machine's check is tried before a failed login is believed.
const CHECK_ATTEMPTS: u32 = 3;
const MACHINE_CLEAN: &str = include_str!("../../scripts/machine-clean.sh");

/// A planned host (its name and role) placed on a machine: its folder under REMOTE_ROOT, its
/// server or service listening on `address`, the machine reached through `ssh`.
pub fn place(host: Host, address: String, ssh: SshEndpoint) -> Host {
    Host {
        address,
        dir: Path::new(REMOTE_ROOT).join(&host.name),
        ssh: Some(ssh),
        ..host
    }
}

/// The address a host's connections come from, which the database accounts are bound to: the
/// source its machine's routing table chose when checked, else its own address.
pub fn client_address(host: &Host) -> String {
    host.connects_from
        .clone()
        .unwrap_or_else(|| host.address.clone())
}

/// What a machine said of itself (machine-check.sh).
#[derive(Debug, Default, Clone, PartialEq)]
struct Facts {
    /// `ok`, `root` (no sudo needed), `password` or `absent`.
    sudo: String,
    apt: bool,
    os: String,
    arch: String,
    glibc: Option<String>,
    systemd: bool,
    pid1: String,
    /// Ports something already listens on, with the program when it could be told.
    taken: Vec<(u16, String)>,
    /// The source address its connections to the other hosts get.
    source: Option<String>,
}

impl Facts {
    fn parse(text: &str) -> Facts {
        let mut facts = Facts::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            let value = value.trim();
            match key {
                "sudo" => facts.sudo = value.to_string(),
                "apt" => facts.apt = value == "1",
                "os" => facts.os = value.to_string(),
                "arch" => facts.arch = value.to_string(),
                "glibc" if !value.is_empty() => facts.glibc = Some(value.to_string()),
                "systemd" => facts.systemd = value == "1",
                "pid1" => facts.pid1 = value.to_string(),
                "taken" => {
                    let (port, who) = value.split_once(' ').unwrap_or((value, ""));
                    if let Ok(port) = port.parse() {
                        facts.taken.push((port, who.trim().to_string()));
                    }
                }
                "source" if !value.is_empty() => facts.source = Some(value.to_string()),
                _ => {}
            }
        }
        facts
    }
}

/// What the deployment needs of every machine, and of the ones that run its services.
pub struct Needs {
    /// The Rust target the services are built for.
    pub target: String,
    /// This machine's glibc, which services built here for a `-gnu` target need at least.
    pub glibc: Option<String>,
}

impl Needs {
    /// For the settings' target (this machine's own when none is given).
    pub fn of(settings: &Settings) -> Result<Needs> {
        let host = crate::cluster::build::host_target()?;
        let target = settings.target.clone().unwrap_or(host);
        let glibc = match target.ends_with("-gnu") {
            true => Some(crate::cluster::build::local_glibc()?),
            false => None,
        };
        Ok(Needs { target, glibc })
    }
}

/// The ports a host's server or service listens on (a service host: the bench's floor relay's
/// too, the port after it).
fn ports(settings: &Settings, host: &Host) -> Vec<u16> {
    match host.role {
        // Galera's group communication, incremental and full state transfers.
        Role::Node => vec![settings.db_port, 4567, 4568, 4444],
        role if role.runs_database() => vec![settings.db_port],
        _ => vec![settings.service_port, settings.floor_port()],
    }
}

/// Everything wrong with one machine for its host, each with what fixes it.
fn problems(settings: &Settings, needs: &Needs, host: &Host, facts: &Facts) -> Vec<String> {
    let mut found = Vec::new();
    let login = host
        .ssh
        .as_ref()
        .map_or(String::new(), |ssh| ssh.user.clone());
    match facts.sudo.as_str() {
        "ok" | "root" => {}
        "absent" => found.push(format!(
            "sudo is not installed, and {login} is not root: install sudo and let {login} use it \
             without a password, or log in as root"
        )),
        _ => found.push(format!(
            "{login} cannot use sudo without a password: add `{login} ALL=(ALL) NOPASSWD:ALL` to \
             a file in /etc/sudoers.d there (visudo -f /etc/sudoers.d/{login}), or log in as root"
        )),
    }
    if !facts.apt {
        found.push(format!(
            "it is not an apt-based system ({}): the install scripts use apt-get; use Debian or \
             Ubuntu machines",
            if facts.os.is_empty() {
                "no /etc/os-release"
            } else {
                &facts.os
            }
        ));
    }
    if !facts.systemd {
        found.push(format!(
            "systemd does not run there (process 1 is {}): its server or service runs as a \
             systemd unit, which brings it back after a crash or a reboot; use a machine booted \
             with systemd",
            if facts.pid1.is_empty() {
                "unknown"
            } else {
                &facts.pid1
            }
        ));
    }
    for (port, who) in &facts.taken {
        let by = if who.is_empty() {
            String::new()
        } else {
            format!(" by {who}")
        };
        let flag = match *port == settings.service_port {
            true => "--service-port",
            false if *port == settings.db_port => "--db-port",
            false => "no flag: Galera's ports are fixed",
        };
        found.push(format!(
            "{}:{port} is already taken{by}: stop what listens there, or pick another port \
             ({flag})",
            host.address
        ));
    }
    // Only the service hosts run what is built here (the bench client is the proxy's host).
    if !host.role.runs_database() {
        if !same_arch(&facts.arch, &needs.target) {
            found.push(format!(
                "it is an {} machine, and the services are built for {}: provision with \
                 --target {}-unknown-linux-musl (its standard library installed with rustup target \
                 add), or use machines of the target's architecture",
                facts.arch,
                needs.target,
                musl_arch(&facts.arch)
            ));
        } else if let (Some(here), Some(there)) = (&needs.glibc, &facts.glibc) {
            if version(there) < version(here) {
                found.push(format!(
                    "its C library is glibc {there}, older than this machine's {here}, which the \
                     services built here for {} need: provision with --target \
                     {}-unknown-linux-musl (static, any glibc), or build on a machine as old as \
                     it",
                    needs.target,
                    musl_arch(&facts.arch)
                ));
            }
        }
    }
    found
}

/// Whether a machine's `uname -m` runs binaries of a target triple's architecture.
fn same_arch(machine: &str, target: &str) -> bool {
    let normal = |arch: &str| -> String {
        match arch {
            "arm64" => "aarch64".to_string(),
            "i386" | "i486" | "i586" | "i686" => "x86".to_string(),
            a if a.starts_with("armv7") => "armv7".to_string(),
            a => a.to_string(),
        }
    };
    let target_arch = target.split('-').next().unwrap_or_default();
    normal(machine) == normal(target_arch)
}

/// The architecture part of a target triple for a machine's `uname -m`.
fn musl_arch(machine: &str) -> &str {
    match machine {
        "arm64" => "aarch64",
        a => a,
    }
}

/// "2.36" as numbers, for comparing.
fn version(text: &str) -> Vec<u32> {
    text.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// What a failed login says, as the fix for it.
fn login_problem(host: &Host, error: &str) -> String {
    let Some(ssh) = &host.ssh else {
        return error.to_string();
    };
    let (user, address, port) = (&ssh.user, &ssh.address, ssh.port);
    if error.contains("Permission denied") {
        format!(
            "the login as {user} with {} was refused: put the key's public half in \
             ~{user}/.ssh/authorized_keys there (ssh-copy-id -i {}.pub -p {port} \
             {user}@{address}), or fix `user` and `identity_file` in the inventory",
            ssh.key_file.display(),
            ssh.key_file.display()
        )
    } else if error.contains("Host key verification failed") {
        format!(
            "its SSH host key is not the one the inventory pins (host_key): if the machine was \
             reinstalled, put its new key there (ssh-keyscan -p {port} {address}); otherwise \
             something else answers at that address"
        )
    } else if error.contains("Connection refused") {
        format!("nothing accepts SSH at {address} port {port}: start sshd there, or fix `port` in the inventory")
    } else {
        let why = match error.rsplit(": ").next().unwrap_or(error).trim() {
            "" => "the connection closed without a word",
            why => why,
        };
        format!(
            "it cannot be reached at {address} port {port} ({why}): check the address, that the \
             machine is up, and that port {port} is open to this machine"
        )
    }
}

/// Checks every host's machine at once: it accepts the login, sudo needs no password, it uses
/// apt and runs systemd, the host's ports are free there, and a service host can run what is
/// built here. Returns the hosts with the address their connections come from; or one error
/// listing every problem of every machine, each with its fix.
pub fn check(settings: &Settings, needs: &Needs, hosts: Vec<Host>) -> Result<Vec<Host>> {
    // Connections go to the database hosts: the route there says where they come from.
    let route_to = hosts
        .iter()
        .find(|h| h.role.runs_database())
        .map_or(String::new(), |h| h.address.clone());
    let answers: Vec<Result<Facts, String>> = std::thread::scope(|scope| {
        let running: Vec<_> = hosts
            .iter()
            .map(|host| {
                let script = Script::new("machine-check", MACHINE_CHECK)
                    .param("ADDRESS", host.address.clone())
                    .param(
                        "PORTS",
                        ports(settings, host)
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                    .param("ROUTE_TO", route_to.clone());
                scope.spawn(move || {
                    // A machine that has just booted, or a busy one, may drop a first login:
                    // only what would fail again (a refused key, a changed host key) is
                    // believed at once.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let error = match transport::probe(host, &script) {
                            Ok(out) => return Ok(Facts::parse(&out)),
                            Err(e) => format!("{e:#}"),
                        };
                        let lasting = error.contains("Permission denied")
                            || error.contains("Host key verification failed");
                        if lasting || attempts == CHECK_ATTEMPTS {
                            return Err(login_problem(host, &error));
                        }
                        std::thread::sleep(Duration::from_secs(2));
                    }
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the check panicked".into()))
            })
            .collect()
    });
    let mut report = Vec::new();
    let mut checked = Vec::new();
    for (mut host, answer) in hosts.into_iter().zip(answers) {
        let place = format!("{} ({})", host.name, transport::describe(&host));
        match answer {
            Err(why) => report.push(format!("- {place}: {why}")),
            Ok(facts) => {
                for why in problems(settings, needs, &host, &facts) {
                    report.push(format!("- {place}: {why}"));
                }
                host.connects_from = facts.source.filter(|s| *s != host.address);
            }
        }
        checked.push(host);
    }
    if !report.is_empty() {
        bail!(
            "{} of the machines cannot be used yet; nothing was recorded. Fix these, then run \
             the same command again:\n{}",
            if report.len() == 1 { "one" } else { "some" },
            report.join("\n")
        );
    }
    Ok(checked)
}

/// What teardown did on one machine.
pub enum Cleaned {
    /// What it removed (units, processes, accounts, folders), one line each.
    Removed(Vec<String>),
    /// The machine could not be reached: nothing there was touched.
    Unreachable(String),
}

/// Removes what the deployment made on each host's machine, all machines at once: the host's
/// unit (stopped, disabled, deleted), any process of it still running, the service's own
/// account, the host's folder, and the deployment's folder once empty. Packages stay.
pub fn clean(d: &Deployment) -> Vec<(Host, Cleaned)> {
    clean_hosts(&d.hosts)
}

/// The same for some hosts only (the ones `scale` took out).
pub fn clean_hosts(hosts: &[Host]) -> Vec<(Host, Cleaned)> {
    let grace = "60".to_string();
    std::thread::scope(|scope| {
        let running: Vec<_> = hosts
            .iter()
            .map(|host| {
                let service = crate::cluster::services::binary_name(host.role).unwrap_or("");
                let account = if service.is_empty() {
                    String::new()
                } else {
                    format!("dbcluster-{service}")
                };
                let script = Script::new("machine-clean", MACHINE_CLEAN)
                    .param("HOST_DIR", host.dir.display().to_string())
                    .param("UNIT_NAME", crate::cluster::process::unit_name(host))
                    .param("SERVICE", service)
                    .param("ACCOUNT", account)
                    .param("GRACE", grace.clone());
                scope.spawn(move || match transport::run_script(host, &script, b"") {
                    Ok(out) => Cleaned::Removed(out.lines().map(str::to_string).collect()),
                    Err(e) => Cleaned::Unreachable(format!("{e:#}")),
                })
            })
            .collect();
        hosts
            .iter()
            .cloned()
            .zip(running)
            .map(|(host, t)| {
                let cleaned = t
                    .join()
                    .unwrap_or_else(|_| Cleaned::Unreachable("the cleaning panicked".into()));
                (host, cleaned)
            })
            .collect()
    })
}

/// Removes what this machine kept of a deployment's machines: the logs of the commands run
/// there and their pinned host keys (and the state folder once empty).
pub fn forget(paths: &Paths) -> Result<()> {
    let state = paths.state_dir();
    let logs = state.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs).with_context(|| format!("removing {}", logs.display()))?;
    }
    std::fs::remove_file(state.join("known_hosts")).ok();
    std::fs::remove_dir(&state).ok();
    Ok(())
}

/// What teardown leaves on machines the deployment does not own: the packages it installed
/// (with the account and the disabled service they bring), said with the command that removes
/// them.
pub fn left_behind(d: &Deployment) -> String {
    if d.installed.is_empty() {
        return "no package was installed by the deployment: the machines had what it needed"
            .to_string();
    }
    let mut by_packages: Vec<(&Vec<String>, Vec<&str>)> = Vec::new();
    for (host, packages) in &d.installed {
        match by_packages.iter_mut().find(|(p, _)| *p == packages) {
            Some((_, hosts)) => hosts.push(host),
            None => by_packages.push((packages, vec![host])),
        }
    }
    let each: Vec<String> = by_packages
        .iter()
        .map(|(packages, hosts)| format!("{} on {}", packages.join(" "), hosts.join(", ")))
        .collect();
    let mut all: Vec<&str> = d.installed.values().flatten().map(String::as_str).collect();
    all.sort();
    all.dedup();
    let server = match all.contains(&"mariadb-server") {
        true => {
            ", with the mysql account mariadb-server made and its own mariadb.service, stopped \
             and disabled"
        }
        false => "",
    };
    format!(
        "packages stay on the machines: the deployment installed {}{server}; `sudo apt-get \
         purge {}` on a machine removes them",
        each.join("; "),
        all.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ProviderKind;

    fn host(role: Role) -> Host {
        Host {
            name: role.to_string(),
            role,
            address: "10.0.0.5".into(),
            dir: "/var/lib/dbcluster/x".into(),
            ssh: Some(SshEndpoint {
                address: "203.0.113.5".into(),
                port: 22,
                user: "ops".into(),
                key_file: "/keys/lab".into(),
                known_hosts: "/k".into(),
                host_keys_pinned: false,
                sudo: true,
                log_file: "/l".into(),
            }),
            connects_from: None,
        }
    }

    fn good() -> Facts {
        Facts::parse(
            "sudo=ok\napt=1\nos=Debian GNU/Linux 12 (bookworm)\narch=x86_64\nglibc=2.36\n\
             systemd=1\npid1=systemd\nsource=10.0.0.5\n",
        )
    }

    fn needs() -> Needs {
        Needs {
            target: "x86_64-unknown-linux-gnu".into(),
            glibc: Some("2.36".into()),
        }
    }

    #[test]
    fn a_good_machine_has_no_problem() {
        let settings = Settings::defaults(ProviderKind::Local);
        assert_eq!(good().glibc.as_deref(), Some("2.36"));
        assert_eq!(good().source.as_deref(), Some("10.0.0.5"));
        for role in [Role::Manager, Role::Proxy] {
            assert!(problems(&settings, &needs(), &host(role), &good()).is_empty());
        }
    }

    #[test]
    fn each_problem_says_its_fix() {
        let settings = Settings::defaults(ProviderKind::Local);
        let said = |role: Role, change: &dyn Fn(&mut Facts), needs: &Needs| -> String {
            let mut facts = good();
            change(&mut facts);
            let found = problems(&settings, needs, &host(role), &facts);
            assert_eq!(found.len(), 1, "{found:?}");
            found[0].clone()
        };
        let n = needs();
        assert!(said(Role::Worker, &|f| f.sudo = "password".into(), &n)
            .contains("`ops ALL=(ALL) NOPASSWD:ALL`"));
        assert!(said(Role::Worker, &|f| f.sudo = "absent".into(), &n).contains("install sudo"));
        assert!(said(
            Role::Worker,
            &|f| {
                f.apt = false;
                f.os = "Fedora Linux 40".into()
            },
            &n
        )
        .contains("not an apt-based system (Fedora Linux 40)"));
        assert!(said(
            Role::Worker,
            &|f| {
                f.systemd = false;
                f.pid1 = "bash".into()
            },
            &n
        )
        .contains("process 1 is bash"));
        let taken = said(
            Role::Worker,
            &|f| f.taken = vec![(3306, "mariadbd".into())],
            &n,
        );
        assert!(
            taken.contains("10.0.0.5:3306 is already taken by mariadbd")
                && taken.contains("--db-port"),
            "{taken}"
        );
        assert!(said(
            Role::Gatekeeper,
            &|f| f.taken = vec![(8080, String::new())],
            &n
        )
        .contains("(--service-port)"));
        // What is built here runs on the service hosts only.
        let arm = |f: &mut Facts| f.arch = "aarch64".into();
        assert!(said(Role::Proxy, &arm, &n).contains("--target aarch64-unknown-linux-musl"));
        let mut facts = good();
        arm(&mut facts);
        assert!(problems(&settings, &n, &host(Role::Manager), &facts).is_empty());
        let old = said(Role::Proxy, &|f| f.glibc = Some("2.31".into()), &n);
        assert!(
            old.contains("glibc 2.31, older than this machine's 2.36"),
            "{old}"
        );
        let musl = Needs {
            target: "x86_64-unknown-linux-musl".into(),
            glibc: None,
        };
        let mut facts = good();
        facts.glibc = Some("2.31".into());
        assert!(problems(&settings, &musl, &host(Role::Proxy), &facts).is_empty());
        // A Galera node needs its group's ports too.
        assert_eq!(
            ports(&settings, &host(Role::Node)),
            [3306, 4567, 4568, 4444]
        );
        assert_eq!(ports(&settings, &host(Role::Proxy)), [8080, 8081]);
    }

    #[test]
    fn teardown_says_which_packages_stay_where() {
        let settings = Settings::defaults(ProviderKind::Local);
        let mut d = Deployment::new("dbc-t".into(), settings, vec![]);
        assert!(left_behind(&d).starts_with("no package was installed"));
        let server = vec![
            "mariadb-client".to_string(),
            "mariadb-server".to_string(),
            "sysbench".to_string(),
        ];
        d.installed.insert("manager".into(), server.clone());
        d.installed.insert("proxy".into(), vec!["sysbench".into()]);
        d.installed.insert("worker-1".into(), server);
        assert_eq!(
            left_behind(&d),
            "packages stay on the machines: the deployment installed mariadb-client \
             mariadb-server sysbench on manager, worker-1; sysbench on proxy, with the mysql \
             account mariadb-server made and its own mariadb.service, stopped and disabled; \
             `sudo apt-get purge mariadb-client mariadb-server sysbench` on a machine removes \
             them"
        );
    }

    #[test]
    fn architectures_match_their_targets() {
        assert!(same_arch("x86_64", "x86_64-unknown-linux-musl"));
        assert!(same_arch("arm64", "aarch64-unknown-linux-gnu"));
        assert!(same_arch("i686", "i686-unknown-linux-gnu"));
        assert!(same_arch("armv7l", "armv7-unknown-linux-gnueabihf"));
        assert!(!same_arch("i686", "x86_64-unknown-linux-gnu"));
        assert!(!same_arch("aarch64", "x86_64-unknown-linux-gnu"));
        assert!(version("2.9") < version("2.36"));
    }

    #[test]
    fn a_failed_login_is_told_apart() {
        let h = host(Role::Manager);
        assert!(login_problem(&h, "ssh to ops@203.0.113.5 (port 22) failed: ops@203.0.113.5: Permission denied (publickey).")
            .contains("ssh-copy-id -i /keys/lab.pub -p 22 ops@203.0.113.5"));
        assert!(login_problem(&h, "failed: Host key verification failed.").contains("ssh-keyscan"));
        assert!(login_problem(
            &h,
            "ssh: connect to host 203.0.113.5 port 22: Connection refused"
        )
        .contains("start sshd there"));
        let silent = login_problem(
            &h,
            "ssh: connect to host 203.0.113.5 port 22: Connection timed out",
        );
        let closed = login_problem(&h, "ssh to ops@203.0.113.5 (port 22) failed: ");
        assert!(
            closed.contains("(the connection closed without a word)"),
            "{closed}"
        );
        assert!(
            silent.contains("cannot be reached at 203.0.113.5 port 22 (Connection timed out)"),
            "{silent}"
        );
    }
}
