//! The accept loop of `casescope serve`: HTTP/1.1 and cleartext HTTP/2 on one port
//! (`/healthz`, `/readyz` and gRPC-web over HTTP/1.1; gRPC over HTTP/2), with the
//! CaseScope HTTP/2 flow-control windows instead of hyper's 1 MiB defaults, so that a
//! client streaming 1 MiB upload chunks is not stopped for a WINDOW_UPDATE round trip
//! on every chunk. It does not route: the axum router does.
//!
//! An accept error never ends the server: a failed handshake is skipped, anything else
//! (out of file descriptors, out of memory) is logged and retried after a pause.

use axum::Router;
use casescope_proto::channel::{HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Pause after an accept error that is not about one connection: retrying at once on
/// EMFILE would spin a core and flood the log until descriptors are freed.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW);
    builder
}

/// Serves `app` on `listener` until `stop` completes; then stops accepting, asks every
/// connection to finish (HTTP/2 GOAWAY; idle HTTP/1.1 connections closed) and returns
/// once all have. The caller bounds that wait.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let builder = Arc::new(connection_builder());
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(%error, "a connection failed while being accepted");
                continue;
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    pause = ?ACCEPT_ERROR_PAUSE,
                    "cannot accept connections; retrying after a pause"
                );
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // gRPC answers and WINDOW_UPDATEs are small: send them now, not after 40 ms.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let builder = builder.clone();
        let watcher = connections.watcher();
        // The caller's address, for the login throttle and the audit log.
        let info = tonic::transport::server::TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: Some(peer),
        };
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: http::Request<_>| {
                request.extensions_mut().insert(info.clone());
                request
            },
        ));
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                // Clients that go away mid-request end up here; nothing to act on.
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(
        connections = connections.count(),
        "no longer accepting connections"
    );
    connections.shutdown().await;
}

/// Errors about one incoming connection (it was reset or aborted before `accept`
/// returned it), after which the next `accept` works at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    async fn http1_get(address: std::net::SocketAddr) -> io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn serves_http1_and_stops_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/ping", get(|| async { "pong" }));
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, app, stop.clone().cancelled_owned()));

        let answer = http1_get(address).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("pong"), "{answer}");

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops once its connections are done")
            .unwrap();
        assert!(
            tokio::net::TcpStream::connect(address).await.is_err(),
            "the listener is closed"
        );
    }

    #[test]
    fn a_reset_handshake_is_not_a_reason_to_pause() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // EMFILE: "Too many open files".
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
