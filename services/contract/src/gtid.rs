//! MariaDB GTID positions (`0-1-42,1-3-7`: per replication domain, the server that wrote the
//! last transaction and its sequence number), and whether one holds everything another does.
//! The proxy compares a worker's applied position with the manager's, and a read's
//! `after_gtid` with a worker's; `cargo xtask failover` picks the most advanced worker.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A GTID position: the last transaction of each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPosition {
    /// domain → (server id, sequence number).
    domains: BTreeMap<u32, (u32, u64)>,
}

impl GtidPosition {
    /// Holds every transaction `other` holds: in each of its domains, a sequence number at
    /// least as high. (In one domain, sequence numbers only grow, whichever server wrote them.)
    pub fn covers(&self, other: &GtidPosition) -> bool {
        other.domains.iter().all(|(domain, (_, seq))| {
            self.domains
                .get(domain)
                .is_some_and(|(_, mine)| mine >= seq)
        })
    }

    /// How two positions compare: `Some(Greater)` when self holds everything other does and
    /// more; None when each holds something the other lacks (in different domains).
    pub fn compare(&self, other: &GtidPosition) -> Option<Ordering> {
        match (self.covers(other), other.covers(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }

    /// Everything either holds: in each domain, the higher of the two.
    pub fn merged(&self, other: &GtidPosition) -> GtidPosition {
        let mut domains = self.domains.clone();
        for (domain, (server, seq)) in &other.domains {
            let entry = domains.entry(*domain).or_insert((*server, *seq));
            if *seq > entry.1 {
                *entry = (*server, *seq);
            }
        }
        GtidPosition { domains }
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The GTID of one domain, as `domain-server-seq`.
    pub fn in_domain(&self, domain: u32) -> Option<String> {
        self.domains
            .get(&domain)
            .map(|(server, seq)| format!("{domain}-{server}-{seq}"))
    }
}

impl FromStr for GtidPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<GtidPosition, String> {
        let mut domains = BTreeMap::new();
        for gtid in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let parts: Vec<&str> = gtid.split('-').collect();
            let parsed = match parts.as_slice() {
                [domain, server, seq] => (|| {
                    Some((
                        domain.parse().ok()?,
                        server.parse().ok()?,
                        seq.parse().ok()?,
                    ))
                })(),
                _ => None,
            };
            let (domain, server, seq) = parsed.ok_or_else(|| {
                format!("{gtid:?} is not a GTID (domain-server-sequence, such as 0-1-42)")
            })?;
            if domains.insert(domain, (server, seq)).is_some() {
                return Err(format!("{text:?} names domain {domain} twice"));
            }
        }
        Ok(GtidPosition { domains })
    }
}

impl fmt::Display for GtidPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gtids: Vec<String> = self
            .domains
            .iter()
            .map(|(d, (server, seq))| format!("{d}-{server}-{seq}"))
            .collect();
        f.write_str(&gtids.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(text: &str) -> GtidPosition {
        text.parse().unwrap()
    }

    #[test]
    fn positions_compare_per_domain() {
        assert!(pos("0-1-42").covers(&pos("0-1-41")));
        assert!(
            pos("0-2-42").covers(&pos("0-1-42")),
            "a new server continues the domain"
        );
        assert!(!pos("0-1-41").covers(&pos("0-1-42")));
        assert!(pos("0-1-5").covers(&pos("")));
        assert!(!pos("").covers(&pos("0-1-1")));
        assert!(
            !pos("0-1-9").covers(&pos("0-1-3,1-4-1")),
            "a domain it lacks"
        );
        assert_eq!(
            pos("0-1-9,1-4-1").compare(&pos("0-1-3")),
            Some(Ordering::Greater)
        );
        assert_eq!(pos("0-1-3").compare(&pos("0-1-3")), Some(Ordering::Equal));
        assert_eq!(pos("0-1-9").compare(&pos("0-1-3,1-4-1")), None);
        assert_eq!(pos(" 1-4-1 , 0-1-3").to_string(), "0-1-3,1-4-1");
        assert_eq!(
            pos("0-1-3,1-4-1").merged(&pos("0-2-5,2-1-1")),
            pos("0-2-5,1-4-1,2-1-1")
        );
        assert_eq!(pos("0-1-7").merged(&pos("0-2-5")), pos("0-1-7"));
        assert_eq!(pos("0-1-3,1-4-1").in_domain(1).as_deref(), Some("1-4-1"));
        for bad in ["0-1", "a-b-c", "0-1-2-3", "0-1-2,0-1-3"] {
            assert!(bad.parse::<GtidPosition>().is_err(), "{bad}");
        }
    }
}
