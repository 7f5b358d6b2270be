//! `cargo xtask`: deploys, benchmarks and tears down the database cluster, one resumable step
//! at a time. This file only dispatches.
//!
//! The layers, from the bottom: `progress`, `state` (data.json, lock, session), `transport`
//! (how a host is reached), `cluster` (what runs on the hosts), `providers` (where hosts come
//! from), `resize` (the cluster's size changed while it serves), `results` (what the
//! benchmarks produced), `flags` (the command line), `engine` (runs and records a step),
//! `steps` (one module per step). A module uses only the layers below its
//! own (checked by a test in `layers.rs`).

mod cluster;
mod engine;
mod flags;
#[cfg(test)]
mod layers;
mod progress;
mod providers;
mod resize;
mod results;
mod state;
mod steps;
mod transport;

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::Engine;
use crate::flags::{BenchArgs, Cli, Command};
use crate::state::{project_root, Paths, Step};

fn main() -> ExitCode {
    match run(flags::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let paths = Paths::new(cli.data.unwrap_or_else(|| project_root().join("data.json")));
    state::remember(&paths);
    let engine = Engine {
        paths,
        work: steps::work_of,
    };
    let none = BenchArgs::default();
    match cli.command {
        Command::Plan(a) => steps::plan::run(&engine.paths, &a),
        Command::Provision(a) => engine.provision(a.step.force, &a.settings),
        Command::InstallCluster(a) => engine.step(Step::InstallCluster, a.force, &none),
        Command::DeployServices(a) => engine.step(Step::DeployServices, a.force, &none),
        Command::Bench(a) => engine.step(Step::Bench, a.step.force, &a.bench),
        Command::FetchResults(a) => engine.step(Step::FetchResults, a.force, &none),
        Command::All(a) => engine.all(&a.settings, &a.bench),
        Command::Status(a) => steps::status::run(&engine.paths, a.queries),
        Command::Failover(a) => steps::failover::run(&engine.paths, a.to.as_deref()),
        Command::Repair => steps::repair::run(&engine.paths),
        Command::Scale(a) => steps::scale::run(&engine.paths, a.workers),
        Command::Teardown(a) => steps::teardown::command(&engine, &a),
    }
}
