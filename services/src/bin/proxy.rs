//! The proxy service: `proxy --config PATH`.

use contract::config::ProxyConfig;
use services::config;
use services::guard::Guard;
use services::proxy::{self, Proxy};
use services::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    serve::init_logging();
    let config: ProxyConfig = config::load(&serve::config_path()?)?;
    let proxy = Proxy::new(&config);
    let monitor = proxy.spawn_monitor();
    let guard = Guard::new(&config.allowed_peers, &config.token);
    let served = serve::serve(config.listen, proxy::app(proxy.clone(), guard)).await;
    monitor.abort();
    proxy.close().await;
    served
}
