//! `service_discovery` and `kubernetes_namespace`: how a service reaches the pods of the
//! services it calls.

/// How a service finds the pods of the services it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceDiscovery {
    /// One connection per configured address (a Kubernetes Service's cluster IP, or a
    /// host outside Kubernetes).
    Dns,
    /// Calls balanced across the Service's ready pods, from its EndpointSlices; the
    /// Service is the address's first host label, in `namespace` (or the address's second
    /// label, or the pod's own namespace).
    Kubernetes { namespace: Option<String> },
}

pub(super) fn resolve(
    kind: Option<String>,
    namespace: Option<String>,
    errors: &mut Vec<String>,
) -> ServiceDiscovery {
    let discovery = match kind.as_deref().map(str::trim) {
        None | Some("") | Some("dns") => ServiceDiscovery::Dns,
        Some("kubernetes") => ServiceDiscovery::Kubernetes {
            namespace: namespace.clone(),
        },
        Some(other) => {
            errors.push(format!(
                "service_discovery: {other:?} is not \"dns\" or \"kubernetes\""
            ));
            ServiceDiscovery::Dns
        }
    };
    if let Some(namespace) = &namespace
        && (namespace.is_empty()
            || namespace.len() > 63
            || !namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        errors.push(format!(
            "kubernetes_namespace: {namespace:?} is not a namespace name (lower-case letters, digits, '-')"
        ));
    }
    discovery
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_by_default_kubernetes_on_request_anything_else_refused() {
        let mut errors = Vec::new();
        assert_eq!(resolve(None, None, &mut errors), ServiceDiscovery::Dns);
        assert_eq!(
            resolve(Some("kubernetes".into()), Some("dfir".into()), &mut errors),
            ServiceDiscovery::Kubernetes {
                namespace: Some("dfir".into())
            }
        );
        assert!(errors.is_empty(), "{errors:?}");
        resolve(
            Some("consul".into()),
            Some("Not_A_Namespace".into()),
            &mut errors,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("\"consul\" is not \"dns\" or \"kubernetes\""));
        assert!(errors[1].contains("kubernetes_namespace: \"Not_A_Namespace\""));
    }
}
