//! The load generator: a fixed number of clients send queries for a fixed time, through the
//! gatekeeper's JSON API in one mode, or straight to a database server (the baseline).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{ArgGroup, Parser};
use contract::report::{Report, Workload};
use contract::wire::Mode;
use services::loadgen::{self, Plan, Target};

/// Sends queries for a while and writes a JSON report of throughput, latency and errors.
#[derive(Debug, Parser)]
#[command(name = "loadgen", group(ArgGroup::new("target").required(true).args(["gatekeeper", "database"])))]
struct Args {
    /// Through the patterns: the gatekeeper's base URL (needs --mode).
    #[arg(long, value_name = "URL", requires = "mode")]
    gatekeeper: Option<String>,
    /// How the gatekeeper routes the queries.
    #[arg(long, value_name = "MODE")]
    mode: Option<Mode>,
    /// With --gatekeeper: the local address connections leave from (the bench client's, which
    /// the gatekeeper does not rate-limit).
    #[arg(long, value_name = "ADDRESS", requires = "gatekeeper")]
    from: Option<std::net::IpAddr>,
    /// Straight to a server at ADDRESS:PORT (needs --user; the password comes from
    /// LOADGEN_DB_PASSWORD, never the command line).
    #[arg(
        long,
        value_name = "ADDRESS:PORT",
        requires = "user",
        conflicts_with = "mode"
    )]
    database: Option<String>,
    /// The database account.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// How the server is named in the report [default: ADDRESS:PORT].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// What the clients send: point, range, mix or write.
    #[arg(long, default_value = "mix")]
    workload: Workload,
    /// Clients sending at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Paces the clients: this many requests/s, all together [default: each client sends its
    /// next query when it has the last one's answer].
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Paces the clients at the requests/s another run's JSON report measured.
    #[arg(long, value_name = "REPORT", conflicts_with = "rate")]
    rate_of: Option<PathBuf>,
    /// Films in the dataset (100 per unit of scale).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    films: u32,
    /// Where the JSON report goes [default: standard output].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

impl Args {
    fn plan(self) -> Result<(Plan, Option<PathBuf>)> {
        let target = match (self.gatekeeper, self.database) {
            (Some(url), _) => Target::Gatekeeper {
                url,
                mode: self.mode.context("--gatekeeper needs --mode")?,
                from: self.from,
            },
            (None, Some(address)) => {
                let (host, port) = address
                    .rsplit_once(':')
                    .context("--database takes ADDRESS:PORT")?;
                Target::Database {
                    address: host.to_string(),
                    port: port.parse().with_context(|| {
                        format!("--database takes ADDRESS:PORT, got {address:?}")
                    })?,
                    user: self.user.context("--database needs --user")?,
                    name: self.name.unwrap_or_else(|| address.clone()),
                    password: std::env::var("LOADGEN_DB_PASSWORD")
                        .context("set LOADGEN_DB_PASSWORD to the database account's password")?,
                }
            }
            (None, None) => unreachable!("clap requires --gatekeeper or --database"),
        };
        let rate = match &self.rate_of {
            Some(path) => Some(measured_rate(path)?),
            None => self.rate,
        };
        let plan = Plan {
            target,
            workload: self.workload,
            concurrency: usize::from(self.concurrency),
            duration: Duration::from_secs(self.duration),
            films: self.films,
            rate,
        };
        Ok((plan, self.out))
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 1.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate of at least 1 request/s")),
    }
}

/// The requests/s a report measured, to send at; at least one a second. A run whose requests
/// all failed measured none, and what is paced at it (the bench's floor after a broken chain
/// run) is then measured nearly idle, not refused: refusing would stop every rerun of the
/// bench at the same report.
fn measured_rate(path: &Path) -> Result<f64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a load generator's report", path.display()))?;
    let rate = report.throughput_rps;
    if rate >= 1.0 {
        return Ok(rate);
    }
    eprintln!(
        "{} measured {rate:.1} requests/s (its errors: {:?}); pacing at 1 request/s instead",
        path.display(),
        report.errors
    );
    Ok(1.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (plan, out) = Args::parse().plan()?;
    let report = loadgen::run(&plan).await?;
    eprintln!(
        "{} {}: {} requests, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {:?}",
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
        Some(path) => {
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn flags_are_checked_by_clap() {
        let a = parse(&["--gatekeeper", "http://x", "--mode", "random"]).unwrap();
        assert_eq!(
            (a.mode, a.workload, a.concurrency),
            (Some(Mode::Random), Workload::Mix, 8)
        );
        for bad in [
            vec![],
            vec!["--gatekeeper", "http://x"],
            vec!["--gatekeeper", "http://x", "--mode", "sideways"],
            vec!["--database", "127.0.0.1:3306"],
            vec![
                "--gatekeeper",
                "http://x",
                "--mode",
                "random",
                "--concurrency",
                "0",
            ],
            // A repeated flag is an error, not a silent last-one-wins.
            vec![
                "--gatekeeper",
                "http://x",
                "--mode",
                "random",
                "--mode",
                "write",
            ],
            vec!["--database", "a:1", "--user", "u", "--mode", "random"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} was accepted");
        }
        let a = parse(&[
            "--database",
            "127.0.0.1:3306",
            "--user",
            "bench",
            "--workload",
            "write",
        ])
        .unwrap();
        assert_eq!(a.workload, Workload::Write);
    }
}
