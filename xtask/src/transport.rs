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

/// Places a file in a host's folder, readable by its owner only (it may hold secrets), or
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

const PUT_FILE: &str = "umask 077\ncat > \".$NAME.new\"\nchmod \"$MODE\" \".$NAME.new\"\nmv -f \".$NAME.new\" \"$NAME\"\n";

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
    let record = parse_identity(&out, program)
        .with_context(|| format!("{} on {} printed no process: {out:?}", script.name(), host.name))?;
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
}
