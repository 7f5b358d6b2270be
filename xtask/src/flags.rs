//! The command line, declared once.
//!
//! Settings flags are the fields of `Settings` (state/settings.rs) by name: `--db-port` sets
//! `db_port`. A flag that is given is laid over the provider's defaults; one that is not keeps
//! the default, which the help shows from the same place. Only `provision` and `all` take them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::state::{BenchSettings, Engine, HostKeys, ProviderKind, Settings};

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
    /// Show what provision would create (or what the live deployment has): each host, its size
    /// and address, the network rules and, on aws, the price per hour. Creates nothing.
    Plan(PlanArgs),
    /// Allocate the hosts (local: loopback addresses and folders; aws: instances; ssh: the
    /// inventory's machines, checked first) and generate the secrets.
    Provision(ProvisionArgs),
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
    Status(StatusArgs),
    /// Make a worker the manager (the most advanced one, or the one named); the old manager
    /// is fenced until `repair`.
    Failover(FailoverArgs),
    /// Check what the done steps promised and fix what drifted: restart dead servers and
    /// services, re-point workers at the manager, bring a fenced old manager back as a worker.
    Repair,
    /// Set the number of workers while the cluster serves: new ones get a copy of a worker's
    /// data and reads once caught up; removed ones finish their reads first. Run it again to
    /// go on after an interruption.
    Scale(ScaleArgs),
    /// Stop and remove everything the deployment created.
    Teardown(TeardownArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also show the query shapes the proxy has served (its per-digest statistics), the most
    /// total time first.
    #[arg(long)]
    pub queries: bool,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The worker to promote [default: the one that has applied the most].
    #[arg(long, value_name = "WORKER")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// How many workers the cluster should have (1 to 20).
    #[arg(long, value_name = "N")]
    pub workers: u8,
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
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub step: StepArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// An instance type's price in USD per hour, over the table kept in xtask (for a type it
    /// lacks, or another region's price); repeatable.
    #[arg(long, value_name = "TYPE=USD")]
    pub price_per_hour: Vec<String>,
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

/// How much benchmarking, over the classic profile or the quick one.
#[derive(Debug, Default, Clone, Args, Serialize)]
pub struct BenchArgs {
    /// A small, fast profile (CI): 1 run, 3 s each, a 1,000-row table, 2 threads, load
    /// concurrency 4. Flags given with it still win.
    #[arg(long)]
    #[serde(skip)]
    pub quick: bool,
    /// sysbench threads per server.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Seconds of each sysbench run and each load-test run.
    #[arg(long, value_name = "S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Rows of each sysbench table.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u32>,
    /// sysbench tables.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<u32>,
    /// How many times each measurement is repeated.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    /// Clients of the patterns load test.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The degraded-worker scenario: `random` and `customized` again with one worker given this
    /// percent of the others' CPU quota (0: off; needs per-host CPU limits).
    #[arg(long, value_name = "PERCENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_worker_percent: Option<u32>,
    /// The scaling curve: after the other measurements, scale the cluster to each of these
    /// numbers of workers in turn (e.g. 1,2,3,4,6; Galera: nodes, 3 or more) and measure its
    /// reads at each: sysbench on every worker at once and the chain; then scale it back.
    #[arg(long, value_name = "COUNTS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Vec<u8>>,
}

/// Deployment settings: given to `provision` (or `all`) and fixed for the deployment's life.
/// Each field is named as the `Settings` field it sets.
#[derive(Debug, Default, Clone, Args, Serialize)]
pub struct SettingsArgs {
    /// Where the hosts are: loopback addresses of this machine, EC2 instances, or machines you
    /// already have (an inventory, --hosts) [default: local].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    /// How the cluster keeps its copies: `replication` (a manager and GTID replicas) or
    /// `galera` (synchronous, multi-primary nodes) [default: replication].
    #[arg(long, value_name = "ENGINE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// Number of read replicas (1-20); with `--engine galera`, the number of nodes (3-20).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u8>,
    /// TCP port of every database server.
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_port: Option<u16>,
    /// TCP port of every role service.
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u16>,
    /// Dataset size; 1 is about 1,500 rows, it grows linearly (1-1000).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Semi-synchronous replication: how long the manager waits for a worker to have a commit
    /// before it acknowledges it anyway (asynchronously); 0: asynchronous. Replication only.
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semi_sync_timeout_ms: Option<u32>,
    /// Replication: seconds the manager must have been unreachable (and every reachable worker
    /// must have lost it) before the proxy promotes a worker by itself; 0: only `cargo xtask
    /// failover`.
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_after: Option<u32>,
    /// Replication: no second automatic failover within this many seconds of the last one.
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_cooldown: Option<u32>,
    /// Seconds of database time one client may use per second across the cluster; past it the
    /// proxy answers 429 with Retry-After (default: 0.125 per database server).
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_db_share: Option<f64>,
    /// Queries each database server runs at once for the proxy, the rest waiting their turn
    /// fairly across clients (default: eight per CPU of the server's quota, at least 4).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_slots: Option<u32>,
    /// A read whose plan examines more rows than this is refused before it runs.
    #[arg(long, value_name = "ROWS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_examined_rows: Option<u64>,
    /// Rust target the services are built for (local and ssh providers: this machine's, unless
    /// given).
    #[arg(long, value_name = "TRIPLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Local provider: first three octets of the hosts' loopback addresses.
    #[arg(long, value_name = "A.B.C")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loopback_prefix: Option<String>,
    /// Local provider: each host's CPU quota (a cgroup), by class such as
    /// `databases=0.25,services=0.5,bench-client=1` (a class not named keeps its default), one
    /// number for all, or `unlimited`.
    #[arg(long, value_name = "CPUS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpus: Option<String>,
    /// Local provider: each host's memory limit (`512M`, `2G`) or `unlimited`.
    #[arg(long, value_name = "SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_memory: Option<String>,
    /// ssh provider: the inventory of the machines (TOML: each one's address, login user and
    /// key; see "The ssh provider" in the README).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<PathBuf>,
    /// AWS region [default: from AWS_REGION or ~/.aws/config].
    #[arg(long, value_name = "REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An EC2-compatible endpoint to use instead of AWS's (for example a local moto server).
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_endpoint: Option<String>,
    /// Image of every instance [default: the latest Ubuntu LTS (amd64) from Canonical].
    #[arg(long, value_name = "AMI_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    /// Instance type of the database hosts.
    #[arg(long, value_name = "TYPE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_instance_type: Option<String>,
    /// Instance type of the gatekeeper, trusted host and proxy.
    #[arg(long, value_name = "TYPE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_instance_type: Option<String>,
    /// Addresses allowed to log in with SSH [default: this machine's public address /32].
    #[arg(long, value_name = "CIDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_cidr: Option<String>,
    /// Addresses allowed to reach the gatekeeper.
    #[arg(long, value_name = "CIDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cidr: Option<String>,
    /// Accept an --ssh-cidr that opens SSH to every address (/0).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_ssh_from_anywhere: bool,
    /// How the instances' SSH host keys are trusted: pinned from each instance's console
    /// output before the first login, or the first key seen.
    #[arg(long, value_name = "HOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_keys: Option<HostKeys>,
}

/// Parses the command line; a settings flag given to a step that does not take it gets the
/// reason instead of clap's plain "unexpected argument".
pub fn parse() -> Cli {
    let matches = command().try_get_matches().unwrap_or_else(|e| {
        if let Some(flag) = misplaced_setting(&e) {
            // The hint names the state file the command line gave, parsed or not.
            crate::state::remember(&crate::state::Paths::new(given_data()));
            eprintln!(
                "error: {flag} is a deployment setting: settings are chosen at provision and kept \
                 in data.json for the deployment's life; to change one, run `{}`, then `{}`",
                crate::state::command("teardown"),
                crate::state::command(&format!("provision {flag} …"))
            );
            std::process::exit(2);
        }
        e.exit()
    });
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The state file a command line names (`--data PATH`, `--data=PATH` or XTASK_DATA), read
/// without clap for a command line it refused.
fn given_data() -> PathBuf {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--data" {
            if let Some(path) = args.next() {
                return PathBuf::from(path);
            }
        } else if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--data=")) {
            return PathBuf::from(path);
        }
    }
    std::env::var_os("XTASK_DATA").map_or_else(
        || crate::state::project_root().join("data.json"),
        PathBuf::from,
    )
}

fn misplaced_setting(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.strip_prefix("--")?.split('=').next()?.replace('-', "_");
    let settings = SettingsArgs::augment_args(clap::Command::new("settings"));
    let is_setting = settings
        .get_arguments()
        .any(|a| a.get_id() == name.as_str());
    is_setting.then(|| format!("--{}", name.replace('_', "-")))
}

/// The command with every setting's default in its help, taken from `Settings::defaults` and
/// `BenchSettings::defaults`.
pub fn command() -> clap::Command {
    let mut defaults: Vec<(String, String)> = Vec::new();
    let local = fields(&Settings::defaults(ProviderKind::Local));
    let aws = fields(&Settings::defaults(ProviderKind::Aws));
    for (name, value) in &aws {
        let text = plain(value);
        if text.is_empty() {
            continue;
        }
        let label = match local.get(name) {
            Some(v) if v == value => format!("[default: {text}]"),
            Some(v) if v.is_null() => format!("[default on aws: {text}]"),
            Some(v) => format!("[default: {}; on aws: {text}]", plain(v)),
            None => format!("[default: {text}]"),
        };
        defaults.push((name.clone(), label));
    }
    for (name, value) in &local {
        if !aws.contains_key(name) {
            defaults.push((name.clone(), format!("[default: {}]", plain(value))));
        }
    }
    let bench = fields(&BenchSettings::defaults(false));
    let quick = fields(&BenchSettings::defaults(true));
    for (name, value) in &bench {
        let label = format!(
            "[default: {}; quick: {}]",
            plain(value),
            plain(&quick[name])
        );
        defaults.push((name.clone(), label));
    }

    let mut cmd = Cli::command();
    for sub in ["plan", "provision", "all", "bench"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for (name, label) in &defaults {
                let Some(arg) = c.get_arguments().find(|a| a.get_id() == name.as_str()) else {
                    continue;
                };
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let help = format!("{} {label}", help.trim_end());
                c = c.mut_arg(name.as_str(), |a| a.help(help));
            }
            c
        });
    }
    cmd
}

impl SettingsArgs {
    /// The flags that were given, by field name; a path as an absolute one, so that the record
    /// holds wherever the next command runs.
    fn given(&self) -> Map<String, Value> {
        let mut given = as_object(self);
        if let Some(hosts) = &self.hosts {
            if let Ok(path) = std::path::absolute(hosts) {
                given.insert("hosts".into(), Value::String(path.display().to_string()));
            }
        }
        given
    }

    pub fn provider(&self) -> ProviderKind {
        self.provider.unwrap_or(ProviderKind::Local)
    }

    /// The provider's defaults with the given flags laid over them, validated.
    pub fn to_settings(&self) -> Result<Settings> {
        let kind = self.provider();
        let mut settings =
            serde_json::to_value(Settings::defaults(kind)).context("serializing the defaults")?;
        for (name, value) in self.given() {
            if name == "provider" {
                continue;
            }
            let slot = field_mut(&mut settings, &name).with_context(|| {
                format!(
                    "--{} is not a setting of the {} provider (see `{}`)",
                    flag(&name),
                    plain(&serde_json::to_value(kind).unwrap_or_default()),
                    crate::state::command("provision --help")
                )
            })?;
            *slot = value;
        }
        let settings: Settings = serde_json::from_value(settings).context("applying the flags")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that flags given on a rerun agree with the deployment's recorded settings.
    pub fn check_matches(&self, recorded: &Settings) -> Result<()> {
        let mut have = fields(recorded);
        have.insert(
            "provider".to_string(),
            serde_json::to_value(recorded.provider_kind()).unwrap_or_default(),
        );
        for (name, given) in self.given() {
            let recorded = have.get(&name).unwrap_or(&Value::Null);
            if *recorded != given {
                let was = if recorded.is_null() {
                    format!("without --{}", flag(&name))
                } else {
                    format!("with --{} {}", flag(&name), plain(recorded))
                };
                bail!(
                    "this deployment was provisioned {was}, not {}; run `{}` first to change it",
                    plain(&given),
                    crate::state::command("teardown")
                );
            }
        }
        Ok(())
    }
}

impl BenchArgs {
    pub fn is_empty(&self) -> bool {
        !self.quick && as_object(self).is_empty()
    }

    /// The profile's defaults with the given flags laid over them, validated.
    pub fn to_settings(&self) -> Result<BenchSettings> {
        let settings: BenchSettings =
            overlay(&BenchSettings::defaults(self.quick), as_object(self))?;
        settings.validate()?;
        Ok(settings)
    }
}

fn overlay<T: Serialize + DeserializeOwned>(defaults: &T, given: Map<String, Value>) -> Result<T> {
    let mut value = serde_json::to_value(defaults).context("serializing the defaults")?;
    for (name, v) in given {
        *field_mut(&mut value, &name).with_context(|| format!("--{} is unknown", flag(&name)))? = v;
    }
    serde_json::from_value(value).context("applying the flags")
}

fn as_object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The fields of settings by name, the provider's own among them (its `kind` aside).
fn fields(value: &impl Serialize) -> Map<String, Value> {
    let mut map = as_object(value);
    if let Some(Value::Object(provider)) = map.remove("provider") {
        map.extend(provider.into_iter().filter(|(k, _)| k != "kind"));
    }
    map
}

fn field_mut<'a>(value: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    let object = value.as_object_mut()?;
    if name != "provider" && object.contains_key(name) {
        return object.get_mut(name);
    }
    object
        .get_mut("provider")?
        .as_object_mut()?
        .get_mut(name)
        .filter(|_| name != "kind")
}

fn flag(field: &str) -> String {
    field.replace('_', "-")
}

/// A value as a person types it: strings without quotes, null as nothing.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ProviderSettings;

    fn args(f: impl FnOnce(&mut SettingsArgs)) -> SettingsArgs {
        let mut a = SettingsArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            SettingsArgs::default().to_settings().unwrap(),
            Settings::defaults(ProviderKind::Local)
        );
    }

    #[test]
    fn every_settings_flag_names_a_field_and_shows_its_default() {
        let settings = SettingsArgs::augment_args(clap::Command::new("s"));
        let mut names: Vec<String> = fields(&Settings::defaults(ProviderKind::Local))
            .into_iter()
            .chain(fields(&Settings::defaults(ProviderKind::Aws)))
            .chain(fields(&Settings::defaults(ProviderKind::Ssh)))
            .map(|(k, _)| k)
            .collect();
        names.push("provider".into());
        for arg in settings.get_arguments() {
            let id = arg.get_id().as_str();
            assert!(names.iter().any(|n| n == id), "--{id} sets no field");
            assert_eq!(arg.get_long(), Some(flag(id).as_str()));
        }
        let help = command()
            .find_subcommand_mut("provision")
            .unwrap()
            .render_long_help()
            .to_string();
        for shown in [
            "[default: 3]",
            "[default: 127.0.1]",
            "[default: t2.micro]",
            "[default on aws: x86_64-unknown-linux-musl]",
        ] {
            assert!(help.contains(shown), "{shown} missing in:\n{help}");
        }
        let help = command()
            .find_subcommand_mut("bench")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 100000; quick: 1000]"), "{help}");
    }

    #[test]
    fn a_setting_given_to_another_step_is_explained() {
        let err = command()
            .try_get_matches_from(["xtask", "install-cluster", "--workers", "2"])
            .unwrap_err();
        assert_eq!(misplaced_setting(&err).as_deref(), Some("--workers"));
        let err = command()
            .try_get_matches_from(["xtask", "install-cluster", "--frobnicate"])
            .unwrap_err();
        assert_eq!(misplaced_setting(&err), None);
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
        assert_eq!(classic, BenchSettings::defaults(false));
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
        assert!(!BenchArgs {
            tables: Some(2),
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
            err.to_string().contains(
                "provisioned with --target x86_64-unknown-linux-gnu, not aarch64-unknown-linux-gnu"
            ),
            "{err}"
        );
    }

    #[test]
    fn aws_settings_need_the_aws_provider_and_valid_values() {
        let err = args(|a| a.region = Some("eu-west-1".into()))
            .to_settings()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("--region is not a setting of the local provider"),
            "{err}"
        );
        let err = args(|a| {
            a.provider = Some(ProviderKind::Aws);
            a.loopback_prefix = Some("127.0.3".into());
        })
        .to_settings()
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--loopback-prefix is not a setting of the aws provider"),
            "{err}"
        );
        let settings = args(|a| {
            a.provider = Some(ProviderKind::Aws);
            a.ssh_cidr = Some("203.0.113.7/32".into());
        })
        .to_settings()
        .unwrap();
        assert_eq!(
            settings.target.as_deref(),
            Some("x86_64-unknown-linux-musl")
        );
        let ProviderSettings::Aws(aws) = &settings.provider else {
            panic!("{settings:?}")
        };
        assert_eq!(aws.db_instance_type, "t2.micro");
        assert_eq!(aws.service_instance_type, "t2.large");
        assert_eq!(aws.http_cidr, "0.0.0.0/0");
        assert_eq!(aws.ssh_cidr, "203.0.113.7/32");
        for (bad, flag) in [
            (
                args(|a| a.ssh_cidr = Some("203.0.113.7".into())),
                "--ssh-cidr",
            ),
            (
                args(|a| a.http_cidr = Some("10.0.0.0/33".into())),
                "--http-cidr",
            ),
            (args(|a| a.ami = Some("ubuntu".into())), "--ami"),
            (
                args(|a| a.ssh_cidr = Some("0.0.0.0/0".into())),
                "--allow-ssh-from-anywhere",
            ),
            (
                args(|a| a.aws_endpoint = Some("localhost:5000".into())),
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
        let anywhere = args(|a| {
            a.provider = Some(ProviderKind::Aws);
            a.ssh_cidr = Some("0.0.0.0/0".into());
            a.allow_ssh_from_anywhere = true;
        })
        .to_settings()
        .unwrap();
        let ProviderSettings::Aws(aws) = &anywhere.provider else {
            panic!("{anywhere:?}")
        };
        assert_eq!(
            (aws.ssh_cidr.as_str(), aws.host_keys),
            ("0.0.0.0/0", crate::state::HostKeys::Console)
        );
        let recorded = args(|a| a.provider = Some(ProviderKind::Aws))
            .to_settings()
            .unwrap();
        let err = args(|a| a.db_instance_type = Some("t3.small".into()))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("provisioned with --db-instance-type t2.micro, not t3.small"),
            "{err}"
        );
        let err = args(|a| a.provider = Some(ProviderKind::Local))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(
            err.to_string().contains("--provider aws, not local"),
            "{err}"
        );
        let err = args(|a| a.loopback_prefix = Some("127.0.1".into()))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("provisioned without --loopback-prefix"),
            "{err}"
        );
    }

    #[test]
    fn the_ssh_provider_needs_its_inventory() {
        let err = args(|a| a.provider = Some(ProviderKind::Ssh))
            .to_settings()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("--provider ssh needs --hosts FILE"),
            "{err}"
        );
        let err = args(|a| a.hosts = Some("machines.toml".into()))
            .to_settings()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("--hosts is not a setting of the local provider"),
            "{err}"
        );
        let given = args(|a| {
            a.provider = Some(ProviderKind::Ssh);
            a.hosts = Some("machines.toml".into());
        });
        let settings = given.to_settings().unwrap();
        let ProviderSettings::Ssh(ssh) = &settings.provider else {
            panic!("{settings:?}")
        };
        // Recorded as an absolute path, which the same relative flag matches on a rerun.
        assert_eq!(
            ssh.hosts,
            std::env::current_dir().unwrap().join("machines.toml")
        );
        assert_eq!(settings.target, None, "this machine's own");
        given.check_matches(&settings).unwrap();
    }

    #[test]
    fn rerun_flags_must_match_the_recorded_settings() {
        let recorded = Settings::defaults(ProviderKind::Local);
        args(|a| a.workers = Some(3))
            .check_matches(&recorded)
            .unwrap();
        args(|a| a.loopback_prefix = Some("127.0.1".into()))
            .check_matches(&recorded)
            .unwrap();
        SettingsArgs::default().check_matches(&recorded).unwrap();
        let err = args(|a| a.workers = Some(2))
            .check_matches(&recorded)
            .unwrap_err();
        assert!(err.to_string().contains("--workers 3, not 2"), "{err}");
    }
}
