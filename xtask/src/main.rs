//! `cargo xtask`: deploys, benchmarks and tears down the database cluster, one resumable step
//! at a time. This file only dispatches; each step has its own module.

mod aws;
mod bench;
mod charts;
mod dataset;
mod db;
mod deploy_services;
mod fetch_results;
mod flags;
mod install_cluster;
mod local;
mod progress;
mod provision;
mod render;
mod ssh;
mod state;
mod status;
mod steps;
mod teardown;
mod transport;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::flags::{BenchArgs, Cli, Command, StepArgs};
use crate::state::Paths;
use crate::steps::Step;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let paths = Paths::new(cli.data.unwrap_or_else(|| project_root().join("data.json")));
    let none = BenchArgs::default();
    let step = |step, a: &StepArgs, bench: &BenchArgs| {
        steps::run(&paths, step, a.force, &a.settings, bench).map(drop)
    };
    match cli.command {
        Command::Provision(a) => step(Step::Provision, &a, &none),
        Command::InstallCluster(a) => step(Step::InstallCluster, &a, &none),
        Command::DeployServices(a) => step(Step::DeployServices, &a, &none),
        Command::Bench(a) => step(Step::Bench, &a.step, &a.bench),
        Command::FetchResults(a) => step(Step::FetchResults, &a, &none),
        Command::All(a) => steps::run_all(&paths, &a.settings, &a.bench),
        Command::Status => status::run(&paths),
        Command::Teardown(a) => teardown::run(&paths, &a),
    }
}

/// The workspace root, where data.json and results/ live by default.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}
