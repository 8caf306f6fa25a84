//! The event store setting of the ingest service (`event_store`: `tantivy` under the
//! data dir, or `opensearch`) and the `opensearch_*` settings it needs. Only what is
//! set is carried: the OpenSearch defaults (timeouts, bulk size, retries) live in one
//! place, `casescope_eventstore::OpenSearchOptions::new`. The password is a [`Secret`]:
//! it never shows in Debug output or in a configuration error.

use serde::Deserialize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The values `event_store` accepts.
pub const EVENT_STORES: &[&str] = &["tantivy", "opensearch"];

/// Largest `_bulk` body accepted (OpenSearch's default `http.max_content_length`).
const MAX_BULK_BYTES: usize = 100 * 1024 * 1024;

/// A value that must never be printed: Debug shows `<redacted>`, and there is no
/// Display. Read it with [`Secret::expose`] where it is used, nowhere else.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the ingest service keeps its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStoreConfig {
    /// The embedded tantivy index under `DATA_DIR/index` (one ingest process only).
    Tantivy,
    /// An OpenSearch 2.7+ cluster (any number of ingest replicas).
    OpenSearch(OpenSearchConfig),
}

impl EventStoreConfig {
    /// The setting's value, as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            EventStoreConfig::Tantivy => "tantivy",
            EventStoreConfig::OpenSearch(_) => "opensearch",
        }
    }
}

/// How to reach OpenSearch. `None` means the event store's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSearchConfig {
    /// `http(s)://host:port[/prefix]`, without credentials.
    pub url: String,
    pub index: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM file of extra CA certificates to trust (checked to be readable).
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate (test clusters only).
    pub insecure: bool,
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub bulk_max_bytes: Option<usize>,
    pub max_retries: Option<u32>,
    pub number_of_shards: Option<u32>,
    pub number_of_replicas: Option<u32>,
}

/// The unresolved `event_store` and `opensearch_*` settings (fields of
/// [`super::Settings`], taken apart to resolve them here).
#[derive(Default)]
pub(super) struct EventStoreSettings {
    pub event_store: Option<String>,
    pub url: Option<String>,
    pub index: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure: Option<String>,
    pub request_timeout_secs: Option<String>,
    pub connect_timeout_secs: Option<String>,
    pub bulk_max_bytes: Option<String>,
    pub max_retries: Option<String>,
    pub shards: Option<String>,
    pub replicas: Option<String>,
}

impl EventStoreSettings {
    /// Validates, pushing every problem onto `errors`; `Tantivy` when anything is wrong.
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> EventStoreConfig {
        let before = errors.len();
        let opensearch = match self.event_store.as_deref().map(str::trim) {
            None | Some("") | Some("tantivy") => false,
            Some("opensearch") => true,
            Some(other) => {
                errors.push(format!(
                    "event_store: {other:?} is not one of {}",
                    EVENT_STORES.join(", ")
                ));
                false
            }
        };
        if !opensearch {
            // The opensearch_* settings are read only when OpenSearch is selected.
            return EventStoreConfig::Tantivy;
        }
        let url = self.url.as_deref().map(str::trim).unwrap_or_default();
        if url.is_empty() {
            errors.push(
                "opensearch_url: required when event_store is opensearch \
                 (CASESCOPE_OPENSEARCH_URL, e.g. https://opensearch:9200)"
                    .to_string(),
            );
        } else if let Err(problem) = check_url(url) {
            errors.push(format!("opensearch_url: {problem}"));
        }
        if let Some(index) = &self.index
            && let Err(problem) = check_index_name(index)
        {
            errors.push(format!("opensearch_index: {problem}"));
        }
        let password = match (self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                errors.push(
                    "opensearch_password and opensearch_password_file are both set; set one"
                        .to_string(),
                );
                None
            }
            (Some(password), None) => Some(password),
            (None, Some(path)) => read_password_file(path, errors),
            (None, None) => None,
        };
        let username = self.username.filter(|name| !name.trim().is_empty());
        if password.is_some() && username.is_none() {
            errors.push(
                "opensearch_password: set without opensearch_username (CASESCOPE_OPENSEARCH_USERNAME)"
                    .to_string(),
            );
        }
        if let Some(path) = &self.ca_file
            && let Err(error) = std::fs::File::open(path)
        {
            errors.push(format!(
                "opensearch_ca_file: cannot read {}: {error}",
                path.display()
            ));
        }
        let insecure = match self.insecure.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(text) => parse_bool(text).unwrap_or_else(|| {
                errors.push(format!(
                    "opensearch_insecure: {text:?} is not true or false"
                ));
                false
            }),
        };
        let seconds = |name, value, errors: &mut Vec<String>| {
            number(name, value, 1..=86_400u64, errors).map(Duration::from_secs)
        };
        let request_timeout = seconds(
            "opensearch_request_timeout_secs",
            self.request_timeout_secs,
            errors,
        );
        let connect_timeout = seconds(
            "opensearch_connect_timeout_secs",
            self.connect_timeout_secs,
            errors,
        );
        let bulk_max_bytes = number(
            "opensearch_bulk_max_bytes",
            self.bulk_max_bytes,
            1024..=MAX_BULK_BYTES,
            errors,
        );
        let max_retries = number("opensearch_max_retries", self.max_retries, 0..=20, errors);
        let number_of_shards = number("opensearch_shards", self.shards, 1..=1024, errors);
        let number_of_replicas = number("opensearch_replicas", self.replicas, 0..=16, errors);
        if errors.len() > before {
            return EventStoreConfig::Tantivy;
        }
        EventStoreConfig::OpenSearch(OpenSearchConfig {
            url: url.to_string(),
            index: self.index,
            username,
            password,
            ca_file: self.ca_file,
            insecure,
            request_timeout,
            connect_timeout,
            bulk_max_bytes,
            max_retries,
            number_of_shards,
            number_of_replicas,
        })
    }
}

/// `http(s)://` with a host and no credentials. Never echoes a URL that may hold a
/// password.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not an http:// or https:// URL".to_string());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not hold credentials; set CASESCOPE_OPENSEARCH_USERNAME and \
                    CASESCOPE_OPENSEARCH_PASSWORD (or _PASSWORD_FILE) instead"
                .to_string(),
        );
    }
    if !matches!(scheme, "http" | "https") {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// OpenSearch's index name rules, as the event store checks them.
fn check_index_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if name.is_empty() || name.len() > 200 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} must be 1 to 200 characters of a-z, 0-9, '-', '_' and '.'"
        ));
    }
    if name.starts_with(['-', '_', '.']) {
        return Err(format!("{name:?} must not start with '-', '_' or '.'"));
    }
    Ok(())
}

/// The first line of a password file (a mounted Kubernetes Secret usually has no
/// newline; a file written by `echo` has one).
fn read_password_file(path: &std::path::Path, errors: &mut Vec<String>) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let password = text.lines().next().unwrap_or_default();
            if password.is_empty() {
                errors.push(format!(
                    "opensearch_password_file: {} is empty",
                    path.display()
                ));
                return None;
            }
            Some(Secret::new(password))
        }
        Err(error) => {
            errors.push(format!(
                "opensearch_password_file: cannot read {}: {error}",
                path.display()
            ));
            None
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An optional whole number in `range`; a problem is pushed onto `errors`.
fn number<T>(
    name: &str,
    value: Option<String>,
    range: RangeInclusive<T>,
    errors: &mut Vec<String>,
) -> Option<T>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    let text = value?;
    match text.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            errors.push(format!(
                "{name}: {text:?} is not a whole number between {} and {}",
                range.start(),
                range.end()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn tantivy_is_the_default() {
        let config = Settings::default().resolve().unwrap();
        assert_eq!(config.event_store, EventStoreConfig::Tantivy);
        let config = env(&[("CASESCOPE_EVENT_STORE", "tantivy")])
            .resolve()
            .unwrap();
        assert_eq!(config.event_store, EventStoreConfig::Tantivy);
    }

    #[test]
    fn opensearch_settings_are_read_from_the_environment() {
        let config = env(&[
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", "https://opensearch:9200"),
            ("CASESCOPE_OPENSEARCH_INDEX", "dfir-events"),
            ("CASESCOPE_OPENSEARCH_USERNAME", "casescope"),
            ("CASESCOPE_OPENSEARCH_PASSWORD", "hunter2"),
            ("CASESCOPE_OPENSEARCH_INSECURE", "true"),
            ("CASESCOPE_OPENSEARCH_REQUEST_TIMEOUT_SECS", "90"),
            ("CASESCOPE_OPENSEARCH_CONNECT_TIMEOUT_SECS", "3"),
            ("CASESCOPE_OPENSEARCH_BULK_MAX_BYTES", "4194304"),
            ("CASESCOPE_OPENSEARCH_MAX_RETRIES", "0"),
            ("CASESCOPE_OPENSEARCH_SHARDS", "3"),
            ("CASESCOPE_OPENSEARCH_REPLICAS", "1"),
        ])
        .resolve()
        .unwrap();
        let EventStoreConfig::OpenSearch(opensearch) = config.event_store else {
            panic!("opensearch selected");
        };
        assert_eq!(
            opensearch,
            OpenSearchConfig {
                url: "https://opensearch:9200".into(),
                index: Some("dfir-events".into()),
                username: Some("casescope".into()),
                password: Some(Secret::new("hunter2")),
                ca_file: None,
                insecure: true,
                request_timeout: Some(Duration::from_secs(90)),
                connect_timeout: Some(Duration::from_secs(3)),
                bulk_max_bytes: Some(4 * 1024 * 1024),
                max_retries: Some(0),
                number_of_shards: Some(3),
                number_of_replicas: Some(1),
            }
        );
    }

    #[test]
    fn unset_opensearch_options_keep_the_store_defaults() {
        let config = env(&[
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", "http://127.0.0.1:9200"),
        ])
        .resolve()
        .unwrap();
        let EventStoreConfig::OpenSearch(opensearch) = config.event_store else {
            panic!("opensearch selected");
        };
        assert_eq!(opensearch.index, None);
        assert_eq!(opensearch.request_timeout, None);
        assert_eq!(opensearch.bulk_max_bytes, None);
        assert!(!opensearch.insecure);
    }

    #[test]
    fn opensearch_without_a_url_names_the_variable() {
        let error = env(&[("CASESCOPE_EVENT_STORE", "opensearch")])
            .resolve()
            .unwrap_err();
        assert_eq!(error.0.len(), 1, "{error}");
        assert!(
            error.0[0].contains("opensearch_url")
                && error.0[0].contains("CASESCOPE_OPENSEARCH_URL"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_event_store_lists_the_allowed_values() {
        let error = env(&[("CASESCOPE_EVENT_STORE", "elasticsearch")])
            .resolve()
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("event_store")
                && text.contains("\"elasticsearch\"")
                && text.contains("tantivy, opensearch"),
            "{text}"
        );
    }

    #[test]
    fn every_opensearch_problem_is_reported_at_once() {
        let error = env(&[
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", "ftp://opensearch:9200"),
            ("CASESCOPE_OPENSEARCH_INDEX", "Cases/*"),
            ("CASESCOPE_OPENSEARCH_PASSWORD", "hunter2"),
            ("CASESCOPE_OPENSEARCH_CA_FILE", "/nonexistent/ca.pem"),
            ("CASESCOPE_OPENSEARCH_INSECURE", "maybe"),
            ("CASESCOPE_OPENSEARCH_REQUEST_TIMEOUT_SECS", "0"),
            ("CASESCOPE_OPENSEARCH_BULK_MAX_BYTES", "12"),
            ("CASESCOPE_OPENSEARCH_MAX_RETRIES", "-1"),
            ("CASESCOPE_OPENSEARCH_SHARDS", "x"),
        ])
        .resolve()
        .unwrap_err();
        let text = error.to_string();
        for expected in [
            "opensearch_url",
            "opensearch_index",
            "opensearch_password: set without opensearch_username",
            "opensearch_ca_file",
            "opensearch_insecure",
            "opensearch_request_timeout_secs",
            "opensearch_bulk_max_bytes",
            "opensearch_max_retries",
            "opensearch_shards",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(error.0.len(), 9, "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let error = env(&[
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            (
                "CASESCOPE_OPENSEARCH_URL",
                "https://admin:hunter2@opensearch:9200",
            ),
        ])
        .resolve()
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("must not hold credentials"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let settings = env(&[
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", "https://opensearch:9200"),
            ("CASESCOPE_OPENSEARCH_USERNAME", "casescope"),
            ("CASESCOPE_OPENSEARCH_PASSWORD", "hunter2"),
        ]);
        assert!(!format!("{settings:?}").contains("hunter2"));
        let config = settings.resolve().unwrap();
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && text.contains("<redacted>"),
            "{text}"
        );
        let EventStoreConfig::OpenSearch(opensearch) = &config.event_store else {
            panic!("opensearch selected");
        };
        assert_eq!(
            opensearch.password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
    }

    #[test]
    fn the_password_can_come_from_a_file_but_not_from_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-file\n").unwrap();
        let path_text = path.display().to_string();
        let base = [
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", "https://opensearch:9200"),
            ("CASESCOPE_OPENSEARCH_USERNAME", "casescope"),
            ("CASESCOPE_OPENSEARCH_PASSWORD_FILE", path_text.as_str()),
        ];
        let config = env(&base).resolve().unwrap();
        let EventStoreConfig::OpenSearch(opensearch) = config.event_store else {
            panic!("opensearch selected");
        };
        assert_eq!(
            opensearch.password.as_ref().map(Secret::expose),
            Some("from-file")
        );

        let mut both = base.to_vec();
        both.push(("CASESCOPE_OPENSEARCH_PASSWORD", "hunter2"));
        let text = env(&both).resolve().unwrap_err().to_string();
        assert!(text.contains("both set"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("from-file"),
            "{text}"
        );

        std::fs::write(&path, "").unwrap();
        let text = env(&base).resolve().unwrap_err().to_string();
        assert!(text.contains("is empty"), "{text}");
    }

    #[test]
    fn opensearch_settings_come_from_the_config_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("casescope.toml");
        std::fs::write(
            &path,
            "event_store = \"opensearch\"\nopensearch_url = \"https://os:9200\"\n\
             opensearch_username = \"casescope\"\nopensearch_password = \"hunter2\"\n",
        )
        .unwrap();
        let config = Settings::from_file(&path).unwrap().resolve().unwrap();
        assert_eq!(config.event_store.name(), "opensearch");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
