//! Failing over from a manager that is gone, as one set of rules: when the proxy may decide to
//! by itself (the manager unreachable for long enough, every reachable worker lost it as long,
//! and no failover within the cool-down), which worker takes over (the one that has applied the
//! most), and the statements that fence a manager, drain the workers, promote one, point the
//! others at it and bring a former manager back as a worker. The proxy runs them, for its own
//! decisions and for `cargo xtask failover`; install-cluster and repair point workers with the
//! same statement.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Account;
use crate::gtid::GtidPosition;

/// How a worker is pointed at its manager: sql/replica.sql, filled by [`replicate_from`].
const REPLICA: &str = include_str!("../../../sql/replica.sql");

/// How the proxy fails over (part of its config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// How long the manager must have been unreachable, and every reachable worker must have
    /// lost it, before the proxy fails over by itself; 0: only when a person asks.
    pub after_ms: u64,
    /// No second automatic failover within this long of the last one.
    pub cooldown_seconds: u64,
    /// What promotions run as: the privileges a promotion needs, nothing on the data.
    pub account: Account,
    /// What the workers log in as to replicate from the new manager.
    pub replication: Account,
    /// The promoted manager waits this long for a worker on each commit (0: asynchronous).
    pub semi_sync_timeout_ms: u32,
    /// What `cargo xtask failover` presents to ask for one.
    pub token: String,
}

/// A worker as the monitor last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeen {
    pub name: String,
    pub answers: bool,
    /// Since when its replication has not been receiving from the manager; None while it
    /// receives.
    pub lost_manager_since: Option<SystemTime>,
}

/// What the proxy makes of the manager after a round of probes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The manager answers.
    ManagerUp,
    /// It is gone, not for long enough yet: wait and see.
    Wait(String),
    /// It is gone, but the proxy may not fail over: why.
    Refuse(String),
    /// Fail over now: why.
    FailOver(String),
}

impl Verdict {
    /// The reason, when there is one to say.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::ManagerUp => None,
            Verdict::Wait(why) | Verdict::Refuse(why) | Verdict::FailOver(why) => Some(why),
        }
    }

    /// As `/metrics` labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::ManagerUp => "manager-up",
            Verdict::Wait(_) => "wait",
            Verdict::Refuse(_) => "refuse",
            Verdict::FailOver(_) => "fail-over",
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Whether the proxy fails over now from `manager`, unreachable since `down_since`.
pub fn decide(
    now: SystemTime,
    config: &FailoverConfig,
    manager: &str,
    down_since: Option<SystemTime>,
    workers: &[WorkerSeen],
    last_failover: Option<SystemTime>,
) -> Verdict {
    let Some(since) = down_since else {
        return Verdict::ManagerUp;
    };
    let elapsed = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let after = Duration::from_millis(config.after_ms);
    if after.is_zero() {
        return Verdict::Refuse(format!(
            "{manager} is unreachable, and automatic failover is off (--failover-after 0): \
             `cargo xtask failover` promotes a worker"
        ));
    }
    let down_for = elapsed(since);
    if down_for < after {
        return Verdict::Wait(format!(
            "{manager} unreachable for {}; failing over once it has been {}",
            seconds(down_for),
            seconds(after)
        ));
    }
    let answering: Vec<&WorkerSeen> = workers.iter().filter(|w| w.answers).collect();
    if answering.is_empty() {
        return Verdict::Refuse(format!(
            "{manager} unreachable for {}, and no worker answers to take its place",
            seconds(down_for)
        ));
    }
    for worker in &answering {
        match worker.lost_manager_since {
            None => {
                return Verdict::Refuse(format!(
                    "{manager} is unreachable from the proxy for {}, but {} still receives from \
                     it: the manager is alive, only the proxy lost it (no failover; writes wait \
                     for the proxy's path to it)",
                    seconds(down_for),
                    worker.name
                ))
            }
            Some(lost) if elapsed(lost) < after => {
                return Verdict::Wait(format!(
                    "{manager} unreachable for {}, and {} lost it only {} ago",
                    seconds(down_for),
                    worker.name,
                    seconds(elapsed(lost))
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(last) = last_failover {
        let cooldown = Duration::from_secs(config.cooldown_seconds);
        if elapsed(last) < cooldown {
            return Verdict::Refuse(format!(
                "{manager} unreachable for {}, but the last failover was {} ago, within the \
                 cool-down of {}: `cargo xtask failover` promotes a worker if a person decides to",
                seconds(down_for),
                seconds(elapsed(last)),
                seconds(cooldown)
            ));
        }
    }
    Verdict::FailOver(format!(
        "{manager} unreachable for {}, and every worker ({}) lost it as long",
        seconds(down_for),
        answering
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The worker to promote: the one that has applied the most. Positions that each hold
/// something the other lacks cannot be ordered: that is an error for a person to resolve.
pub fn most_advanced(candidates: &[(String, GtidPosition)]) -> Result<usize, String> {
    if candidates.is_empty() {
        return Err("no worker answers".to_string());
    }
    let mut best = 0;
    for (i, candidate) in candidates.iter().enumerate().skip(1) {
        match candidate.1.compare(&candidates[best].1) {
            Some(std::cmp::Ordering::Greater) => best = i,
            Some(_) => {}
            None => {
                return Err(format!(
                    "{} ({}) and {} ({}) each hold transactions the other lacks; name the one \
                     to promote with `cargo xtask failover --to`",
                    candidate.0, candidate.1, candidates[best].0, candidates[best].1
                ))
            }
        }
    }
    Ok(best)
}

/// Makes a manager refuse writes and stop waiting for replicas.
pub const FENCE: &str = "SET GLOBAL read_only = ON; SET GLOBAL rpl_semi_sync_master_enabled = OFF;";

/// Makes a worker stop receiving, so it can apply all it received.
pub const STOP_RECEIVING: &str = "STOP SLAVE IO_THREAD;";

/// Turns a worker into the manager: it stops replicating and forgets its source, waits for a
/// worker's acknowledgement on each commit (semi-sync, unless `semi_sync_timeout_ms` is 0) and
/// takes writes.
pub fn promote(semi_sync_timeout_ms: u32) -> String {
    let semi_sync = match semi_sync_timeout_ms {
        0 => String::new(),
        ms => semi_sync_on(ms),
    };
    format!("STOP SLAVE; RESET SLAVE ALL; {semi_sync}SET GLOBAL read_only = OFF;")
}

/// Turns semi-sync on at a manager (what its config also says for its next start).
pub fn semi_sync_on(timeout_ms: u32) -> String {
    format!(
        "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC; \
         SET GLOBAL rpl_semi_sync_master_timeout = {timeout_ms}; \
         SET GLOBAL rpl_semi_sync_master_enabled = ON; "
    )
}

/// Makes a server a GTID replica of the manager at `address:port`, from where it is.
pub fn replicate_from(address: &str, port: u16, password: &str) -> String {
    REPLICA
        .replace("{{SOURCE_ADDRESS}}", &sql_string(address))
        .replace("{{SOURCE_PORT}}", &port.to_string())
        .replace("{{REPLICATION_PASSWORD}}", &sql_string(password))
}

/// What a former manager runs before it replicates: read-only, no longer waiting for replicas,
/// and its replica position set to all its own binary log holds (its old one is stale).
pub const BEFORE_REJOIN: &str = "SET GLOBAL read_only = ON; \
    SET GLOBAL rpl_semi_sync_master_enabled = OFF; STOP SLAVE; \
    SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos;";

/// Quotes a value as a SQL string literal (MariaDB's default sql_mode: backslash escapes).
pub fn sql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// One failover, as the proxy did it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverEvent {
    /// When it was done (RFC 3339).
    pub at: String,
    /// The manager before.
    pub from: String,
    /// The worker promoted.
    pub to: String,
    /// What the promoted worker held when it took over: the old manager diverged if it holds
    /// anything beyond this.
    pub position: String,
    /// Whether the old manager answered, and was fenced then.
    pub old_manager_answered: bool,
    /// The proxy decided by itself (else a person asked).
    pub automatic: bool,
    pub reason: String,
}

/// What became of a former manager once it answered again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejoin {
    pub at: String,
    pub host: String,
    /// It replicates from the manager again; else it holds writes nobody else has (diverged)
    /// and stays fenced until `cargo xtask repair` rebuilds it.
    pub rejoined: bool,
    pub reason: String,
}

/// What `GET /failovers` answers: the settings, every failover and rejoin, the last verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverHistory {
    pub after_ms: u64,
    pub cooldown_seconds: u64,
    pub failovers: Vec<FailoverEvent>,
    pub rejoins: Vec<Rejoin>,
    /// Former managers that diverged, left fenced.
    pub fenced: Vec<String>,
    /// The last verdict that was not "the manager answers", with its reason and time.
    pub last_verdict: Option<(String, String, String)>,
}

impl FailoverHistory {
    /// The last failover away from `host`: what it was manager until.
    pub fn last_from(&self, host: &str) -> Option<&FailoverEvent> {
        self.failovers.iter().rev().find(|e| e.from == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(after_ms: u64) -> FailoverConfig {
        FailoverConfig {
            after_ms,
            cooldown_seconds: 300,
            account: Account {
                user: "failover".into(),
                password: "p".into(),
            },
            replication: Account {
                user: "repl".into(),
                password: "r".into(),
            },
            semi_sync_timeout_ms: 1000,
            token: "t".into(),
        }
    }

    fn worker(name: &str, answers: bool, lost_for: Option<u64>, now: SystemTime) -> WorkerSeen {
        WorkerSeen {
            name: name.into(),
            answers,
            lost_manager_since: lost_for.map(|s| now - Duration::from_secs(s)),
        }
    }

    #[test]
    fn a_failover_needs_the_manager_gone_for_everyone_long_enough() {
        let now = SystemTime::now();
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        let c = config(5000);
        let both_lost = [
            worker("w1", true, Some(6), now),
            worker("w2", true, Some(7), now),
        ];
        assert_eq!(
            decide(now, &c, "m", None, &both_lost, None),
            Verdict::ManagerUp
        );
        let early = decide(now, &c, "m", ago(2), &both_lost, None);
        assert!(
            matches!(&early, Verdict::Wait(w) if w.contains("unreachable for 2.0 s")),
            "{early:?}"
        );
        let go = decide(now, &c, "m", ago(6), &both_lost, None);
        assert!(
            matches!(&go, Verdict::FailOver(w) if w.contains("every worker (w1, w2)")),
            "{go:?}"
        );
        // A worker that still receives from the manager vetoes: only the proxy lost it.
        let one_receives = [
            worker("w1", true, Some(6), now),
            worker("w2", true, None, now),
        ];
        let veto = decide(now, &c, "m", ago(60), &one_receives, None);
        assert!(
            matches!(&veto, Verdict::Refuse(w) if w.contains("w2 still receives from it")),
            "{veto:?}"
        );
        // One that lost it only now makes the proxy wait; one that does not answer has no say.
        let recent = [
            worker("w1", true, Some(6), now),
            worker("w2", true, Some(1), now),
        ];
        assert!(matches!(
            decide(now, &c, "m", ago(6), &recent, None),
            Verdict::Wait(_)
        ));
        let silent = [
            worker("w1", true, Some(6), now),
            worker("w2", false, None, now),
        ];
        assert!(matches!(
            decide(now, &c, "m", ago(6), &silent, None),
            Verdict::FailOver(_)
        ));
        let none = [worker("w1", false, None, now)];
        assert!(
            matches!(decide(now, &c, "m", ago(6), &none, None), Verdict::Refuse(w) if w.contains("no worker answers"))
        );
        // Within the cool-down: refused, and said.
        let cooling = decide(now, &c, "m", ago(6), &both_lost, ago(60));
        assert!(
            matches!(&cooling, Verdict::Refuse(w) if w.contains("within the cool-down of 300.0 s")),
            "{cooling:?}"
        );
        assert!(matches!(
            decide(now, &c, "m", ago(6), &both_lost, ago(400)),
            Verdict::FailOver(_)
        ));
        // Off: refused, naming the command.
        let off = decide(now, &config(0), "m", ago(60), &both_lost, None);
        assert!(
            matches!(&off, Verdict::Refuse(w) if w.contains("cargo xtask failover")),
            "{off:?}"
        );
        assert_eq!(off.kind(), "refuse");
    }

    #[test]
    fn the_worker_that_applied_the_most_is_promoted() {
        let at = |name: &str, position: &str| (name.to_string(), position.parse().unwrap());
        let workers = [at("w1", "0-1-40"), at("w2", "0-1-42"), at("w3", "0-1-41")];
        assert_eq!(most_advanced(&workers), Ok(1));
        assert_eq!(
            most_advanced(&[at("w1", "0-1-42"), at("w2", "0-1-42")]),
            Ok(0)
        );
        let err = most_advanced(&[at("w1", "0-1-42"), at("w2", "0-1-40,1-2-3")]).unwrap_err();
        assert!(
            err.contains("each hold transactions the other lacks"),
            "{err}"
        );
        assert!(most_advanced(&[]).is_err());
    }

    #[test]
    fn statements_are_filled_and_quoted() {
        let text = replicate_from("10.0.0.5", 3306, "it's");
        assert!(text.contains("MASTER_HOST = '10.0.0.5'"), "{text}");
        assert!(text.contains("MASTER_PORT = 3306"), "{text}");
        assert!(text.contains("MASTER_PASSWORD = 'it''s'"), "{text}");
        assert!(!text.contains("{{"), "{text}");
        assert!(promote(1000).contains("rpl_semi_sync_master_timeout = 1000"));
        assert!(!promote(0).contains("semi_sync"));
        assert!(promote(0).ends_with("SET GLOBAL read_only = OFF;"));
    }
}
