//! SQL on a database host's server, through the provider-neutral scripts, and the SQL text
//! the steps render: string literals and strict `{{NAME}}` templates (sql/*.sql), so a typo
//! cannot silently produce broken SQL.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::state::Host;
use crate::transport::{self, script::Script};

const DB_SQL: &str = include_str!("../../scripts/db-sql.sh");

/// Runs SQL as the server's root (socket login) and returns the rows, tab-separated.
pub fn sql(host: &Host, sql: &str) -> Result<String> {
    run_sql(host, sql, "--skip-column-names")
}

/// Runs SQL as root; the output has a header line of column names.
pub fn sql_with_names(host: &Host, sql: &str) -> Result<String> {
    run_sql(host, sql, "--column-names")
}

fn run_sql(host: &Host, sql: &str, headers: &str) -> Result<String> {
    let script = Script::new("db-sql", DB_SQL)
        .param("HOST_DIR", host.dir.display().to_string())
        .param("HEADERS", headers);
    transport::run_script(host, &script, sql.as_bytes())
}

pub use contract::failover::sql_string;

/// Replaces every `{{NAME}}` in `template`; a placeholder without a value, or a value that no
/// placeholder uses, is an error.
pub fn fill(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unclosed {{{{ in template");
        };
        let name = &after[..end];
        let Some(at) = values.iter().position(|(n, _)| *n == name) else {
            bail!("template placeholder {{{{{name}}}}} has no value");
        };
        used[at] = true;
        out.push_str(&values[at].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(at) = used.iter().position(|u| !u) {
        bail!("template has no placeholder {{{{{}}}}}", values[at].0);
    }
    Ok(out)
}

/// The replication state of a replica, from `SHOW SLAVE STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub io_running: bool,
    pub sql_running: bool,
    /// Seconds_Behind_Master; None while it is unknown (a thread is not running).
    pub lag_seconds: Option<u64>,
    pub last_error: String,
    /// Where it replicates from (Master_Host).
    pub source_host: String,
    /// What it received from its source (Gtid_IO_Pos), as MariaDB prints it.
    pub received: String,
}

impl ReplicaStatus {
    pub fn healthy(&self) -> bool {
        self.io_running && self.sql_running
    }
}

pub fn replica_status(host: &Host) -> Result<Option<ReplicaStatus>> {
    let text = sql_with_names(host, "SHOW SLAVE STATUS;")?;
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
        source_host: field("Master_Host").unwrap_or_default().to_string(),
        received: field("Gtid_IO_Pos").unwrap_or_default().trim().to_string(),
    })
}

/// Whether the manager's commits wait for a worker (semi-synchronous replication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemiSync {
    /// Not configured: replication is asynchronous.
    Disabled,
    /// On: this many workers acknowledge.
    On { workers: u32 },
    /// Configured, but no worker acknowledged within the timeout: asynchronous until one
    /// catches up.
    FellBack,
}

pub fn semi_sync(manager: &Host) -> Result<SemiSync> {
    let text = run_sql(
        manager,
        "SELECT @@rpl_semi_sync_master_enabled, VARIABLE_NAME, VARIABLE_VALUE \
         FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN \
         ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS');",
        "--skip-column-names",
    )?;
    Ok(parse_semi_sync(&text))
}

/// From `enabled<TAB>name<TAB>value` lines.
pub fn parse_semi_sync(text: &str) -> SemiSync {
    let mut enabled = false;
    let (mut on, mut workers) = (false, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [flag, name, value] = fields.as_slice() else {
            continue;
        };
        enabled = *flag == "1";
        match *name {
            "RPL_SEMI_SYNC_MASTER_STATUS" => on = *value == "ON",
            "RPL_SEMI_SYNC_MASTER_CLIENTS" => workers = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    match (enabled, on) {
        (false, _) => SemiSync::Disabled,
        (true, true) => SemiSync::On { workers },
        (true, false) => SemiSync::FellBack,
    }
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
        let text = include_str!("../../tests/data/show-slave-status.txt");
        let status = parse_replica_status(text).unwrap();
        assert!(status.healthy());
        assert_eq!(status.lag_seconds, Some(0));
        assert_eq!(status.last_error, "");
        assert_eq!(status.source_host, "127.0.5.3");
        assert!(status
            .received
            .parse::<contract::gtid::GtidPosition>()
            .is_ok());
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
    fn semi_sync_states() {
        let on = "1\tRPL_SEMI_SYNC_MASTER_CLIENTS\t3\n1\tRPL_SEMI_SYNC_MASTER_STATUS\tON\n";
        assert_eq!(parse_semi_sync(on), SemiSync::On { workers: 3 });
        let fell = "1\tRPL_SEMI_SYNC_MASTER_CLIENTS\t0\n1\tRPL_SEMI_SYNC_MASTER_STATUS\tOFF\n";
        assert_eq!(parse_semi_sync(fell), SemiSync::FellBack);
        let off = "0\tRPL_SEMI_SYNC_MASTER_CLIENTS\t0\n0\tRPL_SEMI_SYNC_MASTER_STATUS\tOFF\n";
        assert_eq!(parse_semi_sync(off), SemiSync::Disabled);
    }

    #[test]
    fn sql_strings_escape_quotes_and_backslashes() {
        assert_eq!(sql_string("O'Brien"), "'O''Brien'");
        assert_eq!(sql_string(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn fill_is_strict() {
        let v = |s: &str| s.to_string();
        assert_eq!(
            fill("a {{X}} b {{X}}", &[("X", v("1"))]).unwrap(),
            "a 1 b 1"
        );
        assert!(fill("{{Y}}", &[("X", v("1"))])
            .unwrap_err()
            .to_string()
            .contains("{{Y}}"));
        assert!(fill("none", &[("X", v("1"))])
            .unwrap_err()
            .to_string()
            .contains("{{X}}"));
        assert!(fill("{{X", &[("X", v("1"))]).is_err());
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
