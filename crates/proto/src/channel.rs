//! One channel type for service-to-service gRPC, whatever carries it: a network
//! connection (cluster mode) or the callee's server called in-process (all-in-one mode,
//! no socket, same generated client and the same encoding). Services depend on
//! [`GrpcChannel`] and never on each other's code.
//!
//! Also the HTTP/2 flow-control windows every CaseScope server and client uses
//! ([`HTTP2_STREAM_WINDOW`], [`HTTP2_CONNECTION_WINDOW`], [`with_flow_control`]).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// HTTP/2 receive window of one stream. Uploads stream 1 MiB chunks: with the 1 MiB
/// default of hyper's server a single message fills the window, so the sender stops
/// and waits a round trip for a WINDOW_UPDATE on every chunk. 8 MiB keeps several
/// chunks in flight. It is also what one stream can make its receiver buffer when the
/// receiver reads slowly.
pub const HTTP2_STREAM_WINDOW: u32 = 8 * 1024 * 1024;

/// HTTP/2 receive window of one connection (all its streams together): room for two
/// streams at full speed, and the most one connection can make its receiver buffer.
pub const HTTP2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// `endpoint` with the CaseScope HTTP/2 windows, so that answers streamed to a client
/// (scans, exports) do not wait for WINDOW_UPDATEs either.
pub fn with_flow_control(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
    endpoint
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
}

/// A transport failure of a [`GrpcChannel`] (a concrete type: trait-object errors trip
/// up lifetime inference in generated clients).
#[derive(Debug)]
pub struct ChannelError(String);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChannelError {}

/// A clonable gRPC transport for generated clients (`XClient::new(channel)`).
pub type GrpcChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, ChannelError>;

/// A channel over a network connection.
pub fn from_transport(channel: tonic::transport::Channel) -> GrpcChannel {
    BoxCloneSyncService::new(channel.map_err(|error| {
        // "transport error" alone says nothing: keep what caused it.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        ChannelError(text)
    }))
}

/// A channel that calls a server (e.g. `CasesServiceServer<Api>` or a `Routes`) directly.
pub fn in_process<S>(server: S) -> GrpcChannel
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(server.map_err(|never: Infallible| match never {}))
}

/// Sets the target of a [`deferred`] channel.
#[derive(Clone)]
pub struct DeferredTarget(Arc<OnceLock<GrpcChannel>>);

impl DeferredTarget {
    /// Points the channel at `channel` (the first call wins).
    pub fn set(&self, channel: GrpcChannel) {
        let _ = self.0.set(channel);
    }
}

/// A channel whose target is given later: in all-in-one mode, for a service that calls
/// one started after it (the cases service calling ingest). Calls before the target is
/// set fail with a transport error saying so.
pub fn deferred(service: &'static str) -> (GrpcChannel, DeferredTarget) {
    let target: Arc<OnceLock<GrpcChannel>> = Arc::new(OnceLock::new());
    let channel = BoxCloneSyncService::new(tower::service_fn({
        let target = target.clone();
        move |request: http::Request<Body>| {
            let target = target.get().cloned();
            async move {
                match target {
                    Some(channel) => channel.oneshot(request).await,
                    None => Err(ChannelError(format!(
                        "the {service} service is not running in this process"
                    ))),
                }
            }
        }
    }));
    (channel, DeferredTarget(target))
}
