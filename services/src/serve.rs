//! Starting a service: logging, the config file, and serving until SIGTERM or Ctrl-C, letting
//! requests in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The `--config PATH` argument every service takes.
pub fn config_path() -> Result<PathBuf> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--config"), Some(path), None) => Ok(PathBuf::from(path)),
        _ => bail!(
            "usage: {} --config PATH",
            std::env::args().next().unwrap_or_default()
        ),
    }
}

pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .with_ansi(false)
        .init();
}

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle: a client that connects and then trickles bytes (or none) cannot
/// hold a connection, and a task, for ever. The gatekeeper faces the internet. (Upstream
/// clients drop idle connections sooner: upstream.rs.)
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listen` until SIGTERM or Ctrl-C, then lets the requests in flight finish.
pub async fn serve(listen: SocketAddr, app: Router) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, "listening");
    serve_until(listener, app, HEADER_READ_TIMEOUT, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// The accept loop: HTTP/1.1 (all the services speak; no HTTP/2 preface to wait for), each
/// request carrying its peer's address (`ConnectInfo`, for allowlists and rate limits), headers
/// read within `header_read_timeout`. After `shutdown` no connection is accepted; idle ones
/// close and the others finish their request first.
pub async fn serve_until(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let connections = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close, go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // An answer is written whole: Nagle's coalescing could only hold its last segment back.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY: {e}");
        }
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::sync::{oneshot, Notify};

    use super::*;

    /// A server on a free loopback port with a short header timeout; sending on the returned
    /// channel shuts it down, and the handle ends when it has.
    async fn start(app: Router) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            app,
            Duration::from_millis(300),
            async move {
                let _ = stopped.await;
            },
        ));
        (address, stop, server)
    }

    const WHOLE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    /// What a raw TCP client hears until the server closes the connection (a generous read
    /// timeout keeps a broken server from hanging the test; it is not what is measured).
    async fn exchange(address: SocketAddr, sent: &'static [u8]) -> std::io::Result<String> {
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.write_all(sent)?;
            let mut heard = String::new();
            stream.read_to_string(&mut heard)?;
            Ok(heard)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn requests_carry_the_peer_address() {
        let app = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (address, _stop, _server) = start(app).await;
        let heard = exchange(address, WHOLE_REQUEST).await.unwrap();
        assert!(heard.starts_with("HTTP/1.1 200"), "{heard}");
        assert!(heard.contains("\r\n\r\n127.0.0.1:"), "{heard}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let app = Router::new().route("/", get(|| async { "hello" }));
        let (address, _stop, _server) = start(app).await;
        // Half a request, then silence: the server closes the connection, answering nothing.
        let heard = exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        assert_eq!(heard.unwrap(), "");
        // A connection that sends nothing at all is closed too.
        let heard = exchange(address, b"").await;
        assert_eq!(heard.unwrap(), "");
        // While a whole request is served.
        let heard = exchange(address, WHOLE_REQUEST).await.unwrap();
        assert!(heard.ends_with("hello"), "{heard}");
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish_then_refuses_connections() {
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let app = Router::new().route(
            "/slow",
            get({
                let (started, release) = (started.clone(), release.clone());
                || async move {
                    started.notify_one();
                    release.notified().await;
                    "finished"
                }
            }),
        );
        let (address, stop, server) = start(app).await;
        let request = tokio::spawn(exchange(
            address,
            b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        started.notified().await;
        stop.send(()).unwrap();
        // The listener is gone once the loop has seen the signal; the request still runs.
        tokio::time::timeout(Duration::from_secs(30), async {
            while std::net::TcpStream::connect(address).is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the listener was never closed");
        assert!(!server.is_finished());
        release.notify_one();
        let heard = request.await.unwrap().unwrap();
        assert!(heard.ends_with("finished"), "{heard}");
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server did not stop after its last request")
            .unwrap();
    }
}
