//! The programs a host needs, installed where they are missing (apt-get, as root).

use anyhow::Result;

use crate::state::Host;
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

/// Installs what is missing of `what` on the host's machine.
pub fn ensure(host: &Host, what: &Packages) -> Result<()> {
    transport::wait_ready(host)?;
    let script = Script::new("ensure-packages", ENSURE_PACKAGES)
        .param("PROGRAMS", what.programs)
        .param("PACKAGES", what.packages)
        .param("FILES", what.files);
    transport::run_script(host, &script, b"").map(drop)
}
