//! The remote-host transport: the system `ssh` and `scp`, driven with duct.
//!
//! Every connection is non-interactive (BatchMode), trusts host keys through a known_hosts file
//! of the deployment's own (accept-new: the first key seen is pinned, a changed one refused),
//! reuses one master connection per host (ControlMaster), and gives up on a dead peer after a
//! bounded time. What each command printed is appended to the host's log file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::local;
use crate::state::SshEndpoint;

/// How long one attempt to open a connection may take.
const CONNECT_TIMEOUT_SECONDS: u64 = 10;
/// ssh's own exit status when it could not connect or lost the connection; anything else is
/// the remote command's.
const SSH_FAILED: i32 = 255;

/// What a remote command left: its exit status and output.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl SshEndpoint {
    /// `user@address`, as people and error messages name the host.
    pub fn target(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }

    fn options(&self, connect_timeout: u64) -> Vec<String> {
        let control_dir = control_dir();
        [
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            format!("IdentityFile={}", self.key_file.display()),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            format!(
                "StrictHostKeyChecking={}",
                if self.host_keys_pinned {
                    "yes"
                } else {
                    "accept-new"
                }
            ),
            format!("ConnectTimeout={connect_timeout}"),
            // A peer that stops answering is given up after about a minute.
            "ServerAliveInterval=15".to_string(),
            "ServerAliveCountMax=4".to_string(),
            "ControlMaster=auto".to_string(),
            // %C is a hash of the connection's parameters: short enough for a socket path. The
            // known_hosts file is one of them to us: a master opened while checking a machine
            // against another file must not carry logins whose host key this file never saw.
            format!(
                "ControlPath={}/{:016x}-%C",
                control_dir.display(),
                fingerprint(&self.known_hosts.display().to_string())
            ),
            "ControlPersist=60".to_string(),
            "LogLevel=ERROR".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    /// Runs a shell command on the host, feeding it `stdin`. A failure to connect is an error;
    /// the command's own exit status is returned for the caller to judge.
    pub fn run(&self, command: &str, stdin: &[u8]) -> Result<Output> {
        self.run_within(command, stdin, CONNECT_TIMEOUT_SECONDS)
    }

    fn run_within(&self, command: &str, stdin: &[u8], connect_timeout: u64) -> Result<Output> {
        self.prepare()?;
        let mut args = self.options(connect_timeout);
        args.extend([
            "-p".to_string(),
            self.port.to_string(),
            self.target(),
            "--".to_string(),
            command.to_string(),
        ]);
        let output = local::dies_with_us(duct::cmd("ssh", &args))
            .stdin_bytes(stdin)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("starting ssh (install the openssh-client package)")?;
        let status = output.status.code().unwrap_or(SSH_FAILED);
        self.log(command, status, &output.stdout, &output.stderr);
        if status == SSH_FAILED {
            bail!(
                "ssh to {} (port {}) failed: {}",
                self.target(),
                self.port,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Output {
            status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    /// Runs a command that must succeed; its stdout is returned, its stderr is in the error.
    pub fn check(&self, what: &str, command: &str, stdin: &[u8]) -> Result<String> {
        let output = self.run(command, stdin)?;
        if output.status != 0 {
            bail!(
                "{what} on {} failed (exit status {}): {}",
                self.target(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Copies `remote` (a file, or a folder with everything in it) to `local`.
    pub fn download(&self, remote: &str, local: &Path) -> Result<()> {
        self.scp(
            format!("{}:{remote}", self.target()),
            local.display().to_string(),
        )
    }

    fn scp(&self, from: String, to: String) -> Result<()> {
        self.prepare()?;
        let mut args = self.options(CONNECT_TIMEOUT_SECONDS);
        args.extend(["-P".to_string(), self.port.to_string(), "-r".to_string()]);
        args.extend([from.clone(), to.clone()]);
        let output = local::dies_with_us(duct::cmd("scp", &args))
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("starting scp (install the openssh-client package)")?;
        let status = output.status.code().unwrap_or(SSH_FAILED);
        self.log(
            &format!("scp {from} {to}"),
            status,
            &output.stdout,
            &output.stderr,
        );
        if status != 0 {
            bail!(
                "copying {from} to {to} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Waits until the host accepts a login (a new instance's sshd comes up late), retrying
    /// until `timeout` has passed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let error = match self.run_within("true", b"", left.clamp(1, CONNECT_TIMEOUT_SECONDS)) {
                Ok(o) if o.status == 0 => return Ok(()),
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} did not accept an SSH login within {} s: {error}. Check that the host is \
                     up, that port {} is open to this machine, and that {} is the deployment's key",
                    self.target(),
                    timeout.as_secs(),
                    self.port,
                    self.key_file.display()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The folders ssh writes into but does not make: the master sockets' and known_hosts'.
    fn prepare(&self) -> Result<()> {
        private_dir(&control_dir())?;
        match self.known_hosts.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => local::create_dir(dir),
            _ => Ok(()),
        }
    }

    /// Appends a command and what it printed to the host's log; a log that cannot be written
    /// must not fail the work it describes.
    fn log(&self, command: &str, status: i32, stdout: &[u8], stderr: &[u8]) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.log_file.parent() {
                fs::create_dir_all(dir)?;
            }
            // Owner-only: a failing command's output may quote what it was given.
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.log_file)?;
            // Only the first line of a command: scripts are long, their names are in that line.
            let first = command.lines().next().unwrap_or_default();
            writeln!(f, "--- {} $ {first} (exit {status})", crate::state::now())?;
            f.write_all(stdout)?;
            f.write_all(stderr)
        };
        if let Err(e) = write() {
            eprintln!("warning: could not write {}: {e}", self.log_file.display());
        }
    }
}

/// A short name for a text, the same in every run of this xtask.
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Makes `dir` private to this user (0700), or checks that it already is: whoever can write
/// in the master sockets' folder could put a socket there that runs our commands on a host
/// of theirs, or use ours.
fn private_dir(dir: &Path) -> Result<()> {
    local::create_dir(dir)?;
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{} must be a folder of this user (uid {uid}) that nobody else can open; it is {} \
             owned by uid {} with mode {:o}. Remove it (it holds only SSH master sockets) and \
             run again",
            dir.display(),
            if meta.is_dir() {
                "a folder"
            } else {
                "not a folder"
            },
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// The master connections' sockets: private to this user, and short enough for a socket path.
fn control_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("xtask-ssh-{uid}"))
}

#[cfg(test)]
#[path = "../../tests/common/sshd.rs"]
#[allow(dead_code)] // the end-to-end tests use the rest of it
pub mod sshd;

#[cfg(test)]
pub mod tests {
    use super::*;
    use sshd::Sshd;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-ssh-{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        dir
    }

    pub fn endpoint(sshd: &Sshd, dir: &Path) -> SshEndpoint {
        SshEndpoint {
            address: "127.0.0.1".into(),
            port: sshd.port,
            user: sshd.user.clone(),
            key_file: sshd.key.clone(),
            // In a folder that does not exist yet, as .state/ before the first login.
            known_hosts: dir.join("state/known_hosts"),
            host_keys_pinned: false,
            sudo: false,
            log_file: dir.join("logs/host.log"),
        }
    }

    #[test]
    fn runs_commands_copies_files_and_reports_failures() {
        let dir = scratch("transport");
        let sshd = Sshd::start(&dir.join("sshd"));
        let ssh = endpoint(&sshd, &dir);
        // First, while no master connection exists that a second login would reuse.
        // a key the server does not know is refused with ssh's reason.
        let stranger = SshEndpoint {
            key_file: dir.join("sshd/host_key"),
            ..ssh.clone()
        };
        let err = format!("{:#}", stranger.run("true", b"").unwrap_err());
        assert!(err.contains("Permission denied"), "{err}");
        ssh.wait_ready(Duration::from_secs(20)).unwrap();

        // A command with input, output on both streams and the exit status.
        let out = ssh
            .run("read line; echo \"got $line\"; echo note >&2", b"hello\n")
            .unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "note\n");
        let err = ssh
            .check("the probe", "echo broken pipe dream >&2; exit 3", b"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status 3"), "{err}");
        assert!(err.contains("broken pipe dream"), "{err}");

        // The host key was pinned on first contact; the log has every command.
        let known = fs::read_to_string(&ssh.known_hosts).unwrap();
        assert!(known.contains("ssh-ed25519"), "{known}");
        let log = fs::read_to_string(&ssh.log_file).unwrap();
        assert!(
            log.contains("(exit 3)") && log.contains("broken pipe dream"),
            "{log}"
        );

        // Download a file and a whole folder (uploads go through the scripts' stdin: see
        // transport's tests).
        let remote = dir.join("remote");
        fs::create_dir_all(remote.join("sub")).unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(remote.join("sub/payload.bin"), &payload).unwrap();
        let back = dir.join("back");
        ssh.download(&remote.display().to_string(), &back).unwrap();
        assert_eq!(fs::read(back.join("sub/payload.bin")).unwrap(), payload);
        ssh.download(
            &remote.join("sub/payload.bin").display().to_string(),
            &dir.join("one.bin"),
        )
        .unwrap();
        assert_eq!(fs::read(dir.join("one.bin")).unwrap(), payload);
        let err = ssh
            .download("/nonexistent/xtask-file", &dir.join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("No such file"), "{err}");

        drop(sshd);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_sockets_folder_must_be_private() {
        let dir = scratch("private");
        let sockets = dir.join("sockets");
        private_dir(&sockets).unwrap();
        assert_eq!(fs::metadata(&sockets).unwrap().mode() & 0o777, 0o700);
        private_dir(&sockets).unwrap();
        fs::set_permissions(&sockets, fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_dir(&sockets).unwrap_err().to_string();
        assert!(err.contains("with mode 755"), "{err}");
        fs::set_permissions(&sockets, fs::Permissions::from_mode(0o700)).unwrap();
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&sockets, Some(65534), None).unwrap();
            let err = private_dir(&sockets).unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534"), "{err}");
        }
        let file = dir.join("file");
        fs::write(&file, "").unwrap();
        let err = private_dir(&file).unwrap_err().to_string();
        assert!(
            err.contains("creating") || err.contains("not a folder"),
            "{err}"
        );
        fs::remove_dir_all(&dir).ok();
    }

    /// With the host's keys pinned from elsewhere, a login checks them strictly: the right
    /// key gets in, any other is refused, and nothing is added to known_hosts.
    #[test]
    fn pinned_host_keys_are_checked_strictly() {
        let dir = scratch("pinned");
        let sshd = Sshd::start(&dir.join("sshd"));
        let host_key = fs::read_to_string(dir.join("sshd/host_key.pub")).unwrap();
        let pinned = SshEndpoint {
            host_keys_pinned: true,
            ..endpoint(&sshd, &dir)
        };
        fs::create_dir_all(pinned.known_hosts.parent().unwrap()).unwrap();
        let other = dir.join("other_key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .unwrap();
        assert!(made.success());
        let wrong = fs::read_to_string(other.with_extension("pub")).unwrap();
        let wrong = wrong.trim();
        let line = |key: &str| format!("[127.0.0.1]:{} {key}\n", sshd.port);
        for known in [String::new(), line(wrong)] {
            fs::write(&pinned.known_hosts, &known).unwrap();
            let err = format!("{:#}", pinned.run("true", b"").unwrap_err());
            assert!(err.contains("Host key verification failed"), "{err}");
            assert_eq!(fs::read_to_string(&pinned.known_hosts).unwrap(), known);
        }
        fs::write(&pinned.known_hosts, line(host_key.trim())).unwrap();
        let out = pinned.run("echo in", b"").unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");
        assert_eq!(
            fs::read_to_string(&pinned.known_hosts).unwrap(),
            line(host_key.trim())
        );
        drop(sshd);
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_host_that_does_not_answer_times_out_with_a_clear_error() {
        let dir = scratch("silent");
        // Accepts connections (the kernel does) but never speaks SSH.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ssh = SshEndpoint {
            address: "127.0.0.1".into(),
            port: silent.local_addr().unwrap().port(),
            user: "nobody".into(),
            key_file: dir.join("no_key"),
            known_hosts: dir.join("known_hosts"),
            host_keys_pinned: false,
            sudo: false,
            log_file: dir.join("host.log"),
        };
        let started = Instant::now();
        let err = ssh
            .wait_ready(Duration::from_secs(3))
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("did not accept an SSH login within 3 s"),
            "{err}"
        );
        assert!(err.contains("timed out"), "{err}");
        fs::remove_dir_all(&dir).ok();
    }
}
