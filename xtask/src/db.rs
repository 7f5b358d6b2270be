//! Talking to a database host's server through the provider-neutral scripts.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::render::Script;
use crate::state::Host;
use crate::transport;

const DB_SQL: &str = include_str!("../scripts/db-sql.sh");

/// Runs SQL as the server's root (socket login) and returns the rows, tab-separated.
pub fn sql(host: &Host, sql: &str) -> Result<String> {
    run_sql(host, sql, "--skip-column-names")
}

fn run_sql(host: &Host, sql: &str, headers: &str) -> Result<String> {
    let script = Script::new("db-sql", DB_SQL)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("HEADERS", headers);
    transport::run_script(host, &script, sql.as_bytes())
}

/// The replication state of a replica, from `SHOW SLAVE STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub io_running: bool,
    pub sql_running: bool,
    /// Seconds_Behind_Master; None while it is unknown (a thread is not running).
    pub lag_seconds: Option<u64>,
    pub last_error: String,
}

impl ReplicaStatus {
    pub fn healthy(&self) -> bool {
        self.io_running && self.sql_running
    }
}

pub fn replica_status(host: &Host) -> Result<Option<ReplicaStatus>> {
    let text = run_sql(host, "SHOW SLAVE STATUS;", "--column-names")?;
    Ok(parse_replica_status(&text))
}

/// Parses the batch output of `SHOW SLAVE STATUS` (a header line and a value line, both
/// tab-separated); None when the server is no replica.
pub fn parse_replica_status(text: &str) -> Option<ReplicaStatus> {
    let mut lines = text.lines();
    let (names, values) = (lines.next()?, lines.next()?);
    let fields: BTreeMap<&str, &str> = names.split('\t').zip(values.split('\t')).collect();
    let field = |name: &str| fields.get(name).copied();
    let io = field("Slave_IO_Running")?;
    let errors = [field("Last_IO_Error"), field("Last_SQL_Error")];
    Some(ReplicaStatus {
        io_running: io == "Yes",
        sql_running: field("Slave_SQL_Running") == Some("Yes"),
        lag_seconds: field("Seconds_Behind_Master").and_then(|v| v.parse().ok()),
        last_error: errors
            .into_iter()
            .flatten()
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Row counts per table, from the `table<TAB>rows` lines of `dataset::count_query`.
pub fn parse_counts(text: &str) -> Result<Vec<(String, u64)>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (table, rows) = line
                .split_once('\t')
                .with_context(|| format!("unexpected row count line {line:?}"))?;
            let rows = rows
                .trim()
                .parse()
                .with_context(|| format!("unexpected row count line {line:?}"))?;
            Ok((table.to_string(), rows))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_running_replica() {
        let text = include_str!("../tests/data/show-slave-status.txt");
        let status = parse_replica_status(text).unwrap();
        assert!(status.healthy());
        assert_eq!(status.lag_seconds, Some(0));
        assert_eq!(status.last_error, "");
    }

    #[test]
    fn parses_a_broken_replica() {
        let text = "Slave_IO_Running\tSlave_SQL_Running\tSeconds_Behind_Master\tLast_IO_Error\t\
                    Last_SQL_Error\nConnecting\tYes\tNULL\terror connecting to master\t\n";
        let status = parse_replica_status(text).unwrap();
        assert!(!status.healthy());
        assert_eq!(status.lag_seconds, None);
        assert_eq!(status.last_error, "error connecting to master");
        assert_eq!(parse_replica_status(""), None);
        assert_eq!(parse_replica_status("Slave_IO_Running\n"), None);
    }

    #[test]
    fn parses_counts() {
        let counts = parse_counts("film\t100\nactor\t20\n").unwrap();
        assert_eq!(
            counts,
            [("film".to_string(), 100), ("actor".to_string(), 20)]
        );
        assert!(parse_counts("film 100").is_err());
    }
}
