//! What [`super::OpenSearchStore::open`] needs: where the cluster is, how to
//! authenticate, and the limits of every request. Checked before anything connects,
//! every problem reported at once, the password never printed.

use crate::StoreError;
use reqwest::Url;
use std::time::Duration;

/// When written events become visible to searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// `flush` refreshes the index (`POST /<index>/_refresh`): cheap bulk writes, one
    /// refresh per flush.
    #[default]
    OnFlush,
    /// Every bulk request waits until its events are searchable (`refresh=wait_for`);
    /// `flush` has nothing left to do. Slower writes, no explicit refreshes.
    WaitFor,
}

/// How to reach OpenSearch and how hard to push it.
#[derive(Clone)]
pub struct OpenSearchOptions {
    /// Base URL, e.g. `https://opensearch:9200` (a path prefix is kept). No
    /// credentials in it: use `username`/`password`.
    pub url: String,
    /// The one index that holds every case's events.
    pub index: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Extra CA certificates (PEM) to trust, e.g. the cluster's own CA.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// Accept any TLS certificate (test clusters with self-signed certificates only).
    pub danger_accept_invalid_certs: bool,
    /// Limit for one request, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest `_bulk` body; a batch is cut into requests of at most this size.
    pub bulk_max_bytes: usize,
    /// Retries of a request (or of bulk items) refused for overload or failing in
    /// transit, before giving up with [`StoreError::Unavailable`].
    pub max_retries: u32,
    /// First pause before a retry; each further retry doubles it, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub refresh: RefreshPolicy,
    /// Index settings used when the index is created (cluster defaults when `None`).
    pub number_of_shards: Option<u32>,
    pub number_of_replicas: Option<u32>,
    /// Largest answer read; a larger one is an error, not an allocation.
    pub max_response_bytes: usize,
    /// How long [`EventStore::delete_file`] waits for its delete-by-query task.
    pub delete_timeout: Duration,
}

impl OpenSearchOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            index: "casescope-events".into(),
            username: None,
            password: None,
            ca_certificate_pem: None,
            danger_accept_invalid_certs: false,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            bulk_max_bytes: 8 * 1024 * 1024,
            max_retries: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            refresh: RefreshPolicy::OnFlush,
            number_of_shards: None,
            number_of_replicas: None,
            max_response_bytes: 256 * 1024 * 1024,
            delete_timeout: Duration::from_secs(30 * 60),
        }
    }

    /// Every problem at once, or the parsed URL.
    pub(super) fn check(&self) -> Result<Url, StoreError> {
        let mut problems = Vec::new();
        let url = match Url::parse(&self.url) {
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problems.push(format!("url scheme {} is not http or https", url.scheme()));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    problems.push(
                        "url must not hold credentials; set username and password instead".into(),
                    );
                }
                if url.cannot_be_a_base() {
                    problems.push("url cannot be a base URL".into());
                }
                Some(url)
            }
            Err(e) => {
                problems.push(format!("url is not a URL: {e}"));
                None
            }
        };
        if let Err(why) = check_index_name(&self.index) {
            problems.push(why);
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push("a password is set without a username".into());
        }
        if self.bulk_max_bytes < 1024 {
            problems.push("bulk_max_bytes must be at least 1024".into());
        }
        if self.max_response_bytes < 64 * 1024 {
            problems.push("max_response_bytes must be at least 65536".into());
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("initial_backoff", self.initial_backoff),
            ("delete_timeout", self.delete_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("{name} must be more than zero"));
            }
        }
        match url {
            Some(url) if problems.is_empty() => Ok(url),
            _ => Err(StoreError::Invalid(format!(
                "OpenSearch options: {}",
                problems.join("; ")
            ))),
        }
    }
}

impl std::fmt::Debug for OpenSearchOptions {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchOptions")
            .field("url", &self.url)
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_certificate_pem", &self.ca_certificate_pem.is_some())
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("refresh", &self.refresh)
            .field("number_of_shards", &self.number_of_shards)
            .field("number_of_replicas", &self.number_of_replicas)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("delete_timeout", &self.delete_timeout)
            .finish()
    }
}

/// OpenSearch's index name rules (lower case, no path or pattern characters), kept
/// strict so the name is safe as one URL path segment.
fn check_index_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if name.is_empty() || name.len() > 200 {
        return Err("index name must have 1 to 200 characters".into());
    }
    if !name.chars().all(allowed) {
        return Err(format!(
            "index name {name:?} may only hold a-z, 0-9, '-', '_' and '.'"
        ));
    }
    if name.starts_with(['-', '_', '.', '+']) {
        return Err(format!(
            "index name {name:?} must not start with '-', '_' or '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_report_every_problem_at_once() {
        let mut options = OpenSearchOptions::new("ftp://admin:secret@host:9200");
        options.index = "Cases/*".into();
        options.password = Some("secret".into());
        options.bulk_max_bytes = 10;
        options.request_timeout = Duration::ZERO;
        let StoreError::Invalid(message) = options.check().unwrap_err() else {
            panic!("invalid options are Invalid");
        };
        for part in [
            "scheme ftp",
            "must not hold credentials",
            "index name",
            "password is set without a username",
            "bulk_max_bytes",
            "request_timeout",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert!(
            !message.contains("secret"),
            "no secret in errors: {message}"
        );
        assert!(
            OpenSearchOptions::new("https://opensearch:9200/prefix")
                .check()
                .is_ok()
        );
        assert!(OpenSearchOptions::new("not a url").check().is_err());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let mut options = OpenSearchOptions::new("https://opensearch:9200");
        options.username = Some("casescope".into());
        options.password = Some("hunter2".into());
        let text = format!("{options:?}");
        assert!(
            !text.contains("hunter2") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn index_names_follow_opensearch_rules() {
        assert!(check_index_name("casescope-events").is_ok());
        assert!(check_index_name("casescope-test-123_a.b").is_ok());
        for bad in [
            "", "Upper", "_hidden", "-x", "a b", "a/b", "a*", "a,b", "a#b",
        ] {
            assert!(check_index_name(bad).is_err(), "{bad:?}");
        }
    }
}
