//! teardown on aws: terminates every instance with the deployment's tag (and any recorded one),
//! then deletes its security groups, its key pair and the local private key.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::Client;

use super::{
    block_on, client, code_of, deployment_filter, explain, filter, key_file, waiter_gave_up,
};
use crate::progress::Progress;
use crate::state::{AwsResources, Paths, Session};

const TERMINATED_TIMEOUT: Duration = Duration::from_secs(600);
/// A group stays in use for a while after its instances are gone.
const GROUP_RELEASE_TIMEOUT: Duration = Duration::from_secs(300);

pub fn teardown(session: &mut Session) -> Result<()> {
    let settings = session.deployment.settings.aws()?;
    let recorded = session.deployment.aws.clone().unwrap_or_default();
    let key = key_file(&session.paths, &session.deployment.id);
    let region = recorded.region.clone().or(settings.region.clone());
    let endpoint = settings.aws_endpoint.as_deref();
    block_on(remove_all(
        region.as_deref(),
        endpoint,
        &recorded,
        &session.deployment.id,
        &key,
    ))
    .map(drop)
}

/// Terminates the instance of one host (one `scale` took out: by its tag, and the recorded
/// one) and waits until it is gone; then forgets the instance.
pub fn terminate(session: &mut Session, name: &str) -> Result<()> {
    let settings = session.deployment.settings.aws()?;
    let recorded = session.deployment.aws.clone().unwrap_or_default();
    let id = session.deployment.id.clone();
    let region = recorded.region.clone().or(settings.region.clone());
    block_on(async {
        let (ec2, _) = client(region.as_deref(), settings.aws_endpoint.as_deref()).await?;
        let tagged = filter("tag:Name", &[&format!("{id}-{name}")]);
        let mut ids = live_instances(&ec2, &[deployment_filter(&id), tagged]).await?;
        if let Some(instance) = recorded
            .instances
            .get(name)
            .and_then(|i| i.instance_id.as_deref())
        {
            ids.extend(live_instances(&ec2, &[filter("instance-id", &[instance])]).await?);
        }
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.into_iter().collect();
        ec2.terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| explain(&format!("terminating the instance of {name}"), e))?;
        ec2.wait_until_instance_terminated()
            .set_instance_ids(Some(ids))
            .wait(TERMINATED_TIMEOUT)
            .await
            .map_err(waiter_gave_up("terminated", TERMINATED_TIMEOUT))?;
        Ok(())
    })?;
    if let Some(aws) = session.deployment.aws.as_mut() {
        aws.instances.remove(name);
    }
    session.save()
}

/// Removes what carries a deployment's tag when its data.json is gone: the tags alone say what
/// is the deployment's.
pub fn teardown_lost(
    paths: &Paths,
    id: &str,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Result<()> {
    let key = key_file(paths, id);
    let removed = block_on(remove_all(
        region,
        endpoint,
        &AwsResources::default(),
        id,
        &key,
    ))?;
    if removed == 0 {
        bail!("found nothing tagged deployment={id} in this region; check the id and --region");
    }
    eprintln!("teardown: removed {removed} resources tagged deployment={id}");
    Ok(())
}

async fn remove_all(
    region: Option<&str>,
    endpoint: Option<&str>,
    recorded: &AwsResources,
    id: &str,
    key: &Path,
) -> Result<usize> {
    let id = id.to_string();
    let mut removed = 0;
    let progress = Progress::new("teardown", 3);
    let (ec2, _) = client(region, endpoint).await?;

    progress.task("terminating the instances");
    let mut ids: BTreeSet<String> = live_instances(&ec2, &[deployment_filter(&id)]).await?;
    let recorded_ids: Vec<&str> = recorded
        .instances
        .values()
        .filter_map(|i| i.instance_id.as_deref())
        .collect();
    if !recorded_ids.is_empty() {
        // The record cross-checks the tags: an instance whose tags were changed still goes.
        ids.extend(live_instances(&ec2, &[filter("instance-id", &recorded_ids)]).await?);
    }
    if !ids.is_empty() {
        let ids: Vec<String> = ids.into_iter().collect();
        ec2.terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| explain("terminating the instances", e))?;
        ec2.wait_until_instance_terminated()
            .set_instance_ids(Some(ids.clone()))
            .wait(TERMINATED_TIMEOUT)
            .await
            .map_err(waiter_gave_up("terminated", TERMINATED_TIMEOUT))?;
        progress.note(format!(
            "terminated {} instances: {}",
            ids.len(),
            ids.join(", ")
        ));
    }

    progress.task("deleting the security groups");
    let groups = ec2
        .describe_security_groups()
        .filters(deployment_filter(&id))
        .send()
        .await
        .map_err(|e| explain("looking up the security groups", e))?;
    // The groups refer to each other: every rule goes first, then the groups.
    for group in groups.security_groups() {
        let permissions = group.ip_permissions().to_vec();
        if !permissions.is_empty() {
            ec2.revoke_security_group_ingress()
                .set_group_id(group.group_id().map(str::to_string))
                .set_ip_permissions(Some(permissions))
                .send()
                .await
                .map_err(|e| explain("removing the security groups' rules", e))?;
        }
    }
    for group in groups.security_groups() {
        let (Some(group_id), Some(name)) = (group.group_id(), group.group_name()) else {
            continue;
        };
        delete_group(&ec2, group_id).await?;
        progress.note(format!("deleted security group {name} ({group_id})"));
        removed += 1;
    }

    progress.task("deleting the key pair");
    let key_name = recorded.key_name.clone().unwrap_or_else(|| id.clone());
    let pairs = ec2
        .describe_key_pairs()
        .filters(filter("key-name", &[&key_name]))
        .send()
        .await
        .map_err(|e| explain("looking up the key pair", e))?;
    if !pairs.key_pairs().is_empty() {
        ec2.delete_key_pair()
            .key_name(&key_name)
            .send()
            .await
            .map_err(|e| explain("deleting the key pair", e))?;
        progress.note(format!("deleted key pair {key_name}"));
        removed += 1;
    }
    if key.exists() {
        std::fs::remove_file(key).with_context(|| format!("removing {}", key.display()))?;
        progress.note(format!("removed {}", key.display()));
    }
    Ok(removed)
}

/// Instances matching `filters` that are not terminated yet.
async fn live_instances(
    ec2: &Client,
    filters: &[aws_sdk_ec2::types::Filter],
) -> Result<BTreeSet<String>> {
    let states = ["pending", "running", "stopping", "stopped", "shutting-down"];
    let mut found = BTreeSet::new();
    let mut pages = ec2
        .describe_instances()
        .set_filters(Some(filters.to_vec()))
        .filters(filter("instance-state-name", &states))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("looking up the instances", e))?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            if let Some(id) = instance.instance_id() {
                found.insert(id.to_string());
            }
        }
    }
    Ok(found)
}

/// Deletes a group, retrying while AWS still counts it as used by a terminating instance.
async fn delete_group(ec2: &Client, group_id: &str) -> Result<()> {
    let deadline = Instant::now() + GROUP_RELEASE_TIMEOUT;
    loop {
        match ec2.delete_security_group().group_id(group_id).send().await {
            Ok(_) => return Ok(()),
            Err(e) if code_of(&e) == "InvalidGroup.NotFound" => return Ok(()),
            Err(e) if code_of(&e) == "DependencyViolation" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(explain(&format!("deleting security group {group_id}"), e)),
        }
    }
}
