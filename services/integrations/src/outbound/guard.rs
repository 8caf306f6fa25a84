//! The SSRF guard: an integration's URL is typed by an administrator, but a URL — or a
//! DNS name, or a redirect — can point the service at what only it can reach: the
//! cloud metadata endpoint, the cluster's own services, localhost. Every address a
//! connection would use is checked **after DNS resolution** (the resolver below is the
//! only one the HTTP client has) and every URL is checked again **on each redirect**
//! (an IP literal does not pass the resolver). Refused: loopback, private (RFC 1918,
//! unique-local), link-local (and so 169.254.169.254), carrier-grade NAT, unspecified,
//! broadcast, multicast, documentation and benchmarking ranges, IPv4-mapped and NAT64
//! forms of those — unless an allow-listed network of the deployment holds the address
//! (`CASESCOPE_INTEGRATIONS_ALLOW_NETS`, e.g. the subnet of an on-premises IRIS).

use casescope_runtime::config::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A refusal of the guard (carried through the HTTP client's error chain).
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The networks outbound calls may reach although they are not public.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Arc<Vec<IpNet>>,
}

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if ip.is_link_local() {
        if ip == Ipv4Addr::new(169, 254, 169, 254) {
            Some("the cloud metadata endpoint")
        } else {
            Some("link-local")
        }
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT (RFC 6598)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        Some("protocol assignments or benchmarking")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        if segments[..3] == [0xfd00, 0x0ec2, 0] {
            Some("the cloud metadata endpoint")
        } else {
            Some("unique-local (private)")
        }
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address inside decides.
        let v4 = Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        );
        non_public_v4(v4)
    } else {
        None
    }
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    /// `Err(why)` when outbound calls may not reach `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match non_public(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|net| net.contains(ip)) => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is {kind}: refused (allow its network in CASESCOPE_INTEGRATIONS_ALLOW_NETS \
                 if this target is meant)"
            )),
        }
    }

    /// Checks the host of `url` when it is an IP literal (names go through the
    /// resolver). Also refuses URLs with credentials and schemes other than http(s).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a URL with credentials is refused".into());
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("the URL has no host".into()),
        }
    }

    /// The resolver of the guarded client.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            guard: self.clone(),
        })
    }
}

/// Resolves with the system resolver and keeps only the addresses the guard allows;
/// none left is an error naming the refused address.
pub struct GuardedResolver {
    guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            type BoxError = Box<dyn std::error::Error + Send + Sync>;
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> BoxError { format!("cannot resolve {host}: {e}").into() })?
                .collect();
            let mut allowed = Vec::new();
            let mut refused = None;
            for address in found {
                match guard.check(address.ip()) {
                    Ok(()) => allowed.push(address),
                    Err(why) => refused = Some(why),
                }
            }
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".into());
                let refusal: BoxError = Box::new(Refusal(format!("{host} resolves to {why}")));
                return Err(refusal);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok::<Addrs, BoxError>(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_named() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private (RFC 1918)"),
            ("172.20.0.1", "private (RFC 1918)"),
            ("192.168.1.1", "private (RFC 1918)"),
            ("169.254.169.254", "the cloud metadata endpoint"),
            ("169.254.10.1", "link-local"),
            ("100.100.100.200", "carrier-grade NAT (RFC 6598)"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("255.255.255.255", "broadcast, multicast or reserved"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("fd00:ec2::254", "the cloud metadata endpoint"),
            ("fd12::1", "unique-local (private)"),
            ("fe80::1", "link-local"),
            ("64:ff9b::a9fe:a9fe", "the cloud metadata endpoint"),
        ] {
            assert_eq!(non_public(ip(address)), Some(kind), "{address}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808"] {
            assert_eq!(non_public(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_admits_its_networks_only() {
        let guard = Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]);
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        let refused = guard.check(ip("127.0.0.2")).unwrap_err();
        assert!(refused.contains("127.0.0.2 is loopback"), "{refused}");
        assert!(
            guard
                .check(ip("169.254.169.254"))
                .unwrap_err()
                .contains("metadata")
        );
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(guard.check_url(&url("http://127.0.0.1:9/x")).is_ok());
        assert!(guard.check_url(&url("http://[::1]/")).is_err());
        assert!(
            guard
                .check_url(&url("http://169.254.169.254/latest/meta-data"))
                .is_err()
        );
        assert!(guard.check_url(&url("http://u:p@example.org/")).is_err());
        assert!(guard.check_url(&url("file:///etc/passwd")).is_err());
        assert!(guard.check_url(&url("https://example.org/")).is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let refused = Guard::default()
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost resolves to loopback only");
        assert!(refused.to_string().contains("loopback"), "{refused}");
        let allowed = Guard::new(vec![
            IpNet::parse("127.0.0.0/8").unwrap(),
            IpNet::parse("::1").unwrap(),
        ])
        .resolver()
        .resolve("localhost".parse().unwrap())
        .await
        .expect("allow-listed");
        assert!(allowed.count() >= 1);
    }
}
