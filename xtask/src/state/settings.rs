//! A deployment's settings: chosen at provision, recorded in data.json, fixed for its life.
//!
//! The defaults live here and nowhere else: the command line shows them in its help and applies
//! flags on top of them field by field (flags.rs), so every field name is also its flag's name
//! (`db_port` is `--db-port`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::limits::{HostCpus, HostMemory};
pub use contract::galera::Engine;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// How the cluster keeps its copies (deployments from before it: replication).
    #[serde(default)]
    pub engine: Engine,
    /// Replication: read replicas of the manager. Galera: the cluster's nodes.
    pub workers: u8,
    pub db_port: u16,
    pub service_port: u16,
    /// Size of the generated film-rental dataset; 1 is about 1,500 rows.
    pub scale: u32,
    /// The Rust target the services are built for; None: this machine's own.
    #[serde(default)]
    pub target: Option<String>,
    /// Semi-synchronous replication: the manager acknowledges a commit once a worker has it,
    /// waiting at most this long before it falls back to asynchronous; 0: asynchronous
    /// (deployments from before it).
    #[serde(default)]
    pub semi_sync_timeout_ms: u32,
    /// Replication: seconds the manager must have been unreachable, and every reachable worker
    /// must have lost it, before the proxy fails over by itself; 0: only `cargo xtask failover`
    /// (deployments from before it).
    #[serde(default)]
    pub failover_after: u32,
    /// Replication: no second automatic failover within this many seconds of the last one.
    #[serde(default)]
    pub failover_cooldown: u32,
    /// Seconds of database time one client may use per second across the cluster (the proxy's
    /// budget, past each query's first millisecond; the bench client is exempt); 0: an eighth
    /// of a second per server of the cluster.
    #[serde(default)]
    pub client_db_share: f64,
    /// Queries each database server runs at once for the proxy; 0: eight per CPU of its quota
    /// (at least 4), 8 on a host with no quota.
    #[serde(default)]
    pub backend_slots: u32,
    /// A read whose plan examines more rows than this is refused before it runs; 0: no bound
    /// (deployments from before it).
    #[serde(default)]
    pub max_examined_rows: u64,
    /// Where the hosts are, with what only that provider needs.
    pub provider: ProviderSettings,
}

/// Which provider, recorded once: the settings only it has come with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProviderSettings {
    Local(LocalSettings),
    Aws(AwsSettings),
    Ssh(SshSettings),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Every host is a loopback address of this machine.
    Local,
    /// Every host is an EC2 instance, reached over SSH.
    Aws,
    /// Every host is a machine the user already has, named in an inventory, reached over SSH.
    Ssh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSettings {
    /// First three octets of the hosts' loopback addresses (`127.0.1` → 127.0.1.x).
    pub loopback_prefix: String,
    /// Each host's CPU quota, by class (deployments from before limits: unlimited).
    #[serde(default = "unlimited_cpus")]
    pub host_cpus: HostCpus,
    /// Each host's memory limit.
    #[serde(default = "unlimited_memory")]
    pub host_memory: HostMemory,
}

fn unlimited_cpus() -> HostCpus {
    HostCpus::Unlimited
}

fn unlimited_memory() -> HostMemory {
    HostMemory { mib: None }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// None: the standard AWS chain decides (AWS_REGION, ~/.aws/config).
    pub region: Option<String>,
    /// An EC2-compatible API to use instead of AWS's (a test's moto server).
    pub aws_endpoint: Option<String>,
    /// None: the latest Ubuntu LTS image, looked up at provision.
    pub ami: Option<String>,
    pub db_instance_type: String,
    pub service_instance_type: String,
    /// Who may log in with SSH; empty until provision finds this machine's public address.
    pub ssh_cidr: String,
    /// Who may reach the gatekeeper's web pages and API.
    pub http_cidr: String,
    /// SSH open to every address (an `--ssh-cidr` of /0) is refused without it.
    #[serde(default)]
    pub allow_ssh_from_anywhere: bool,
    /// How the instances' SSH host keys come to be trusted (deployments from before: the
    /// first key seen).
    #[serde(default = "first_use")]
    pub host_keys: HostKeys,
}

/// Machines the user already has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSettings {
    /// The inventory: each machine's address, login and key (README: "The ssh provider").
    /// Read once, at provision; what it said is recorded with the hosts.
    pub hosts: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeys {
    /// Read from each instance's console output (printed by cloud-init at first boot) and
    /// pinned before the first login; any other key is refused.
    Console,
    /// The first key a login sees is pinned (for EC2 emulators, which print no console).
    FirstUse,
}

fn first_use() -> HostKeys {
    HostKeys::FirstUse
}

/// What the services are built for on instances, unless `--target` says otherwise: a static
/// binary that runs on any Linux of the architecture.
const AWS_DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

impl Settings {
    /// The port the bench's floor relays listen on, one past the services' own: each relay runs
    /// beside its service, on its host (`cluster::floor`).
    pub fn floor_port(&self) -> u16 {
        self.service_port.saturating_add(1)
    }

    /// The defaults of a provider's deployment.
    pub fn defaults(kind: ProviderKind) -> Settings {
        let (provider, target) = match kind {
            ProviderKind::Local => (
                ProviderSettings::Local(LocalSettings {
                    loopback_prefix: "127.0.1".to_string(),
                    host_cpus: HostCpus::DEFAULT,
                    host_memory: HostMemory::DEFAULT,
                }),
                None,
            ),
            ProviderKind::Aws => (
                ProviderSettings::Aws(AwsSettings {
                    region: None,
                    aws_endpoint: None,
                    ami: None,
                    db_instance_type: "t2.micro".to_string(),
                    service_instance_type: "t2.large".to_string(),
                    ssh_cidr: String::new(),
                    http_cidr: "0.0.0.0/0".to_string(),
                    allow_ssh_from_anywhere: false,
                    host_keys: HostKeys::Console,
                }),
                Some(AWS_DEFAULT_TARGET.to_string()),
            ),
            // This machine's own target: provision checks that the machines can run it.
            ProviderKind::Ssh => (
                ProviderSettings::Ssh(SshSettings {
                    hosts: PathBuf::new(),
                }),
                None,
            ),
        };
        Settings {
            engine: Engine::Replication,
            workers: 3,
            db_port: 3306,
            service_port: 8080,
            semi_sync_timeout_ms: 1000,
            failover_after: 5,
            failover_cooldown: 300,
            client_db_share: 0.0,
            backend_slots: 0,
            max_examined_rows: 1_000_000,
            scale: 10,
            target,
            provider,
        }
    }

    pub fn provider_kind(&self) -> ProviderKind {
        match self.provider {
            ProviderSettings::Local(_) => ProviderKind::Local,
            ProviderSettings::Aws(_) => ProviderKind::Aws,
            ProviderSettings::Ssh(_) => ProviderKind::Ssh,
        }
    }

    /// The aws settings; an error on a deployment of another provider.
    pub fn aws(&self) -> Result<&AwsSettings> {
        match &self.provider {
            ProviderSettings::Aws(aws) => Ok(aws),
            _ => bail!("this is not an aws deployment"),
        }
    }

    /// Fails, naming the flag, on a value the deployment cannot work with.
    pub fn validate(&self) -> Result<()> {
        if self.semi_sync_timeout_ms > 60_000 {
            bail!(
                "--semi-sync-timeout-ms must be at most 60000 (0 turns semi-sync off), got {}",
                self.semi_sync_timeout_ms
            );
        }
        if self.failover_after > 600 {
            bail!(
                "--failover-after must be at most 600 seconds (0 turns automatic failover off), \
                 got {}",
                self.failover_after
            );
        }
        if self.failover_cooldown > 86_400 {
            bail!(
                "--failover-cooldown must be at most 86400 seconds, got {}",
                self.failover_cooldown
            );
        }
        if !(0.0..=1000.0).contains(&self.client_db_share) {
            bail!(
                "--client-db-share must be between 0 (derived from the cluster's size) and 1000 \
                 seconds of database time per second, got {}",
                self.client_db_share
            );
        }
        if self.backend_slots > 1024 {
            bail!(
                "--backend-slots must be at most 1024 (0: derived from each server's CPUs), got {}",
                self.backend_slots
            );
        }
        if self.max_examined_rows != 0
            && !(1000..=u64::from(u32::MAX)).contains(&self.max_examined_rows)
        {
            bail!(
                "--max-examined-rows must be 0 (no bound) or between 1000 and {}, got {}",
                u32::MAX,
                self.max_examined_rows
            );
        }
        if !(1..=20).contains(&self.workers) {
            bail!("--workers must be between 1 and 20, got {}", self.workers);
        }
        if self.engine == Engine::Galera && self.workers < 3 {
            bail!(
                "--engine galera needs --workers 3 or more (the cluster's nodes, an odd number \
                 keeps a quorum when one fails), got {}",
                self.workers
            );
        }
        if !(1..=1000).contains(&self.scale) {
            bail!("--scale must be between 1 and 1000, got {}", self.scale);
        }
        for (name, port) in [
            ("db-port", self.db_port),
            ("service-port", self.service_port),
        ] {
            if port < 1024 {
                bail!("--{name} must be 1024 or above so no root is needed, got {port}");
            }
        }
        if self.db_port == self.service_port {
            bail!("--db-port and --service-port must differ");
        }
        if self.service_port == u16::MAX || self.db_port == self.floor_port() {
            bail!(
                "--service-port {} leaves no port for the bench's floor relays, which listen one \
                 above it: choose a --service-port below 65535 whose next port is not --db-port",
                self.service_port
            );
        }
        match &self.provider {
            ProviderSettings::Local(local) => local.validate(),
            ProviderSettings::Aws(aws) => aws.validate(),
            ProviderSettings::Ssh(ssh) => ssh.validate(),
        }
    }
}

impl LocalSettings {
    fn validate(&self) -> Result<()> {
        let octets: Vec<_> = self.loopback_prefix.split('.').collect();
        let valid = octets.len() == 3
            && octets[0] == "127"
            && octets
                .iter()
                .all(|o| o.parse::<u8>().is_ok_and(|n| n.to_string() == *o));
        if !valid {
            bail!(
                "--loopback-prefix must be three octets inside 127.0.0.0/8 such as 127.0.1, got {:?}",
                self.loopback_prefix
            );
        }
        Ok(())
    }
}

impl AwsSettings {
    fn validate(&self) -> Result<()> {
        for (flag, cidr) in [("ssh-cidr", &self.ssh_cidr), ("http-cidr", &self.http_cidr)] {
            if !(cidr.is_empty() || is_ipv4_cidr(cidr)) {
                bail!("--{flag} must be an IPv4 CIDR such as 203.0.113.7/32, got {cidr:?}");
            }
        }
        if self.ssh_cidr.ends_with("/0") && !self.allow_ssh_from_anywhere {
            bail!(
                "--ssh-cidr {} lets every address on the internet try to log in: give the \
                 address SSH logins come from (such as 203.0.113.7/32), or add \
                 --allow-ssh-from-anywhere if that is really meant",
                self.ssh_cidr
            );
        }
        if let Some(ami) = &self.ami {
            if !ami.starts_with("ami-") {
                bail!("--ami must be an image id such as ami-0abcdef1234567890, got {ami:?}");
            }
        }
        if let Some(url) = &self.aws_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--aws-endpoint must be an http:// or https:// URL, got {url:?}");
            }
        }
        Ok(())
    }
}

impl SshSettings {
    fn validate(&self) -> Result<()> {
        if self.hosts.as_os_str().is_empty() {
            bail!(
                "--provider ssh needs --hosts FILE: the inventory of the machines to deploy on \
                 (each one's address, login user and key; see \"The ssh provider\" in the README)"
            );
        }
        Ok(())
    }
}

fn is_ipv4_cidr(text: &str) -> bool {
    text.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
    })
}

/// How much benchmarking: fixed for a bench run, so a resumed run measures the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSettings {
    pub threads: u32,
    pub seconds: u32,
    pub table_size: u32,
    pub tables: u32,
    pub runs: u32,
    pub concurrency: u32,
    /// The degraded-worker scenario: the patterns test of `random` and `customized` again with
    /// one worker's CPU quota cut to this percent of the others'; 0: not run (nor where the
    /// hosts have no CPU quota). Runs from before it: 0.
    #[serde(default)]
    pub degraded_worker_percent: u32,
    /// The scaling curve: after the other measurements, the cluster is scaled to each of these
    /// numbers of workers (Galera: nodes) in turn and its reads measured at each; then it is
    /// scaled back. Empty: no curve.
    #[serde(default)]
    pub scaling: Vec<u8>,
}

impl BenchSettings {
    /// The classic profile, or the quick one (CI): 1 run of 3 s, a 1,000-row table.
    pub fn defaults(quick: bool) -> BenchSettings {
        if quick {
            BenchSettings {
                threads: 2,
                seconds: 3,
                table_size: 1000,
                tables: 1,
                runs: 1,
                concurrency: 4,
                degraded_worker_percent: 20,
                scaling: Vec::new(),
            }
        } else {
            BenchSettings {
                threads: 4,
                seconds: 10,
                table_size: 100_000,
                tables: 1,
                runs: 3,
                concurrency: 8,
                degraded_worker_percent: 20,
                scaling: Vec::new(),
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, value, max) in [
            ("threads", self.threads, 256),
            ("seconds", self.seconds, 3600),
            ("table-size", self.table_size, 100_000_000),
            ("tables", self.tables, 64),
            ("runs", self.runs, 100),
            ("concurrency", self.concurrency, 1024),
        ] {
            if !(1..=max).contains(&value) {
                bail!("--{name} must be between 1 and {max}, got {value}");
            }
        }
        for (i, count) in self.scaling.iter().enumerate() {
            if !(1..=20).contains(count) {
                bail!("--scaling takes numbers of workers from 1 to 20, got {count}");
            }
            if self.scaling[..i].contains(count) {
                bail!("--scaling names {count} workers twice: give each number once");
            }
        }
        if self.degraded_worker_percent >= 100 {
            bail!(
                "--degraded-worker-percent must be below 100 (0 turns the scenario off), got {}",
                self.degraded_worker_percent
            );
        }
        Ok(())
    }
}
