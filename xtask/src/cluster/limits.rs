//! Per-host cgroups: made at provision (where the provider limits its hosts), entered by the
//! scripts that start a host's processes (`enter_cgroup` in lib.sh), read for the CPU a host
//! used, changed by the bench's degraded-worker scenario, removed at teardown. The work is in
//! the scripts, so it is the same on any host the transport reaches.

use anyhow::{bail, Context, Result};

use crate::state::{Deployment, Host, HostLimit, HostMemory, Limits, Millicpus};
use crate::transport::{self, script::Script};

const APPLY: &str = include_str!("../../scripts/cgroup-apply.sh");
const REMOVE: &str = include_str!("../../scripts/cgroup-remove.sh");
const USAGE: &str = include_str!("../../scripts/cgroup-usage.sh");

/// Where the hierarchies are mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// The folder every deployment's groups live in, in each hierarchy: `dbcluster/<id>/<host>`.
const PROJECT_GROUP: &str = "dbcluster";

/// A group's path under a hierarchy.
fn group_path(deployment_id: &str, name: &str) -> String {
    format!("{PROJECT_GROUP}/{deployment_id}/{name}")
}

/// Makes (or adopts) the group of `name` (a host, or `bench-client`) on `host`, with these
/// limits. Returns what enforces them ("cgroup v1"/"cgroup v2") and the group, or, where the
/// host cannot have one (no hierarchy, not writable), the reason in one line.
pub fn apply(
    host: &Host,
    deployment_id: &str,
    name: &str,
    cpus: Option<Millicpus>,
    memory: HostMemory,
) -> Result<Result<(String, HostLimit), String>> {
    let (period, quota) = period_and_quota(cpus);
    let script = Script::new("cgroup-apply", APPLY)
        .param("ROOT", ROOT)
        .param("GROUP", group_path(deployment_id, name))
        .param("CPU_PERIOD_US", period.to_string())
        .param("CPU_QUOTA_US", quota.map_or(String::new(), |q| q.to_string()))
        .param(
            "MEMORY_BYTES",
            memory.bytes().map_or(String::new(), |b| b.to_string()),
        );
    let out = transport::run_script(host, &script, b"")?;
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    if first == "off" {
        return Ok(Err(lines.next().unwrap_or("no reason given").to_string()));
    }
    if !first.starts_with('v') {
        bail!("cgroup-apply on {} printed {out:?}", host.name);
    }
    Ok(Ok((
        format!("cgroup {first}"),
        HostLimit {
            cpus,
            memory_mib: memory.mib,
            groups: lines.map(Into::into).collect(),
        },
    )))
}

/// The CFS period and quota, in µs, of a CPU limit. A short period spreads a small quota
/// evenly (with the kernel's default 100 ms, a quarter CPU runs 25 ms and then stalls 75 ms,
/// which no small machine does); the period is longer only where the quota would fall below
/// the kernel's 1 ms minimum.
fn period_and_quota(cpus: Option<Millicpus>) -> (u64, Option<u64>) {
    const PERIOD_US: u64 = 10_000;
    const MIN_QUOTA_US: u64 = 1_000;
    let Some(Millicpus(m)) = cpus else {
        return (PERIOD_US, None);
    };
    let m = u64::from(m.max(1));
    let period = PERIOD_US.max((MIN_QUOTA_US * 1000).div_ceil(m));
    (period, Some(period * m / 1000))
}

/// Sets a group's CPU quota anew (its memory limit stays).
pub fn set_cpus(
    host: &Host,
    deployment_id: &str,
    name: &str,
    limit: &HostLimit,
    cpus: Millicpus,
) -> Result<()> {
    let memory = HostMemory {
        mib: limit.memory_mib,
    };
    match apply(host, deployment_id, name, Some(cpus), memory)? {
        Ok(_) => Ok(()),
        Err(why) => bail!("setting the CPU quota of {name} to {cpus}: {why}"),
    }
}

/// Removes a group, stopping what still runs in it, and the deployment's and project's folders
/// once nothing else is in them.
pub fn remove(host: &Host, limit: &HostLimit) -> Result<()> {
    let dirs: Vec<String> = limit
        .groups
        .iter()
        .map(|g| g.display().to_string())
        .collect();
    let script = Script::new("cgroup-remove", REMOVE)
        .param("CGROUP_DIRS", dirs.join("\n"))
        .param("LEVELS", "2");
    transport::run_script(host, &script, b"").map(drop)
}

/// The CPU seconds every process of the group has used so far.
pub fn cpu_seconds(host: &Host, limit: &HostLimit) -> Result<f64> {
    let out = transport::run_script(host, &in_group(Script::new("cgroup-usage", USAGE), Some(limit)), b"")?;
    out.trim()
        .parse()
        .with_context(|| format!("cgroup-usage on {} printed {out:?}", host.name))
}

/// The script with the group's folders as CGROUP_DIRS, which `enter_cgroup` (lib.sh) places
/// the script in, and so everything it starts; a host without a group runs unlimited.
pub fn in_group(script: Script, limit: Option<&HostLimit>) -> Script {
    let dirs: Vec<String> = limit
        .map(|l| l.groups.iter().map(|g| g.display().to_string()).collect())
        .unwrap_or_default();
    script.param("CGROUP_DIRS", dirs.join("\n"))
}

/// The group of a host (or `bench-client`) of the deployment, if it has one.
pub fn of<'d>(d: &'d Deployment, name: &str) -> Option<&'d HostLimit> {
    d.limits.hosts.get(name)
}

/// Removes every group of the deployment (what runs in them is stopped first). Each is removed
/// from the host it was made on: the bench client's from the proxy's host.
pub fn remove_all(d: &Deployment) -> Result<()> {
    let client = d.bench_client()?;
    for (name, limit) in &d.limits.hosts {
        let host = if *name == client.name {
            &client
        } else {
            d.hosts
                .iter()
                .find(|h| h.name == *name)
                .with_context(|| format!("data.json has a cgroup for {name} but no such host"))?
        };
        remove(host, limit).with_context(|| format!("removing the cgroup of {name}"))?;
    }
    Ok(())
}

/// Limits that were never in force, for the record.
pub fn off(because: String) -> Limits {
    Limits {
        enforced_by: None,
        off_because: Some(because),
        hosts: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_fit_the_kernel() {
        assert_eq!(period_and_quota(Some(Millicpus(250))), (10_000, Some(2_500)));
        assert_eq!(period_and_quota(Some(Millicpus(2000))), (10_000, Some(20_000)));
        // 0.05 CPU: 1 ms of every 20 ms.
        assert_eq!(period_and_quota(Some(Millicpus(50))), (20_000, Some(1_000)));
        assert_eq!(period_and_quota(Some(Millicpus(10))), (100_000, Some(1_000)));
        assert_eq!(period_and_quota(None), (10_000, None));
    }
}
