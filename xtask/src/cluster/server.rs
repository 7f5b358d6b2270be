//! A database host's server: its config, start (or adoption of the one running), stop, and
//! the replicas' catch-up with the manager.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::process;
use super::sql::{self, sql_string};
use crate::state::{Host, Role, Session};
use crate::transport::{self, script::Script};

const DB_START: &str = include_str!("../../scripts/db-start.sh");
const DB_STOP: &str = include_str!("../../scripts/db-stop.sh");

/// How long a server gets to shut down cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Writes the server's config, starts it (or adopts the one running) and records its process.
pub fn start(session: &mut Session, host: &Host, server_id: u32) -> Result<()> {
    let config = ServerConfig {
        role: host.role,
        server_id,
        dir: &host.dir.display().to_string(),
        bind_address: &host.address,
        port: session.deployment.settings.db_port,
    }
    .render();
    transport::put_file(host, "my.cnf", config.as_bytes(), false)?;
    let script =
        Script::new("db-start", DB_START).param("HOST_DIR", host.dir.display().to_string());
    process::start_and_record(session, host, script, process_key(host), "mariadbd")
}

/// Stops the host's server, whether recorded or left unrecorded by an interrupted run: it is
/// the process started with the host's own config. Returns the pid stopped, if one ran.
pub fn stop(session: &mut Session, host: &Host) -> Result<Option<u32>> {
    let script = Script::new("db-stop", DB_STOP)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("GRACE", STOP_GRACE.as_secs().to_string());
    process::stop_and_forget(session, host, &script, &process_key(host))
}

pub fn process_key(host: &Host) -> String {
    format!("{}/mariadbd", host.name)
}

/// Waits until every worker has applied everything the manager had when this was called.
pub fn wait_for_replicas(manager: &Host, workers: &[Host], timeout: Duration) -> Result<()> {
    let position = sql::sql(manager, "SELECT @@gtid_binlog_pos;")?
        .trim()
        .to_string();
    for worker in workers {
        let waited = sql::sql(
            worker,
            &format!(
                "SELECT MASTER_GTID_WAIT({}, {});",
                sql_string(&position),
                timeout.as_secs()
            ),
        )?;
        if waited.trim() != "0" {
            let state = match sql::replica_status(worker)? {
                Some(s) if !s.healthy() => format!(
                    "replication is not running (IO thread running: {}, SQL thread running: {}): {}",
                    s.io_running, s.sql_running, s.last_error
                ),
                Some(_) => "replication runs but is behind".to_string(),
                None => "it is not configured as a replica".to_string(),
            };
            bail!(
                "{} did not reach the manager's position {position} within {} s: {state}",
                worker.name,
                timeout.as_secs()
            );
        }
    }
    Ok(())
}

/// Fails unless every worker replicates (both threads running).
pub fn check_replicating(workers: &[Host]) -> Result<()> {
    for worker in workers {
        let status = sql::replica_status(worker)?
            .with_context(|| format!("{} is not configured as a replica", worker.name))?;
        if !status.healthy() {
            bail!(
                "replication on {} is not running (IO thread running: {}, SQL thread running: {}): {}",
                worker.name,
                status.io_running,
                status.sql_running,
                status.last_error
            );
        }
    }
    Ok(())
}

/// What a database server's config depends on.
pub struct ServerConfig<'a> {
    pub role: Role,
    pub server_id: u32,
    pub dir: &'a str,
    pub bind_address: &'a str,
    pub port: u16,
}

impl ServerConfig<'_> {
    pub fn render(&self) -> String {
        let ServerConfig {
            dir,
            bind_address,
            port,
            server_id,
            ..
        } = self;
        let mut cnf = format!(
            "# Rendered by cargo xtask for one {role:?} host; rerunning install-cluster rewrites it.\n\
             [mariadbd]\n\
             datadir={dir}/data\n\
             socket={dir}/mariadbd.sock\n\
             pid-file={dir}/mariadbd.pid\n\
             log-error={dir}/mariadbd.err\n\
             # Its own temporary folder: a starting server deletes every `#sql*` file in its\n\
             # tmpdir, which would pull temporary tables from under a neighbour sharing /tmp.\n\
             tmpdir={dir}/tmp\n\
             bind-address={bind_address}\n\
             port={port}\n\
             server-id={server_id}\n\
             # Accounts are bound to addresses, never to names a resolver could fake.\n\
             skip-name-resolve\n\
             local-infile=0\n\
             character-set-server=utf8mb4\n\
             collation-server=utf8mb4_general_ci\n\
             # Small footprint: several servers share one machine or a small instance.\n\
             innodb_buffer_pool_size=64M\n\
             innodb_log_file_size=32M\n\
             performance_schema=OFF\n\
             max_connections=200\n",
            role = self.role,
        );
        match self.role {
            Role::Manager => cnf.push_str(
                "# The source of the cluster: every change goes to the binary log with a GTID.\n\
                 log-bin=mariadb-bin\n\
                 binlog_format=ROW\n\
                 gtid_strict_mode=ON\n",
            ),
            Role::Worker => cnf.push_str(
                "# A read replica: only the replication thread writes.\n\
                 read_only=ON\n\
                 relay-log=relay-bin\n\
                 gtid_strict_mode=ON\n",
            ),
            _ => {}
        }
        // Last, as it opens a group of its own: the OS account the server runs as, which
        // db-start chooses on the host (the mysql account where it has root).
        cnf.push_str(&format!("!include {dir}/user.cnf\n"));
        cnf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_role() {
        let config = |role| ServerConfig {
            role,
            server_id: 7,
            dir: "/srv/h",
            bind_address: "127.0.1.3",
            port: 3306,
        };
        let manager = config(Role::Manager).render();
        assert!(manager.contains("log-bin=mariadb-bin"));
        assert!(manager.contains("bind-address=127.0.1.3\nport=3306\nserver-id=7\n"));
        assert!(manager.contains("socket=/srv/h/mariadbd.sock"));
        assert!(manager.contains("tmpdir=/srv/h/tmp\n"));
        assert!(!manager.contains("read_only"));
        assert!(manager.ends_with("!include /srv/h/user.cnf\n"), "{manager}");
        let worker = config(Role::Worker).render();
        assert!(worker.contains("read_only=ON"));
        assert!(!worker.contains("log-bin"));
        let standalone = config(Role::Standalone).render();
        assert!(!standalone.contains("log-bin") && !standalone.contains("read_only"));
    }
}
