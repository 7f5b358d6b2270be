//! The gatekeeper service: `gatekeeper --config PATH`.

use std::sync::Arc;
use std::time::Duration;

use contract::config::GatekeeperConfig;
use services::config;
use services::gatekeeper::{
    self, admission::Admission, rate_limit::RateLimiter, Gatekeeper, Hygiene,
};
use services::serve;
use services::upstream::Upstream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    serve::init_logging();
    let config: GatekeeperConfig = config::load(&serve::config_path()?)?;
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let gatekeeper = Arc::new(Gatekeeper {
        // The upstream gives up a little before the request's own time limit, so the client
        // hears which hop was slow.
        trusted_host: Upstream::new(
            &config.trusted_host_url,
            &config.trusted_host_token,
            config.outgoing_address,
            timeout.mul_f64(0.9),
            config.max_answer_bytes,
        )?,
        unlimited_clients: config.unlimited_clients.clone(),
        holds: Default::default(),
    });
    let hygiene = Hygiene {
        max_body_bytes: config.max_body_bytes,
        request_timeout: timeout,
        limiter: RateLimiter::new(
            config.rate_per_second,
            config.rate_burst,
            &config.unlimited_clients,
        ),
        admission: Admission::new(
            config.max_in_flight,
            config.max_in_flight_per_client,
            &config.unlimited_clients,
        ),
    };
    serve::serve(config.listen, gatekeeper::app(gatekeeper, hygiene)).await
}
