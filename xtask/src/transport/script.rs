//! The provider-neutral scripts (xtask/scripts/*.sh) as they are sent to a host: their
//! parameters as shell variables in a header, so the same body runs under bash locally and
//! under sudo over SSH.

use std::fmt::Write;

/// Functions every script may use.
const LIB: &str = include_str!("../../scripts/lib.sh");

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

    /// The full text: strict mode, the parameters, how the tool is run, the tool search path,
    /// the shared functions, then the body.
    pub fn text(&self) -> String {
        let mut text = String::from("set -euo pipefail\n");
        for (name, value) in &self.params {
            writeln!(text, "{name}={}", shell_quote(value)).unwrap();
        }
        // How the user runs this tool, for the commands a script tells them to run.
        writeln!(text, "XTASK={}", shell_quote(&crate::state::command(""))).unwrap();
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
}
