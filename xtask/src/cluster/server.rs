//! A database host's server: its config, start (or adoption of the one running), stop, and
//! the replicas' catch-up with the manager.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::process;
use super::sql::{self, sql_string};
use crate::state::{Deployment, Host, Role, Session};
use crate::transport::{self, script::Script, Supervisor};

const DB_START: &str = include_str!("../../scripts/db-start.sh");
const DB_STOP: &str = include_str!("../../scripts/db-stop.sh");
const DB_WIPE: &str = include_str!("../../scripts/db-wipe.sh");
const DB_UNIT: &str = include_str!("../../scripts/db.unit.in");

/// How long a server gets to shut down cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Writes the server's config for its role now (read at its next start).
pub fn write_config(d: &Deployment, host: &Host) -> Result<()> {
    let server_id = d
        .database_hosts()
        .position(|h| h.name == host.name)
        .with_context(|| format!("{} is no database host", host.name))? as u32
        + 1;
    let nodes: Vec<&str> = d
        .hosts_with_role(Role::Node)
        .map(|h| h.address.as_str())
        .collect();
    let config = ServerConfig {
        role: host.role,
        server_id,
        dir: &host.dir.display().to_string(),
        bind_address: &host.address,
        port: d.settings.db_port,
        semi_sync_timeout_ms: d.settings.semi_sync_timeout_ms,
        galera: (host.role == Role::Node).then(|| Galera {
            cluster_name: &d.id,
            node_name: &host.name,
            nodes: nodes.clone(),
        }),
    }
    .render();
    transport::put_file(host, "my.cnf", config.as_bytes(), false)
}

/// Writes the server's config, starts it (or adopts the one running) and records its process.
pub fn start(session: &mut Session, host: &Host) -> Result<()> {
    write_config(&session.deployment, host)?;
    process::start_and_record(
        session,
        host,
        start_script(host)?,
        process_key(host),
        "mariadbd",
    )?;
    if host.role == Role::Manager {
        make_writable(host)?;
    }
    Ok(())
}

/// Stops the host's server and makes its next start an empty one, whatever an earlier attempt
/// left in it (a new host only: what it held is gone).
pub fn wipe(session: &mut Session, host: &Host) -> Result<()> {
    stop(session, host)?;
    let script = Script::new("db-wipe", DB_WIPE).param("HOST_DIR", host.dir.display().to_string());
    transport::run_script(host, &script, b"").map(drop)
}

/// The script that starts the host's server (or adopts the one running) under the host's
/// supervisor; it waits until the server answers unless given WAIT=0.
pub fn start_script(host: &Host) -> Result<Script> {
    let supervisor = transport::supervisor(host);
    let mut script = Script::new("db-start", DB_START)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("SUPERVISOR", supervisor.as_str())
        .param("UNIT_NAME", process::unit_name(host));
    if supervisor == Supervisor::Systemd {
        script = script.param("UNIT", unit(host)?);
    }
    Ok(script)
}

/// The systemd unit of a host's server.
fn unit(host: &Host) -> Result<String> {
    sql::fill(
        DB_UNIT,
        &[
            ("HOST", host.name.clone()),
            ("CONFIG", host.dir.join("my.cnf").display().to_string()),
            ("GRACE", STOP_GRACE.as_secs().to_string()),
        ],
    )
}

/// Opens the manager to writes (every server of the cluster starts read-only).
pub fn make_writable(manager: &Host) -> Result<()> {
    sql::sql(manager, "SET GLOBAL read_only = OFF;").map(drop)
}

/// Stops the host's server, whether recorded or left unrecorded by an interrupted run: it is
/// the process started with the host's own config. Returns the pid stopped, if one ran.
pub fn stop(session: &mut Session, host: &Host) -> Result<Option<u32>> {
    let script = Script::new("db-stop", DB_STOP)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("GRACE", STOP_GRACE.as_secs().to_string())
        .param("SUPERVISOR", transport::supervisor(host).as_str())
        .param("UNIT_NAME", process::unit_name(host));
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
    /// 0: asynchronous replication.
    pub semi_sync_timeout_ms: u32,
    /// A Galera node's cluster.
    pub galera: Option<Galera<'a>>,
}

/// What a Galera node's config needs of its cluster.
pub struct Galera<'a> {
    pub cluster_name: &'a str,
    pub node_name: &'a str,
    /// Every node's address, its own included.
    pub nodes: Vec<&'a str>,
}

/// Where Debian's galera-4 puts the provider.
pub const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

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
        if matches!(self.role, Role::Manager | Role::Worker) {
            // Every server of the cluster keeps a binary log of what it applies, with the
            // manager's GTIDs, so any worker can become the manager. Every one starts
            // read-only: the manager is made writable once started (server::start), so a
            // manager that comes back after a failover stays fenced.
            cnf.push_str(
                "log-bin=mariadb-bin\n\
                 binlog_format=ROW\n\
                 log_slave_updates=ON\n\
                 gtid_strict_mode=ON\n\
                 read_only=ON\n\
                 relay-log=relay-bin\n\
                 # A worker notices a manager that went silent (its machine lost) this soon,\n\
                 # with its heartbeats every second (sql/replica.sql).\n\
                 slave_net_timeout=4\n",
            );
        }
        let semi_sync = self.semi_sync_timeout_ms;
        match self.role {
            Role::Manager if semi_sync > 0 => cnf.push_str(&format!(
                "# A commit is acknowledged once a worker has it in its relay log; the wait comes\n\
                 # after the binary log's sync (AFTER_SYNC), so no other session sees a commit that\n\
                 # no worker has. Past the timeout the manager goes on asynchronously.\n\
                 rpl_semi_sync_master_enabled=ON\n\
                 rpl_semi_sync_master_wait_point=AFTER_SYNC\n\
                 rpl_semi_sync_master_timeout={semi_sync}\n"
            )),
            Role::Worker if semi_sync > 0 => cnf.push_str("rpl_semi_sync_slave_enabled=ON\n"),
            _ => {}
        }
        if let Some(g) = &self.galera {
            let cluster: Vec<String> = g.nodes.iter().map(|a| format!("{a}:4567")).collect();
            cnf.push_str(&format!(
                "# A Galera node: every write is certified by all nodes before it commits. Each of\n\
                 # its ports is bound to its own address (group communication 4567, incremental\n\
                 # transfers 4568, full transfers 4444), never to every address.\n\
                 wsrep_on=ON\n\
                 wsrep_provider={GALERA_PROVIDER}\n\
                 wsrep_cluster_name={name}\n\
                 wsrep_cluster_address=gcomm://{cluster}\n\
                 wsrep_node_name={node}\n\
                 wsrep_node_address={bind_address}\n\
                 wsrep_provider_options=\"gmcast.listen_addr=tcp://{bind_address}:4567;ist.recv_addr={bind_address}:4568\"\n\
                 wsrep_sst_receive_address={bind_address}:4444\n\
                 wsrep_sst_method=rsync\n\
                 binlog_format=ROW\n\
                 innodb_autoinc_lock_mode=2\n\
                 # A binary log gives each write a GTID, which clients pass back to read it.\n\
                 log-bin=mariadb-bin\n\
                 log_slave_updates=ON\n\
                 # How this node starts next (bootstrap, or the position it recovered to).\n\
                 !include {dir}/galera-start.cnf\n",
                name = g.cluster_name,
                cluster = cluster.join(","),
                node = g.node_name,
            ));
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
            semi_sync_timeout_ms: 1000,
            galera: None,
        };
        let manager = config(Role::Manager).render();
        assert!(manager.contains("log-bin=mariadb-bin"));
        assert!(manager.contains("bind-address=127.0.1.3\nport=3306\nserver-id=7\n"));
        assert!(manager.contains("socket=/srv/h/mariadbd.sock"));
        assert!(manager.contains("tmpdir=/srv/h/tmp\n"));
        assert!(
            manager.contains("read_only=ON"),
            "made writable once started"
        );
        assert!(manager.ends_with("!include /srv/h/user.cnf\n"), "{manager}");
        assert!(manager.contains("rpl_semi_sync_master_wait_point=AFTER_SYNC\n"));
        assert!(manager.contains("rpl_semi_sync_master_timeout=1000\n"));
        let worker = config(Role::Worker).render();
        assert!(worker.contains("read_only=ON"));
        // A worker can become the manager: it keeps what it applies in its own binary log.
        assert!(worker.contains("log-bin=mariadb-bin\nbinlog_format=ROW\nlog_slave_updates=ON\n"));
        assert!(worker.contains("rpl_semi_sync_slave_enabled=ON\n"));
        assert!(!worker.contains("rpl_semi_sync_master"));
        let asynchronous = ServerConfig {
            semi_sync_timeout_ms: 0,
            ..config(Role::Manager)
        }
        .render();
        assert!(!asynchronous.contains("semi_sync"), "{asynchronous}");
        let standalone = config(Role::Standalone).render();
        assert!(!standalone.contains("log-bin") && !standalone.contains("read_only"));
        assert!(!standalone.contains("semi_sync"));
        assert!(!manager.contains("wsrep") && !standalone.contains("wsrep"));
    }

    #[test]
    fn a_galera_node_binds_every_port_to_its_address() {
        let node = ServerConfig {
            role: Role::Node,
            server_id: 2,
            dir: "/srv/n2",
            bind_address: "127.0.1.4",
            port: 3306,
            semi_sync_timeout_ms: 1000,
            galera: Some(Galera {
                cluster_name: "dbc-x",
                node_name: "node-2",
                nodes: vec!["127.0.1.3", "127.0.1.4", "127.0.1.5"],
            }),
        }
        .render();
        assert!(node.contains(
            "wsrep_cluster_address=gcomm://127.0.1.3:4567,127.0.1.4:4567,127.0.1.5:4567\n"
        ));
        assert!(node.contains(
            "wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.1.4:4567;ist.recv_addr=127.0.1.4:4568\"\n"
        ));
        assert!(node.contains("wsrep_sst_receive_address=127.0.1.4:4444\n"));
        assert!(node.contains("wsrep_node_address=127.0.1.4\n"));
        assert!(node.contains("innodb_autoinc_lock_mode=2\n"));
        // Multi-primary: no node starts read-only, none replicates asynchronously.
        assert!(
            !node.contains("read_only") && !node.contains("semi_sync"),
            "{node}"
        );
        assert!(node.contains("!include /srv/n2/galera-start.cnf\n"));
        assert!(node.ends_with("!include /srv/n2/user.cnf\n"), "{node}");
    }
}
