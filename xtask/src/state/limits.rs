//! Per-host CPU and memory limits of the local provider: what is asked at provision
//! (`--host-cpus`, `--host-memory`, kept in the settings) and what is in force (the cgroups made
//! for each host, kept in data.json). On one machine every host shares the same cores; a quota
//! per host makes each behave like a small machine of its own, so a cluster's extra servers add
//! capacity as they would on separate instances.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A CPU quota in thousandths of a CPU (250 is a quarter of one core's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Millicpus(pub u32);

impl Millicpus {
    pub fn as_cpus(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// A share of this quota (`percent` of it), never below the smallest quota the kernel takes.
    pub fn percent(self, percent: u32) -> Millicpus {
        Millicpus((self.0 * percent / 100).max(MIN_MILLICPUS))
    }
}

impl fmt::Display for Millicpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 0.25, 0.5, 1: as few digits as the value needs.
        let text = format!("{:.3}", self.as_cpus());
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// The kernel takes quotas down to 1 ms per 100 ms period.
const MIN_MILLICPUS: u32 = 10;

impl FromStr for Millicpus {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Millicpus> {
        let cpus: f64 = text
            .trim()
            .parse()
            .with_context(|| format!("{text:?} is not a number of CPUs such as 0.25"))?;
        if !(0.01..=256.0).contains(&cpus) {
            bail!("{text} CPUs is out of range: give 0.01 to 256");
        }
        Ok(Millicpus((cpus * 1000.0).round() as u32))
    }
}

/// The class of a host, which decides its CPU quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostClass {
    /// The standalone server, the manager and the workers.
    Database,
    /// The gatekeeper, trusted host and proxy.
    Service,
    /// sysbench and the load generator.
    BenchClient,
}

/// `--host-cpus`: each host's CPU quota by class, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostCpus {
    Unlimited,
    Limited {
        databases: Millicpus,
        services: Millicpus,
        bench_client: Millicpus,
    },
}

impl HostCpus {
    /// Small-instance quotas that fit a 2-core machine with the databases as the bottleneck:
    /// the standalone server and each worker get the same quarter core, so the cluster's reads
    /// can scale with its workers; the services and the bench client get enough not to be what
    /// limits a database benchmark.
    pub const DEFAULT: HostCpus = HostCpus::Limited {
        databases: Millicpus(250),
        services: Millicpus(500),
        bench_client: Millicpus(1000),
    };

    pub fn of(self, class: HostClass) -> Option<Millicpus> {
        let HostCpus::Limited {
            databases,
            services,
            bench_client,
        } = self
        else {
            return None;
        };
        Some(match class {
            HostClass::Database => databases,
            HostClass::Service => services,
            HostClass::BenchClient => bench_client,
        })
    }
}

impl fmt::Display for HostCpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostCpus::Unlimited => f.write_str("unlimited"),
            HostCpus::Limited {
                databases,
                services,
                bench_client,
            } => write!(
                f,
                "databases={databases},services={services},bench-client={bench_client}"
            ),
        }
    }
}

impl FromStr for HostCpus {
    type Err = anyhow::Error;

    /// `unlimited`; one number for every class; or `databases=0.25,services=0.5,bench-client=1`
    /// where a class not named keeps its default.
    fn from_str(text: &str) -> Result<HostCpus> {
        let usage = "--host-cpus takes `unlimited`, a number of CPUs per host such as 0.5, or \
                     classes such as databases=0.25,services=0.5,bench-client=1";
        let text = text.trim();
        if text == "unlimited" {
            return Ok(HostCpus::Unlimited);
        }
        if let Ok(all) = text.parse::<Millicpus>() {
            return Ok(HostCpus::Limited {
                databases: all,
                services: all,
                bench_client: all,
            });
        }
        let HostCpus::Limited {
            mut databases,
            mut services,
            mut bench_client,
        } = HostCpus::DEFAULT
        else {
            unreachable!("the default is limited")
        };
        for part in text.split(',') {
            let Some((class, value)) = part.split_once('=') else {
                bail!("{usage}; got {text:?}");
            };
            let slot = match class.trim() {
                "databases" => &mut databases,
                "services" => &mut services,
                "bench-client" => &mut bench_client,
                other => bail!("{usage}; {other:?} is not a class"),
            };
            *slot = value
                .parse()
                .with_context(|| format!("--host-cpus {class}"))?;
        }
        Ok(HostCpus::Limited {
            databases,
            services,
            bench_client,
        })
    }
}

impl TryFrom<String> for HostCpus {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<HostCpus> {
        text.parse()
    }
}

impl From<HostCpus> for String {
    fn from(cpus: HostCpus) -> String {
        cpus.to_string()
    }
}

/// `--host-memory`: each host's memory limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostMemory {
    /// In MiB; None: unlimited.
    pub mib: Option<u64>,
}

impl HostMemory {
    /// Far above what a small dataset's server needs (its buffer pool is 128 MiB), and five
    /// databases and four other hosts still fit a small machine.
    pub const DEFAULT: HostMemory = HostMemory { mib: Some(1024) };

    pub fn bytes(self) -> Option<u64> {
        self.mib.map(|m| m * 1024 * 1024)
    }
}

impl fmt::Display for HostMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mib {
            None => f.write_str("unlimited"),
            Some(m) if m % 1024 == 0 => write!(f, "{}G", m / 1024),
            Some(m) => write!(f, "{m}M"),
        }
    }
}

impl FromStr for HostMemory {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<HostMemory> {
        let usage = "--host-memory takes `unlimited` or a size such as 512M or 2G";
        let text = text.trim();
        if text == "unlimited" {
            return Ok(HostMemory { mib: None });
        }
        let (number, scale) = match text.char_indices().last() {
            Some((at, 'G' | 'g')) => (&text[..at], 1024),
            Some((at, 'M' | 'm')) => (&text[..at], 1),
            _ => bail!("{usage}; got {text:?}"),
        };
        let mib = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .with_context(|| format!("{usage}; got {text:?}"))?;
        if mib < 64 {
            bail!("--host-memory {text} is too small for a database server: give 64M or more");
        }
        Ok(HostMemory { mib: Some(mib) })
    }
}

impl TryFrom<String> for HostMemory {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<HostMemory> {
        text.parse()
    }
}

impl From<HostMemory> for String {
    fn from(memory: HostMemory) -> String {
        memory.to_string()
    }
}

/// The limits in force, recorded at provision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// What enforces them ("cgroup v1", "cgroup v2"); None when the hosts run unlimited.
    pub enforced_by: Option<String>,
    /// Why limits that were asked for are not in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_because: Option<String>,
    /// By host name (and `bench-client`).
    #[serde(default)]
    pub hosts: BTreeMap<String, HostLimit>,
}

/// One host's cgroup and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLimit {
    pub cpus: Option<Millicpus>,
    pub memory_mib: Option<u64>,
    /// The host's group folders, one per hierarchy (v1: cpu, cpuacct, memory; v2: one).
    pub groups: Vec<PathBuf>,
}

impl Limits {
    /// One line for the results: what the hosts were limited to.
    pub fn describe(&self) -> String {
        let Some(by) = &self.enforced_by else {
            return match &self.off_because {
                Some(why) => format!("unlimited (limits were asked for but are off: {why})"),
                None => "unlimited".to_string(),
            };
        };
        // Hosts of one class share a quota: list each distinct one once, by host.
        let mut by_quota: BTreeMap<(Option<Millicpus>, Option<u64>), Vec<&str>> = BTreeMap::new();
        for (name, limit) in &self.hosts {
            by_quota
                .entry((limit.cpus, limit.memory_mib))
                .or_default()
                .push(name);
        }
        let parts: Vec<String> = by_quota
            .iter()
            .map(|((cpus, mib), names)| {
                let cpus = cpus.map_or("unlimited CPU".to_string(), |c| format!("{c} CPU"));
                let memory = HostMemory { mib: *mib };
                format!("{} {cpus}, {memory} memory", names.join(" "))
            })
            .collect();
        format!("{by}: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpus_read_and_write_the_same_text() {
        let all: HostCpus = "0.5".parse().unwrap();
        assert_eq!(all.of(HostClass::BenchClient), Some(Millicpus(500)));
        let some: HostCpus = "databases=0.2,bench-client=1".parse().unwrap();
        assert_eq!(some.of(HostClass::Database), Some(Millicpus(200)));
        assert_eq!(
            some.of(HostClass::Service),
            HostCpus::DEFAULT.of(HostClass::Service)
        );
        assert_eq!(
            some.to_string(),
            "databases=0.2,services=0.5,bench-client=1"
        );
        assert_eq!(some.to_string().parse::<HostCpus>().unwrap(), some);
        assert_eq!(
            "unlimited".parse::<HostCpus>().unwrap(),
            HostCpus::Unlimited
        );
        assert_eq!(HostCpus::Unlimited.of(HostClass::Database), None);
        for bad in [
            "",
            "fast",
            "databases",
            "disks=1",
            "databases=0",
            "databases=x",
        ] {
            let err = format!("{:#}", bad.parse::<HostCpus>().unwrap_err());
            assert!(
                err.contains("--host-cpus") || err.contains("out of range"),
                "{bad}: {err}"
            );
        }
        assert_eq!(Millicpus(250).percent(20), Millicpus(50));
        assert_eq!(Millicpus(20).percent(10), Millicpus(MIN_MILLICPUS));
    }

    #[test]
    fn host_memory_sizes() {
        assert_eq!("2G".parse::<HostMemory>().unwrap().mib, Some(2048));
        assert_eq!("512M".parse::<HostMemory>().unwrap().to_string(), "512M");
        assert_eq!("1024M".parse::<HostMemory>().unwrap().to_string(), "1G");
        assert_eq!("unlimited".parse::<HostMemory>().unwrap().bytes(), None);
        for bad in ["1", "G", "-1G", "12K", "32M"] {
            assert!(bad.parse::<HostMemory>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&HostMemory::DEFAULT).unwrap();
        assert_eq!(json, "\"1G\"");
        let err = serde_json::from_str::<HostMemory>("\"lots\"").unwrap_err();
        assert!(err.to_string().contains("--host-memory"), "{err}");
    }

    #[test]
    fn limits_are_described_by_quota() {
        let limit = |cpus| HostLimit {
            cpus: Some(Millicpus(cpus)),
            memory_mib: Some(1024),
            groups: vec![],
        };
        let limits = Limits {
            enforced_by: Some("cgroup v1".into()),
            off_because: None,
            hosts: BTreeMap::from([
                ("manager".into(), limit(250)),
                ("worker-1".into(), limit(250)),
                ("proxy".into(), limit(500)),
            ]),
        };
        assert_eq!(
            limits.describe(),
            "cgroup v1: manager worker-1 0.25 CPU, 1G memory; proxy 0.5 CPU, 1G memory"
        );
        let off = Limits {
            off_because: Some("/sys/fs/cgroup is read-only".into()),
            ..Limits::default()
        };
        assert!(off.describe().starts_with("unlimited (limits were asked"));
    }
}
