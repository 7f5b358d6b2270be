//! The programs a host needs, installed where they are missing (apt-get, as root), and a record
//! of what the deployment installed on each machine (teardown leaves packages and says which).

use anyhow::{Context, Result};

use crate::state::{Host, Session};
use crate::transport::{self, script::Script};

const ENSURE_PACKAGES: &str = include_str!("../../scripts/ensure-packages.sh");

/// What a database host needs: MariaDB's server and client, and sysbench.
pub const DATABASE: Packages = Packages {
    programs: "mariadbd mariadb-install-db mariadb mariadb-admin sysbench",
    packages: "mariadb-server mariadb-client sysbench",
    files: "",
};
/// What a Galera node needs besides: the provider (galera-4) and rsync for state transfers.
pub const GALERA: Packages = Packages {
    programs: "mariadbd mariadb-install-db mariadb mariadb-admin sysbench rsync wsrep_sst_rsync",
    packages: "mariadb-server mariadb-client sysbench galera-4 rsync",
    files: "/usr/lib/galera/libgalera_smm.so",
};
/// What the bench client needs.
pub const BENCH_CLIENT: Packages = Packages {
    programs: "sysbench",
    packages: "sysbench",
    files: "",
};

pub struct Packages {
    programs: &'static str,
    packages: &'static str,
    /// Files the packages put in place that are no programs (a library).
    files: &'static str,
}

/// Installs what is missing on each host's machine, every machine at once (a machine's first
/// host in `needs` decides what it gets: hosts of this machine share it), and records in
/// data.json which packages it installed where. The first failure is returned once every
/// machine is done.
pub fn ensure(session: &mut Session, needs: &[(&Host, &Packages)]) -> Result<()> {
    let mut machines = Vec::new();
    let todo: Vec<&(&Host, &Packages)> = needs
        .iter()
        .filter(|(host, _)| {
            let machine = transport::machine(host);
            let new = !machines.contains(&machine);
            machines.push(machine);
            new
        })
        .collect();
    let results: Vec<Result<Vec<String>>> = std::thread::scope(|scope| {
        let running: Vec<_> = todo
            .iter()
            .map(|(host, what)| scope.spawn(move || ensure_on(host, what)))
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| anyhow::bail!("installing panicked"))
            })
            .collect()
    });
    let mut first_error = None;
    for ((host, _), result) in todo.iter().zip(results) {
        match result {
            Ok(installed) if installed.is_empty() => {}
            Ok(installed) => {
                let record = session
                    .deployment
                    .installed
                    .entry(host.name.clone())
                    .or_default();
                record.extend(installed);
                record.sort();
                record.dedup();
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    session.save()?;
    first_error.map_or(Ok(()), Err)
}

/// Installs what is missing of `what` on the host's machine; returns the packages it installed.
fn ensure_on(host: &Host, what: &Packages) -> Result<Vec<String>> {
    transport::wait_ready(host)?;
    let script = Script::new("ensure-packages", ENSURE_PACKAGES)
        .param("PROGRAMS", what.programs)
        .param("PACKAGES", what.packages)
        .param("FILES", what.files);
    let out = transport::run_script(host, &script, b"")
        .with_context(|| format!("installing {} on {}", what.packages, host.name))?;
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("installed="))
        .map(|list| list.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default())
}
