//! Connections to the other services in one-service mode. With DNS discovery (the
//! default), one lazily connected channel per configured address; with Kubernetes
//! discovery, a channel balanced across the ready pods of the address's Service, kept
//! current from its EndpointSlices (`casescope-discovery`), so that every replica of a
//! called service gets calls.

use anyhow::{Context, bail};
use casescope_discovery::Target;
use casescope_proto::channel::{self, GrpcChannel};
use casescope_runtime::config::{Config, ServiceDiscovery};
use std::time::Duration;

/// Where a pod's own namespace is, in Kubernetes.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The Service port name the chart gives the gRPC port.
const PORT_NAME: &str = "grpc";

pub struct RemoteChannels {
    kube: Option<kube::Client>,
}

impl RemoteChannels {
    pub fn new() -> Self {
        Self { kube: None }
    }

    /// A channel to `service`, from its configured address.
    pub async fn channel(&mut self, config: &Config, service: &str) -> anyhow::Result<GrpcChannel> {
        self.channel_with_timeout(config, service, Some(Duration::from_secs(30)))
            .await
    }

    /// As [`Self::channel`], with `timeout` (until the answer's headers) on every call,
    /// or none (the gateway forwarding uploads and streams).
    pub async fn channel_with_timeout(
        &mut self,
        config: &Config,
        service: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<GrpcChannel> {
        let address = config.service_addrs.get(service).with_context(|| {
            format!(
                "the address of the {service} service is required (CASESCOPE_{}_ADDR or --service-addr {service}=URL)",
                service.to_uppercase()
            )
        })?;
        let endpoint = move |url: &str| {
            tonic::transport::Endpoint::from_shared(url.to_string()).map(|endpoint| {
                let endpoint =
                    channel::with_flow_control(endpoint).connect_timeout(Duration::from_secs(5));
                match timeout {
                    Some(timeout) => endpoint.timeout(timeout),
                    None => endpoint,
                }
            })
        };
        let ServiceDiscovery::Kubernetes { namespace } = &config.service_discovery else {
            let endpoint = endpoint(address)
                .with_context(|| format!("{service} address {address:?} is not a URL"))?;
            return Ok(channel::from_transport(endpoint.connect_lazy()));
        };
        let target = target(address, namespace.as_deref())
            .with_context(|| format!("kubernetes discovery of the {service} service"))?;
        if address.starts_with("https://") {
            bail!(
                "kubernetes discovery of the {service} service: {address:?} is https, but pods are \
                 reached by IP (no certificate matches an IP); use http:// inside the cluster"
            );
        }
        let client = match &self.kube {
            Some(client) => client.clone(),
            None => {
                let client = casescope_discovery::in_cluster_client()
                    .await
                    .context("kubernetes discovery needs the pod's ServiceAccount token (automountServiceAccountToken) or a kubeconfig")?;
                self.kube = Some(client.clone());
                client
            }
        };
        tracing::info!(
            service, kubernetes_service = %target.service, namespace = %target.namespace,
            "calls balanced across the Service's ready pods (EndpointSlices)"
        );
        // The watch task ends when the channel's last clone is dropped.
        let (balanced, _watch) = casescope_discovery::balanced_channel(client, target, endpoint);
        Ok(channel::from_transport(balanced))
    }
}

/// The Service behind `address` (`http://<service>[.<namespace>[.svc...]]:<port>`).
fn target(address: &str, namespace: Option<&str>) -> anyhow::Result<Target> {
    let uri: http::Uri = address
        .parse()
        .with_context(|| format!("{address:?} is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        bail!(
            "{address:?} names no Service (an IP address or no host); use http://<service>:<port>"
        );
    }
    let mut labels = host.split('.');
    let service = labels.next().unwrap_or_default().to_string();
    let namespace = match (namespace, labels.next()) {
        (Some(configured), _) => configured.to_string(),
        (None, Some(from_host)) => from_host.to_string(),
        (None, None) => std::fs::read_to_string(POD_NAMESPACE_FILE)
            .map(|text| text.trim().to_string())
            .ok()
            .filter(|text| !text.is_empty())
            .with_context(|| {
                format!(
                    "no namespace: set CASESCOPE_KUBERNETES_NAMESPACE, or run in a pod ({POD_NAMESPACE_FILE})"
                )
            })?,
    };
    Ok(Target {
        namespace,
        service,
        port_name: PORT_NAME.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_and_namespace_come_from_the_address_or_configuration() {
        let t = target("http://casescope-detect:7700", Some("dfir")).unwrap();
        assert_eq!(
            (t.service.as_str(), t.namespace.as_str()),
            ("casescope-detect", "dfir")
        );
        let t = target("http://casescope-detect.soc.svc.cluster.local:7700", None).unwrap();
        assert_eq!(
            (t.service.as_str(), t.namespace.as_str()),
            ("casescope-detect", "soc")
        );
        let t = target("http://casescope-detect.soc:7700", Some("dfir")).unwrap();
        assert_eq!(t.namespace, "dfir", "configuration wins");
        let error = target("http://10.0.0.7:7700", Some("dfir")).unwrap_err();
        assert!(error.to_string().contains("names no Service"), "{error}");
    }
}
