//! The steps layer: one module per step (and the commands `plan`, `status`, `failover`,
//! `repair` and `scale`), each the
//! work of that step alone. A
//! step uses the layers below it and never another step; this table is how the engine finds
//! them, so a new step is one module and one line here.

mod bench;
mod deploy_services;
pub mod failover;
mod fetch_results;
mod install_cluster;
pub mod plan;
mod provision;
pub mod repair;
pub mod scale;
pub mod status;
pub mod teardown;

use crate::engine::Work;
use crate::state::Step;

/// What each step does.
pub fn work_of(step: Step) -> Work {
    match step {
        Step::Provision => provision::run,
        Step::InstallCluster => install_cluster::run,
        Step::DeployServices => deploy_services::run,
        Step::Bench => bench::run,
        Step::FetchResults => fetch_results::run,
        Step::Teardown => teardown::run,
    }
}
