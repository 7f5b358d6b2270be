//! fetch-results: copies every bench run's raw outputs from the bench client into
//! `results/raw/<run-id>/` and rebuilds `results/` from all the raw runs there.

use std::fs;

use anyhow::{Context, Result};

use crate::results::{self, collect};
use crate::state::Session;
use crate::transport;

pub fn run(session: &mut Session) -> Result<()> {
    let results = results::results_dir();
    let raw = results.join("raw");
    fs::create_dir_all(&raw).with_context(|| format!("creating {}", raw.display()))?;

    // The bench client's run folders come into a staging folder first (over scp from an
    // instance), from where the finished files are copied.
    let client = session.deployment.bench_client()?;
    let staging = session.paths.state_dir().join("fetch");
    let remove_staging = || -> Result<()> {
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .with_context(|| format!("removing {}", staging.display()))?;
        }
        Ok(())
    };
    remove_staging()?;
    transport::fetch_folders(&client, &staging)?;
    let mut fetched = 0;
    for entry in fs::read_dir(&staging)
        .with_context(|| format!("reading {}", staging.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        fetched += collect::copy_run(&entry.path(), &raw.join(entry.file_name()))?;
    }
    remove_staging()?;
    let (runs, sysbench_rows, pattern_rows) = results::rebuild(&results, &raw)?;
    eprintln!(
        "fetch-results: {fetched} new raw files; {runs} runs, {sysbench_rows} sysbench rows, \
         {pattern_rows} pattern rows in {}",
        results.display()
    );
    eprintln!(
        "fetch-results: read {} first",
        results.join("summary.md").display()
    );
    Ok(())
}
