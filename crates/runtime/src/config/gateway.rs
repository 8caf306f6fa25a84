//! The gateway's settings: the internal key the gateway and the services share, the
//! first administrator's password, the signing keys of access tokens, per-user limits
//! and the audit log's retention. Secrets are [`Secret`]s, also readable from files (a
//! mounted Kubernetes Secret).

use super::Secret;
use super::oidc::{OidcConfig, OidcSettings};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The resolved gateway settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Shared by the gateway and the services to sign the caller's identity; `None`: a
    /// random key per process (all-in-one mode only).
    pub internal_key: Option<Secret>,
    /// Password of the first administrator on a fresh installation (`None`: generated).
    pub admin_password: Option<Secret>,
    /// PKCS#8 PEM of the access-token signing key (`None`: the data directory's own).
    pub signing_key_file: Option<PathBuf>,
    /// SPKI PEMs of earlier signing keys that still verify during a rotation.
    pub verify_key_files: Vec<PathBuf>,
    pub requests_per_second: f64,
    pub burst: f64,
    pub max_uploads_per_user: usize,
    /// Audit records older than this are dropped behind a signed checkpoint.
    pub audit_retention: Duration,
    /// Reverse proxies (an ingress controller) whose `X-Forwarded-For` names the client;
    /// empty: the header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Sign-in through an OpenID Connect provider, when configured.
    pub oidc: Option<OidcConfig>,
}

/// An address block (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `address[/prefix]`, or `None` when it is neither.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().ok()?;
        let address = address.to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().ok().filter(|p| *p <= bits)?,
            None => bits,
        };
        Some(Self { address, prefix })
    }

    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mask = |bits: u32, total: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (u128::MAX << (total - bits)) & (u128::MAX >> (128 - total))
            }
        };
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(u32::from(self.prefix), 32);
                (u128::from(u32::from(net)) & m) == (u128::from(u32::from(ip)) & m)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(u32::from(self.prefix), 128);
                (u128::from(net) & m) == (u128::from(ip) & m)
            }
            _ => false,
        }
    }
}

/// The unresolved settings (see `Settings`).
#[derive(Default)]
pub(super) struct GatewaySettings {
    pub internal_key: Option<Secret>,
    pub internal_key_file: Option<PathBuf>,
    pub admin_password: Option<Secret>,
    pub admin_password_file: Option<PathBuf>,
    pub signing_key_file: Option<PathBuf>,
    pub verify_key_files: Option<String>,
    pub rate_limit_per_second: Option<String>,
    pub rate_limit_burst: Option<String>,
    pub max_uploads_per_user: Option<String>,
    pub audit_retention_days: Option<String>,
    pub trusted_proxies: Option<String>,
    pub oidc: OidcSettings,
}

/// The first line of a secret file, or a problem.
fn secret_file(setting: &str, path: &std::path::Path, errors: &mut Vec<String>) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.lines().next().map(str::trim) {
            Some(value) if !value.is_empty() => Some(Secret::new(value)),
            _ => {
                errors.push(format!("{setting}: {} is empty", path.display()));
                None
            }
        },
        Err(error) => {
            errors.push(format!(
                "{setting}: cannot read {}: {error}",
                path.display()
            ));
            None
        }
    }
}

pub(super) fn one_of(
    setting: &str,
    value: Option<Secret>,
    file: Option<PathBuf>,
    errors: &mut Vec<String>,
) -> Option<Secret> {
    match (value, file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "{setting} and {setting}_file are both set; keep one"
            ));
            None
        }
        (Some(value), None) => Some(value),
        (None, Some(path)) => secret_file(&format!("{setting}_file"), &path, errors),
        (None, None) => None,
    }
}

fn number<T: std::str::FromStr + PartialOrd>(
    setting: &str,
    value: Option<&str>,
    default: T,
    min: T,
    errors: &mut Vec<String>,
) -> T {
    match value.map(str::trim) {
        None | Some("") => default,
        Some(text) => match text.parse::<T>() {
            Ok(n) if n >= min => n,
            _ => {
                errors.push(format!("{setting}: {text:?} is not a number in range"));
                default
            }
        },
    }
}

impl GatewaySettings {
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> GatewayConfig {
        let internal_key = one_of(
            "internal_key",
            self.internal_key,
            self.internal_key_file,
            errors,
        );
        if let Some(key) = &internal_key
            && key.expose().chars().count() < 32
        {
            errors.push(
                "internal_key: at least 32 characters (e.g. `openssl rand -base64 48`)".into(),
            );
        }
        let admin_password = one_of(
            "admin_password",
            self.admin_password,
            self.admin_password_file,
            errors,
        );
        let verify_key_files = self
            .verify_key_files
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        let days = number(
            "audit_retention_days",
            self.audit_retention_days.as_deref(),
            365u64,
            1,
            errors,
        );
        let mut trusted_proxies = Vec::new();
        for entry in self
            .trusted_proxies
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match IpNet::parse(entry) {
                Some(net) => trusted_proxies.push(net),
                None => errors.push(format!(
                    "trusted_proxies: {entry:?} is not an address or a block like 10.0.0.0/8"
                )),
            }
        }
        GatewayConfig {
            internal_key,
            admin_password,
            signing_key_file: self.signing_key_file,
            verify_key_files,
            requests_per_second: number(
                "rate_limit_per_second",
                self.rate_limit_per_second.as_deref(),
                200.0,
                0.1,
                errors,
            ),
            burst: number(
                "rate_limit_burst",
                self.rate_limit_burst.as_deref(),
                2000.0,
                1.0,
                errors,
            ),
            max_uploads_per_user: number(
                "max_uploads_per_user",
                self.max_uploads_per_user.as_deref(),
                8usize,
                1,
                errors,
            ),
            audit_retention: Duration::from_secs(days.saturating_mul(86_400)),
            trusted_proxies,
            oidc: self.oidc.resolve(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_files_and_problems() {
        let mut errors = Vec::new();
        let config = GatewaySettings::default().resolve(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.internal_key, None);
        assert_eq!(config.max_uploads_per_user, 8);
        assert_eq!(config.audit_retention, Duration::from_secs(365 * 86_400));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        let config = GatewaySettings {
            internal_key_file: Some(path.clone()),
            verify_key_files: Some("a.pem, b.pem".into()),
            ..GatewaySettings::default()
        }
        .resolve(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.internal_key, Some(Secret::new("k".repeat(40))));
        assert_eq!(config.verify_key_files.len(), 2);

        GatewaySettings {
            internal_key: Some(Secret::new("short")),
            admin_password: Some(Secret::new("x")),
            admin_password_file: Some(path),
            rate_limit_burst: Some("0".into()),
            trusted_proxies: Some("10.0.0.0/8, 10.1.2.3/33".into()),
            ..GatewaySettings::default()
        }
        .resolve(&mut errors);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("10.1.2.3/33")),
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| !e.contains("short")), "{errors:?}");
    }

    #[test]
    fn address_blocks() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.200.3.4")));
        assert!(net.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped peers");
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("fd00::1")));
        let one = IpNet::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::5")) && !v6.contains(ip("fe80::1")));
        let all = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "fd00::/129", "host", "10.0.0.0/x", ""] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }
}
