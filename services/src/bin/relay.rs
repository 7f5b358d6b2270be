//! A relay of the chain's floor: `relay --config PATH` (see `services::relay`).

use contract::config::RelayConfig;
use services::{config, relay, serve};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    serve::init_logging();
    let config: RelayConfig = config::load(&serve::config_path()?)?;
    serve::serve(config.listen, relay::app(&config)?).await
}
