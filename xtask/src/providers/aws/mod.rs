//! The aws provider: every host is an EC2 instance in the default VPC, reached over SSH.
//!
//! Every resource is tagged with the deployment id, its role and index. The tags are the truth:
//! provision adopts what already carries them (so a resumed or retried run never creates
//! twice) and teardown removes everything that carries them (so a lost data.json leaks
//! nothing). data.json records the same resources as soon as they are known.

mod host_keys;
mod prices;
mod provision;
mod teardown;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

use super::{machines, Plan, PlannedHost, Provider};
use crate::state::{Deployment, Host, Paths, Role, Session, Settings, SshEndpoint};

pub use prices::overrides as price_overrides;
pub use teardown::teardown_lost;

/// The login user of Canonical's Ubuntu images.
const SSH_USER: &str = "ubuntu";
/// Tag naming what created a resource, for people browsing the console.
const MANAGED_BY: &str = "cargo-xtask";

pub struct Aws;

impl Provider for Aws {
    fn plan(
        &self,
        settings: &Settings,
        paths: &Paths,
        live: Option<&Deployment>,
        prices: &BTreeMap<String, f64>,
    ) -> Result<Plan> {
        let aws = settings.aws()?;
        let hosts = match live {
            Some(d) => d.hosts.clone(),
            None => plan_hosts(settings, paths, "plan"),
        };
        let type_of = |role: Role| provision::instance_type_name(aws, role);
        let types: Vec<&str> = hosts.iter().map(|h| type_of(h.role)).collect();
        let cost = prices::Cost::of(&types, provision::ROOT_VOLUME_GIB, prices);
        let mut lines: Vec<String> = cost
            .lines
            .iter()
            .map(|line| match line.each {
                Some(each) => format!(
                    "{} × {}: ${each:.4} per hour each, ${:.4} per hour",
                    line.count,
                    line.what,
                    each * line.count as f64
                ),
                None => format!("{} × {}: price unknown", line.count, line.what),
            })
            .collect();
        lines.push(format!(
            "in all {} (${:.2} per day) from provision until teardown",
            cost.describe(),
            cost.per_hour() * 24.0
        ));
        let public = |h: &Host| {
            let record = live?.aws.as_ref()?.instances.get(&h.name)?;
            Some(format!(
                "{} (public {})",
                record.private_ip.clone()?,
                record.public_ip.clone()?
            ))
        };
        let mut notes = vec![format!(
            "prices: {}; data transfer out of AWS is not counted",
            prices::READ_FOR
        )];
        let region = live
            .and_then(|d| d.aws.as_ref()?.region.clone())
            .or(aws.region.clone());
        if region.as_deref().is_some_and(|r| r != "us-east-1") {
            notes.push(format!(
                "the region is {}: its prices may differ from us-east-1's",
                region.unwrap_or_default()
            ));
        }
        Ok(Plan {
            hosts: hosts
                .iter()
                .map(|h| PlannedHost {
                    name: h.name.clone(),
                    role: h.role,
                    size: type_of(h.role).to_string(),
                    address: public(h).unwrap_or_else(|| "known once it runs".to_string()),
                })
                .collect(),
            rules: provision::rules(settings, aws)
                .iter()
                .map(provision::Rule::describe)
                .collect(),
            cost: lines,
            notes,
        })
    }

    fn charges(&self, d: &Deployment) -> Option<String> {
        let resources = d.aws.as_ref()?;
        let launched = resources.launched_at.as_deref()?;
        let since = humantime::parse_rfc3339(launched).ok()?;
        let seconds = since.elapsed().map_or(0, |e| e.as_secs());
        let aws = d.settings.aws().ok()?;
        let types: Vec<&str> = d
            .hosts
            .iter()
            .map(|h| provision::instance_type_name(aws, h.role))
            .collect();
        let cost = prices::Cost::of(&types, provision::ROOT_VOLUME_GIB, &BTreeMap::new());
        Some(format!(
            "{} instances have run since {launched} ({}): about ${:.2} so far; they cost {} \
             until `{}`",
            d.hosts.len(),
            prices::span(seconds),
            cost.per_hour() * seconds as f64 / 3600.0,
            cost.describe(),
            crate::state::command("teardown")
        ))
    }

    fn plan_hosts(&self, settings: &Settings, paths: &Paths, id: &str) -> Result<Vec<Host>> {
        Ok(plan_hosts(settings, paths, id))
    }

    fn create(&self, session: &mut Session) -> Result<()> {
        provision::provision(session)
    }

    fn destroy(&self, session: &mut Session) -> Result<()> {
        teardown::teardown(session)?;
        machines::forget(&session.paths)
    }

    /// An instance more, in the groups of its role: the host is recorded first, then what
    /// provision does for a host without an instance (launch, wait until it runs, its
    /// addresses, its key).
    fn add_host(&self, session: &mut Session, name: &str, role: Role) -> Result<Host> {
        if session.deployment.host_named(name).is_none() {
            let planned = Host::planned(name, role);
            let host = on_instance(planned, &session.paths, &session.deployment.id);
            session.deployment.hosts.push(host);
            session.save()?;
        }
        provision::launch_missing(session)?;
        session
            .deployment
            .host_named(name)
            .cloned()
            .with_context(|| format!("{name} is not recorded after its launch"))
    }

    /// Terminates the host's instance (nothing of the deployment outlives it there), then
    /// forgets it.
    fn remove_host(&self, session: &mut Session, host: &Host) -> Result<()> {
        teardown::terminate(session, &host.name)?;
        session.deployment.hosts.retain(|h| h.name != host.name);
        session.save()
    }

    fn client_address(&self, client: &Host) -> String {
        machines::client_address(client)
    }

    /// The gatekeeper's public name (only it has one that people use).
    fn public_gatekeeper_url(&self, d: &Deployment) -> Result<String> {
        let public = d
            .aws
            .as_ref()
            .and_then(|aws| aws.instances.get("gatekeeper"))
            .and_then(|i| i.public_dns.clone().or(i.public_ip.clone()));
        match public {
            Some(name) => Ok(format!("http://{name}:{}", d.settings.service_port)),
            None => d.gatekeeper_url(),
        }
    }

    fn bench_machines(&self, d: &Deployment) -> Result<(String, String)> {
        let aws = d.settings.aws()?;
        Ok((
            aws.db_instance_type.clone(),
            format!(
                "the proxy's instance ({}), apart from the database hosts",
                aws.service_instance_type
            ),
        ))
    }
}

/// The hosts of an aws deployment: the same roles and names as the local provider's, each an
/// instance whose addresses are filled in once it runs.
fn plan_hosts(settings: &Settings, paths: &Paths, deployment_id: &str) -> Vec<Host> {
    super::local::plan_hosts(settings, &paths.state_dir())
        .into_iter()
        .map(|host| on_instance(host, paths, deployment_id))
        .collect()
}

/// A host on an instance of its own, reached as the images' login user with the
/// deployment's key; its addresses are filled in once the instance runs.
fn on_instance(host: Host, paths: &Paths, deployment_id: &str) -> Host {
    let ssh = SshEndpoint {
        address: String::new(),
        port: 22,
        user: SSH_USER.to_string(),
        key_file: key_file(paths, deployment_id),
        known_hosts: paths.state_dir().join("known_hosts"),
        // Set by provision once the keys are read from the console.
        host_keys_pinned: false,
        sudo: true,
        log_file: paths
            .state_dir()
            .join("logs")
            .join(format!("{}.log", host.name)),
    };
    machines::place(host, String::new(), ssh)
}

/// The deployment's private key: next to data.json, ignored by git, mode 0600.
pub fn key_file(paths: &Paths, deployment_id: &str) -> PathBuf {
    paths.dir().join(format!("{deployment_id}.pem"))
}

/// Which security group a role's instances are in.
pub fn group_of(role: Role) -> &'static str {
    match role {
        Role::Gatekeeper => "gatekeeper",
        Role::TrustedHost => "trusted-host",
        Role::Proxy => "proxy",
        Role::Standalone | Role::Manager | Role::Worker | Role::Node => "database",
    }
}

/// Runs the async SDK calls of a step to completion.
fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// An EC2 client from the standard AWS chain (environment, ~/.aws, SSO, session tokens), with
/// the given region and endpoint. Returns the region it resolved to.
async fn client(region: Option<&str>, endpoint: Option<&str>) -> Result<(Client, String)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let region = config.region().map(|r| r.to_string()).context(
        "no AWS region is set: pass --region, or set AWS_REGION, or run `aws configure`",
    )?;
    Ok((Client::new(&config), region))
}

/// Turns an SDK error into one that says what was being done and, for the errors a person can
/// fix (credentials, permissions), what to do.
fn explain<E>(what: &str, error: aws_sdk_ec2::error::SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    const FIX: &str = "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for \
        temporary credentials, as in a classroom account; copy fresh ones when they expire), or \
        AWS_PROFILE for a profile in ~/.aws/credentials, then run the step again";
    let code = error.code().unwrap_or_default().to_string();
    let message = error.message().unwrap_or_default().to_string();
    let detail = DisplayErrorContext(&error).to_string();
    if matches!(
        code.as_str(),
        "AuthFailure" | "RequestExpired" | "ExpiredToken" | "InvalidClientTokenId"
    ) {
        anyhow!("{what}: AWS refused the credentials ({code}: {message}). {FIX}")
    } else if detail.contains("CredentialsNotLoaded") {
        anyhow!("{what}: found no AWS credentials. {FIX}")
    } else if code == "UnauthorizedOperation" {
        anyhow!("{what}: these credentials may not do this ({message}); use an account or role with EC2 permissions")
    } else if code.is_empty() {
        anyhow!("{what}: {detail}")
    } else {
        anyhow!("{what}: {code}: {message}")
    }
}

/// The error of a waiter that stopped waiting for the instances to reach `state`.
fn waiter_gave_up<E: std::error::Error>(
    state: &'static str,
    timeout: std::time::Duration,
) -> impl FnOnce(E) -> anyhow::Error {
    move |e| {
        anyhow!(
            "the instances did not reach `{state}` within {} s: {}",
            timeout.as_secs(),
            DisplayErrorContext(e)
        )
    }
}

/// The error code of an SDK error ("InvalidPermission.Duplicate"), if the service sent one.
fn code_of<E: ProvideErrorMetadata>(error: &aws_sdk_ec2::error::SdkError<E>) -> &str {
    error.code().unwrap_or_default()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The tags every resource of the deployment carries, plus its own name and role.
fn tags_for(
    resource: ResourceType,
    deployment: &str,
    name: &str,
    role: &str,
    index: u32,
) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(tag("Name", &format!("{deployment}-{name}")))
        .tags(tag("deployment", deployment))
        .tags(tag("role", role))
        .tags(tag("index", &index.to_string()))
        .tags(tag("managed-by", MANAGED_BY))
        .build()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

fn deployment_filter(deployment: &str) -> Filter {
    filter("tag:deployment", &[deployment])
}

fn require<T>(value: Option<T>, what: &str) -> Result<T> {
    match value {
        Some(v) => Ok(v),
        None => bail!("the EC2 API answered without {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Engine, ProviderKind, ProviderSettings};

    #[test]
    fn the_plan_shows_the_types_rules_and_price_of_the_settings() {
        let mut settings = Settings {
            engine: Engine::Galera,
            ..Settings::defaults(ProviderKind::Aws)
        };
        if let ProviderSettings::Aws(aws) = &mut settings.provider {
            aws.db_instance_type = "t3.small".into();
            aws.ssh_cidr = "203.0.113.7/32".into();
        }
        let paths = Paths::new("/srv/d/data.json".into());
        let plan = Aws.plan(&settings, &paths, None, &BTreeMap::new()).unwrap();
        let sizes: Vec<(&str, &str)> = plan
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.size.as_str()))
            .collect();
        assert_eq!(sizes[1], ("node-1", "t3.small"));
        assert_eq!(sizes[6], ("gatekeeper", "t2.large"));
        assert_eq!(plan.hosts[1].address, "known once it runs");
        for port in [4567, 4568, 4444] {
            assert!(
                plan.rules.contains(&format!(
                    "database: port {port} from the database group ({})",
                    match port {
                        4567 => "Galera group communication",
                        4568 => "Galera incremental state transfer",
                        _ => "Galera full state transfer",
                    }
                )),
                "{:?}",
                plan.rules
            );
        }
        assert!(plan
            .rules
            .contains(&"proxy: port 22 from 203.0.113.7/32 (SSH from the operator)".to_string()));
        assert!(
            plan.cost[0].starts_with("4 × t3.small: $0.0208 per hour each"),
            "{:?}",
            plan.cost
        );
        assert!(
            plan.cost[1].starts_with("3 × t2.large: $0.0928 per hour each"),
            "{:?}",
            plan.cost
        );
    }
}
