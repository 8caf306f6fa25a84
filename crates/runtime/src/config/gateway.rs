//! The gateway's settings: the internal key the gateway and the services share, the
//! first administrator's password, the signing keys of access tokens, per-user limits
//! and the audit log's retention. Secrets are [`Secret`]s, also readable from files (a
//! mounted Kubernetes Secret).

use super::Secret;
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

fn one_of(
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
            ..GatewaySettings::default()
        }
        .resolve(&mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("short")), "{errors:?}");
    }
}
