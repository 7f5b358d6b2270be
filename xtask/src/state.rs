//! data.json: the single checkpoint of a deployment.
//!
//! Every step reads it, records that it is running before it changes anything, and records the
//! outcome after. Writes are atomic (temp file, fsync, rename, fsync of the directory), so a crash
//! at any moment leaves either the old or the new document, never half of one. A lock on a sidecar
//! file keeps two runs from racing.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use crate::ssh::SshEndpoint;
use crate::steps::Step;

/// Bumped whenever the document changes shape; an xtask refuses a file of another version.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub format_version: u32,
    /// Random per deployment; names and tags of created resources carry it.
    pub id: String,
    pub provider: ProviderKind,
    pub created_at: String,
    pub torn_down_at: Option<String>,
    pub settings: Settings,
    pub hosts: Vec<Host>,
    /// Processes this deployment started, keyed by what they are ("manager/mariadbd").
    pub processes: BTreeMap<String, ProcessRecord>,
    pub steps: BTreeMap<Step, StepRecord>,
    pub secrets: Secrets,
    /// The current (or last) benchmark run.
    #[serde(default)]
    pub bench: Option<BenchRun>,
    /// What the aws provider created in the cloud, recorded as soon as it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsResources>,
}

/// The cloud resources of an aws deployment. Every one also carries the deployment's tag,
/// which is what provision adopts and teardown removes: this record is a cross-check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsResources {
    /// The region the resources live in, as resolved when provision first ran.
    pub region: Option<String>,
    pub ami: Option<String>,
    pub vpc_id: Option<String>,
    pub key_name: Option<String>,
    /// Security group ids by the role group they serve.
    pub security_groups: BTreeMap<String, String>,
    /// Instances by host name.
    pub instances: BTreeMap<String, InstanceRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The RunInstances idempotency token, saved before the call.
    pub client_token: String,
    pub instance_id: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub public_dns: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchRun {
    /// Names the run's raw folder and its rows in results/.
    pub id: String,
    pub started_at: String,
    pub settings: BenchSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSettings {
    pub threads: u32,
    pub seconds: u32,
    pub table_size: u32,
    pub tables: u32,
    pub runs: u32,
    pub concurrency: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Every host is a loopback address of this machine.
    Local,
    /// Every host is an EC2 instance, reached over SSH.
    Aws,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub workers: u8,
    /// First three octets of the loopback addresses the local hosts get (`127.0.1` → 127.0.1.x).
    pub loopback_prefix: String,
    pub db_port: u16,
    pub service_port: u16,
    /// Size of the generated film-rental dataset; 1 is about 1,500 rows.
    pub dataset_scale: u32,
    /// The Rust target the services are built for; None: this machine's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The aws provider's settings; None on the local provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// None: the standard AWS chain decides (AWS_REGION, ~/.aws/config).
    pub region: Option<String>,
    /// An EC2-compatible API to use instead of AWS's (a test's moto server).
    pub endpoint: Option<String>,
    /// None: the latest Ubuntu LTS image, looked up at provision.
    pub ami: Option<String>,
    pub db_instance_type: String,
    pub service_instance_type: String,
    /// Who may log in with SSH: the operator's address.
    pub ssh_cidr: String,
    /// Who may reach the gatekeeper's web pages and API.
    pub http_cidr: String,
}

impl Default for AwsSettings {
    fn default() -> AwsSettings {
        AwsSettings {
            region: None,
            endpoint: None,
            ami: None,
            db_instance_type: "t2.micro".to_string(),
            service_instance_type: "t2.large".to_string(),
            ssh_cidr: String::new(),
            http_cidr: "0.0.0.0/0".to_string(),
        }
    }
}

/// What the services are built for on instances, unless `--target` says otherwise: a static
/// binary that runs on any Linux of the architecture.
pub const AWS_DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

impl AwsSettings {
    /// Compares as "nothing recorded" with every flag of a local deployment.
    pub fn unset() -> AwsSettings {
        AwsSettings {
            db_instance_type: String::new(),
            service_instance_type: String::new(),
            http_cidr: String::new(),
            ..AwsSettings::default()
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            workers: 3,
            loopback_prefix: "127.0.1".to_string(),
            db_port: 3306,
            service_port: 8080,
            dataset_scale: 10,
            target: None,
            aws: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Standalone,
    Manager,
    Worker,
    Proxy,
    TrustedHost,
    Gatekeeper,
}

impl Role {
    /// The role's name as data.json spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Manager => "manager",
            Role::Worker => "worker",
            Role::Proxy => "proxy",
            Role::TrustedHost => "trusted-host",
            Role::Gatekeeper => "gatekeeper",
        }
    }

    pub fn runs_database(self) -> bool {
        matches!(self, Role::Standalone | Role::Manager | Role::Worker)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Unique name: the role, with the index for workers ("worker-2").
    pub name: String,
    pub role: Role,
    pub address: String,
    /// Where everything of this host lives: config, data directory, socket, logs.
    pub dir: PathBuf,
    /// How to reach a remote host; None for a host of this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22): with the pid, it tells
    /// our process from an unrelated one that was given the same pid later.
    pub start_ticks: u64,
    pub program: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

impl Default for StepRecord {
    fn default() -> StepRecord {
        StepRecord {
            status: StepStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            error: None,
        }
    }
}

/// Generated per deployment; never printed (Debug is redacted) and only stored in data.json
/// and in 0600 files on the hosts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub app_password: String,
    pub bench_password: String,
    pub replication_password: String,
    pub gatekeeper_token: String,
    pub trusted_host_token: String,
}

impl Secrets {
    pub fn generate() -> Secrets {
        let mut rng = rand::rng();
        let mut secret = || Alphanumeric.sample_string(&mut rng, 32);
        Secrets {
            app_password: secret(),
            bench_password: secret(),
            replication_password: secret(),
            gatekeeper_token: secret(),
            trusted_host_token: secret(),
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Deployment {
    pub fn hosts_with_role(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// Where people reach the deployment: on aws the gatekeeper's public name (only it has
    /// one); elsewhere the same as `gatekeeper_url`.
    pub fn public_gatekeeper_url(&self) -> Result<String> {
        let public = self
            .aws
            .as_ref()
            .and_then(|aws| aws.instances.get("gatekeeper"))
            .and_then(|i| i.public_dns.clone().or(i.public_ip.clone()));
        match public {
            Some(name) => Ok(format!("http://{name}:{}", self.settings.service_port)),
            None => self.gatekeeper_url(),
        }
    }

    /// Where the gatekeeper listens, as the load generator reaches it from inside.
    pub fn gatekeeper_url(&self) -> Result<String> {
        let gatekeeper = self.host(Role::Gatekeeper)?;
        Ok(format!(
            "http://{}:{}",
            gatekeeper.address, self.settings.service_port
        ))
    }

    /// The address a host's database connections come from, which accounts are bound to. On
    /// loopback, Linux sends every connection from 127.0.0.1 whatever the host's own address.
    pub fn client_address(&self, client: &Host) -> String {
        match self.provider {
            ProviderKind::Local => crate::local::CLIENT_ADDRESS.to_string(),
            ProviderKind::Aws => client.address.clone(),
        }
    }

    /// The host of a role there is one of (everything but the workers).
    pub fn host(&self, role: Role) -> Result<&Host> {
        self.hosts_with_role(role)
            .next()
            .with_context(|| format!("data.json has no {role:?} host"))
    }

    pub fn step(&self, step: Step) -> StepRecord {
        self.steps.get(&step).cloned().unwrap_or_default()
    }

    pub fn step_mut(&mut self, step: Step) -> &mut StepRecord {
        self.steps.entry(step).or_default()
    }

    pub fn is_live(&self) -> bool {
        self.torn_down_at.is_none()
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub fn new_deployment_id() -> String {
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), 8)
        .to_lowercase();
    format!("dbc-{suffix}")
}

/// Where a deployment's files are: data.json, its lock, and the folder of per-host state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_json: PathBuf,
}

impl Paths {
    pub fn new(data_json: PathBuf) -> Paths {
        Paths { data_json }
    }

    pub fn dir(&self) -> &Path {
        self.data_json.parent().unwrap_or(Path::new("."))
    }

    pub fn lock_file(&self) -> PathBuf {
        sibling(&self.data_json, ".lock")
    }

    /// Per-host folders of the local provider live here.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".state")
    }

    pub fn load(&self) -> Result<Option<Deployment>> {
        let text = match fs::read_to_string(&self.data_json) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.data_json.display()))
            }
        };
        parse(&text)
            .map(Some)
            .with_context(|| format!("{} was left untouched", self.data_json.display()))
    }

    /// Atomically replaces data.json: a crash at any point leaves the old or the new file.
    pub fn save(&self, deployment: &Deployment) -> Result<()> {
        let json = serde_json::to_vec_pretty(deployment).context("serializing data.json")?;
        let tmp = sibling(&self.data_json, ".tmp");
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &self.data_json)?;
            File::open(self.dir())?.sync_all()
        };
        write().with_context(|| format!("writing {}", self.data_json.display()))
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Parses data.json, telling a corrupt file from one written by another format version.
pub fn parse(text: &str) -> Result<Deployment> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "data.json is not valid JSON ({e}); fix or move the file away, then run the step again"
        )
    })?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => bail!(
            "data.json has format version {v}, this xtask reads version {FORMAT_VERSION}; \
             use the xtask that wrote it"
        ),
        None => bail!("data.json has no format_version: it was not written by this xtask"),
    }
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!("data.json does not match the expected layout ({e}); fix or move it away")
    })
}

/// Exclusive right to change a deployment, held until dropped. The lock file says who holds it.
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(paths: &Paths) -> Result<Lock> {
        let path = paths.lock_file();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another run"
                } else {
                    holder
                };
                bail!(
                    "another xtask run holds the deployment lock {} ({holder}); \
                     wait for it to finish or stop it",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let command: Vec<String> = std::env::args().collect();
        let mut mark = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "pid {}: {}", std::process::id(), command.join(" "))
        };
        mark().with_context(|| format!("writing {}", path.display()))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deployment {
        Deployment {
            format_version: FORMAT_VERSION,
            id: "dbc-test".into(),
            provider: ProviderKind::Local,
            created_at: now(),
            torn_down_at: None,
            settings: Settings::default(),
            hosts: vec![],
            processes: BTreeMap::new(),
            steps: BTreeMap::new(),
            secrets: Secrets::generate(),
            bench: None,
            aws: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let d = sample();
        let text = serde_json::to_string(&d).unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back.id, d.id);
        assert_eq!(back.secrets, d.secrets);
        assert_eq!(back.settings, d.settings);
    }

    #[test]
    fn rejects_corrupt_and_foreign_files() {
        let err = parse("{ not json").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = parse(r#"{"format_version": 99}"#).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
        let err = parse(r#"{"hello": 1}"#).unwrap_err().to_string();
        assert!(err.contains("no format_version"), "{err}");
        let err = parse(r#"{"format_version": 1}"#).unwrap_err().to_string();
        assert!(err.contains("expected layout"), "{err}");
    }

    #[test]
    fn secrets_are_random_and_never_printed() {
        let (a, b) = (Secrets::generate(), Secrets::generate());
        assert_ne!(a.app_password, b.app_password);
        assert_eq!(a.app_password.len(), 32);
        assert!(!format!("{a:?}").contains(&a.app_password));
    }

    #[test]
    fn save_is_private_and_load_reads_it_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let paths = Paths::new(dir.join("data.json"));
        assert!(paths.load().unwrap().is_none());
        paths.save(&sample()).unwrap();
        let mode = fs::metadata(&paths.data_json).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(paths.load().unwrap().unwrap().id, "dbc-test");
        assert!(!sibling(&paths.data_json, ".tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_lock_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let paths = Paths::new(dir.join("data.json"));
        let held = Lock::acquire(&paths).unwrap();
        let err = Lock::acquire(&paths).err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        Lock::acquire(&paths).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
