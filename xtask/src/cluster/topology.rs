//! Who replicates from whom: pointing a server at its manager, reading how far each server
//! got (GTID positions), turning a former manager into a worker or rebuilding it, and keeping
//! data.json's roles with what the servers and the proxy say. The statements are the ones the
//! proxy runs for a failover (contract::failover); the same SQL on every provider, through the
//! transport.

use anyhow::{Context, Result};
use contract::failover::{self, FailoverEvent};
use contract::gtid::GtidPosition;

use super::{server, services, sql};
use crate::state::{Deployment, Engine, FailoverRecord, Host, Role, Session, Step, StepStatus};
use crate::transport::{self, script::Script};

const DB_DUMP: &str = include_str!("../../scripts/db-dump.sh");
const REPLICATION_SOURCE: &str = include_str!("../../../sql/replication-source.sql");
const DB_SET_ASIDE: &str = include_str!("../../scripts/db-set-aside.sh");

/// Makes `replica` a GTID replica of `source` (from where it is: its gtid_slave_pos).
pub fn replicate_from(d: &Deployment, replica: &Host, source: &Host) -> Result<()> {
    let text = failover::replicate_from(
        &source.address,
        d.settings.db_port,
        &d.secrets.replication_password,
    );
    sql::sql(replica, &text)
        .map(drop)
        .with_context(|| format!("making {} a replica of {}", replica.name, source.name))
}

/// Lets a server that connects from `client` (an address) replicate from `source`: the
/// replication account for that address (every server of the cluster may replicate from any
/// other after a failover, so it replicates everywhere).
pub fn allow_replica(d: &Deployment, source: &Host, client: String) -> Result<()> {
    let replication = sql::fill(
        REPLICATION_SOURCE,
        &[
            ("REPLICA_CLIENT_HOST", client),
            (
                "REPLICATION_PASSWORD",
                sql::sql_string(&d.secrets.replication_password),
            ),
        ],
    )?;
    sql::sql(source, &replication).map(drop)
}

/// What a server's binary log holds (with log_slave_updates, what it applied as a replica
/// too).
pub fn binlog_position(host: &Host) -> Result<GtidPosition> {
    let text = sql::sql(host, "SELECT @@gtid_binlog_pos;")?;
    text.trim()
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", host.name))
}

/// Makes a former manager a replica of `source`, from everything its own binary log holds
/// (a former manager's gtid_slave_pos is stale: its binary log is what it has).
pub fn rejoin(d: &Deployment, host: &Host, source: &Host) -> Result<()> {
    sql::sql(host, failover::BEFORE_REJOIN)?;
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
    copy_into(host, source)?;
    replicate_from(&session.deployment, host, source)?;
    Ok(aside.trim().to_string())
}

/// Loads into `host`'s fresh server a consistent copy of `source` (its accounts included)
/// with the GTID position it was taken at, from which `host` then replicates.
pub fn copy_into(host: &Host, source: &Host) -> Result<()> {
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
    .with_context(|| format!("loading {}'s data into {}", source.name, host.name))
    .map(drop)
}

/// Turns semi-sync on at the manager (its config has it for the next start).
pub fn enable_semi_sync(manager: &Host, timeout_ms: u32) -> Result<()> {
    sql::sql(manager, &failover::semi_sync_on(timeout_ms)).map(drop)
}

/// Records a failover in data.json: the promoted worker is the manager, the old manager a
/// fenced worker (until it rejoins), and the failover in the history; the two servers' configs
/// say their new roles for their next start.
pub fn record_failover(session: &mut Session, event: &FailoverEvent) -> Result<()> {
    let d = &mut session.deployment;
    for host in &mut d.hosts {
        if host.name == event.to {
            host.role = Role::Manager;
        } else if host.name == event.from {
            host.role = Role::Worker;
        }
    }
    d.fenced.retain(|h| *h != event.to);
    if !d.fenced.contains(&event.from) {
        d.fenced.push(event.from.clone());
    }
    d.failovers.push(FailoverRecord {
        at: event.at.clone(),
        from: event.from.clone(),
        to: event.to.clone(),
        position: event.position.clone(),
        old_manager_answered: event.old_manager_answered,
        automatic: event.automatic,
        reason: event.reason.clone(),
    });
    session.save()?;
    for name in [&event.to, &event.from] {
        if let Some(host) = session.deployment.host_named(name).cloned() {
            // A machine that is gone gets its config when it is repaired.
            server::write_config(&session.deployment, &host).ok();
        }
    }
    Ok(())
}

/// Brings data.json up to what the proxy and the servers say: each failover the proxy made by
/// itself, each former manager that rejoined (or stays fenced), and the manager as the servers
/// have it (the one that takes writes and replicates from nobody). What does not answer is
/// left as recorded. Returns what changed, a line each.
pub fn follow(session: &mut Session) -> Result<Vec<String>> {
    let d = &session.deployment;
    let installed = d.step(Step::InstallCluster).status == StepStatus::Done;
    if d.engine() != Engine::Replication || !installed {
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    let deployed = d.step(Step::DeployServices).status == StepStatus::Done;
    if let Some(history) = deployed
        .then(|| services::failover_history(d).ok())
        .flatten()
    {
        for event in &history.failovers {
            let recorded = session
                .deployment
                .failovers
                .iter()
                .any(|f| f.at == event.at && f.to == event.to);
            if !recorded {
                record_failover(session, event)?;
                changed.push(format!(
                    "the proxy failed over from {} to {} at {} ({})",
                    event.from, event.to, event.at, event.reason
                ));
            }
        }
        for rejoin in history.rejoins.iter().filter(|r| r.rejoined) {
            // A rejoin after the host's last failover (an earlier one says nothing of it).
            let since_last = session
                .deployment
                .failovers
                .iter()
                .rev()
                .find(|f| f.from == rejoin.host)
                .is_none_or(|f| rejoin.at >= f.at);
            if since_last && session.deployment.fenced.contains(&rejoin.host) {
                session.deployment.fenced.retain(|h| *h != rejoin.host);
                changed.push(format!(
                    "{} rejoined as a worker ({})",
                    rejoin.host, rejoin.reason
                ));
            }
        }
    }
    let d = &session.deployment;
    let recorded = d.host(Role::Manager)?.name.clone();
    let writable: Vec<Host> = d
        .hosts_with_role(Role::Manager)
        .chain(d.hosts_with_role(Role::Worker))
        .filter(|h| {
            sql::sql(h, "SELECT @@read_only;").is_ok_and(|r| r.trim() == "0")
                && sql::replica_status(h).is_ok_and(|s| s.is_none())
        })
        .cloned()
        .collect();
    if let [manager] = &writable[..] {
        if manager.name != recorded {
            let event = FailoverEvent {
                at: crate::state::now(),
                from: recorded.clone(),
                to: manager.name.clone(),
                position: binlog_position(manager)?.to_string(),
                old_manager_answered: false,
                automatic: false,
                reason: "found so on the servers: it takes writes and replicates from nobody"
                    .to_string(),
            };
            record_failover(session, &event)?;
            changed.push(format!(
                "{} takes the writes now (the servers say so), not {recorded}",
                manager.name
            ));
        }
    }
    if !changed.is_empty() {
        session.save()?;
    }
    Ok(changed)
}
