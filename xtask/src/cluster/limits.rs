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
    apply_at(ROOT, host, &group_path(deployment_id, name), cpus, memory)
}

fn apply_at(
    root: &str,
    host: &Host,
    group: &str,
    cpus: Option<Millicpus>,
    memory: HostMemory,
) -> Result<Result<(String, HostLimit), String>> {
    let (period, quota) = period_and_quota(cpus);
    let script = Script::new("cgroup-apply", APPLY)
        .param("ROOT", root)
        .param("GROUP", group)
        .param("CPU_PERIOD_US", period.to_string())
        .param(
            "CPU_QUOTA_US",
            quota.map_or(String::new(), |q| q.to_string()),
        )
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

/// Sets a group's CPU quota anew (None: no quota); its memory limit stays.
pub fn set_cpus(
    host: &Host,
    deployment_id: &str,
    name: &str,
    limit: &HostLimit,
    cpus: Option<Millicpus>,
) -> Result<()> {
    let memory = HostMemory {
        mib: limit.memory_mib,
    };
    match apply(host, deployment_id, name, cpus, memory)? {
        Ok(_) => Ok(()),
        Err(why) => {
            let cpus = cpus.map_or("no quota".to_string(), |c| c.to_string());
            bail!("setting the CPU quota of {name} to {cpus}: {why}")
        }
    }
}

/// Gives every group of the deployment that has a CPU quota its provisioned quota back, or,
/// with `lifted`, no quota at all.
pub fn set_all_cpus(d: &Deployment, lifted: bool) -> Result<()> {
    let names: Vec<&str> = d.limits.hosts.keys().map(String::as_str).collect();
    set_cpus_of(d, &names, lifted)
}

/// The same for the groups of `names` only.
pub fn set_cpus_of(d: &Deployment, names: &[&str], lifted: bool) -> Result<()> {
    for (name, limit) in d
        .limits
        .hosts
        .iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
    {
        if limit.cpus.is_some() {
            let cpus = if lifted { None } else { limit.cpus };
            set_cpus(&group_host(d, name)?, &d.id, name, limit, cpus)?;
        }
    }
    Ok(())
}

/// The host a group was made on: the bench client's is on the proxy's host.
fn group_host(d: &Deployment, name: &str) -> Result<Host> {
    let client = d.bench_client()?;
    if name == client.name {
        return Ok(client);
    }
    d.hosts
        .iter()
        .find(|h| h.name == name)
        .cloned()
        .with_context(|| format!("data.json has a cgroup for {name} but no such host"))
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

/// What a group says now: the CPU seconds its processes have used so far, and the CPU quota in
/// force (None: no quota).
pub struct GroupUse {
    pub cpu_seconds: f64,
    pub quota_cpus: Option<f64>,
}

pub fn usage(host: &Host, limit: &HostLimit) -> Result<GroupUse> {
    let script = in_group(Script::new("cgroup-usage", USAGE), Some(limit));
    let out = transport::run_script(host, &script, b"")?;
    let mut fields = out.split_whitespace();
    let parsed = (|| {
        let cpu_seconds = fields.next()?.parse().ok()?;
        let quota_cpus = match fields.next()? {
            "max" => None,
            q => Some(q.parse().ok()?),
        };
        Some(GroupUse {
            cpu_seconds,
            quota_cpus,
        })
    })();
    parsed.with_context(|| format!("cgroup-usage on {} printed {out:?}", host.name))
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
    for (name, limit) in &d.limits.hosts {
        remove(&group_host(d, name)?, limit)
            .with_context(|| format!("removing the cgroup of {name}"))?;
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
        assert_eq!(
            period_and_quota(Some(Millicpus(250))),
            (10_000, Some(2_500))
        );
        assert_eq!(
            period_and_quota(Some(Millicpus(2000))),
            (10_000, Some(20_000))
        );
        // 0.05 CPU: 1 ms of every 20 ms.
        assert_eq!(period_and_quota(Some(Millicpus(50))), (20_000, Some(1_000)));
        assert_eq!(
            period_and_quota(Some(Millicpus(10))),
            (100_000, Some(1_000))
        );
        assert_eq!(period_and_quota(None), (10_000, None));
    }

    fn here(dir: &std::path::Path) -> Host {
        Host {
            name: "here".into(),
            role: crate::state::Role::Worker,
            address: "127.0.0.1".into(),
            dir: dir.to_path_buf(),
            ssh: None,
            connects_from: None,
        }
    }

    /// On this machine's real hierarchy (root, as CI runs): the group gets its limits, a
    /// process a script starts lands in it and is accounted, adopting it again changes
    /// nothing, and removal stops what runs there and leaves no folder.
    #[test]
    fn a_group_limits_accounts_and_goes() {
        let dir = std::env::temp_dir().join(format!("xtask-cgroup-{}", std::process::id()));
        let host = here(&dir);
        let id = format!("test-{}", std::process::id());
        let memory = HostMemory { mib: Some(256) };
        let made = apply(&host, &id, "h", Some(Millicpus(300)), memory).unwrap();
        let (by, limit) = made.expect("cgroups are writable here (run the tests as root)");
        assert!(by.starts_with("cgroup v"), "{by}");
        assert!(!limit.groups.is_empty());
        let again = apply(&host, &id, "h", Some(Millicpus(300)), memory)
            .unwrap()
            .unwrap();
        assert_eq!(again.1, limit, "adopted, not made twice");
        let quota = |limit: &HostLimit| -> String {
            limit
                .groups
                .iter()
                .find_map(|g| {
                    std::fs::read_to_string(g.join("cpu.cfs_quota_us"))
                        .or_else(|_| std::fs::read_to_string(g.join("cpu.max")))
                        .ok()
                })
                .unwrap()
        };
        assert!(quota(&limit).starts_with("3000"), "{}", quota(&limit));
        let memory_limit = limit
            .groups
            .iter()
            .find_map(|g| {
                std::fs::read_to_string(g.join("memory.limit_in_bytes"))
                    .or_else(|_| std::fs::read_to_string(g.join("memory.max")))
                    .ok()
            })
            .unwrap();
        assert_eq!(memory_limit.trim(), (256u64 << 20).to_string());
        set_cpus(&host, &id, "h", &limit, Some(Millicpus(50))).unwrap();
        assert!(quota(&limit).starts_with("1000"), "{}", quota(&limit));
        // Lifted: no quota ("-1" on v1, "max" on v2), the memory limit kept.
        set_cpus(&host, &id, "h", &limit, None).unwrap();
        let lifted = quota(&limit);
        assert!(
            lifted.starts_with("-1") || lifted.starts_with("max"),
            "{lifted}"
        );
        set_cpus(&host, &id, "h", &limit, Some(Millicpus(50))).unwrap();
        assert!(quota(&limit).starts_with("1000"), "{}", quota(&limit));

        // A busy process started by a script in the group: it is in every folder of it, and
        // its CPU shows in the group's accounting.
        let start = in_group(
            Script::new(
                "t",
                "enter_cgroup\nsetsid bash -c 'while :; do :; done' < /dev/null > /dev/null 2>&1 &\necho $!\n",
            ),
            Some(&limit),
        );
        let pid = transport::run_script(&host, &start, b"").unwrap();
        let pid = pid.trim();
        for group in &limit.groups {
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap();
            assert!(procs.lines().any(|p| p == pid), "{pid} not in {procs}");
        }
        let before = usage(&host, &limit).unwrap();
        assert_eq!(before.quota_cpus, Some(0.05));
        std::thread::sleep(std::time::Duration::from_millis(500));
        let used = usage(&host, &limit).unwrap().cpu_seconds - before.cpu_seconds;
        assert!(
            used > 0.0 && used < 0.5 * 0.05 * 2.0,
            "used {used} s at 0.05 CPU"
        );

        remove(&host, &limit).unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid));
        for group in &limit.groups {
            assert!(!group.exists(), "{} is left", group.display());
            assert!(
                !group.parent().unwrap().exists(),
                "the deployment's folder is left"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    fn zombie(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    }

    /// Where there is no hierarchy, the reason comes back in one line and nothing is made.
    #[test]
    fn no_hierarchy_says_why() {
        let dir = std::env::temp_dir().join(format!("xtask-nocgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.display().to_string();
        let out = apply_at(
            &root,
            &here(&dir),
            "dbcluster/x/h",
            None,
            HostMemory { mib: None },
        )
        .unwrap();
        let why = out.unwrap_err();
        assert!(
            why.contains(&format!("no cgroup hierarchy at {root}")),
            "{why}"
        );
        assert!(!dir.join("cpu").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
