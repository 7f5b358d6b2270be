//! How the steps reach a host: a host with an SSH endpoint is remote (the scripts run there,
//! through sudo when the login is not root); any other is this machine (the scripts run under
//! bash here). The scripts and files are the same either way.

use anyhow::{bail, Context, Result};

use crate::local;
use crate::render::{shell_quote, Script};
use crate::state::{Host, ProcessRecord};
use crate::steps::Session;

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

/// Places a file in a host's folder (`name` may have folders in it), readable by its owner only (it may hold secrets), or
/// executable by its owner. It is written beside and renamed over, so a running binary or a
/// reader never sees half a file.
pub fn put_file(host: &Host, name: &str, contents: &[u8], executable: bool) -> Result<()> {
    let mode = if executable { "700" } else { "600" };
    let script = Script::new("put-file", PUT_FILE)
        .param("NAME", name)
        .param("MODE", mode);
    run_script(host, &script, contents)
        .map(drop)
        .with_context(|| format!("placing {name} on {}", host.name))
}

const PUT_FILE: &str = include_str!("../scripts/put-file.sh");

/// Copies every folder in a remote host's folder (the bench runs, not the files beside them,
/// which hold passwords) into `local`, which must not exist yet. The folders are owned by root
/// there: a script first copies them to the login user's home, from where scp fetches them.
pub fn fetch_folders(host: &Host, local: &std::path::Path) -> Result<()> {
    let ssh = host
        .ssh
        .as_ref()
        .with_context(|| format!("{} is not a remote host", host.name))?;
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

const STAGE_FOLDERS: &str = include_str!("../scripts/stage-folders.sh");

/// Runs a start script that prints the identity of the process it started (or found already
/// running), and records that process in data.json under `key` at once.
pub fn start_and_record(
    session: &mut Session,
    host: &Host,
    script: &Script,
    key: String,
    program: &str,
) -> Result<()> {
    let out = run_script(host, script, b"")?;
    let record = parse_identity(&out, program).with_context(|| {
        format!(
            "{} on {} printed no process: {out:?}",
            script.name(),
            host.name
        )
    })?;
    session.deployment.processes.insert(key, record);
    session.save()
}

/// Reads the `pid=<pid> start_ticks=<ticks>` line of the scripts' report_process.
fn parse_identity(out: &str, program: &str) -> Option<ProcessRecord> {
    let line = out.lines().find(|l| l.starts_with("pid="))?;
    let mut pid = None;
    let mut start_ticks = None;
    for field in line.split_whitespace() {
        match field.split_once('=')? {
            ("pid", v) => pid = v.parse().ok(),
            ("start_ticks", v) => start_ticks = v.parse().ok(),
            _ => {}
        }
    }
    Some(ProcessRecord {
        pid: pid?,
        start_ticks: start_ticks?,
        program: program.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_identity_a_start_script_reports() {
        let script = Script::new(
            "t",
            "sleep 30 < /dev/null > /dev/null 2>&1 &\nreport_process \"$!\"\n",
        );
        let host = Host {
            name: "here".into(),
            role: crate::state::Role::Proxy,
            address: "127.0.0.1".into(),
            dir: std::env::temp_dir(),
            ssh: None,
        };
        let out = run_script(&host, &script, b"").unwrap();
        let record = parse_identity(&out, "sleep").unwrap();
        assert!(local::is_running(&record), "{out}");
        local::stop(&record, std::time::Duration::from_secs(5)).unwrap();
        assert!(!local::is_running(&record));
        assert_eq!(parse_identity("pid=12\n", "x"), None);
        assert_eq!(parse_identity("nothing", "x"), None);
    }

    #[test]
    fn scripts_and_files_go_over_ssh() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-transport-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let sshd = crate::ssh::sshd::Sshd::start(&dir.join("sshd"));
        let host = Host {
            name: "remote".into(),
            role: crate::state::Role::Proxy,
            address: "127.0.0.1".into(),
            dir: dir.join("host"),
            ssh: Some(crate::ssh::tests::endpoint(&sshd, &dir)),
        };

        // A script runs in the host's folder (made on first use) with its parameters and input.
        let script = Script::new(
            "greet",
            "read -r name\necho \"$GREETING $name from $PWD\"\n",
        )
        .param("GREETING", "hello 'quoted' $world");
        let out = run_script(&host, &script, b"Ada\n").unwrap();
        assert_eq!(
            out,
            format!("hello 'quoted' $world Ada from {}\n", host.dir.display())
        );
        let err = run_script(&host, &Script::new("fails", "echo nope >&2; exit 4\n"), b"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fails on remote failed (exit status 4): nope"),
            "{err}"
        );

        // Upload: a binary into a subfolder, owner-only and executable.
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
        put_file(&host, "run-1/sub/payload.bin", &payload, true).unwrap();
        let placed = host.dir.join("run-1/sub/payload.bin");
        assert_eq!(std::fs::read(&placed).unwrap(), payload);
        let mode = std::fs::metadata(&placed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        put_file(&host, "secret.cfg", b"password=x\n", false).unwrap();

        // Download: the folders come back, the files beside them (secrets) do not.
        let local = dir.join("fetched");
        fetch_folders(&host, &local).unwrap();
        assert_eq!(
            std::fs::read(local.join("run-1/sub/payload.bin")).unwrap(),
            payload
        );
        assert!(!local.join("secret.cfg").exists());
        drop(sshd);
        std::fs::remove_dir_all(&dir).ok();
    }
}
