//! What `casescope serve` runs on: the configuration resolved from the command line,
//! the environment and the file, and the backends it names opened — databases (SQLite
//! files or PostgreSQL), the bus (in-process or NATS JetStream) and the event store
//! (tantivy or OpenSearch).

use crate::ServeArgs;
use anyhow::{Context, bail};
use casescope_bus::{Bus, InProcessBus, JetStreamBus, JetStreamOptions};
use casescope_db::{Database, DbOptions, redact_url};
use casescope_eventstore::{
    EventStore, OpenSearchOptions, OpenSearchStore, TantivyOptions, TantivyStore,
};
use casescope_runtime::config::{Config, EventStoreConfig, Mode, OpenSearchConfig, Settings};
use std::path::Path;
use std::sync::Arc;

pub(super) fn resolve_config(args: ServeArgs) -> anyhow::Result<Config> {
    let env = Settings::from_env(|name| std::env::var(name).ok());
    let file_path = args
        .config
        .clone()
        .or_else(|| std::env::var_os("CASESCOPE_CONFIG").map(Into::into));
    let file = match file_path {
        Some(path) => Settings::from_file(&path)?,
        None => Settings::default(),
    };
    let mut service_addrs = std::collections::BTreeMap::new();
    for pair in &args.service_addrs {
        let Some((name, url)) = pair.split_once('=') else {
            bail!("--service-addr {pair:?} is not NAME=URL (e.g. cases=http://cases:7700)");
        };
        service_addrs.insert(name.trim().to_string(), url.trim().to_string());
    }
    let flags = Settings {
        service: args.service,
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        nats_url: args.nats_url,
        nats_namespace: args.nats_namespace,
        log_format: args.log_format,
        service_addrs,
        ..Settings::default()
    };
    Ok(flags.over(env.over(file)).resolve()?)
}

pub(super) fn runs(config: &Config, service: &str) -> bool {
    match &config.mode {
        Mode::AllInOne => true,
        Mode::Service(name) => name == service,
    }
}

pub(super) async fn sqlite(dir: &Path, service: &str) -> anyhow::Result<Database> {
    let path = dir.join(format!("{service}.sqlite"));
    let url = format!("sqlite://{}", path.display());
    Database::connect(&url, &DbOptions::default())
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The database of `service`: SQLite under the data dir, or the configured PostgreSQL.
pub(super) async fn database(config: &Config, service: &'static str) -> anyhow::Result<Database> {
    let db = match &config.mode {
        Mode::AllInOne => {
            let dir = config.data_dir.join("db");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            sqlite(&dir, service).await?
        }
        Mode::Service(_) => {
            let url = config
                .database_url
                .as_deref()
                .context("one-service mode needs database_url (validated earlier)")?;
            let options = DbOptions {
                max_connections: config.max_db_connections,
                ..DbOptions::default()
            };
            Database::connect(url, &options)
                .await
                .with_context(|| format!("cannot open database {}", redact_url(url)))?
        }
    };
    Ok(db)
}

pub(super) async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match &config.mode {
        Mode::AllInOne => Arc::new(InProcessBus::default()),
        Mode::Service(_) => {
            let url = config
                .nats_url
                .as_deref()
                .context("one-service mode needs nats_url")?;
            let mut options = JetStreamOptions::new(url);
            options.namespace = config.nats_namespace.clone();
            Arc::new(
                JetStreamBus::connect(&options)
                    .await
                    .with_context(|| format!("cannot connect to NATS at {}", redact_url(url)))?,
            )
        }
    })
}

/// The event store of the ingest service, and a description of it for the logs.
pub(super) async fn open_event_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn EventStore>, String)> {
    match &config.event_store {
        EventStoreConfig::Tantivy => {
            let index_dir = config.data_dir.join("index");
            let store =
                TantivyStore::open(&index_dir, &TantivyOptions::default()).with_context(|| {
                    format!("cannot open the event index in {}", index_dir.display())
                })?;
            Ok((
                Arc::new(store),
                format!("tantivy in {}", index_dir.display()),
            ))
        }
        EventStoreConfig::OpenSearch(settings) => {
            let options = opensearch_options(settings)?;
            let url = redact_url(&options.url);
            let index = options.index.clone();
            tracing::info!(url = %url, index = %index, "connecting to the OpenSearch event store");
            let store = OpenSearchStore::open(options).await.with_context(|| {
                format!("cannot open the OpenSearch event store at {url} (index {index})")
            })?;
            Ok((
                Arc::new(store),
                format!("opensearch at {url}, index {index}"),
            ))
        }
    }
}

/// The store's options: its defaults, overridden by what is configured.
pub(super) fn opensearch_options(settings: &OpenSearchConfig) -> anyhow::Result<OpenSearchOptions> {
    let mut options = OpenSearchOptions::new(settings.url.clone());
    if let Some(index) = &settings.index {
        options.index = index.clone();
    }
    options.username = settings.username.clone();
    options.password = settings
        .password
        .as_ref()
        .map(|password| password.expose().to_string());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the OpenSearch CA file {}", path.display()))?;
        options.ca_certificate_pem = Some(pem);
    }
    options.danger_accept_invalid_certs = settings.insecure;
    if let Some(timeout) = settings.request_timeout {
        options.request_timeout = timeout;
    }
    if let Some(timeout) = settings.connect_timeout {
        options.connect_timeout = timeout;
    }
    if let Some(bytes) = settings.bulk_max_bytes {
        options.bulk_max_bytes = bytes;
    }
    if let Some(retries) = settings.max_retries {
        options.max_retries = retries;
    }
    options.number_of_shards = settings.number_of_shards;
    options.number_of_replicas = settings.number_of_replicas;
    Ok(options)
}
