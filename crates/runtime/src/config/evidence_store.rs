//! The evidence store setting of the ingest service (`evidence_store`: `local`, files
//! under the data dir — a volume every replica mounts — or `s3`, an S3-compatible
//! bucket) and the `s3_*` settings it needs. The secret key is a [`Secret`].

use super::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// The values `evidence_store` accepts.
pub const EVIDENCE_STORES: &[&str] = &["local", "s3"];

/// Where the ingest service keeps evidence blobs and case archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceStoreConfig {
    /// Files under `DATA_DIR/ingest` (with several ingest replicas: a ReadWriteMany
    /// volume every replica mounts).
    Local,
    /// An S3-compatible bucket; the data dir only holds scratch copies and upload parts.
    S3(S3Config),
}

impl EvidenceStoreConfig {
    pub fn name(&self) -> &'static str {
        match self {
            EvidenceStoreConfig::Local => "local",
            EvidenceStoreConfig::S3(_) => "s3",
        }
    }
}

/// How to reach the bucket. Credentials not given here come from the standard AWS
/// sources (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity, instance
/// metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible servers want.
    pub path_style: bool,
    /// Timeout of one request (a part of an upload, a range of a download).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The unresolved `evidence_store` and `s3_*` settings.
#[derive(Default)]
pub(super) struct EvidenceStoreSettings {
    pub evidence_store: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    pub request_timeout_secs: Option<String>,
}

impl EvidenceStoreSettings {
    /// Validates, pushing every problem onto `errors`; `Local` when anything is wrong.
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> EvidenceStoreConfig {
        match self.evidence_store.as_deref().map(str::trim) {
            None | Some("") | Some("local") => return EvidenceStoreConfig::Local,
            Some("s3") => {}
            Some(other) => {
                errors.push(format!(
                    "evidence_store: {other:?} is not one of {}",
                    EVIDENCE_STORES.join(", ")
                ));
                return EvidenceStoreConfig::Local;
            }
        }
        let before = errors.len();
        let bucket = self.bucket.as_deref().map(str::trim).unwrap_or_default();
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            errors.push(format!(
                "s3_bucket: {bucket:?} is not a bucket name (3-63 lower-case letters, digits, '-', '.'; required with evidence_store = s3)"
            ));
        }
        let endpoint = self
            .endpoint
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            errors.push(format!(
                "s3_endpoint: {endpoint:?} must be an http:// or https:// URL"
            ));
        }
        let prefix = self
            .prefix
            .unwrap_or_default()
            .trim()
            .trim_matches('/')
            .to_string();
        if prefix
            .split('/')
            .any(|part| part == ".." || part == "." || (part.is_empty() && !prefix.is_empty()))
        {
            errors.push(format!(
                "s3_prefix: {prefix:?} must be path segments without '.', '..' or empty parts"
            ));
        }
        let secret = match (self.secret_access_key, self.secret_access_key_file) {
            (Some(_), Some(_)) => {
                errors.push(
                    "s3_secret_access_key and s3_secret_access_key_file: set one, not both".into(),
                );
                None
            }
            (Some(secret), None) => Some(secret),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']))),
                Err(error) => {
                    errors.push(format!(
                        "s3_secret_access_key_file: cannot read {}: {error}",
                        path.display()
                    ));
                    None
                }
            },
            (None, None) => None,
        };
        let access_key_id = self.access_key_id.filter(|k| !k.trim().is_empty());
        if access_key_id.is_some() != secret.is_some() {
            errors.push(
                "s3_access_key_id and s3_secret_access_key: set both, or neither (then the standard AWS credential sources are used)"
                    .into(),
            );
        }
        let request_timeout = match self.request_timeout_secs.as_deref().map(str::trim) {
            None | Some("") => Duration::from_secs(120),
            Some(text) => match text.parse::<u64>() {
                Ok(secs) if (1..=3600).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    errors.push(format!(
                        "s3_request_timeout_secs: {text:?} is not a number of seconds in 1..=3600"
                    ));
                    Duration::from_secs(120)
                }
            },
        };
        if errors.len() > before {
            return EvidenceStoreConfig::Local;
        }
        EvidenceStoreConfig::S3(S3Config {
            bucket: bucket.to_string(),
            path_style: endpoint.is_some(),
            endpoint,
            region: self
                .region
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "us-east-1".into()),
            prefix,
            access_key_id,
            secret_access_key: secret,
            request_timeout,
            connect_timeout: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> EvidenceStoreSettings {
        EvidenceStoreSettings {
            evidence_store: Some("s3".into()),
            bucket: Some("evidence".into()),
            endpoint: Some("http://127.0.0.1:8333/".into()),
            access_key_id: Some("id".into()),
            secret_access_key: Some(Secret::new("secret")),
            prefix: Some("/casescope/prod/".into()),
            ..Default::default()
        }
    }

    #[test]
    fn s3_settings_resolve() {
        let mut errors = Vec::new();
        let EvidenceStoreConfig::S3(config) = s3().resolve(&mut errors) else {
            panic!("{errors:?}");
        };
        assert!(errors.is_empty());
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(config.prefix, "casescope/prod");
        assert!(config.path_style);
        assert_eq!(config.region, "us-east-1");
        assert!(!format!("{config:?}").contains("secret\""));
    }

    #[test]
    fn bad_s3_settings_are_each_named() {
        let mut errors = Vec::new();
        let settings = EvidenceStoreSettings {
            bucket: Some("No_Such".into()),
            endpoint: Some("ftp://x".into()),
            prefix: Some("a/../b".into()),
            secret_access_key: None,
            request_timeout_secs: Some("0".into()),
            ..s3()
        };
        assert_eq!(settings.resolve(&mut errors), EvidenceStoreConfig::Local);
        for field in [
            "s3_bucket",
            "s3_endpoint",
            "s3_prefix",
            "s3_access_key_id",
            "s3_request_timeout_secs",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(field)),
                "{field}: {errors:?}"
            );
        }
        let mut errors = Vec::new();
        let unknown = EvidenceStoreSettings {
            evidence_store: Some("nfs".into()),
            ..Default::default()
        };
        assert_eq!(unknown.resolve(&mut errors), EvidenceStoreConfig::Local);
        assert!(errors[0].starts_with("evidence_store"), "{errors:?}");
    }
}
