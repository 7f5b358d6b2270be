//! A fleet of machines like fresh cloud instances, for the tests of the remote path: Debian 12
//! booted with systemd as process 1 (systemd-nspawn containers that share this machine's
//! network), each with sshd on a loopback address of its own, a login user with passwordless
//! sudo and a key made for the test, and no MariaDB or sysbench installed. The packages the
//! deployment installs are in the image's apt cache, downloaded once when the image is built;
//! each machine still installs them itself. The image is built once per recipe (cached, rebuilt
//! when the recipe changes); each machine boots from a fresh copy of it (an overlay), and the
//! fleet stops and removes its machines when dropped, a failing test's too.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The login user of every machine, with passwordless sudo, as a cloud image's `ubuntu`.
pub const LOGIN: &str = "admin";
/// A second login, whose sudo asks for a password.
pub const PASSWORD_SUDO_LOGIN: &str = "asks";

/// Where the images and the fleets live.
const ROOT: &str = "/var/tmp/xtask-fleet";
/// The packages a deployment installs, downloaded into the image's apt cache (not installed).
const CACHED_PACKAGES: &str = "mariadb-server mariadb-client sysbench galera-4 rsync";

/// The image's recipe: mmdebstrap's arguments, the target folder last. What it holds is a
/// fresh minimal Debian 12 with systemd, sshd, sudo and iproute2, the two logins, no host keys
/// (each machine gets its own) and the cached packages.
fn recipe() -> Vec<String> {
    let hooks = [
        format!("chroot \"$1\" apt-get install --download-only -y -q {CACHED_PACKAGES}"),
        "rm -f \"$1\"/etc/ssh/ssh_host_*".to_string(),
        format!("chroot \"$1\" useradd --create-home --shell /bin/bash --password '*' {LOGIN}"),
        format!("echo '{LOGIN} ALL=(ALL) NOPASSWD:ALL' > \"$1/etc/sudoers.d/{LOGIN}\""),
        format!(
            "chroot \"$1\" useradd --create-home --shell /bin/bash --password '*' \
             {PASSWORD_SUDO_LOGIN}"
        ),
        format!(
            "echo '{PASSWORD_SUDO_LOGIN} ALL=(ALL) ALL' > \"$1/etc/sudoers.d/{PASSWORD_SUDO_LOGIN}\""
        ),
        "chmod 440 \"$1\"/etc/sudoers.d/*".to_string(),
    ];
    let mut args = vec![
        "--variant=minbase".to_string(),
        "--include=systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,procps".to_string(),
        // The package lists and the downloaded packages stay in the image.
        "--skip=cleanup/apt".to_string(),
    ];
    args.extend(hooks.iter().map(|h| format!("--customize-hook={h}")));
    args.push("bookworm".to_string());
    args
}

/// A name for a recipe: the same text gives the same name (with this Rust's hasher; another
/// Rust may build the image once more).
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn run(what: &str, command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (.ci/install-test-deps installs what it needs)"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Holds an exclusive lock on a file while it lives.
struct FileLock(fs::File);

impl FileLock {
    fn take(path: &Path) -> FileLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "locking {}", path.display());
        FileLock(file)
    }
}

/// The image for the current recipe, built if it is not there yet (once, whoever asks first).
fn image() -> PathBuf {
    let root = Path::new(ROOT);
    fs::create_dir_all(root).unwrap();
    let recipe = recipe();
    let image = root.join(format!("image-{:016x}", fingerprint(&recipe.join("\n"))));
    let _lock = FileLock::take(&root.join("image.lock"));
    if image.exists() {
        return image;
    }
    let building = image.with_extension("building");
    fs::remove_dir_all(&building).ok();
    let started = Instant::now();
    run(
        "building the fleet's image with mmdebstrap",
        Command::new("mmdebstrap").args(&recipe).arg(&building),
    );
    fs::rename(&building, &image).unwrap();
    // Images of other recipes are stale: each is hundreds of MB.
    for entry in fs::read_dir(root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("image-") && entry.path() != image {
            fs::remove_dir_all(entry.path()).ok();
        }
    }
    eprintln!(
        "fleet: built the image {} in {:.0} s",
        image.display(),
        started.elapsed().as_secs_f64()
    );
    image
}

/// Each booted machine's systemd takes about 8 inotify instances of root's, and Linux's default
/// allows 128 in all: two fleets of 7-8 machines come close. Raised (never lowered) to `at_least`.
fn allow_inotify_instances(at_least: u64) {
    let setting = Path::new("/proc/sys/fs/inotify/max_user_instances");
    let now: u64 = fs::read_to_string(setting)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if now < at_least {
        fs::write(setting, at_least.to_string())
            .unwrap_or_else(|e| panic!("raising {} to {at_least}: {e}", setting.display()));
    }
}

pub struct Machine {
    pub name: String,
    pub address: String,
    dir: PathBuf,
    /// `uname -m` as the machine reports it (`x86` makes it i686).
    personality: Option<&'static str>,
    nspawn: Option<Child>,
}

impl Machine {
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The container's process 1 (systemd), the child of the nspawn process.
    fn init_pid(&self) -> Option<u32> {
        let nspawn = self.nspawn.as_ref()?.id();
        fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
            (fields.get(1)?.parse::<u32>().ok()? == nspawn).then_some(pid)
        })
    }
}

pub struct Fleet {
    pub dir: PathBuf,
    /// The private key of both logins.
    pub key: PathBuf,
    prefix: String,
    image: PathBuf,
    pub machines: Vec<Machine>,
}

impl Fleet {
    /// Boots `count` machines on `<prefix>.2`, `<prefix>.3`, ...
    pub fn boot(name: &str, prefix: &str, count: usize) -> Fleet {
        let image = image();
        allow_inotify_instances(1024);
        let dir = Path::new(ROOT)
            .join("fleets")
            .join(format!("{name}-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        run(
            "making the fleet's key",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "fleet", "-f"])
                .arg(&key),
        );
        let mut fleet = Fleet {
            dir,
            key,
            prefix: prefix.to_string(),
            image,
            machines: Vec::new(),
        };
        for _ in 0..count {
            fleet.launch(None);
        }
        let started = Instant::now();
        for i in 0..count {
            fleet.wait_for_ssh(i, started);
        }
        fleet
    }

    /// Boots one more machine (reporting `personality`'s architecture, if given) and returns
    /// its index once it accepts SSH logins.
    pub fn add(&mut self, personality: Option<&'static str>) -> usize {
        let i = self.launch(personality);
        self.wait_for_ssh(i, Instant::now());
        i
    }

    /// Sets up and boots one more machine, without waiting for it.
    fn launch(&mut self, personality: Option<&'static str>) -> usize {
        let i = self.machines.len();
        let name = format!(
            "{}-{}",
            self.dir.file_name().unwrap().to_string_lossy(),
            i + 1
        );
        self.machines.push(Machine {
            name,
            address: format!("{}.{}", self.prefix, i + 2),
            dir: self.dir.join(format!("machine-{}", i + 1)),
            personality,
            nspawn: None,
        });
        self.set_up(i);
        self.start(i);
        i
    }

    /// A fresh copy of the image for machine `i`, with its own name, host keys, sshd address
    /// and the fleet's key for both logins.
    fn set_up(&self, i: usize) {
        let machine = &self.machines[i];
        let root = machine.root();
        for part in ["upper", "work", "root"] {
            fs::create_dir_all(machine.dir.join(part)).unwrap();
        }
        run(
            "mounting the machine's copy of the image",
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    self.image.display(),
                    machine.dir.join("upper").display(),
                    machine.dir.join("work").display()
                ))
                .arg(&root),
        );
        fs::write(root.join("etc/hostname"), format!("{}\n", machine.name)).unwrap();
        fs::write(
            root.join("etc/hosts"),
            format!(
                "127.0.0.1 localhost\n{} {}\n",
                machine.address, machine.name
            ),
        )
        .unwrap();
        fs::write(
            root.join("etc/ssh/sshd_config.d/listen.conf"),
            format!("ListenAddress {}\n", machine.address),
        )
        .unwrap();
        run(
            "making the machine's host keys",
            Command::new("ssh-keygen").arg("-A").arg("-f").arg(&root),
        );
        let public = fs::read_to_string(self.key.with_extension("pub")).unwrap();
        for user in [LOGIN, PASSWORD_SUDO_LOGIN] {
            let ssh = root.join("home").join(user).join(".ssh");
            fs::create_dir_all(&ssh).unwrap();
            fs::write(ssh.join("authorized_keys"), &public).unwrap();
            fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
            run(
                "giving the login its key",
                Command::new("chroot").arg(&root).args([
                    "chown",
                    "-R",
                    &format!("{user}:{user}"),
                    &format!("/home/{user}/.ssh"),
                ]),
            );
        }
    }

    /// Boots machine `i` from its copy (as it was left: a reboot).
    fn start(&mut self, i: usize) {
        let machine = &mut self.machines[i];
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(machine.dir.join("console.log"))
            .unwrap();
        let mut nspawn = Command::new("systemd-nspawn");
        nspawn
            .arg("--directory")
            .arg(machine.root())
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=read-only",
            ])
            .arg(format!("--machine={}", machine.name));
        if let Some(personality) = machine.personality {
            nspawn.arg(format!("--personality={personality}"));
        }
        let child = nspawn
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("starting systemd-nspawn (apt-get install systemd-container)");
        machine.nspawn = Some(child);
    }

    /// Waits until machine `i` accepts a login (its sshd listening is not enough: a machine
    /// still booting may drop the first sessions).
    fn wait_for_ssh(&mut self, i: usize, since: Instant) {
        let address = format!("{}:22", self.machines[i].address);
        while TcpStream::connect(&address).is_err()
            || !self.ssh_as(i, LOGIN, "true").status.success()
        {
            if let Some(Ok(Some(status))) = self.machines[i].nspawn.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "machine {} stopped ({status}) while booting: {}",
                    self.machines[i].name,
                    self.console(i)
                );
            }
            assert!(
                since.elapsed() < Duration::from_secs(120),
                "machine {} did not accept SSH within 120 s: {}",
                self.machines[i].name,
                self.console(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The end of what a machine's console showed.
    pub fn console(&self, i: usize) -> String {
        let text = fs::read_to_string(self.machines[i].dir.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn address(&self, i: usize) -> &str {
        &self.machines[i].address
    }

    /// Cuts machine `i`'s power: every process on it dies at once, nothing is flushed.
    pub fn power_cut(&mut self, i: usize) {
        match self.machines[i].init_pid() {
            Some(init) => run(
                "cutting the machine's power",
                Command::new("kill").args(["-KILL", &init.to_string()]),
            ),
            // Not booted yet, or gone: nspawn itself is all there is.
            None => match self.machines[i].nspawn.as_mut() {
                Some(nspawn) => {
                    nspawn.kill().ok();
                    return;
                }
                None => return,
            },
        };
        if let Some(mut nspawn) = self.machines[i].nspawn.take() {
            nspawn.wait().ok();
        }
    }

    /// Boots machine `i` again from what its disk holds, and waits until it accepts logins.
    pub fn boot_again(&mut self, i: usize) {
        assert!(self.machines[i].nspawn.is_none(), "machine {i} runs");
        self.start(i);
        self.wait_for_ssh(i, Instant::now());
    }

    /// Runs a command on machine `i` as `user`.
    pub fn ssh_as(&self, i: usize, user: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(&self.key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg(format!("{user}@{}", self.machines[i].address))
            .arg("--")
            .arg(command)
            .output()
            .unwrap()
    }

    /// Runs a command as root on machine `i` and returns what it printed; it must succeed.
    pub fn root(&self, i: usize, command: &str) -> String {
        let quoted = format!("'{}'", command.replace('\'', r"'\''"));
        let out = self.ssh_as(i, LOGIN, &format!("sudo -n bash -c {quoted}"));
        assert!(
            out.status.success(),
            "{command} on {} failed: {}{}",
            self.machines[i].name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An inventory of the given machines, in order, with each machine's extra lines (a role,
    /// a host key, another login) from `extra`.
    pub fn inventory(&self, path: &Path, machines: &[usize], extra: impl Fn(usize) -> String) {
        let mut text = format!(
            "[defaults]\nuser = \"{LOGIN}\"\nidentity_file = \"{}\"\n",
            self.key.display()
        );
        for &i in machines {
            text.push_str(&format!(
                "\n[[machine]]\naddress = \"{}\"\n{}",
                self.machines[i].address,
                extra(i)
            ));
        }
        fs::write(path, text).unwrap();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.machines.len() {
            self.power_cut(i);
        }
        for machine in &self.machines {
            let root = machine.root();
            let unmounted = Command::new("umount")
                .arg(&root)
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                Command::new("umount").arg("-l").arg(&root).status().ok();
            }
        }
        fs::remove_dir_all(&self.dir).ok();
    }
}
