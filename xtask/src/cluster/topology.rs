//! Who replicates from whom: pointing a server at its manager, reading how far each server
//! got (GTID positions), fencing a manager and promoting a worker. The same SQL on every
//! provider, through the transport.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use contract::gtid::GtidPosition;

use super::server;
use super::sql::{self, fill, sql_string};
use crate::state::{Deployment, Host, Session};
use crate::transport::{self, script::Script};

const REPLICA: &str = include_str!("../../../sql/replica.sql");
const DB_DUMP: &str = include_str!("../../scripts/db-dump.sh");
const DB_SET_ASIDE: &str = include_str!("../../scripts/db-set-aside.sh");

/// Makes `replica` a GTID replica of `source` (from where it is: its gtid_slave_pos).
pub fn replicate_from(d: &Deployment, replica: &Host, source: &Host) -> Result<()> {
    let text = fill(
        REPLICA,
        &[
            ("SOURCE_ADDRESS", sql_string(&source.address)),
            ("SOURCE_PORT", d.settings.db_port.to_string()),
            (
                "REPLICATION_PASSWORD",
                sql_string(&d.secrets.replication_password),
            ),
        ],
    )?;
    sql::sql(replica, &text)
        .map(drop)
        .with_context(|| format!("making {} a replica of {}", replica.name, source.name))
}

/// What a server's binary log holds (with log_slave_updates, what it applied as a replica
/// too).
pub fn binlog_position(host: &Host) -> Result<GtidPosition> {
    let text = sql::sql(host, "SELECT @@gtid_binlog_pos;")?;
    text.trim()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", host.name))
}

/// Stops a replica receiving and waits (up to `timeout`) until it has applied everything it
/// received; returns its position then.
pub fn drain(replica: &Host, timeout: Duration) -> Result<GtidPosition> {
    sql::sql(replica, "STOP SLAVE IO_THREAD;")?;
    let deadline = Instant::now() + timeout;
    loop {
        let text = sql::sql(replica, "SELECT @@gtid_slave_pos;")?;
        let applied: GtidPosition = text
            .trim()
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", replica.name))?;
        let received: Option<GtidPosition> = sql::replica_status(replica)?
            .map(|s| s.received.parse())
            .transpose()
            .map_err(|e: String| anyhow::anyhow!("{}: {e}", replica.name))?;
        if received.as_ref().is_none_or(|r| applied.covers(r)) {
            return Ok(applied);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not apply what it received within {} s (applied {applied})",
                replica.name,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes a former manager a replica of `source`, from everything its own binary log holds
/// (a former manager's gtid_slave_pos is stale: its binary log is what it has).
pub fn rejoin(d: &Deployment, host: &Host, source: &Host) -> Result<()> {
    sql::sql(
        host,
        "SET GLOBAL read_only = ON; SET GLOBAL rpl_semi_sync_master_enabled = OFF; \
         STOP SLAVE; SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos;",
    )?;
    replicate_from(d, host, source)
}

/// Rebuilds a server from `source`'s data: stops it, sets its data folder aside (kept, its
/// path returned), starts it afresh (read-only, as every server of the cluster starts), loads
/// a consistent copy of the source with the GTID position it was taken at, and makes it a
/// replica of the source from there.
pub fn rebuild_from(session: &mut Session, host: &Host, source: &Host) -> Result<String> {
    server::stop(session, host)?;
    let aside = transport::run_script(
        host,
        &Script::new("db-set-aside", DB_SET_ASIDE)
            .param("HOST_DIR", host.dir.display().to_string()),
        b"",
    )?;
    server::start(session, host)?;
    let copy = transport::run_script(
        source,
        &Script::new("db-dump", DB_DUMP).param("HOST_DIR", source.dir.display().to_string()),
        b"",
    )
    .with_context(|| format!("copying {}'s data", source.name))?;
    // Not in its own binary log: what it loads is the source's history, whose GTIDs the
    // copy sets as its position.
    sql::sql(
        host,
        &format!("RESET MASTER;\nSET SESSION sql_log_bin = 0;\n{copy}\nFLUSH PRIVILEGES;\n"),
    )
    .with_context(|| format!("loading {}'s data into {}", source.name, host.name))?;
    replicate_from(&session.deployment, host, source)?;
    Ok(aside.trim().to_string())
}

/// Turns semi-sync on at the manager (its config has it for the next start).
pub fn enable_semi_sync(manager: &Host, timeout_ms: u32) -> Result<()> {
    sql::sql(manager, &semi_sync_master(timeout_ms)).map(drop)
}

fn semi_sync_master(timeout_ms: u32) -> String {
    format!(
        "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC; \
         SET GLOBAL rpl_semi_sync_master_timeout = {timeout_ms}; \
         SET GLOBAL rpl_semi_sync_master_enabled = ON;"
    )
}

/// Makes a server refuse writes and stop waiting for replicas: a manager that must not take
/// writes any more.
pub fn fence(host: &Host) -> Result<()> {
    sql::sql(
        host,
        "SET GLOBAL read_only = ON; SET GLOBAL rpl_semi_sync_master_enabled = OFF;",
    )
    .map(drop)
}

/// Turns a worker into the manager: it stops replicating and forgets its source, waits for
/// a worker's acknowledgement on each commit (semi-sync, unless `semi_sync_timeout_ms` is 0)
/// and takes writes.
pub fn promote(host: &Host, semi_sync_timeout_ms: u32) -> Result<()> {
    let semi_sync = if semi_sync_timeout_ms > 0 {
        semi_sync_master(semi_sync_timeout_ms)
    } else {
        String::new()
    };
    sql::sql(
        host,
        &format!("STOP SLAVE; RESET SLAVE ALL; {semi_sync} SET GLOBAL read_only = OFF;"),
    )
    .map(drop)
    .with_context(|| format!("promoting {}", host.name))
}

/// The worker to promote: the one that has applied the most (positions that each hold
/// something the other lacks cannot be ordered: that is an error to resolve by hand).
pub fn most_advanced(candidates: &[(Host, GtidPosition)]) -> Result<&(Host, GtidPosition)> {
    let mut best = candidates.first().context("no worker answers")?;
    for candidate in &candidates[1..] {
        match candidate.1.compare(&best.1) {
            Some(std::cmp::Ordering::Greater) => best = candidate,
            Some(_) => {}
            None => bail!(
                "{} ({}) and {} ({}) each hold transactions the other lacks; name the one to \
                 promote with --to",
                candidate.0.name,
                candidate.1,
                best.0.name,
                best.1
            ),
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Role;

    fn host(name: &str) -> Host {
        Host {
            name: name.into(),
            role: Role::Worker,
            address: "127.0.0.1".into(),
            dir: "/x".into(),
            ssh: None,
            connects_from: None,
        }
    }

    #[test]
    fn the_most_advanced_worker_is_promoted() {
        let at = |name: &str, position: &str| (host(name), position.parse().unwrap());
        let workers = [
            at("worker-1", "0-1-40"),
            at("worker-2", "0-1-42"),
            at("worker-3", "0-1-41"),
        ];
        assert_eq!(most_advanced(&workers).unwrap().0.name, "worker-2");
        let tie = [at("worker-1", "0-1-42"), at("worker-2", "0-1-42")];
        assert_eq!(most_advanced(&tie).unwrap().0.name, "worker-1");
        let diverged = [at("worker-1", "0-1-42"), at("worker-2", "0-1-40,1-2-3")];
        let err = most_advanced(&diverged).unwrap_err().to_string();
        assert!(
            err.contains("each hold transactions the other lacks"),
            "{err}"
        );
        assert!(most_advanced(&[]).is_err());
    }
}
