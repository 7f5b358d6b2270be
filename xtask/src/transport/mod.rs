//! The transport layer: how a step reaches a host. A host with an SSH endpoint is remote (the
//! scripts run there, through sudo when the login is not root); any other is this machine (the
//! scripts run under bash here). Everything above this layer goes through these functions and
//! never asks which kind of host it has: the scripts and files are the same either way.

pub mod local;
pub mod script;
pub mod ssh;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::state::Host;
use script::{shell_quote, Script};

const PUT_FILE: &str = include_str!("../../scripts/put-file.sh");
const STAGE_FOLDERS: &str = include_str!("../../scripts/stage-folders.sh");

/// How long a new host may take to accept SSH logins.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a script for a host in the host's folder, feeding it `stdin`; returns what it printed.
/// A failure carries the script's error output.
pub fn run_script(host: &Host, script: &Script, stdin: &[u8]) -> Result<String> {
    let Some(ssh) = &host.ssh else {
        return local::run_script(host, script, stdin);
    };
    let dir = shell_quote(&host.dir.display().to_string());
    // The first line names the script: it is what the host's log shows of the command.
    let body = format!(
        "# {} for {}\nmkdir -p -m 700 {dir} && cd {dir}\n{}",
        script.name(),
        host.name,
        script.text()
    );
    let sudo = if ssh.sudo { "sudo -n " } else { "" };
    let output = ssh
        .run(&format!("{sudo}bash -c {}", shell_quote(&body)), stdin)
        .with_context(|| format!("running {} on {}", script.name(), host.name))?;
    printed(host, script, output)
}

/// What a remote script printed, or its failure with what it said on stderr.
fn printed(host: &Host, script: &Script, output: ssh::Output) -> Result<String> {
    if output.status != 0 {
        bail!(
            "{} on {} failed (exit status {}): {}",
            script.name(),
            host.name,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a script on the host's machine as the login user itself (no sudo, no host folder): what
/// a check of the machine must see before it relies on anything there. Returns what it printed.
pub fn probe(host: &Host, script: &Script) -> Result<String> {
    let Some(ssh) = &host.ssh else {
        return local::run_script(host, script, b"");
    };
    let output = ssh.run(&format!("bash -c {}", shell_quote(&script.text())), b"")?;
    printed(host, script, output)
}

/// Places a file in a host's folder (`name` may have folders in it), readable by its owner only
/// (it may hold secrets), or executable by its owner. It is written beside and renamed over, so
/// a running binary or a reader never sees half a file.
pub fn put_file(host: &Host, name: &str, contents: &[u8], executable: bool) -> Result<()> {
    let mode = if executable { "700" } else { "600" };
    let script = Script::new("put-file", PUT_FILE)
        .param("NAME", name)
        .param("MODE", mode);
    run_script(host, &script, contents)
        .map(drop)
        .with_context(|| format!("placing {name} on {}", host.name))
}

/// Copies every folder in a host's folder (the bench runs, not the files beside them, which
/// hold passwords) into `local` on this machine. A remote host's folders are owned by root
/// there: a script first copies them to the login user's home, from where scp fetches them.
pub fn fetch_folders(host: &Host, local: &Path) -> Result<()> {
    let Some(ssh) = &host.ssh else {
        return local::copy_folders(&host.dir, local);
    };
    let staged = run_script(host, &Script::new("stage-folders", STAGE_FOLDERS), b"")?;
    let staged = staged.trim();
    ssh.download(staged, local)
        .with_context(|| format!("fetching the folders of {}", host.name))?;
    ssh.check(
        "removing the staged copy",
        &format!("rm -rf {}", shell_quote(staged)),
        b"",
    )
    .map(drop)
}

/// How a host's server or service is kept running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// A process in a session of its own (hosts that share this machine).
    Detached,
    /// A systemd unit the deployment installs, which starts it at boot and restarts it when
    /// it fails (a machine of its own: an instance, or one from an inventory).
    Systemd,
}

impl Supervisor {
    /// As the scripts' SUPERVISOR parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Supervisor::Detached => "detached",
            Supervisor::Systemd => "systemd",
        }
    }
}

/// How what runs on the host is kept running: a remote host is a machine of its own, whose
/// systemd brings its server or service back after a failure or a reboot; the hosts of this
/// machine run detached.
pub fn supervisor(host: &Host) -> Supervisor {
    match host.ssh {
        Some(_) => Supervisor::Systemd,
        None => Supervisor::Detached,
    }
}

/// Waits until a host can be reached (a new instance's sshd comes up late); this machine
/// always can.
pub fn wait_ready(host: &Host) -> Result<()> {
    match &host.ssh {
        Some(ssh) => ssh.wait_ready(READY_TIMEOUT),
        None => Ok(()),
    }
}

/// The machine a host is on: hosts with the same one share installed packages.
pub fn machine(host: &Host) -> Option<(String, u16)> {
    host.ssh.as_ref().map(|s| (s.address.clone(), s.port))
}

/// How people reach the host's machine: "this machine" or `user@address`.
pub fn describe(host: &Host) -> String {
    host.ssh.as_ref().map_or("this machine".to_string(), |s| {
        format!("ssh {}", s.target())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_files_go_over_ssh() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-transport-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let sshd = ssh::sshd::Sshd::start(&dir.join("sshd"));
        let host = Host {
            name: "remote".into(),
            role: crate::state::Role::Proxy,
            address: "127.0.0.1".into(),
            dir: dir.join("host"),
            ssh: Some(ssh::tests::endpoint(&sshd, &dir)),
            connects_from: None,
        };
        let here = Host {
            ssh: None,
            connects_from: None,
            dir: dir.join("here"),
            ..host.clone()
        };

        for host in [&host, &here] {
            // A script runs in the host's folder (made on first use) with its parameters and
            // input.
            let script = Script::new(
                "greet",
                "read -r name\necho \"$GREETING $name from $PWD\"\n",
            )
            .param("GREETING", "hello 'quoted' $world");
            let out = run_script(host, &script, b"Ada\n").unwrap();
            assert_eq!(
                out,
                format!("hello 'quoted' $world Ada from {}\n", host.dir.display())
            );
            let err = run_script(host, &Script::new("fails", "echo nope >&2; exit 4\n"), b"")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("fails on remote failed (exit status 4): nope"),
                "{err}"
            );

            // Upload: a binary into a subfolder, owner-only and executable.
            let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
            put_file(host, "run-1/sub/payload.bin", &payload, true).unwrap();
            let placed = host.dir.join("run-1/sub/payload.bin");
            assert_eq!(std::fs::read(&placed).unwrap(), payload);
            let mode = std::fs::metadata(&placed).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            put_file(host, "secret.cfg", b"password=x\n", false).unwrap();

            // Download: the folders come back, the files beside them (secrets) do not.
            let local = host.dir.with_extension("fetched");
            fetch_folders(host, &local).unwrap();
            assert_eq!(
                std::fs::read(local.join("run-1/sub/payload.bin")).unwrap(),
                payload
            );
            assert!(!local.join("secret.cfg").exists());
            wait_ready(host).unwrap();
        }
        assert_eq!(describe(&here), "this machine");
        assert!(describe(&host).starts_with("ssh "), "{}", describe(&host));
        drop(sshd);
        std::fs::remove_dir_all(&dir).ok();
    }
}
