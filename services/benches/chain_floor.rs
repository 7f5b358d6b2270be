//! The floor under the chain's cost on this machine, by itself: three `relay` processes (see
//! `services::relay`), each on its own loopback address as the services are. `cargo xtask
//! bench` measures the same floor on the deployment's own hosts, beside the services; this is
//! the quick way to see it without a deployment.
//!
//! `cargo bench -p services --bench chain_floor` prints requests/s and the three relays' CPU
//! per request under 8 clients, and the p50 from one client.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contract::config::RelayConfig;
use contract::report::{Report, Workload};
use contract::wire::Mode;
use services::loadgen::{self, Plan, Target};

/// The loopback addresses the bench takes: the relays at .1, .2 and .3, the load generator
/// at .9.
const PREFIX: &str = "127.0.77";
const PORT: u16 = 8080;

fn address(host: u8) -> IpAddr {
    format!("{PREFIX}.{host}")
        .parse()
        .expect("a loopback address")
}

/// The relays, each a process; killed when dropped, with their config folder.
struct Relays {
    children: Vec<Child>,
    dir: std::path::PathBuf,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_relays() -> Result<Relays> {
    let dir = std::env::temp_dir().join(format!("chain-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut relays = Relays {
        children: Vec::new(),
        dir: dir.clone(),
    };
    // Cargo builds the package's binaries for its benches, beside the bench's own folder.
    let relay = std::env::current_exe()?
        .parent()
        .and_then(|deps| deps.parent())
        .context("the bench's folder")?
        .join("relay");
    for n in 1..=3u8 {
        let config = RelayConfig {
            listen: SocketAddr::new(address(n), PORT),
            next_url: (n < 3).then(|| format!("http://{}:{PORT}", address(n + 1))),
            outgoing_address: Some(address(n)),
        };
        let path = dir.join(format!("relay-{n}.json"));
        std::fs::write(&path, serde_json::to_vec(&config)?)?;
        relays.children.push(
            Command::new(&relay)
                .arg("--config")
                .arg(&path)
                .env("RUST_LOG", "warn")
                .spawn()
                .context("starting a relay")?,
        );
    }
    Ok(relays)
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

async fn load(concurrency: usize, seconds: u64) -> Result<Report> {
    loadgen::run(&Plan {
        target: Target::Gatekeeper {
            url: format!("http://{}:{PORT}", address(1)),
            mode: Mode::DirectHit,
            from: Some(address(9)),
        },
        workload: Workload::Point,
        concurrency,
        duration: Duration::from_secs(seconds),
        films: 1000,
        rate: None,
    })
    .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would run this too: only a bench
    // run measures.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let relays = start_relays()?;
    // Until the first relay answers through the others.
    let mut ready = false;
    for _ in 0..100 {
        if load(1, 1)
            .await
            .is_ok_and(|r| r.error_count() == 0 && r.requests > 0)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        bail!("the relays did not answer on {PREFIX}.1-3:{PORT}");
    }
    let pids: Vec<u32> = relays.children.iter().map(Child::id).collect();
    let spent = || -> Result<f64> { pids.iter().map(|p| cpu_seconds(*p)).sum() };
    let before = spent()?;
    let busy = load(8, 10).await?;
    let cpu_us = (spent()? - before) * 1e6 / busy.requests.max(1) as f64;
    let one = load(1, 5).await?;
    println!(
        "three relays, 8 clients: {:.0} requests/s, {cpu_us:.0} µs of CPU per request (the three together), {} errors",
        busy.throughput_rps,
        busy.error_count()
    );
    println!(
        "three relays, 1 client: p50 {:.3} ms, p99 {:.3} ms",
        one.latency_ms.p50, one.latency_ms.p99
    );
    Ok(())
}
