//! The state layer: data.json, the single checkpoint of a deployment, and the locked session
//! through which a step changes it. Everything above reads and records through here.
//!
//! Every step reads it, records that it is running before it changes anything, and records the
//! outcome after. Writes are atomic (temp file, fsync, rename, fsync of the directory), so a crash
//! at any moment leaves either the old or the new document, never half of one. A lock on a sidecar
//! file keeps two runs from racing.

mod command;
mod limits;
mod session;
mod settings;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

pub use command::{command, remember};
pub use limits::{HostClass, HostLimit, HostMemory, Limits, Millicpus};
pub use session::{Lock, Session};
pub use settings::{
    AwsSettings, BenchSettings, Engine, HostKeys, LocalSettings, ProviderKind, ProviderSettings,
    Settings,
};
pub use store::{atomic_write, Paths, FORMAT_VERSION};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub format_version: u32,
    /// Random per deployment; names and tags of created resources carry it.
    pub id: String,
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
    /// The per-host limits in force (local provider), recorded at provision.
    #[serde(default)]
    pub limits: Limits,
    /// Former managers a failover left read-only, never to take writes again until `repair`
    /// makes them workers of the new manager.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fenced: Vec<String>,
    /// Every failover, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<FailoverRecord>,
    /// The packages the deployment installed, by the host whose machine got them; teardown
    /// leaves them and says which.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub installed: BTreeMap<String, Vec<String>>,
    /// The workers `scale` is adding or removing, by how far it got: recorded before each
    /// phase begins, so a rerun goes on (or rolls back) from there. A worker here is not in
    /// the proxy's servers; it leaves this list once it serves, or once it is gone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scaling: BTreeMap<String, ScalePhase>,
}

/// How far `scale` got with a worker it adds (made, copying, catching up) or removes
/// (leaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScalePhase {
    /// Its host exists (address, folder, group); nothing runs there yet.
    Made,
    /// Its server gets a copy of a worker's data.
    Copying,
    /// It replicates from the manager and applies what came after the copy.
    CatchingUp,
    /// The proxy sends it nothing new; its server stops and its host goes.
    Leaving,
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
    /// When provision first launched instances: what has been paid for starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<String>,
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
    /// The number of workers (Galera: nodes) when it began: its scaling curve scales the
    /// cluster back to it. (Runs from before: the deployment's.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u8>,
}

/// The steps of a deployment, as data.json records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Provision,
    InstallCluster,
    DeployServices,
    Bench,
    FetchResults,
    Teardown,
}

impl Step {
    /// What `all` runs, in order; each step needs the one before it.
    pub const PIPELINE: [Step; 5] = [
        Step::Provision,
        Step::InstallCluster,
        Step::DeployServices,
        Step::Bench,
        Step::FetchResults,
    ];

    /// The step that must be done before this one can run.
    pub fn needs(self) -> Option<Step> {
        let at = Step::PIPELINE.iter().position(|s| *s == self)?;
        at.checked_sub(1).map(|i| Step::PIPELINE[i])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Standalone,
    Manager,
    Worker,
    /// A node of a Galera cluster: takes writes and reads alike.
    Node,
    Proxy,
    TrustedHost,
    Gatekeeper,
}

impl Role {
    pub fn runs_database(self) -> bool {
        matches!(
            self,
            Role::Standalone | Role::Manager | Role::Worker | Role::Node
        )
    }
}

/// Displays as data.json spells it (`install-cluster`, `trusted-host`, `done`).
macro_rules! display_as_serialized {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&name_of(self))
            }
        }
    )*};
}
display_as_serialized!(Step, Role, StepStatus, ProviderKind, ScalePhase);

/// A unit enum's name as serde writes it.
pub fn name_of(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
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
    /// How to reach a remote host; None for a host of this machine. Read only by the transport
    /// (and set by the provider that creates remote hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEndpoint>,
    /// The address this host's connections to the others come from, where it is not its own
    /// address (read from the machine's routing table at provision); the database accounts
    /// are bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connects_from: Option<String>,
}

impl Host {
    /// A host with its name and role only: where it is and how it is reached, its provider
    /// fills in.
    pub fn planned(name: &str, role: Role) -> Host {
        Host {
            name: name.to_string(),
            role,
            address: String::new(),
            dir: PathBuf::new(),
            ssh: None,
            connects_from: None,
        }
    }
}

/// One failover: who was promoted, from what position, and what became of the old manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub at: String,
    /// The manager before.
    pub from: String,
    /// The worker promoted.
    pub to: String,
    /// What the promoted worker held when it took over (a GTID position): the old manager
    /// diverged if it holds anything beyond this.
    pub position: String,
    /// Whether the old manager answered and was fenced then (otherwise it is fenced by
    /// starting read-only whenever it comes back).
    pub old_manager_answered: bool,
    /// The proxy decided by itself (else a person asked; records from before: a person).
    #[serde(default)]
    pub automatic: bool,
    /// Why, as the proxy said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key_file: PathBuf,
    /// The deployment's own known_hosts: host keys are pinned per deployment, never mixed with
    /// the operator's.
    pub known_hosts: PathBuf,
    /// known_hosts holds the host's keys, read from a source other than the connection (the
    /// instance's console): a key not there is refused. Otherwise the first key seen is pinned.
    #[serde(default)]
    pub host_keys_pinned: bool,
    /// Run scripts through `sudo` (a cloud image's login user is not root).
    pub sudo: bool,
    /// Where every command and its output are appended.
    pub log_file: PathBuf,
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
    /// The write account's.
    pub app_password: String,
    /// The read-only account's. A deployment recorded before it existed gets one generated;
    /// its account is made by `install-cluster --force`.
    #[serde(default = "generate_secret")]
    pub app_read_password: String,
    pub bench_password: String,
    pub replication_password: String,
    pub gatekeeper_token: String,
    pub trusted_host_token: String,
    /// The proxy's failover account's (deployments from before it get one; `install-cluster
    /// --force` makes the account).
    #[serde(default = "generate_secret")]
    pub failover_password: String,
    /// What `cargo xtask failover` presents to the proxy.
    #[serde(default = "generate_secret")]
    pub failover_token: String,
}

fn generate_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

impl Secrets {
    pub fn generate() -> Secrets {
        let secret = generate_secret;
        Secrets {
            app_password: secret(),
            app_read_password: secret(),
            bench_password: secret(),
            replication_password: secret(),
            gatekeeper_token: secret(),
            trusted_host_token: secret(),
            failover_password: secret(),
            failover_token: secret(),
        }
    }
}

impl Secrets {
    /// Empties every secret: what a torn-down deployment keeps of them (the accounts they
    /// opened are gone with the hosts).
    pub fn forget(&mut self) {
        *self = Secrets {
            app_password: String::new(),
            app_read_password: String::new(),
            bench_password: String::new(),
            replication_password: String::new(),
            gatekeeper_token: String::new(),
            trusted_host_token: String::new(),
            failover_password: String::new(),
            failover_token: String::new(),
        };
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Deployment {
    /// A deployment about to be provisioned: nothing is written until its first step begins.
    pub fn new(id: String, settings: Settings, hosts: Vec<Host>) -> Deployment {
        Deployment {
            format_version: FORMAT_VERSION,
            id,
            created_at: now(),
            torn_down_at: None,
            settings,
            hosts,
            processes: BTreeMap::new(),
            steps: BTreeMap::new(),
            secrets: Secrets::generate(),
            bench: None,
            aws: None,
            limits: Limits::default(),
            fenced: Vec::new(),
            failovers: Vec::new(),
            installed: BTreeMap::new(),
            scaling: BTreeMap::new(),
        }
    }

    pub fn provider(&self) -> ProviderKind {
        self.settings.provider_kind()
    }

    pub fn hosts_with_role(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// Whether the proxy serves the host: every host but the workers `scale` is adding or
    /// removing.
    pub fn in_service(&self, host: &Host) -> bool {
        !self.scaling.contains_key(&host.name)
    }

    pub fn database_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role.runs_database())
    }

    pub fn engine(&self) -> Engine {
        self.settings.engine
    }

    /// The host the benchmarks run on: the proxy's, in a `bench` folder of its own. The proxy's
    /// host may reach the databases and the gatekeeper, and serves no database.
    pub fn bench_client(&self) -> Result<Host> {
        let proxy = self.host(Role::Proxy)?;
        Ok(Host {
            name: "bench-client".to_string(),
            dir: proxy.dir.join("bench"),
            ..proxy.clone()
        })
    }

    /// Where the gatekeeper listens, as the load generator reaches it from inside.
    pub fn gatekeeper_url(&self) -> Result<String> {
        let gatekeeper = self.host(Role::Gatekeeper)?;
        Ok(format!(
            "http://{}:{}",
            gatekeeper.address, self.settings.service_port
        ))
    }

    /// The port a host's server or service listens on.
    pub fn port_of(&self, host: &Host) -> u16 {
        if host.role.runs_database() {
            self.settings.db_port
        } else {
            self.settings.service_port
        }
    }

    /// The host of that name, if the deployment has one.
    pub fn host_named(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host of a role there is one of (everything but the workers).
    pub fn host(&self, role: Role) -> Result<&Host> {
        self.hosts_with_role(role)
            .next()
            .with_context(|| format!("data.json has no {role} host"))
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

/// The workspace root, where data.json and results/ live by default.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_order_and_prerequisites() {
        assert_eq!(Step::Provision.needs(), None);
        assert_eq!(Step::InstallCluster.needs(), Some(Step::Provision));
        assert_eq!(Step::FetchResults.needs(), Some(Step::Bench));
        assert_eq!(Step::Teardown.needs(), None);
        let names: Vec<_> = Step::PIPELINE.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "provision",
                "install-cluster",
                "deploy-services",
                "bench",
                "fetch-results"
            ]
        );
        assert_eq!(Role::TrustedHost.to_string(), "trusted-host");
        assert_eq!(StepStatus::Done.to_string(), "done");
    }

    #[test]
    fn secrets_are_random_and_never_printed() {
        let (a, b) = (Secrets::generate(), Secrets::generate());
        assert_ne!(a.app_password, b.app_password);
        assert_eq!(a.app_password.len(), 32);
        assert!(!format!("{a:?}").contains(&a.app_password));
    }
}
