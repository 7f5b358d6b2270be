//! `cargo xtask`: deploys, benchmarks and tears down the database cluster, one resumable step
//! at a time. This file only dispatches; each step has its own module.

mod dataset;
mod db;
mod deploy_services;
mod flags;
mod install_cluster;
mod local;
mod progress;
mod provision;
mod render;
mod state;
mod status;
mod steps;
mod teardown;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::flags::{Cli, Command};
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
    match cli.command {
        Command::Provision(a) => {
            steps::run(&paths, Step::Provision, a.force, &a.settings).map(drop)
        }
        Command::InstallCluster(a) => {
            steps::run(&paths, Step::InstallCluster, a.force, &a.settings).map(drop)
        }
        Command::DeployServices(a) => {
            steps::run(&paths, Step::DeployServices, a.force, &a.settings).map(drop)
        }
        Command::Bench(a) => steps::run(&paths, Step::Bench, a.force, &a.settings).map(drop),
        Command::FetchResults(a) => {
            steps::run(&paths, Step::FetchResults, a.force, &a.settings).map(drop)
        }
        Command::All(a) => steps::run_all(&paths, &a.settings),
        Command::Status => status::run(&paths),
        Command::Teardown => teardown::run(&paths),
    }
}

/// The workspace root, where data.json and results/ live by default.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}
