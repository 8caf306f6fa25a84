//! Client-side balancing across the ready pods of a Kubernetes Service.
//!
//! gRPC runs over long-lived HTTP/2 connections: through a ClusterIP Service each client
//! keeps one connection to one pod, so a second replica gets no calls. Here a client
//! watches the Service's EndpointSlices (label `kubernetes.io/service-name`, through
//! `kube`'s list-then-watch watcher, which re-watches a dropped watch and re-lists after
//! a `410 Gone`) and keeps a [`tonic`] balanced channel holding one endpoint per ready
//! pod address: pods that become ready are added, pods that stop being ready (or go
//! away) are removed. Outside Kubernetes, callers keep their plain (DNS) channel.
//!
//! The ServiceAccount needs `get`, `list` and `watch` on `endpointslices` in the
//! Service's namespace (the Helm chart grants exactly that when this is on).

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// Most endpoint changes waiting to be applied by the balanced channel.
const CHANGES_BUFFERED: usize = 64;

/// The Service whose pods are balanced across.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    /// The Service port's name (`grpc`); when no port of a slice has this name and the
    /// slice has a single port, that one is used.
    pub port_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(String),
}

/// A Kubernetes API client from the pod's ServiceAccount (or the local kubeconfig).
pub async fn in_cluster_client() -> Result<kube::Client, DiscoveryError> {
    kube::Client::try_default()
        .await
        .map_err(|error| DiscoveryError::Client(error.to_string()))
}

/// A channel balancing across `target`'s ready pods, kept current by a task that lives
/// as long as the returned handle (abort it to stop watching). `endpoint` configures
/// the connection to one pod (timeouts, flow control) from its `http://ip:port` URL.
pub fn balanced_channel(
    client: kube::Client,
    target: Target,
    endpoint: impl Fn(&str) -> Result<Endpoint, tonic::transport::Error> + Send + 'static,
) -> (Channel, tokio::task::JoinHandle<()>) {
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(CHANGES_BUFFERED);
    let task = tokio::spawn(watch(client, target, endpoint, changes));
    (channel, task)
}

async fn watch(
    client: kube::Client,
    target: Target,
    endpoint: impl Fn(&str) -> Result<Endpoint, tonic::transport::Error>,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
) {
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &target.namespace);
    let config = watcher::Config::default()
        .labels(&format!("kubernetes.io/service-name={}", target.service));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut pods = Pods::default();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // The watcher retries with backoff; the endpoints known stay in use.
                tracing::warn!(
                    service = %target.service, namespace = %target.namespace, %error,
                    "watching EndpointSlices failed; retrying"
                );
                continue;
            }
        };
        let Some(now) = pods.apply(event, &target.port_name) else {
            continue;
        };
        for change in pods.diff(now) {
            let change = match change {
                Diff::Add(address) => match endpoint(&format!("http://{address}")) {
                    Ok(endpoint) => Change::Insert(address, endpoint),
                    Err(error) => {
                        tracing::warn!(%address, %error, "cannot make an endpoint of a pod address");
                        continue;
                    }
                },
                Diff::Remove(address) => Change::Remove(address),
            };
            if changes.send(change).await.is_err() {
                return; // the channel is gone: nobody calls this service any more
            }
        }
        tracing::info!(
            service = %target.service, namespace = %target.namespace,
            ready = pods.current.len(), "balancing across the Service's ready pods"
        );
    }
}

/// The ready pod addresses, per EndpointSlice.
#[derive(Default)]
struct Pods {
    slices: BTreeMap<String, BTreeSet<SocketAddr>>,
    /// While a (re-)list is in progress: the slices seen so far.
    listing: Option<BTreeMap<String, BTreeSet<SocketAddr>>>,
    current: BTreeSet<SocketAddr>,
}

enum Diff {
    Add(SocketAddr),
    Remove(SocketAddr),
}

impl Pods {
    /// Applies one watcher event; the addresses now ready, or `None` while a list is
    /// still coming in (a re-list replaces the state only once complete, so that a
    /// re-list after a dropped watch or a 410 never empties the channel meanwhile).
    fn apply(
        &mut self,
        event: Event<EndpointSlice>,
        port_name: &str,
    ) -> Option<BTreeSet<SocketAddr>> {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                return None;
            }
            Event::InitApply(slice) => {
                let listing = self.listing.get_or_insert_with(BTreeMap::new);
                listing.insert(slice_name(&slice), ready_addresses(&slice, port_name));
                return None;
            }
            Event::InitDone => {
                self.slices = self.listing.take().unwrap_or_default();
            }
            Event::Apply(slice) => {
                self.slices
                    .insert(slice_name(&slice), ready_addresses(&slice, port_name));
            }
            Event::Delete(slice) => {
                self.slices.remove(&slice_name(&slice));
            }
        }
        Some(self.slices.values().flatten().copied().collect())
    }

    /// What to add and remove to go from the current addresses to `now`.
    fn diff(&mut self, now: BTreeSet<SocketAddr>) -> Vec<Diff> {
        let mut changes: Vec<Diff> = self
            .current
            .difference(&now)
            .map(|address| Diff::Remove(*address))
            .collect();
        changes.extend(
            now.difference(&self.current)
                .map(|address| Diff::Add(*address)),
        );
        self.current = now;
        changes
    }
}

fn slice_name(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// The addresses of a slice's ready endpoints on the target port. An endpoint whose
/// `ready` condition is absent counts as ready (as the API documents); a terminating
/// pod is not ready.
fn ready_addresses(slice: &EndpointSlice, port_name: &str) -> BTreeSet<SocketAddr> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|port| port.name.as_deref() == Some(port_name))
        .or(if ports.len() == 1 {
            ports.first()
        } else {
            None
        })
        .and_then(|port| port.port)
        .and_then(|port| u16::try_from(port).ok());
    let Some(port) = port else {
        return BTreeSet::new();
    };
    slice
        .endpoints
        .iter()
        .filter(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true)
        })
        .flat_map(|endpoint| endpoint.addresses.iter())
        .filter_map(|address| address.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };

    fn slice(
        name: &str,
        endpoints: &[(&str, Option<bool>)],
        ports: &[(Option<&str>, i32)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            address_type: "IPv4".to_string(),
            endpoints: endpoints
                .iter()
                .map(|(address, ready)| SliceEndpoint {
                    addresses: vec![address.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: name.map(str::to_string),
                        port: Some(*port),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    fn addresses(set: &BTreeSet<SocketAddr>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn only_ready_endpoints_on_the_named_port_count() {
        let s = slice(
            "a",
            &[
                ("10.0.0.1", Some(true)),
                ("10.0.0.2", Some(false)),
                ("10.0.0.3", None),
            ],
            &[(Some("metrics"), 9000), (Some("grpc"), 7700)],
        );
        assert_eq!(
            addresses(&ready_addresses(&s, "grpc")),
            ["10.0.0.1:7700", "10.0.0.3:7700"]
        );
        let unnamed = slice("b", &[("10.0.0.4", None)], &[(None, 7701)]);
        assert_eq!(
            addresses(&ready_addresses(&unnamed, "grpc")),
            ["10.0.0.4:7701"]
        );
        let ambiguous = slice("c", &[("10.0.0.5", None)], &[(None, 1), (None, 2)]);
        assert!(ready_addresses(&ambiguous, "grpc").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_state_only_when_complete() {
        let mut pods = Pods::default();
        let port = [(Some("grpc"), 7700)];
        assert!(pods.apply(Event::Init, "grpc").is_none());
        assert!(
            pods.apply(
                Event::InitApply(slice("a", &[("10.0.0.1", None)], &port)),
                "grpc"
            )
            .is_none()
        );
        let now = pods.apply(Event::InitDone, "grpc").unwrap();
        assert_eq!(pods.diff(now).len(), 1);
        let now = pods
            .apply(
                Event::Apply(slice("b", &[("10.0.0.2", None)], &port)),
                "grpc",
            )
            .unwrap();
        assert_eq!(addresses(&now), ["10.0.0.1:7700", "10.0.0.2:7700"]);
        pods.diff(now);
        // A re-list in which slice a is gone: nothing changes until it is complete.
        assert!(pods.apply(Event::Init, "grpc").is_none());
        assert!(
            pods.apply(
                Event::InitApply(slice("b", &[("10.0.0.2", None)], &port)),
                "grpc"
            )
            .is_none()
        );
        assert_eq!(pods.current.len(), 2);
        let now = pods.apply(Event::InitDone, "grpc").unwrap();
        let changes = pods.diff(now);
        assert!(
            matches!(changes.as_slice(), [Diff::Remove(a)] if a.to_string() == "10.0.0.1:7700")
        );
        let now = pods
            .apply(Event::Delete(slice("b", &[], &port)), "grpc")
            .unwrap();
        assert!(now.is_empty());
    }
}
