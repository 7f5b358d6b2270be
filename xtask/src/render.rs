//! Turns the provider-neutral scripts, SQL templates and server configs into per-host text.
//!
//! Scripts (xtask/scripts/*.sh) take their parameters as shell variables set in a header, so the
//! same body runs under bash locally and under sudo over SSH. SQL templates (sql/*.sql) use
//! `{{NAME}}` placeholders; rendering is strict so a typo cannot silently produce broken SQL.

use std::fmt::Write;

use anyhow::{bail, Result};

use crate::state::Role;

/// Functions every script may use.
const LIB: &str = include_str!("../scripts/lib.sh");

/// A bash script with its parameters, ready to run on a host.
pub struct Script {
    name: &'static str,
    body: &'static str,
    params: Vec<(&'static str, String)>,
}

impl Script {
    pub fn new(name: &'static str, body: &'static str) -> Script {
        Script {
            name,
            body,
            params: Vec::new(),
        }
    }

    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Script {
        self.params.push((name, value.into()));
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The full text: strict mode, the parameters, the tool search path, the shared functions,
    /// then the body.
    pub fn text(&self) -> String {
        let mut text = String::from("set -euo pipefail\n");
        for (name, value) in &self.params {
            writeln!(text, "{name}={}", shell_quote(value)).unwrap();
        }
        // MariaDB's server programs live in sbin, which is not on a normal user's PATH;
        // XTASK_TOOLS_PATH, when set, replaces where the database programs are looked for.
        text.push_str("TOOLS_PATH=\"${XTASK_TOOLS_PATH:-$PATH:/usr/sbin:/sbin}\"\n");
        text.push_str(LIB);
        text.push_str(self.body);
        text
    }
}

/// Quotes a value for bash so it stays one word whatever it holds.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

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

/// What a database server's config depends on.
pub struct ServerConfig<'a> {
    pub role: Role,
    pub server_id: u32,
    pub dir: &'a str,
    pub bind_address: &'a str,
    pub port: u16,
    /// The OS account mariadbd runs as; only written when running as root, which mariadbd
    /// refuses without it.
    pub run_as_root: bool,
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
        if self.run_as_root {
            cnf.push_str("user=root\n");
        }
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
        cnf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_one_word() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let script = Script::new("t", "printf '%s' \"$V\"\n").param("V", "a 'b' $c `d`");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script.text())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a 'b' $c `d`");
    }

    /// Every script as it is sent to a host (header, shared functions, body) passes
    /// shellcheck, the branches no test here can reach (systemd, cloud-init) included.
    #[test]
    fn every_script_passes_shellcheck() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let is_script = path.extension() == Some(std::ffi::OsStr::new("sh"));
            if !is_script || path.file_name() == Some(std::ffi::OsStr::new("lib.sh")) {
                continue;
            }
            let body: &'static str = std::fs::read_to_string(&path).unwrap().leak();
            let text = Script::new("checked", body).text();
            let out = duct::cmd!(
                "shellcheck",
                "--shell=bash",
                "--severity=warning",
                // Parameters and TOOLS_PATH are set in the shared header for every script,
                // used or not; `mkdir -p -m` only ever makes the host's own folder.
                "--exclude=SC2034,SC2174",
                "-"
            )
            .stdin_bytes(text)
            .stdout_capture()
            .unchecked()
            .run()
            .expect("running shellcheck: install it (apt-get install shellcheck)");
            assert!(
                out.status.success(),
                "{}:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout)
            );
            checked += 1;
        }
        assert!(
            checked >= 10,
            "only {checked} scripts found in {}",
            dir.display()
        );
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
    fn config_follows_the_role() {
        let config = |role| ServerConfig {
            role,
            server_id: 7,
            dir: "/srv/h",
            bind_address: "127.0.1.3",
            port: 3306,
            run_as_root: false,
        };
        let manager = config(Role::Manager).render();
        assert!(manager.contains("log-bin=mariadb-bin"));
        assert!(manager.contains("bind-address=127.0.1.3\nport=3306\nserver-id=7\n"));
        assert!(manager.contains("socket=/srv/h/mariadbd.sock"));
        assert!(manager.contains("tmpdir=/srv/h/tmp\n"));
        assert!(!manager.contains("read_only"));
        assert!(!manager.contains("user=root"));
        let worker = config(Role::Worker).render();
        assert!(worker.contains("read_only=ON"));
        assert!(!worker.contains("log-bin"));
        let standalone = ServerConfig {
            run_as_root: true,
            ..config(Role::Standalone)
        }
        .render();
        assert!(!standalone.contains("log-bin") && !standalone.contains("read_only"));
        assert!(standalone.contains("user=root\n"));
    }
}
