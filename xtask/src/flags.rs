//! The command line.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use crate::state::{AwsSettings, BenchSettings, ProviderKind, Settings, AWS_DEFAULT_TARGET};
use crate::steps::Step;

/// Deploys a replicated MariaDB cluster behind the gatekeeper and proxy patterns, benchmarks it
/// and tears it down, in resumable steps recorded in data.json.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
pub struct Cli {
    /// The deployment's state file; its folder also holds the lock and the local hosts' state.
    #[arg(long, global = true, env = "XTASK_DATA", value_name = "PATH")]
    pub data: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Allocate the hosts (local: loopback addresses and folders) and generate the secrets.
    Provision(StepArgs),
    /// Install MariaDB, start the standalone server, the manager and its replicas, load the dataset.
    InstallCluster(StepArgs),
    /// Build and start the gatekeeper, trusted host and proxy.
    DeployServices(StepArgs),
    /// Run sysbench and the patterns load test.
    Bench(BenchStepArgs),
    /// Collect the benchmark outputs into results/.
    FetchResults(StepArgs),
    /// Run every step that is not done yet, in order.
    All(AllArgs),
    /// Show the steps, the hosts and their health.
    Status,
    /// Stop and remove everything the deployment created.
    Teardown(TeardownArgs),
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Remove an aws deployment whose data.json is lost: everything tagged with this id
    /// (`dbc-…`, the tag `deployment` of its resources).
    #[arg(long, value_name = "ID")]
    pub aws_deployment: Option<String>,
    /// With --aws-deployment: its region [default: from AWS_REGION or ~/.aws/config].
    #[arg(long, value_name = "REGION", requires = "aws_deployment")]
    pub region: Option<String>,
    /// With --aws-deployment: an EC2-compatible endpoint instead of AWS's.
    #[arg(long, value_name = "URL", requires = "aws_deployment")]
    pub aws_endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// Run the step again even when it is done.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Debug, Args)]
pub struct BenchStepArgs {
    #[command(flatten)]
    pub step: StepArgs,
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// How much benchmarking: fixed for a bench run, so a resumed run measures the same way.
#[derive(Debug, Default, Clone, Args)]
pub struct BenchArgs {
    /// A small, fast profile (CI): 1 run, 3 s each, a 1,000-row table, 2 threads, load
    /// concurrency 4. Flags given with it still win.
    #[arg(long)]
    pub quick: bool,
    /// sysbench threads per server [default: 4].
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Seconds of each sysbench run and each load-test run [default: 10].
    #[arg(long, value_name = "S")]
    pub seconds: Option<u32>,
    /// Rows of each sysbench table [default: 100000].
    #[arg(long, value_name = "N")]
    pub table_size: Option<u32>,
    /// sysbench tables [default: 1].
    #[arg(long, value_name = "N")]
    pub tables: Option<u32>,
    /// How many times each measurement is repeated [default: 3].
    #[arg(long, value_name = "N")]
    pub runs: Option<u32>,
    /// Clients of the patterns load test [default: 8].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
}

/// Deployment settings; given to `provision` (or `all`) and fixed for the deployment's life.
#[derive(Debug, Default, Clone, Args)]
pub struct SettingsArgs {
    /// Where the hosts are: loopback addresses of this machine, or EC2 instances [default: local].
    #[arg(long, value_enum)]
    pub provider: Option<ProviderKind>,
    /// Number of read replicas (1-20) [default: 3].
    #[arg(long, value_name = "N")]
    pub workers: Option<u8>,
    /// First three octets of the local hosts' loopback addresses [default: 127.0.1].
    #[arg(long, value_name = "A.B.C")]
    pub loopback_prefix: Option<String>,
    /// TCP port of every database server [default: 3306].
    #[arg(long, value_name = "PORT")]
    pub db_port: Option<u16>,
    /// TCP port of every role service [default: 8080].
    #[arg(long, value_name = "PORT")]
    pub service_port: Option<u16>,
    /// Dataset size; 1 is about 1,500 rows, it grows linearly (1-1000) [default: 10].
    #[arg(long, value_name = "N")]
    pub scale: Option<u32>,
    /// Rust target the services are built for [default: this machine's; on aws
    /// x86_64-unknown-linux-musl].
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// The aws provider's settings (with `--provider aws`).
#[derive(Debug, Default, Clone, Args)]
pub struct AwsArgs {
    /// AWS region [default: from AWS_REGION or ~/.aws/config].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// An EC2-compatible endpoint to use instead of AWS's (for example a local moto server).
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
    /// Image of every instance [default: the latest Ubuntu LTS (amd64) from Canonical].
    #[arg(long, value_name = "AMI_ID")]
    pub ami: Option<String>,
    /// Instance type of the database hosts [default: t2.micro].
    #[arg(long, value_name = "TYPE")]
    pub db_instance_type: Option<String>,
    /// Instance type of the gatekeeper, trusted host and proxy [default: t2.large].
    #[arg(long, value_name = "TYPE")]
    pub service_instance_type: Option<String>,
    /// Addresses allowed to log in with SSH [default: this machine's public address /32].
    #[arg(long, value_name = "CIDR")]
    pub ssh_cidr: Option<String>,
    /// Addresses allowed to reach the gatekeeper [default: 0.0.0.0/0].
    #[arg(long, value_name = "CIDR")]
    pub http_cidr: Option<String>,
}

impl SettingsArgs {
    fn is_empty(&self) -> bool {
        self.provider.is_none()
            && self.aws.is_empty()
            && self.workers.is_none()
            && self.loopback_prefix.is_none()
            && self.db_port.is_none()
            && self.service_port.is_none()
            && self.scale.is_none()
            && self.target.is_none()
    }

    /// Settings belong to provision; other steps use the recorded ones.
    pub fn reject_for(&self, step: Step) -> Result<()> {
        if !self.is_empty() {
            bail!("settings are chosen at provision; `{step}` uses the ones in data.json");
        }
        Ok(())
    }

    /// The defaults with these flags applied, validated.
    pub fn to_settings(&self) -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(v) = self.workers {
            s.workers = v;
        }
        if let Some(v) = &self.loopback_prefix {
            s.loopback_prefix = v.clone();
        }
        if let Some(v) = self.db_port {
            s.db_port = v;
        }
        if let Some(v) = self.service_port {
            s.service_port = v;
        }
        if let Some(v) = self.scale {
            s.dataset_scale = v;
        }
        match self.provider.unwrap_or(ProviderKind::Local) {
            ProviderKind::Local if !self.aws.is_empty() => {
                bail!("the AWS flags (--region, --ami, ...) need --provider aws")
            }
            ProviderKind::Local => s.target = self.target.clone(),
            ProviderKind::Aws => {
                s.aws = Some(self.aws.to_settings()?);
                s.target = Some(
                    self.target
                        .clone()
                        .unwrap_or_else(|| AWS_DEFAULT_TARGET.to_string()),
                );
            }
        }
        validate(&s)?;
        Ok(s)
    }

    pub fn provider(&self) -> ProviderKind {
        self.provider.unwrap_or(ProviderKind::Local)
    }

    /// Checks that flags given on a rerun agree with the deployment's recorded settings.
    pub fn check_matches(&self, recorded: &Settings) -> Result<()> {
        let recorded_aws = recorded.aws.clone().unwrap_or_else(AwsSettings::unset);
        let given_and_recorded = [
            (
                "provider",
                self.provider.map(|p| format!("{p:?}").to_lowercase()),
                if recorded.aws.is_some() {
                    "aws"
                } else {
                    "local"
                }
                .to_string(),
            ),
            (
                "region",
                self.aws.region.clone(),
                recorded_aws.region.unwrap_or_default(),
            ),
            (
                "aws-endpoint",
                self.aws.aws_endpoint.clone(),
                recorded_aws.endpoint.unwrap_or_default(),
            ),
            (
                "ami",
                self.aws.ami.clone(),
                recorded_aws.ami.unwrap_or_default(),
            ),
            (
                "db-instance-type",
                self.aws.db_instance_type.clone(),
                recorded_aws.db_instance_type,
            ),
            (
                "service-instance-type",
                self.aws.service_instance_type.clone(),
                recorded_aws.service_instance_type,
            ),
            ("ssh-cidr", self.aws.ssh_cidr.clone(), recorded_aws.ssh_cidr),
            (
                "http-cidr",
                self.aws.http_cidr.clone(),
                recorded_aws.http_cidr,
            ),
            (
                "target",
                self.target.clone(),
                recorded.target.clone().unwrap_or_default(),
            ),
            (
                "workers",
                self.workers.map(|v| v.to_string()),
                recorded.workers.to_string(),
            ),
            (
                "loopback-prefix",
                self.loopback_prefix.clone(),
                recorded.loopback_prefix.clone(),
            ),
            (
                "db-port",
                self.db_port.map(|v| v.to_string()),
                recorded.db_port.to_string(),
            ),
            (
                "service-port",
                self.service_port.map(|v| v.to_string()),
                recorded.service_port.to_string(),
            ),
            (
                "scale",
                self.scale.map(|v| v.to_string()),
                recorded.dataset_scale.to_string(),
            ),
        ];
        for (name, given, have) in given_and_recorded {
            match given {
                Some(g) if g != have => bail!(
                    "this deployment was provisioned with --{name} {have}, not {g}; \
                     run `cargo xtask teardown` first to change it"
                ),
                _ => {}
            }
        }
        Ok(())
    }
}

impl AwsArgs {
    fn is_empty(&self) -> bool {
        self.region.is_none()
            && self.aws_endpoint.is_none()
            && self.ami.is_none()
            && self.db_instance_type.is_none()
            && self.service_instance_type.is_none()
            && self.ssh_cidr.is_none()
            && self.http_cidr.is_none()
    }

    /// The aws defaults with these flags applied. The SSH source address, when not given, is
    /// found at provision (it needs the network).
    fn to_settings(&self) -> Result<AwsSettings> {
        let defaults = AwsSettings::default();
        let s = AwsSettings {
            region: self.region.clone(),
            endpoint: self.aws_endpoint.clone(),
            ami: self.ami.clone(),
            db_instance_type: self
                .db_instance_type
                .clone()
                .unwrap_or(defaults.db_instance_type),
            service_instance_type: self
                .service_instance_type
                .clone()
                .unwrap_or(defaults.service_instance_type),
            ssh_cidr: self.ssh_cidr.clone().unwrap_or_default(),
            http_cidr: self.http_cidr.clone().unwrap_or(defaults.http_cidr),
        };
        for (flag, cidr) in [("ssh-cidr", &s.ssh_cidr), ("http-cidr", &s.http_cidr)] {
            if !(cidr.is_empty() || is_ipv4_cidr(cidr)) {
                bail!("--{flag} must be an IPv4 CIDR such as 203.0.113.7/32, got {cidr:?}");
            }
        }
        if let Some(ami) = &s.ami {
            if !ami.starts_with("ami-") {
                bail!("--ami must be an image id such as ami-0abcdef1234567890, got {ami:?}");
            }
        }
        if let Some(url) = &s.endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--aws-endpoint must be an http:// or https:// URL, got {url:?}");
            }
        }
        Ok(s)
    }
}

fn is_ipv4_cidr(text: &str) -> bool {
    text.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
    })
}

impl BenchArgs {
    pub fn is_empty(&self) -> bool {
        !self.quick
            && self.threads.is_none()
            && self.seconds.is_none()
            && self.table_size.is_none()
            && self.tables.is_none()
            && self.runs.is_none()
            && self.concurrency.is_none()
    }

    /// The classic defaults (or the quick profile) with these flags applied, validated.
    pub fn to_settings(&self) -> Result<BenchSettings> {
        let base = if self.quick {
            BenchSettings {
                threads: 2,
                seconds: 3,
                table_size: 1000,
                tables: 1,
                runs: 1,
                concurrency: 4,
            }
        } else {
            BenchSettings {
                threads: 4,
                seconds: 10,
                table_size: 100_000,
                tables: 1,
                runs: 3,
                concurrency: 8,
            }
        };
        let s = BenchSettings {
            threads: self.threads.unwrap_or(base.threads),
            seconds: self.seconds.unwrap_or(base.seconds),
            table_size: self.table_size.unwrap_or(base.table_size),
            tables: self.tables.unwrap_or(base.tables),
            runs: self.runs.unwrap_or(base.runs),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
        };
        for (name, value, max) in [
            ("threads", s.threads, 256),
            ("seconds", s.seconds, 3600),
            ("table-size", s.table_size, 100_000_000),
            ("tables", s.tables, 64),
            ("runs", s.runs, 100),
            ("concurrency", s.concurrency, 1024),
        ] {
            if !(1..=max).contains(&value) {
                bail!("--{name} must be between 1 and {max}, got {value}");
            }
        }
        Ok(s)
    }
}

pub fn validate(s: &Settings) -> Result<()> {
    if !(1..=20).contains(&s.workers) {
        bail!("--workers must be between 1 and 20, got {}", s.workers);
    }
    if !(1..=1000).contains(&s.dataset_scale) {
        bail!(
            "--scale must be between 1 and 1000, got {}",
            s.dataset_scale
        );
    }
    let octets: Vec<_> = s.loopback_prefix.split('.').collect();
    let valid = octets.len() == 3
        && octets[0] == "127"
        && octets
            .iter()
            .all(|o| o.parse::<u8>().is_ok_and(|n| n.to_string() == *o));
    if !valid {
        bail!(
            "--loopback-prefix must be three octets inside 127.0.0.0/8 such as 127.0.1, got {:?}",
            s.loopback_prefix
        );
    }
    for (name, port) in [("db-port", s.db_port), ("service-port", s.service_port)] {
        if port < 1024 {
            bail!("--{name} must be 1024 or above so no root is needed, got {port}");
        }
    }
    if s.db_port == s.service_port {
        bail!("--db-port and --service-port must differ");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut SettingsArgs)) -> SettingsArgs {
        let mut a = SettingsArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            SettingsArgs::default().to_settings().unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        let cases: [(SettingsArgs, &str); 6] = [
            (args(|a| a.workers = Some(0)), "--workers"),
            (args(|a| a.workers = Some(21)), "--workers"),
            (args(|a| a.scale = Some(0)), "--scale"),
            (
                args(|a| a.loopback_prefix = Some("10.0.0".into())),
                "--loopback-prefix",
            ),
            (
                args(|a| a.loopback_prefix = Some("127.0.01".into())),
                "--loopback-prefix",
            ),
            (args(|a| a.db_port = Some(80)), "--db-port"),
        ];
        for (a, flag) in cases {
            let err = a.to_settings().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn bench_profiles_and_overrides() {
        let classic = BenchArgs::default().to_settings().unwrap();
        assert_eq!(
            (
                classic.threads,
                classic.seconds,
                classic.table_size,
                classic.runs
            ),
            (4, 10, 100_000, 3)
        );
        let quick = BenchArgs {
            quick: true,
            runs: Some(2),
            ..BenchArgs::default()
        }
        .to_settings()
        .unwrap();
        assert_eq!((quick.seconds, quick.table_size, quick.runs), (3, 1000, 2));
        let err = BenchArgs {
            threads: Some(0),
            ..BenchArgs::default()
        }
        .to_settings()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--threads must be between 1 and 256"),
            "{err}"
        );
        assert!(BenchArgs::default().is_empty());
        assert!(!BenchArgs {
            quick: true,
            ..BenchArgs::default()
        }
        .is_empty());
    }

    #[test]
    fn the_build_target_is_this_machines_unless_given() {
        assert_eq!(args(|_| {}).to_settings().unwrap().target, None);
        let given = args(|a| a.target = Some("x86_64-unknown-linux-gnu".into()));
        let settings = given.to_settings().unwrap();
        assert_eq!(settings.target.as_deref(), Some("x86_64-unknown-linux-gnu"));
        given.check_matches(&settings).unwrap();
        let err = args(|a| a.target = Some("aarch64-unknown-linux-gnu".into()))
            .check_matches(&settings)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("--target x86_64-unknown-linux-gnu"),
            "{err}"
        );
    }

    #[test]
    fn aws_settings_need_the_aws_provider_and_valid_values() {
        let err = args(|a| a.aws.region = Some("eu-west-1".into()))
            .to_settings()
            .unwrap_err();
        assert!(err.to_string().contains("need --provider aws"), "{err}");
        let settings = args(|a| {
            a.provider = Some(ProviderKind::Aws);
            a.aws.ssh_cidr = Some("203.0.113.7/32".into());
        })
        .to_settings()
        .unwrap();
        assert_eq!(
            settings.target.as_deref(),
            Some("x86_64-unknown-linux-musl")
        );
        let aws = settings.aws.unwrap();
        assert_eq!(aws.db_instance_type, "t2.micro");
        assert_eq!(aws.service_instance_type, "t2.large");
        assert_eq!(aws.http_cidr, "0.0.0.0/0");
        for (bad, flag) in [
            (
                args(|a| a.aws.ssh_cidr = Some("203.0.113.7".into())),
                "--ssh-cidr",
            ),
            (
                args(|a| a.aws.http_cidr = Some("10.0.0.0/33".into())),
                "--http-cidr",
            ),
            (args(|a| a.aws.ami = Some("ubuntu".into())), "--ami"),
            (
                args(|a| a.aws.aws_endpoint = Some("localhost:5000".into())),
                "--aws-endpoint",
            ),
        ] {
            let bad = SettingsArgs {
                provider: Some(ProviderKind::Aws),
                ..bad
            };
            let err = bad.to_settings().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        let recorded = args(|a| a.provider = Some(ProviderKind::Aws))
            .to_settings()
            .unwrap();
        let err = args(|a| a.aws.db_instance_type = Some("t3.small".into()))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("--db-instance-type t2.micro, not t3.small"),
            "{err}"
        );
        let err = args(|a| a.provider = Some(ProviderKind::Local))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(
            err.to_string().contains("--provider aws, not local"),
            "{err}"
        );
    }

    #[test]
    fn rerun_flags_must_match_the_recorded_settings() {
        let recorded = Settings::default();
        args(|a| a.workers = Some(3))
            .check_matches(&recorded)
            .unwrap();
        SettingsArgs::default().check_matches(&recorded).unwrap();
        let err = args(|a| a.workers = Some(2))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(err.to_string().contains("--workers 3, not 2"), "{err}");
    }
}
