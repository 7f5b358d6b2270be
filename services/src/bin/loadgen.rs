//! The load generator:
//!
//! ```text
//! loadgen --gatekeeper URL --mode MODE   [options]   through the patterns
//! loadgen --database ADDRESS:PORT --user USER [--name NAME] [options]
//!                                  straight to a server (reported as NAME); the password
//!                                  comes from LOADGEN_DB_PASSWORD
//! options: --workload point|range|mix|write (mix)  --concurrency N (8)  --duration SECONDS (10)
//!          --films N (films in the dataset, 1000)  --out PATH (the JSON report; stdout if absent)
//! ```

use std::time::Duration;

use anyhow::{bail, Context, Result};
use services::loadgen::{self, Plan, Target, Workload};
use services::wire::Mode;

#[tokio::main]
async fn main() -> Result<()> {
    let plan_and_out = parse(std::env::args().skip(1).collect())?;
    let (plan, out) = plan_and_out;
    let report = loadgen::run(&plan).await?;
    eprintln!(
        "{} {:?}: {} requests, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {:?}",
        report.target,
        report.workload,
        report.requests,
        report.throughput_rps,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.max,
        report.errors
    );
    let json = serde_json::to_string_pretty(&report)?;
    match out {
        Some(path) => std::fs::write(&path, json).with_context(|| format!("writing {path}"))?,
        None => println!("{json}"),
    }
    Ok(())
}

fn parse(args: Vec<String>) -> Result<(Plan, Option<String>)> {
    let mut values = std::collections::HashMap::new();
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        let Some(name) = flag.strip_prefix("--") else {
            bail!("unexpected argument {flag:?}; see the usage at the top of loadgen.rs");
        };
        let value = iter
            .next()
            .with_context(|| format!("--{name} needs a value"))?;
        values.insert(name.to_string(), value);
    }
    let take = |name: &str| values.get(name).cloned();
    let number = |name: &str, default: u64| -> Result<u64> {
        take(name).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("--{name} must be a number, got {v:?}"))
        })
    };
    let target = match (take("gatekeeper"), take("database")) {
        (Some(url), None) => {
            let mode = take("mode").context("--gatekeeper needs --mode")?;
            let mode = Mode::parse(&mode).with_context(|| format!("unknown mode {mode:?}"))?;
            Target::Gatekeeper { url, mode }
        }
        (None, Some(address)) => {
            let (host, port) = address
                .rsplit_once(':')
                .context("--database takes ADDRESS:PORT")?;
            Target::Database {
                address: host.to_string(),
                port: port.parse().context("--database takes ADDRESS:PORT")?,
                user: take("user").context("--database needs --user")?,
                name: take("name").unwrap_or_else(|| address.clone()),
                password: std::env::var("LOADGEN_DB_PASSWORD")
                    .context("set LOADGEN_DB_PASSWORD")?,
            }
        }
        _ => {
            bail!("give either --gatekeeper URL --mode MODE or --database ADDRESS:PORT --user USER")
        }
    };
    let workload = take("workload").unwrap_or_else(|| "mix".to_string());
    let plan = Plan {
        target,
        workload: Workload::parse(&workload)
            .with_context(|| format!("unknown workload {workload:?}"))?,
        concurrency: number("concurrency", 8)? as usize,
        duration: Duration::from_secs(number("duration", 10)?),
        films: number("films", 1000)? as u32,
    };
    Ok((plan, take("out")))
}
