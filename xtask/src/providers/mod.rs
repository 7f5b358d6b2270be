//! The providers layer: where the hosts come from. Each provider plans a deployment's hosts,
//! creates and destroys them, and says how services are supervised there and where clients
//! connect from; the steps ask the provider of the deployment and never which one it is. The
//! provider's kind is matched here, once.

pub mod aws;
pub mod local;
pub mod machines;
pub mod ssh;

use std::collections::BTreeMap;

use anyhow::Result;

use crate::state::{Deployment, Host, Paths, ProviderKind, Role, Session, Settings};

/// What `plan` shows of a deployment: each host, who may reach the hosts, and what it costs
/// while it runs.
pub struct Plan {
    pub hosts: Vec<PlannedHost>,
    /// The network rules the provider makes, one per line.
    pub rules: Vec<String>,
    /// What it costs per hour, one line per item then the total; empty where nothing is paid.
    pub cost: Vec<String>,
    /// What the reader should know besides.
    pub notes: Vec<String>,
}

pub struct PlannedHost {
    pub name: String,
    pub role: Role,
    /// Its machine: an instance type, this machine's limits, a machine of the inventory.
    pub size: String,
    /// Where it listens, when known.
    pub address: String,
}

pub trait Provider {
    /// The hosts of a new deployment. Fails, before anything is written, when they cannot be
    /// had (an address in use).
    fn plan_hosts(&self, settings: &Settings, paths: &Paths, id: &str) -> Result<Vec<Host>>;

    /// What `plan` shows for these settings: of `live` when it is given (with its addresses),
    /// else of the deployment provision would make. Contacts nothing and creates nothing;
    /// `prices` are the user's own prices per hour by instance type.
    fn plan(
        &self,
        settings: &Settings,
        paths: &Paths,
        live: Option<&Deployment>,
        prices: &BTreeMap<String, f64>,
    ) -> Result<Plan>;

    /// What a live deployment has cost so far and costs while it runs, for `status` and the end
    /// of `all`; None where nothing is paid.
    fn charges(&self, d: &Deployment) -> Option<String>;

    /// The work of `provision`: the hosts made to exist.
    fn create(&self, session: &mut Session) -> Result<()>;

    /// The work of `teardown`: everything the deployment created removed, nothing else.
    fn destroy(&self, session: &mut Session) -> Result<()>;

    /// A database host more, for `scale`: recorded in data.json before anything is made for
    /// it, then made (local: the next free address, its folder and its group, with the limits
    /// of its class). A host of that name already recorded is made again where it is missing
    /// something. Fails, before anything is recorded, where hosts cannot be added.
    fn add_host(&self, session: &mut Session, name: &str, role: Role) -> Result<Host>;

    /// Removes a host `scale` took out, once nothing of the deployment runs there: what the
    /// provider made for it, then its record.
    fn remove_host(&self, session: &mut Session, host: &Host) -> Result<()>;

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
