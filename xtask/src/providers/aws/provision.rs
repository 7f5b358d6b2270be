//! provision on aws: image, key pair, security groups and instances, each adopted when it
//! already exists with the deployment's tags and recorded in data.json as soon as it is known.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, IpPermission, IpRange, KeyType, ResourceType,
    UserIdGroupPair, VolumeType,
};
use aws_sdk_ec2::Client;
use rand::distr::{Alphanumeric, SampleString};
use tokio::task::JoinSet;

use super::{
    block_on, client, code_of, deployment_filter, explain, filter, group_of, host_keys, key_file,
    require, tags_for, waiter_gave_up,
};
use crate::progress::Progress;
use crate::state::{
    AwsResources, AwsSettings, Engine, Host, HostKeys, ProviderSettings, Role, Session,
};

/// Canonical, the publisher of the official Ubuntu images.
const CANONICAL: &str = "099720109477";
/// The names of Canonical's amd64 server images of a `YY.04` release (LTS when YY is even).
const UBUNTU_IMAGES: &str = "ubuntu/images/hvm-ssd*/ubuntu-*-*.04-amd64-server-*";
const GROUPS: [&str; 4] = ["gatekeeper", "trusted-host", "proxy", "database"];
const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
/// Each instance's root volume: the image's 8 GB with room for the data, logs and binaries.
pub const ROOT_VOLUME_GIB: u32 = 20;

pub fn provision(session: &mut Session) -> Result<()> {
    block_on(provision_async(session))
}

async fn provision_async(session: &mut Session) -> Result<()> {
    let mut settings = session.deployment.settings.aws()?.clone();
    let id = session.deployment.id.clone();
    let recorded = session.deployment.aws.clone().unwrap_or_default();
    let progress = Progress::new("provision", 6);
    // Said before anything is created: from here it costs money until teardown.
    let types: Vec<&str> = session
        .deployment
        .hosts
        .iter()
        .map(|h| instance_type_name(&settings, h.role))
        .collect();
    let cost = super::prices::Cost::of(&types, ROOT_VOLUME_GIB, &BTreeMap::new());
    progress.note(format!(
        "{} instances: {} ({}), from now until `{}`; `{}` shows the bill's lines",
        types.len(),
        cost.describe(),
        super::prices::READ_FOR,
        crate::state::command("teardown"),
        crate::state::command("plan")
    ));

    progress.task("connecting to EC2");
    let region = recorded.region.as_deref().or(settings.region.as_deref());
    let (ec2, region) = client(region, settings.aws_endpoint.as_deref()).await?;
    record(session, |aws| aws.region = Some(region.clone()))?;
    if settings.ssh_cidr.is_empty() {
        settings.ssh_cidr = operator_cidr()?;
        session.deployment.settings.provider = ProviderSettings::Aws(settings.clone());
        session.save()?;
        progress.note(format!(
            "SSH is allowed from {} (this machine)",
            settings.ssh_cidr
        ));
    }

    progress.task("finding the image and the default VPC");
    let ami = match recorded.ami.clone().or(settings.ami.clone()) {
        Some(ami) => ami,
        None => latest_ubuntu_lts(&ec2).await?,
    };
    let vpc = match recorded.vpc_id.clone() {
        Some(vpc) => vpc,
        None => default_vpc(&ec2).await?,
    };
    record(session, |aws| {
        aws.ami = Some(ami.clone());
        aws.vpc_id = Some(vpc.clone());
    })?;

    progress.task("creating the key pair");
    let key_name = ensure_key_pair(&ec2, session).await?;
    record(session, |aws| aws.key_name = Some(key_name.clone()))?;

    progress.task("creating the security groups and their rules");
    let groups = ensure_groups(&ec2, &id, &vpc).await?;
    record(session, |aws| aws.security_groups = groups.clone())?;
    authorize_rules(&ec2, &groups, &settings, &session.deployment.settings).await?;

    progress.task(format!(
        "launching {} instances",
        session.deployment.hosts.len()
    ));
    launch_instances(&ec2, session, &ami, &key_name, &groups, &settings).await?;

    progress.task("waiting for every instance to run");
    wait_running(&ec2, session).await?;
    if settings.host_keys == HostKeys::Console {
        progress.note("pinning the instances' SSH host keys from their console output");
        host_keys::pin(&ec2, session).await?;
    }
    progress.note(format!(
        "deployment {id}: {} instances in {region}; private key {}",
        session.deployment.hosts.len(),
        key_file(&session.paths, &id).display()
    ));
    Ok(())
}

/// What provision does for hosts recorded without an instance (a host `scale` added): launch,
/// wait until it runs, record its addresses and, as the settings say, pin its keys.
pub fn launch_missing(session: &mut Session) -> Result<()> {
    block_on(async {
        let settings = session.deployment.settings.aws()?.clone();
        let recorded = session.deployment.aws.clone().unwrap_or_default();
        let (ec2, _) = client(recorded.region.as_deref(), settings.aws_endpoint.as_deref()).await?;
        let ami = require(recorded.ami, "the deployment's image in data.json")?;
        let key_name = require(recorded.key_name, "the deployment's key pair in data.json")?;
        launch_instances(
            &ec2,
            session,
            &ami,
            &key_name,
            &recorded.security_groups,
            &settings,
        )
        .await?;
        wait_running(&ec2, session).await?;
        if settings.host_keys == HostKeys::Console {
            host_keys::pin(&ec2, session).await?;
        }
        Ok(())
    })
}

fn record(session: &mut Session, change: impl FnOnce(&mut AwsResources)) -> Result<()> {
    change(session.deployment.aws.get_or_insert_default());
    session.save()
}

/// This machine's public address as AWS sees it, for the SSH rule.
fn operator_cidr() -> Result<String> {
    let address = duct::cmd!(
        "curl",
        "-fsS",
        "--max-time",
        "10",
        "https://checkip.amazonaws.com"
    )
    .stderr_capture()
    .read()
    .ok()
    .and_then(|text| text.trim().parse::<std::net::Ipv4Addr>().ok())
    .context(
        "could not find this machine's public address (https://checkip.amazonaws.com did not \
         answer): pass --ssh-cidr with the address SSH logins come from, such as 203.0.113.7/32",
    )?;
    Ok(format!("{address}/32"))
}

/// The newest Ubuntu LTS amd64 server image published by Canonical.
async fn latest_ubuntu_lts(ec2: &Client) -> Result<String> {
    let images = ec2
        .describe_images()
        .owners(CANONICAL)
        .filters(filter("name", &[UBUNTU_IMAGES]))
        .filters(filter("state", &["available"]))
        .send()
        .await
        .map_err(|e| explain("looking up the Ubuntu image", e))?;
    let candidates = images
        .images()
        .iter()
        .filter_map(|image| Some((image.name()?, image.image_id()?)));
    pick_lts(candidates).context(
        "found no Ubuntu LTS image from Canonical in this region; pass --ami with an image id",
    )
}

/// Picks the newest LTS release (an even `YY.04`), then the newest build of it: image names
/// end in the build date, so within a release they sort by date.
fn pick_lts<'a>(images: impl Iterator<Item = (&'a str, &'a str)>) -> Option<String> {
    images
        .filter_map(|(name, id)| {
            let version = name
                .split('-')
                .find_map(|part| part.strip_suffix(".04")?.parse::<u32>().ok())?;
            (version % 2 == 0).then_some(((version, name), id))
        })
        .max()
        .map(|(_, id)| id.to_string())
}

/// The image's root device, which the encrypted volume replaces.
async fn root_device_of(ec2: &Client, ami: &str) -> Result<String> {
    let images = ec2
        .describe_images()
        .image_ids(ami)
        .send()
        .await
        .map_err(|e| explain(&format!("looking up the image {ami}"), e))?;
    let device = images
        .images()
        .first()
        .and_then(|i| i.root_device_name())
        .map(str::to_string);
    device.with_context(|| format!("the image {ami} was not found or names no root device"))
}

async fn default_vpc(ec2: &Client) -> Result<String> {
    let vpcs = ec2
        .describe_vpcs()
        .filters(filter("isDefault", &["true"]))
        .send()
        .await
        .map_err(|e| explain("looking up the default VPC", e))?;
    let vpc =
        vpcs.vpcs().first().and_then(|v| v.vpc_id()).context(
            "this region has no default VPC; create one with `aws ec2 create-default-vpc`",
        )?;
    Ok(vpc.to_string())
}

/// The deployment's key pair, named after it. A private key already next to data.json is never
/// overwritten: when AWS lacks its pair, the public half is imported again.
async fn ensure_key_pair(ec2: &Client, session: &Session) -> Result<String> {
    let id = &session.deployment.id;
    let path = key_file(&session.paths, id);
    let found = ec2
        .describe_key_pairs()
        .filters(filter("key-name", &[id]))
        .send()
        .await
        .map_err(|e| explain("looking up the key pair", e))?;
    let exists = !found.key_pairs().is_empty();
    match (exists, path.exists()) {
        (true, true) => return Ok(id.clone()),
        (false, true) => {
            let public = duct::cmd!("ssh-keygen", "-y", "-f", &path)
                .stderr_capture()
                .read()
                .with_context(|| format!("reading the public key of {}", path.display()))?;
            ec2.import_key_pair()
                .key_name(id)
                .public_key_material(aws_sdk_ec2::primitives::Blob::new(public.into_bytes()))
                .tag_specifications(tags_for(ResourceType::KeyPair, id, "key", "key", 0))
                .send()
                .await
                .map_err(|e| explain("importing the key pair", e))?;
            return Ok(id.clone());
        }
        (true, false) => {
            // An earlier attempt created the pair and died before saving its private half,
            // which AWS never shows again. No instance can use it yet: make a new one.
            if !instances_of(ec2, id).await?.is_empty() {
                bail!(
                    "key pair {id} exists but its private key {} is missing, and instances use \
                     it: restore the file, or run `{}` and provision again",
                    path.display(),
                    crate::state::command("teardown")
                );
            }
            ec2.delete_key_pair()
                .key_name(id)
                .send()
                .await
                .map_err(|e| explain("replacing the key pair", e))?;
        }
        (false, false) => {}
    }
    let created = ec2
        .create_key_pair()
        .key_name(id)
        .key_type(KeyType::Ed25519)
        .tag_specifications(tags_for(ResourceType::KeyPair, id, "key", "key", 0))
        .send()
        .await
        .map_err(|e| explain("creating the key pair", e))?;
    let material = require(created.key_material(), "the private key")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(material.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id.clone())
}

/// One security group per role group, adopted by tag when it exists.
async fn ensure_groups(ec2: &Client, id: &str, vpc: &str) -> Result<BTreeMap<String, String>> {
    let existing = ec2
        .describe_security_groups()
        .filters(deployment_filter(id))
        .send()
        .await
        .map_err(|e| explain("looking up the security groups", e))?;
    let mut groups = BTreeMap::new();
    for group in existing.security_groups() {
        if let (Some(name), Some(group_id)) = (group.group_name(), group.group_id()) {
            if let Some(role) = name.strip_prefix(&format!("{id}-")) {
                groups.insert(role.to_string(), group_id.to_string());
            }
        }
    }
    for (index, role) in GROUPS.iter().enumerate() {
        if groups.contains_key(*role) {
            continue;
        }
        let created = ec2
            .create_security_group()
            .group_name(format!("{id}-{role}"))
            .description(format!("{role} hosts of deployment {id}"))
            .vpc_id(vpc)
            .tag_specifications(tags_for(
                ResourceType::SecurityGroup,
                id,
                role,
                role,
                index as u32,
            ))
            .send()
            .await
            .map_err(|e| explain(&format!("creating the {role} security group"), e))?;
        let group_id = require(created.group_id(), "a group id")?;
        groups.insert(role.to_string(), group_id.to_string());
    }
    Ok(groups)
}

/// Where a rule lets connections come from.
pub enum Source {
    /// The instances of one of the deployment's groups.
    Group(&'static str),
    Cidr(String),
}

/// One inbound rule of a security group.
pub struct Rule {
    pub group: &'static str,
    pub port: u16,
    pub from: Source,
    pub why: &'static str,
}

impl Rule {
    /// "trusted-host: port 8080 from the gatekeeper group (requests from the gatekeeper)".
    pub fn describe(&self) -> String {
        let from = match &self.from {
            Source::Group(group) => format!("the {group} group"),
            Source::Cidr(cidr) => cidr.clone(),
        };
        format!(
            "{}: port {} from {from} ({})",
            self.group, self.port, self.why
        )
    }
}

/// Who may reach what: each tier only from the tier in front of it, by group reference; SSH from
/// the operator only.
pub fn rules(settings: &crate::state::Settings, aws: &AwsSettings) -> Vec<Rule> {
    let rule = |group, port, from, why| Rule {
        group,
        port,
        from,
        why,
    };
    let (web, db) = (settings.service_port, settings.db_port);
    let mut rules = vec![
        rule(
            "gatekeeper",
            web,
            Source::Cidr(aws.http_cidr.clone()),
            "the public web pages and API",
        ),
        rule(
            "gatekeeper",
            web,
            Source::Group("proxy"),
            "the load test from the bench client",
        ),
        rule(
            "trusted-host",
            web,
            Source::Group("gatekeeper"),
            "requests from the gatekeeper",
        ),
        rule(
            "proxy",
            web,
            Source::Group("trusted-host"),
            "validated requests",
        ),
        // The bench's floor: a relay beside each service, on the next port, reached the way
        // the services are.
        rule(
            "gatekeeper",
            settings.floor_port(),
            Source::Group("proxy"),
            "the bench's floor relay, from the bench client",
        ),
        rule(
            "trusted-host",
            settings.floor_port(),
            Source::Group("gatekeeper"),
            "the bench's floor relays",
        ),
        rule(
            "proxy",
            settings.floor_port(),
            Source::Group("trusted-host"),
            "the bench's floor relays",
        ),
        rule(
            "database",
            db,
            Source::Group("proxy"),
            "the proxy and the bench client",
        ),
        rule(
            "database",
            db,
            Source::Group("database"),
            "replication within the cluster",
        ),
    ];
    if settings.engine == Engine::Galera {
        // Group communication, incremental and full state transfers: between the database
        // hosts only.
        for (port, why) in [
            (4567, "Galera group communication"),
            (4568, "Galera incremental state transfer"),
            (4444, "Galera full state transfer"),
        ] {
            rules.push(rule("database", port, Source::Group("database"), why));
        }
    }
    // Until provision finds this machine's public address, the plan says what it will be.
    let operator = match aws.ssh_cidr.is_empty() {
        true => "this machine's public address".to_string(),
        false => aws.ssh_cidr.clone(),
    };
    for group in GROUPS {
        rules.push(rule(
            group,
            22,
            Source::Cidr(operator.clone()),
            "SSH from the operator",
        ));
    }
    rules
}

/// Adds every rule to its group (one already there is fine).
async fn authorize_rules(
    ec2: &Client,
    groups: &BTreeMap<String, String>,
    aws: &AwsSettings,
    settings: &crate::state::Settings,
) -> Result<()> {
    for rule in rules(settings, aws) {
        let permission = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(rule.port))
            .to_port(i32::from(rule.port));
        let permission = match &rule.from {
            Source::Group(source) => permission.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(&groups[*source])
                    .description(rule.why)
                    .build(),
            ),
            Source::Cidr(cidr) => permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(rule.why)
                    .build(),
            ),
        }
        .build();
        let result = ec2
            .authorize_security_group_ingress()
            .group_id(&groups[rule.group])
            .ip_permissions(permission)
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if code_of(&e) == "InvalidPermission.Duplicate" => {}
            Err(e) => {
                return Err(explain(
                    &format!("adding a rule to the {} group", rule.group),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// The deployment's instances that are pending or running, by host name.
async fn instances_of(ec2: &Client, id: &str) -> Result<BTreeMap<String, Instance>> {
    let mut found = BTreeMap::new();
    let mut pages = ec2
        .describe_instances()
        .filters(deployment_filter(id))
        .filters(filter("instance-state-name", &["pending", "running"]))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("looking up the instances", e))?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let name = instance
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .and_then(|n| n.strip_prefix(&format!("{id}-")));
            if let Some(name) = name {
                found.insert(name.to_string(), instance.clone());
            }
        }
    }
    Ok(found)
}

pub fn instance_type_name(aws: &AwsSettings, role: Role) -> &str {
    match role.runs_database() {
        true => &aws.db_instance_type,
        false => &aws.service_instance_type,
    }
}

fn instance_type(aws: &AwsSettings, role: Role) -> InstanceType {
    InstanceType::from(instance_type_name(aws, role))
}

/// Launches the instances that do not exist yet, all at once. Each launch's ClientToken is
/// saved before the call; the tag lookup before it is what finds an instance whose launch
/// response was lost.
async fn launch_instances(
    ec2: &Client,
    session: &mut Session,
    ami: &str,
    key_name: &str,
    groups: &BTreeMap<String, String>,
    aws: &AwsSettings,
) -> Result<()> {
    let id = session.deployment.id.clone();
    let existing = instances_of(ec2, &id).await?;
    let hosts: Vec<Host> = session.deployment.hosts.clone();
    let mut missing = Vec::new();
    let recorded = session.deployment.aws.clone().unwrap_or_default();
    for (index, host) in hosts.iter().enumerate() {
        // Saved before the call, so a rerun sends the same one; a host added again after its
        // instance was terminated gets a new one (EC2 would answer the old one's with the
        // terminated instance).
        let token = recorded
            .instances
            .get(&host.name)
            .map(|i| i.client_token.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                let nonce = Alphanumeric
                    .sample_string(&mut rand::rng(), 8)
                    .to_lowercase();
                format!("{id}-{}-{nonce}", host.name)
            });
        let adopted = existing.get(&host.name).and_then(|i| i.instance_id());
        record(session, |resources| {
            let entry = resources.instances.entry(host.name.clone()).or_default();
            entry.client_token = token.clone();
            if let Some(instance_id) = adopted {
                entry.instance_id = Some(instance_id.to_string());
            }
        })?;
        if adopted.is_none() {
            missing.push((index, host.clone(), token));
        }
    }
    if !missing.is_empty()
        && session
            .deployment
            .aws
            .as_ref()
            .is_some_and(|a| a.launched_at.is_none())
    {
        record(session, |resources| {
            resources.launched_at = Some(crate::state::now())
        })?;
    }
    let root_device = if missing.is_empty() {
        String::new()
    } else {
        root_device_of(ec2, ami).await?
    };
    let mut launches = JoinSet::new();
    for (index, host, token) in missing {
        let request = ec2
            .run_instances()
            .image_id(ami)
            .instance_type(instance_type(aws, host.role))
            .min_count(1)
            .max_count(1)
            .key_name(key_name)
            .security_group_ids(&groups[group_of(host.role)])
            .client_token(token)
            // The instance metadata answers only with a session token (IMDSv2), one hop
            // away: a request forged through a service on the host cannot read it.
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            // The root volume (the databases' data, the services' configs) encrypted at rest.
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .encrypted(true)
                            .volume_size(ROOT_VOLUME_GIB as i32)
                            .delete_on_termination(true)
                            .volume_type(VolumeType::Gp3)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(tags_for(
                ResourceType::Instance,
                &id,
                &host.name,
                &host.role.to_string(),
                index as u32,
            ))
            .tag_specifications(tags_for(
                ResourceType::Volume,
                &id,
                &host.name,
                &host.role.to_string(),
                index as u32,
            ));
        launches.spawn(async move { (host.name, request.send().await) });
    }
    while let Some(joined) = launches.join_next().await {
        let (name, result) = joined.context("a launch task failed")?;
        let launched = result.map_err(|e| explain(&format!("launching {name}"), e))?;
        let instance_id = launched
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string);
        let instance_id = require(instance_id, "an instance id")?;
        record(session, |resources| {
            resources.instances.entry(name).or_default().instance_id = Some(instance_id);
        })?;
    }
    Ok(())
}

/// Waits until every instance runs, then records its addresses on its host.
async fn wait_running(ec2: &Client, session: &mut Session) -> Result<()> {
    let resources = session.deployment.aws.clone().unwrap_or_default();
    let ids: Vec<String> = resources
        .instances
        .values()
        .filter_map(|i| i.instance_id.clone())
        .collect();
    ec2.wait_until_instance_running()
        .set_instance_ids(Some(ids))
        .wait(RUNNING_TIMEOUT)
        .await
        .map_err(waiter_gave_up("running", RUNNING_TIMEOUT))?;
    let running = instances_of(ec2, &session.deployment.id).await?;
    for host in session.deployment.hosts.iter_mut() {
        let instance = running
            .get(&host.name)
            .with_context(|| format!("the instance of {} is gone", host.name))?;
        let private_ip = require(instance.private_ip_address(), "a private address")?;
        let public = instance
            .public_ip_address()
            .with_context(|| {
                format!(
                    "{} has no public address: the default VPC's subnets must assign public IPs",
                    host.name
                )
            })?
            .to_string();
        host.address = private_ip.to_string();
        if let Some(ssh) = host.ssh.as_mut() {
            ssh.address = public.clone();
        }
        let entry = session
            .deployment
            .aws
            .get_or_insert_default()
            .instances
            .entry(host.name.clone())
            .or_default();
        entry.instance_id = instance.instance_id().map(str::to_string);
        entry.private_ip = Some(private_ip.to_string());
        entry.public_ip = Some(public);
        entry.public_dns = instance
            .public_dns_name()
            .filter(|d| !d.is_empty())
            .map(str::to_string);
    }
    session.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_lts_build() {
        let images = [
            (
                "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721",
                "ami-1",
            ),
            (
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240701",
                "ami-2",
            ),
            (
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115",
                "ami-3",
            ),
            // Interim releases are not LTS.
            (
                "ubuntu/images/hvm-ssd-gp3/ubuntu-plucky-25.04-amd64-server-20250601",
                "ami-4",
            ),
            (
                "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20251001",
                "ami-5",
            ),
        ];
        assert_eq!(pick_lts(images.into_iter()).as_deref(), Some("ami-3"));
        assert_eq!(pick_lts(std::iter::empty()), None);
    }
}
