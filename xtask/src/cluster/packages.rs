//! The programs a host needs, installed where they are missing (apt-get, as root).

use anyhow::Result;

use crate::state::Host;
use crate::transport::{self, script::Script};

const ENSURE_PACKAGES: &str = include_str!("../../scripts/ensure-packages.sh");

/// What a database host needs: MariaDB's server and client, and sysbench.
pub const DATABASE: Packages = Packages {
    programs: "mariadbd mariadb-install-db mariadb mariadb-admin sysbench",
    packages: "mariadb-server mariadb-client sysbench",
};
/// What the bench client needs.
pub const BENCH_CLIENT: Packages = Packages {
    programs: "sysbench",
    packages: "sysbench",
};

pub struct Packages {
    programs: &'static str,
    packages: &'static str,
}

/// Installs what is missing of `what` on the host's machine.
pub fn ensure(host: &Host, what: &Packages) -> Result<()> {
    transport::wait_ready(host)?;
    let script = Script::new("ensure-packages", ENSURE_PACKAGES)
        .param("PROGRAMS", what.programs)
        .param("PACKAGES", what.packages);
    transport::run_script(host, &script, b"").map(drop)
}
