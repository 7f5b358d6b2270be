//! The processes a deployment starts on its hosts: each start script prints the identity of the
//! process it started (or found already running), which data.json records at once. Stopping
//! finds a process by the host's own config on its command line, so what an interrupted run
//! did not get to record is found too.

use anyhow::{Context, Result};

use super::limits;
use crate::state::{Host, ProcessRecord, Session};
use crate::transport::{self, script::Script};

const CPU_SAMPLE: &str = include_str!("../../scripts/cpu-sample.sh");

/// The systemd unit of what runs on a host (its server or its service), where systemd keeps
/// it running.
pub fn unit_name(host: &Host) -> String {
    format!("dbcluster-{}.service", host.name)
}

/// The CPU time (user and system) the host's server or service (`program`: `mariadbd` or the
/// service's binary) has used so far, in seconds.
pub fn cpu_seconds(host: &Host, program: &str) -> Result<f64> {
    let script = Script::new("cpu-sample", CPU_SAMPLE)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("PROGRAM", program);
    let out = transport::run_script(host, &script, b"")?;
    let parse = || -> Option<f64> {
        let mut fields = out.split_whitespace().map(|f| f.parse::<f64>().ok());
        let (ticks, per_second) = (fields.next()??, fields.next()??);
        (per_second > 0.0).then(|| ticks / per_second)
    };
    parse().with_context(|| format!("cpu-sample on {} printed {out:?}", host.name))
}

/// Runs a start script and records the process it reports under `key`. The script runs in the
/// host's cgroup, if it has one, and so does what it starts.
pub fn start_and_record(
    session: &mut Session,
    host: &Host,
    script: Script,
    key: String,
    program: &str,
) -> Result<()> {
    let script = limits::in_group(script, limits::of(&session.deployment, &host.name));
    let out = transport::run_script(host, &script, b"")?;
    // What a start script says the operator should know (how the process runs).
    for note in out.lines().filter_map(|l| l.strip_prefix("note: ")) {
        crate::progress::say(format!("{}: {note}", host.name));
    }
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

/// Runs a stop script and drops the process from the record; returns the pid the script
/// stopped (its stop_process says `stopped pid=<pid>`), None when nothing ran.
pub fn stop_and_forget(
    session: &mut Session,
    host: &Host,
    script: &Script,
    key: &str,
) -> Result<Option<u32>> {
    let out = transport::run_script(host, script, b"")?;
    if session.deployment.processes.remove(key).is_some() {
        session.save()?;
    }
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("stopped pid="))
        .and_then(|pid| pid.trim().parse().ok()))
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

    /// The lifecycle's shell functions on this machine: a process's identity is reported, it
    /// is found by its command line and stopped, and then it is found no more.
    #[test]
    fn identity_find_and_stop() {
        let dir = std::env::temp_dir().join(format!("xtask-process-{}", std::process::id()));
        let host = Host {
            name: "here".into(),
            role: crate::state::Role::Proxy,
            address: "127.0.0.1".into(),
            dir: dir.clone(),
            ssh: None,
            connects_from: None,
        };
        // sleep adds up its arguments: this one's command line is the test's own.
        let marker = format!("0.{}", std::process::id());
        let start = Script::new(
            "t",
            "setsid sleep 300 \"$MARKER\" < /dev/null > /dev/null 2>&1 &\nreport_process \"$!\"\n",
        )
        .param("MARKER", marker.clone());
        let out = transport::run_script(&host, &start, b"").unwrap();
        let record = parse_identity(&out, "sleep").unwrap();
        let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(alive(record.pid), "{out}");
        let stop = Script::new(
            "t",
            "pid=$(find_process sleep 300 \"$MARKER\")\nstop_process \"$pid\" 5\n\
             ! find_process sleep 300 \"$MARKER\"\n",
        )
        .param("MARKER", marker.clone());
        let said = transport::run_script(&host, &stop, b"").unwrap();
        assert_eq!(said.trim(), format!("stopped pid={}", record.pid));
        assert!(!alive(record.pid) || is_zombie(record.pid));
        // Nothing runs with that command line any more: finding it fails.
        let find = Script::new("t", "find_process sleep 300 \"$MARKER\"\n").param("MARKER", marker);
        assert!(transport::run_script(&host, &find, b"").is_err());
        assert_eq!(parse_identity("pid=12\n", "x"), None);
        assert_eq!(parse_identity("nothing", "x"), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    }
}
