//! The providers layer: where the hosts come from. Each provider plans a deployment's hosts,
//! creates and destroys them, and says how services are supervised there and where clients
//! connect from; the steps ask the provider of the deployment and never which one it is. The
//! provider's kind is matched here, once.

pub mod aws;
pub mod local;
pub mod machines;
pub mod ssh;

use anyhow::Result;

use crate::state::{Deployment, Host, Paths, ProviderKind, Session, Settings};

pub trait Provider {
    /// The hosts of a new deployment. Fails, before anything is written, when they cannot be
    /// had (an address in use).
    fn plan_hosts(&self, settings: &Settings, paths: &Paths, id: &str) -> Result<Vec<Host>>;

    /// The work of `provision`: the hosts made to exist.
    fn create(&self, session: &mut Session) -> Result<()>;

    /// The work of `teardown`: everything the deployment created removed, nothing else.
    fn destroy(&self, session: &mut Session) -> Result<()>;

    /// The address a host's database connections come from, which accounts are bound to.
    fn client_address(&self, client: &Host) -> String;

    /// Where people reach the gatekeeper.
    fn public_gatekeeper_url(&self, d: &Deployment) -> Result<String>;

    /// What the benchmarks ran on, for the results: (instance type, where the clients ran).
    fn bench_machines(&self, d: &Deployment) -> Result<(String, String)>;
}

/// The provider of a deployment.
pub fn of(kind: ProviderKind) -> &'static dyn Provider {
    match kind {
        ProviderKind::Local => &local::Local,
        ProviderKind::Aws => &aws::Aws,
        ProviderKind::Ssh => &ssh::Ssh,
    }
}
