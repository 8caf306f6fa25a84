//! Typed configuration, resolved as command-line flags > environment > config file >
//! defaults, and validated as a whole before any port binds: every problem is reported
//! at once. [`ENV_VARS`] is the one list of `CASESCOPE_*` variables (docs/configuration.md
//! documents each; a test keeps the two in step).

mod cors;
mod discovery;
mod env_vars;
mod event_store;
mod evidence_store;
mod gateway;
mod integrations;
mod llm;
mod oidc;
mod settings;

pub use discovery::ServiceDiscovery;
pub use event_store::{EVENT_STORES, EventStoreConfig, OpenSearchConfig, Secret};
pub use evidence_store::{EVIDENCE_STORES, EvidenceStoreConfig, S3Config};
pub use gateway::{GatewayConfig, IpNet};
pub use integrations::IntegrationsConfig;
pub use llm::{AiConfig, LlmEndpointConfig};
pub use oidc::OidcConfig;
pub use settings::Settings;

use event_store::EventStoreSettings;
use evidence_store::EvidenceStoreSettings;
use gateway::GatewaySettings;
use integrations::IntegrationsSettings;
use llm::LlmSettings;
use oidc::OidcSettings;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use env_vars::ENV_VARS;

/// The services of the brief, each a library crate; `casescope serve --service NAME`.
pub const SERVICE_NAMES: &[&str] = &[
    "cases",
    "ingest",
    "detect",
    "ioc",
    "report",
    "integrations",
    "gateway",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every service in one process on embedded storage and the in-process bus.
    AllInOne,
    /// One service, on PostgreSQL and NATS JetStream.
    Service(String),
}

/// Resolved, validated configuration of one process.
#[derive(Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    pub nats_namespace: Option<String>,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    pub lease_ttl: Duration,
    pub reconcile_period: Duration,
    pub max_db_connections: u32,
    /// gRPC addresses of other services, by service name (one-service mode).
    pub service_addrs: BTreeMap<String, String>,
    /// How those addresses are turned into connections.
    pub service_discovery: ServiceDiscovery,
    /// Where the ingest service keeps its events.
    pub event_store: EventStoreConfig,
    /// Where the ingest service keeps evidence blobs and case archives.
    pub evidence_store: EvidenceStoreConfig,
    /// Browser origins granted cross-origin access (exact; empty: none).
    pub cors_allowed_origins: Vec<String>,
    /// The detect service's logsource mapping file, replacing the built-in one.
    pub logsource_mapping: Option<PathBuf>,
    /// The report service's template directory (`report.html.j2`, `report.md.j2`),
    /// replacing the built-in layouts.
    pub report_template_dir: Option<PathBuf>,
    /// The TrueType fonts of PDF reports (regular, bold); `None`: the defaults found on
    /// the machine (DejaVu Sans, Liberation Sans).
    pub report_pdf_font: Option<PathBuf>,
    pub report_pdf_bold_font: Option<PathBuf>,
    /// The stages a file goes through after ingest; its status is `ready` when all are
    /// done (the cases service; `None`: every stage in one process, none in a cluster).
    pub file_stages: Option<Vec<String>>,
    /// The gateway: internal key, first administrator, signing keys, limits, audit.
    pub gateway: GatewayConfig,
    /// AI report summaries: the LLM endpoint and its bounds.
    pub ai: AiConfig,
    /// The integrations service: its secrets key, allowed networks, secrets directory.
    pub integrations: IntegrationsConfig,
}

impl Settings {
    /// Validates and resolves, reporting every problem at once.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mode = match self.service.as_deref() {
            None | Some("") | Some("all") => Mode::AllInOne,
            Some(name) if SERVICE_NAMES.contains(&name) => Mode::Service(name.to_string()),
            Some(name) => {
                errors.push(format!(
                    "service: unknown service {name:?}; expected one of {}",
                    SERVICE_NAMES.join(", ")
                ));
                Mode::AllInOne
            }
        };
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:7700".to_string());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            errors.push(format!(
                "listen: {listen_text:?} is not an address like 127.0.0.1:7700"
            ));
            SocketAddr::from(([127, 0, 0, 1], 7700))
        });
        let seconds =
            |name: &str, value: Option<String>, default: u64, errors: &mut Vec<String>| {
                let Some(text) = value else {
                    return Duration::from_secs(default);
                };
                match text.trim().parse::<u64>() {
                    Ok(n) if n > 0 && n <= 86_400 => Duration::from_secs(n),
                    _ => {
                        errors.push(format!(
                            "{name}: {text:?} is not a whole number of seconds between 1 and 86400"
                        ));
                        Duration::from_secs(default)
                    }
                }
            };
        let shutdown_timeout = seconds(
            "shutdown_timeout_secs",
            self.shutdown_timeout_secs,
            20,
            &mut errors,
        );
        let lease_ttl = seconds("lease_ttl_secs", self.lease_ttl_secs, 30, &mut errors);
        let reconcile_period = seconds(
            "reconcile_period_secs",
            self.reconcile_period_secs,
            15,
            &mut errors,
        );
        let max_db_connections = match self.max_db_connections.as_deref().map(str::trim) {
            None => 10,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => {
                    errors.push(format!(
                        "max_db_connections: {text:?} is not a number between 1 and 500"
                    ));
                    10
                }
            },
        };
        let log_format = match self.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                errors.push(format!("log_format: {other:?} is not \"text\" or \"json\""));
                LogFormat::Text
            }
        };
        if let Mode::Service(name) = &mode {
            match self.database_url.as_deref() {
                None => errors.push(format!(
                    "database_url: required when running the {name} service alone (a postgres:// URL)"
                )),
                Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => errors.push(
                    "database_url: one-service mode needs a postgres:// URL".to_string(),
                ),
                Some(_) => {}
            }
            match self.nats_url.as_deref() {
                None => errors.push(format!(
                    "nats_url: required when running the {name} service alone (e.g. nats://127.0.0.1:4222)"
                )),
                Some(url) if !(url.starts_with("nats://") || url.starts_with("tls://")) => {
                    errors.push(format!("nats_url: {url:?} is not a nats:// or tls:// URL"))
                }
                Some(_) => {}
            }
        }
        if let Some(ns) = &self.nats_namespace
            && (ns.is_empty()
                || !ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            errors.push(format!(
                "nats_namespace: {ns:?} must be non-empty letters, digits, '_' or '-'"
            ));
        }
        for (name, addr) in &self.service_addrs {
            if !SERVICE_NAMES.contains(&name.as_str()) {
                errors.push(format!("service_addrs: unknown service {name:?}"));
            }
            if !(addr.starts_with("http://") || addr.starts_with("https://")) {
                errors.push(format!(
                    "{name} address: {addr:?} must be an http:// or https:// URL"
                ));
            }
        }
        let service_discovery = discovery::resolve(
            self.service_discovery,
            self.kubernetes_namespace,
            &mut errors,
        );
        let event_store = EventStoreSettings {
            event_store: self.event_store,
            url: self.opensearch_url,
            index: self.opensearch_index,
            username: self.opensearch_username,
            password: self.opensearch_password,
            password_file: self.opensearch_password_file,
            ca_file: self.opensearch_ca_file,
            insecure: self.opensearch_insecure,
            request_timeout_secs: self.opensearch_request_timeout_secs,
            connect_timeout_secs: self.opensearch_connect_timeout_secs,
            bulk_max_bytes: self.opensearch_bulk_max_bytes,
            max_retries: self.opensearch_max_retries,
            shards: self.opensearch_shards,
            replicas: self.opensearch_replicas,
        }
        .resolve(&mut errors);
        let evidence_store = EvidenceStoreSettings {
            evidence_store: self.evidence_store,
            bucket: self.s3_bucket,
            endpoint: self.s3_endpoint,
            region: self.s3_region,
            prefix: self.s3_prefix,
            access_key_id: self.s3_access_key_id,
            secret_access_key: self.s3_secret_access_key,
            secret_access_key_file: self.s3_secret_access_key_file,
            request_timeout_secs: self.s3_request_timeout_secs,
        }
        .resolve(&mut errors);
        let cors_allowed_origins = cors::resolve(self.cors_allowed_origins.as_deref(), &mut errors);
        let gateway = GatewaySettings {
            internal_key: self.internal_key,
            internal_key_file: self.internal_key_file,
            admin_password: self.admin_password,
            admin_password_file: self.admin_password_file,
            signing_key_file: self.signing_key_file,
            verify_key_files: self.verify_key_files,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            max_uploads_per_user: self.max_uploads_per_user,
            audit_retention_days: self.audit_retention_days,
            trusted_proxies: self.trusted_proxies,
            oidc: OidcSettings {
                issuer: self.oidc_issuer,
                client_id: self.oidc_client_id,
                client_secret: self.oidc_client_secret,
                client_secret_file: self.oidc_client_secret_file,
                redirect_uris: self.oidc_redirect_uris,
                loopback_redirects: self.oidc_loopback_redirects,
                scopes: self.oidc_scopes,
                username_claim: self.oidc_username_claim,
                groups_claim: self.oidc_groups_claim,
                role_map: self.oidc_role_map,
                default_role: self.oidc_default_role,
            },
        }
        .resolve(&mut errors);
        let ai = LlmSettings {
            ai_enabled: self.ai_enabled,
            url: self.llm_url,
            api: self.llm_api,
            model: self.llm_model,
            api_key: self.llm_api_key,
            api_key_file: self.llm_api_key_file,
            connect_timeout_secs: self.llm_connect_timeout_secs,
            first_token_timeout_secs: self.llm_first_token_timeout_secs,
            stall_timeout_secs: self.llm_stall_timeout_secs,
            total_timeout_secs: self.llm_total_timeout_secs,
            prompt_tokens: self.llm_prompt_tokens,
            answer_tokens: self.llm_answer_tokens,
            redact: self.llm_redact,
        }
        .resolve(&mut errors);
        let integrations = IntegrationsSettings {
            key: self.integrations_key,
            key_file: self.integrations_key_file,
            allow_nets: self.integrations_allow_nets,
            secrets_dir: self.integrations_secrets_dir,
        }
        .resolve(&mut errors);
        if let Mode::Service(name) = &mode
            && gateway.internal_key.is_none()
        {
            errors.push(format!(
                "internal_key: required when running the {name} service alone (the gateway and \
                 every service share it; CASESCOPE_INTERNAL_KEY or CASESCOPE_INTERNAL_KEY_FILE)"
            ));
        }
        if let Some(path) = &self.logsource_mapping
            && !path.is_file()
        {
            errors.push(format!(
                "logsource_mapping: {} is not a readable file",
                path.display()
            ));
        }
        if let Some(path) = &self.report_template_dir
            && !path.is_dir()
        {
            errors.push(format!(
                "report_template_dir: {} is not a readable directory",
                path.display()
            ));
        }
        for (name, path) in [
            ("report_pdf_font", &self.report_pdf_font),
            ("report_pdf_bold_font", &self.report_pdf_bold_font),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                errors.push(format!("{name}: {} is not a readable file", path.display()));
            }
        }
        let file_stages = self.file_stages.as_deref().map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<String>>()
        });
        if let Some(stages) = &file_stages {
            for stage in stages {
                if stage != "detect" && stage != "ioc_hunt" {
                    errors.push(format!(
                        "file_stages: unknown stage {stage:?} (detect, ioc_hunt, or empty for none)"
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Config {
            mode,
            listen,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./casescope-data")),
            database_url: self.database_url,
            nats_url: self.nats_url,
            nats_namespace: self.nats_namespace,
            // The evtx crate logs every chunk at info.
            log_filter: self.log.unwrap_or_else(|| "info,evtx=warn".to_string()),
            log_format,
            shutdown_timeout,
            lease_ttl,
            reconcile_period,
            max_db_connections,
            service_addrs: self.service_addrs,
            service_discovery,
            event_store,
            evidence_store,
            cors_allowed_origins,
            logsource_mapping: self.logsource_mapping,
            report_template_dir: self.report_template_dir,
            report_pdf_font: self.report_pdf_font,
            report_pdf_bold_font: self.report_pdf_bold_font,
            file_stages,
            gateway,
            ai,
            integrations,
        })
    }
}

impl std::fmt::Debug for Config {
    /// Passwords in URLs are shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .field(
                "nats_url",
                &self.nats_url.as_deref().map(redact_url_password),
            )
            .field("nats_namespace", &self.nats_namespace)
            .field("log_filter", &self.log_filter)
            .field("log_format", &self.log_format)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("reconcile_period", &self.reconcile_period)
            .field("max_db_connections", &self.max_db_connections)
            .field("service_addrs", &self.service_addrs)
            .field("service_discovery", &self.service_discovery)
            .field("event_store", &self.event_store)
            .field("evidence_store", &self.evidence_store)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("gateway", &self.gateway)
            .field("ai", &self.ai)
            .finish()
    }
}

impl std::fmt::Debug for Settings {
    /// Passwords in URLs are shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("service", &self.service)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .field(
                "nats_url",
                &self.nats_url.as_deref().map(redact_url_password),
            )
            .field("nats_namespace", &self.nats_namespace)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("shutdown_timeout_secs", &self.shutdown_timeout_secs)
            .field("lease_ttl_secs", &self.lease_ttl_secs)
            .field("reconcile_period_secs", &self.reconcile_period_secs)
            .field("max_db_connections", &self.max_db_connections)
            .field("service_addrs", &self.service_addrs)
            .field("service_discovery", &self.service_discovery)
            .field("kubernetes_namespace", &self.kubernetes_namespace)
            .field("event_store", &self.event_store)
            .field(
                "opensearch_url",
                &self.opensearch_url.as_deref().map(redact_url_password),
            )
            .field("opensearch_index", &self.opensearch_index)
            .field("opensearch_username", &self.opensearch_username)
            .field("opensearch_password", &self.opensearch_password)
            .field("opensearch_password_file", &self.opensearch_password_file)
            .field("opensearch_ca_file", &self.opensearch_ca_file)
            .field("opensearch_insecure", &self.opensearch_insecure)
            .field(
                "opensearch_request_timeout_secs",
                &self.opensearch_request_timeout_secs,
            )
            .field(
                "opensearch_connect_timeout_secs",
                &self.opensearch_connect_timeout_secs,
            )
            .field("opensearch_bulk_max_bytes", &self.opensearch_bulk_max_bytes)
            .field("opensearch_max_retries", &self.opensearch_max_retries)
            .field("opensearch_shards", &self.opensearch_shards)
            .field("opensearch_replicas", &self.opensearch_replicas)
            .field("evidence_store", &self.evidence_store)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_prefix", &self.s3_prefix)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field("s3_secret_access_key", &self.s3_secret_access_key)
            .field("s3_secret_access_key_file", &self.s3_secret_access_key_file)
            .field("s3_request_timeout_secs", &self.s3_request_timeout_secs)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`
/// (`postgres://cases:secret@db/cases` → `postgres://cases:***@db/cases`).
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_string(),
    }
}

/// Every configuration problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
