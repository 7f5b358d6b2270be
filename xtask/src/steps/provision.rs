//! provision: creates the hosts the engine planned from the settings (local: a folder per
//! loopback address; aws: an instance per host) and records them.

use anyhow::Result;

use crate::providers;
use crate::state::Session;

pub fn run(session: &mut Session) -> Result<()> {
    providers::of(session.deployment.provider()).create(session)
}
