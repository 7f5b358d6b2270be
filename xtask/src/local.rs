//! The local provider: every host is a loopback address on this machine with its own folder,
//! and the provider-neutral scripts run under bash as the current user.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::render::Script;
use crate::state::{Host, ProcessRecord, Role, Settings};

/// The address local clients connect from: Linux routes 127.0.0.0/8 with `src 127.0.0.1`, so a
/// connection to any loopback host comes from there, and the database accounts are bound to it.
pub const CLIENT_ADDRESS: &str = "127.0.0.1";

/// The hosts of a deployment: standalone, manager, the workers, then the three services,
/// on consecutive addresses from `<prefix>.2`.
pub fn plan_hosts(settings: &Settings, state_dir: &Path) -> Vec<Host> {
    let mut roles = vec![
        (Role::Standalone, "standalone".to_string()),
        (Role::Manager, "manager".to_string()),
    ];
    roles.extend((1..=settings.workers).map(|i| (Role::Worker, format!("worker-{i}"))));
    roles.push((Role::Proxy, "proxy".to_string()));
    roles.push((Role::TrustedHost, "trusted-host".to_string()));
    roles.push((Role::Gatekeeper, "gatekeeper".to_string()));
    roles
        .into_iter()
        .enumerate()
        .map(|(i, (role, name))| Host {
            address: format!("{}.{}", settings.loopback_prefix, i + 2),
            dir: state_dir.join(&name),
            ssh: None,
            name,
            role,
        })
        .collect()
}

pub fn port_of(host: &Host, settings: &Settings) -> u16 {
    if host.role.runs_database() {
        settings.db_port
    } else {
        settings.service_port
    }
}

/// Fails, naming the address, when something already listens where a host will.
pub fn check_free(host: &Host, port: u16) -> Result<()> {
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

pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Runs a script for a host of this machine, feeding it `stdin`; returns what it printed. A failure carries the
/// script's error output. The script dies with this process (a killed xtask leaves no half-done
/// script behind); what it starts detached, like a database server, lives on.
pub fn run_script(host: &Host, script: &Script, stdin: &[u8]) -> Result<String> {
    create_dir(&host.dir)?;
    let output = dies_with_us(duct::cmd("bash", ["-c", &script.text()]))
        .dir(&host.dir)
        .stdin_bytes(stdin)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("starting bash for {} on {}", script.name(), host.name))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{} on {} failed ({}): {}",
            script.name(),
            host.name,
            output.status,
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(address: &str, port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::Read;
    use std::net::{SocketAddr, TcpStream};
    let addr: SocketAddr = format!("{address}:{port}")
        .parse()
        .context("a host address")?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response from {addr}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Makes a command die with this process: a killed xtask leaves no half-done work running
/// that a rerun would collide with. What the command itself starts detached lives on.
pub fn dies_with_us(command: duct::Expression) -> duct::Expression {
    command.before_spawn(|command| {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(())
    })
}

/// Start time of a process in clock ticks since boot, or None when there is no such process
/// (or only its zombie, which no longer does anything).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub fn record_process(pid: u32, program: &str) -> Result<ProcessRecord> {
    let start_ticks = start_ticks(pid)
        .with_context(|| format!("{program} (pid {pid}) exited right after it started"))?;
    Ok(ProcessRecord {
        pid,
        start_ticks,
        program: program.to_string(),
    })
}

/// True when the recorded process is still the one we started (same pid and start time).
pub fn is_running(record: &ProcessRecord) -> bool {
    start_ticks(record.pid) == Some(record.start_ticks)
}

/// Processes whose command line has `arg` as one of its arguments.
pub fn find_processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .filter(|pid| start_ticks(*pid).is_some())
        .collect()
}

/// Stops a process we started: SIGTERM, then SIGKILL if it has not exited in `grace`.
/// Does nothing when the pid now belongs to another process.
pub fn stop(record: &ProcessRecord, grace: Duration) -> Result<()> {
    let signal = |sig| {
        if is_running(record) {
            // SAFETY: kill has no memory effects; the pid was checked to be ours just before.
            unsafe { libc::kill(record.pid as i32, sig) };
        }
    };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while is_running(record) {
        if Instant::now() >= deadline {
            signal(libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_running(record) {
                if Instant::now() >= deadline {
                    bail!(
                        "{} (pid {}) did not exit after SIGKILL",
                        record.program,
                        record.pid
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_consecutive_addresses_and_their_own_folders() {
        let settings = Settings {
            workers: 2,
            loopback_prefix: "127.0.9".into(),
            ..Settings::default()
        };
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
        assert_eq!(port_of(&hosts[1], &settings), 3306);
        assert_eq!(port_of(&hosts[6], &settings), 8080);
    }

    #[test]
    fn process_identity_survives_only_while_the_process_does() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let record = record_process(child.id(), "sleep").unwrap();
        assert!(is_running(&record));
        let other = ProcessRecord {
            start_ticks: record.start_ticks + 1,
            ..record.clone()
        };
        assert!(!is_running(&other), "a reused pid must not count as ours");
        stop(&other, Duration::from_millis(100)).unwrap();
        assert!(
            is_running(&record),
            "stop must not touch a process that is not ours"
        );
        stop(&record, Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
        assert!(!is_running(&record));
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
        };
        let err = format!("{:#}", check_free(&host, port).unwrap_err());
        assert!(
            err.contains(&format!("127.0.9.77:{port} (for manager) is not free")),
            "{err}"
        );
        drop(listener);
    }
}
