//! One channel type for service-to-service gRPC, whatever carries it: a network
//! connection (cluster mode) or the callee's server called in-process (all-in-one mode,
//! no socket, same generated client and the same encoding). Services depend on
//! [`GrpcChannel`] and never on each other's code.

use std::convert::Infallible;
use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

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
    BoxCloneSyncService::new(channel.map_err(|error| ChannelError(error.to_string())))
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
