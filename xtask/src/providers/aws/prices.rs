//! What an aws deployment costs while it runs: EC2's on-demand prices for the instance types a
//! deployment may use, with the volume and public address each instance has. A table kept here,
//! not asked of AWS: `plan` must work with no credentials and contact nothing.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// Where and when the prices below hold: on-demand, Linux, shared tenancy. They are AWS's list
/// prices for these types, unchanged since 2019 (the public IPv4 charge since February 2024).
pub const READ_FOR: &str = "us-east-1 on-demand Linux list prices of 2025 (see \
    aws.amazon.com/ec2/pricing/on-demand for today's)";

/// USD per hour, by instance type.
const INSTANCE_PER_HOUR: &[(&str, f64)] = &[
    ("t2.nano", 0.0058),
    ("t2.micro", 0.0116),
    ("t2.small", 0.023),
    ("t2.medium", 0.0464),
    ("t2.large", 0.0928),
    ("t2.xlarge", 0.1856),
    ("t2.2xlarge", 0.3712),
    ("t3.nano", 0.0052),
    ("t3.micro", 0.0104),
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("t3.2xlarge", 0.3328),
    ("t3a.micro", 0.0094),
    ("t3a.small", 0.0188),
    ("t3a.medium", 0.0376),
    ("t3a.large", 0.0752),
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("c6i.large", 0.085),
    ("r5.large", 0.126),
];
/// gp3 storage: USD 0.08 per GiB-month, a month taken as 730 hours.
const GP3_PER_GIB_HOUR: f64 = 0.08 / 730.0;
/// A public IPv4 address, which every instance gets (the default VPC's subnets assign one).
const PUBLIC_IPV4_PER_HOUR: f64 = 0.005;

/// One line of the bill: what, how many, and USD per hour of one; None: not in the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub what: String,
    pub count: usize,
    pub each: Option<f64>,
}

/// What a deployment costs per hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub lines: Vec<Line>,
}

impl Cost {
    /// The instances (by type, in the order given), their volumes and their addresses.
    pub fn of(instance_types: &[&str], volume_gib: u32, overrides: &BTreeMap<String, f64>) -> Cost {
        let mut lines: Vec<Line> = Vec::new();
        for &kind in instance_types {
            match lines.iter_mut().find(|l| l.what == kind) {
                Some(line) => line.count += 1,
                None => lines.push(Line {
                    what: kind.to_string(),
                    count: 1,
                    each: overrides.get(kind).copied().or_else(|| price_of(kind)),
                }),
            }
        }
        let n = instance_types.len();
        lines.push(Line {
            what: format!("{volume_gib} GiB gp3 root volume"),
            count: n,
            each: Some(f64::from(volume_gib) * GP3_PER_GIB_HOUR),
        });
        lines.push(Line {
            what: "public IPv4 address".to_string(),
            count: n,
            each: Some(PUBLIC_IPV4_PER_HOUR),
        });
        Cost { lines }
    }

    /// USD per hour of what has a price.
    pub fn per_hour(&self) -> f64 {
        self.lines
            .iter()
            .filter_map(|l| l.each.map(|each| each * l.count as f64))
            .sum()
    }

    /// The instance types the table has no price for.
    pub fn unknown(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.each.is_none())
            .map(|l| l.what.as_str())
            .collect()
    }

    /// "about $0.39 per hour" (or "at least", when a type's price is unknown).
    pub fn describe(&self) -> String {
        let unknown = self.unknown();
        match unknown.is_empty() {
            true => format!("about ${:.2} per hour", self.per_hour()),
            false => format!(
                "at least ${:.2} per hour (price unknown for {}: give it with --price-per-hour \
                 TYPE=USD)",
                self.per_hour(),
                unknown.join(", ")
            ),
        }
    }
}

fn price_of(kind: &str) -> Option<f64> {
    INSTANCE_PER_HOUR
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, price)| *price)
}

/// `TYPE=USD` flags, as a table that wins over this one.
pub fn overrides(given: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut table = BTreeMap::new();
    for flag in given {
        let (kind, usd) = flag.split_once('=').with_context(|| {
            format!("--price-per-hour takes TYPE=USD such as t3.small=0.0208, got {flag:?}")
        })?;
        let usd: f64 = usd
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite() && *p >= 0.0)
            .with_context(|| {
                format!("--price-per-hour {flag}: {usd:?} is not a price in USD per hour")
            })?;
        if kind.is_empty() {
            bail!("--price-per-hour {flag}: the instance type is missing");
        }
        table.insert(kind.to_string(), usd);
    }
    Ok(table)
}

/// "2 h 13 min" for a duration in seconds.
pub fn span(seconds: u64) -> String {
    let (hours, minutes) = (seconds / 3600, seconds % 3600 / 60);
    match hours {
        0 => format!("{minutes} min"),
        _ => format!("{hours} h {minutes} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_deployment_costs_its_instances_volumes_and_addresses() {
        let types = [
            "t2.micro", "t2.micro", "t2.micro", "t2.micro", "t2.micro", "t2.large", "t2.large",
            "t2.large",
        ];
        let cost = Cost::of(&types, 20, &BTreeMap::new());
        assert_eq!(cost.lines[0].count, 5);
        assert_eq!(cost.lines[1].count, 3);
        assert_eq!(cost.lines[2].count, 8);
        // 5 × 0.0116 + 3 × 0.0928 + 8 × (20 × 0.08 / 730) + 8 × 0.005
        let expected = 0.058 + 0.2784 + 8.0 * 1.6 / 730.0 + 0.04;
        assert!(
            (cost.per_hour() - expected).abs() < 1e-9,
            "{}",
            cost.per_hour()
        );
        assert_eq!(cost.describe(), "about $0.39 per hour");
        assert!(cost.unknown().is_empty());
    }

    #[test]
    fn an_unknown_type_is_said_and_can_be_priced() {
        let cost = Cost::of(&["x9.huge", "t3.micro"], 20, &BTreeMap::new());
        assert_eq!(cost.unknown(), ["x9.huge"]);
        assert!(
            cost.describe()
                .starts_with("at least $0.02 per hour (price unknown for x9.huge"),
            "{}",
            cost.describe()
        );
        let priced = overrides(&["x9.huge=1.5".to_string()]).unwrap();
        let cost = Cost::of(&["x9.huge", "t3.micro"], 20, &priced);
        assert!(cost.unknown().is_empty());
        assert!((cost.per_hour() - (1.5 + 0.0104 + 2.0 * 1.6 / 730.0 + 0.01)).abs() < 1e-9);
        for bad in ["t3.micro", "t3.micro=cheap", "=1", "t3.micro=-1"] {
            assert!(overrides(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert_eq!(span(59), "0 min");
        assert_eq!(span(2 * 3600 + 13 * 60 + 5), "2 h 13 min");
    }
}
