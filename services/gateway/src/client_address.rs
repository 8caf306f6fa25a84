//! The client's address behind reverse proxies: the TCP peer, unless it is a trusted
//! proxy (`CASESCOPE_TRUSTED_PROXIES`, e.g. the ingress controller), in which case the
//! last `X-Forwarded-For` hop that is not a trusted proxy. Entries left of that are
//! whatever the client wrote and are never believed.

use casescope_runtime::config::IpNet;
use std::net::IpAddr;

/// The client of a request that arrived from `peer` carrying `headers`.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address ends the trusted part of the chain.
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn forwarded_only_through_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let spoofed = headers(&["6.6.6.6, 203.0.113.9"]);
        // No trusted proxy configured, or an untrusted peer: the header is ignored.
        assert_eq!(
            client_address(ip("10.0.0.5"), &spoofed, &[]),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("198.51.100.1"), &spoofed, &trusted),
            ip("198.51.100.1")
        );
        // Through the ingress: its last hop; what the client wrote before it is not believed.
        assert_eq!(
            client_address(ip("10.0.0.5"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        // Two trusted proxies in a row, headers split over lines.
        assert_eq!(
            client_address(
                ip("::ffff:10.0.0.5"),
                &headers(&["203.0.113.9", "10.3.3.3"]),
                &trusted
            ),
            ip("203.0.113.9")
        );
        // Garbage ends the chain at the last trusted hop.
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers(&["203.0.113.9, junk"]), &trusted),
            ip("10.0.0.5")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers(&[]), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(client_address(None, &spoofed, &trusted), None);
    }
}
