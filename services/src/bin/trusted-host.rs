//! The trusted host service: `trusted-host --config PATH`.

use std::sync::Arc;
use std::time::Duration;

use contract::config::TrustedHostConfig;
use services::config;
use services::guard::Guard;
use services::serve;
use services::trusted_host::policy::{Limits, Policy};
use services::trusted_host::{self, TrustedHost};
use services::upstream::Upstream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    serve::init_logging();
    let config: TrustedHostConfig = config::load(&serve::config_path()?)?;
    let trusted_host = Arc::new(TrustedHost {
        proxy: Upstream::new(
            &config.proxy_url,
            &config.proxy_token,
            config.outgoing_address,
            Duration::from_millis(config.request_timeout_ms),
            config.max_answer_bytes,
        )?,
        policy: Policy::new(Limits::default()),
    });
    let guard = Guard::new(&config.allowed_peers, &config.token);
    serve::serve(config.listen, trusted_host::app(trusted_host, guard)).await
}
