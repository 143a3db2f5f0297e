//! The gateway's listener: TCP, then TLS (rustls with the hub certificate, the same client
//! certificate rule as QUIC), then HTTP/1.1 or HTTP/2 (hyper) on each connection. The identity
//! the client certificate names is attached to every request of its connection.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::Connection;
use crate::auth;
use crate::state::HubState;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for open requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The ALPN protocols offered, HTTP/2 first.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Accepts connections on `listener` until `shutdown`, then lets open requests finish (at most
/// [`DRAIN_TIMEOUT`]). Open event streams are ended by the shutdown.
pub(crate) async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    state: Arc<HubState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, remote)) = accepted else {
            // Out of descriptors or similar: back off a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, state) = (acceptor.clone(), app.clone(), Arc::clone(&state));
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    auth::count_handshake_failure(&state, "https", remote, &e.to_string());
                    return;
                }
                Err(_) => {
                    auth::count_handshake_failure(&state, "https", remote, "timed out");
                    return;
                }
            };
            let certificate = auth::chain_identity(&state, stream.get_ref().1.peer_certificates());
            let conn = Connection::new(certificate);
            let service = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn.clone());
                req
            });
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

/// The TLS configuration of the gateway: the hub's certificate, client certificates requested,
/// and required when the hub requires them (as on QUIC).
pub(crate) fn tls_config(
    state: &HubState,
) -> Result<Arc<rustls::ServerConfig>, agentdb_security::tls::TlsError> {
    agentdb_security::tls::server_config(&state.config.tls, state.config.require_client_cert, &ALPN)
        .map(Arc::new)
}
