//! `casescope serve`: resolves configuration, opens storage and the bus for the chosen
//! mode, starts the services and serves gRPC + HTTP on one port until SIGTERM/SIGINT,
//! then shuts down in order: mark not-ready, stop accepting and drain requests, stop
//! background work (the outbox relay flushes), close databases, flush telemetry — each
//! step bounded by the shutdown timeout.

use crate::ServeArgs;
use crate::server_http::{self, Readiness};
use anyhow::{Context, bail};
use casescope_bus::{Bus, InProcessBus, JetStreamBus, JetStreamOptions, Outbox};
use casescope_db::{Database, DbOptions, redact_url};
use casescope_proto::cases::v1::cases_service_server::CasesServiceServer;
use casescope_runtime::config::{Config, Mode, Settings};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

fn resolve_config(args: ServeArgs) -> anyhow::Result<Config> {
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

/// What a process runs: its bus, and per service its database.
struct Storage {
    bus: Arc<dyn Bus>,
    cases_db: Database,
}

async fn open_storage(config: &Config) -> anyhow::Result<Storage> {
    match &config.mode {
        Mode::AllInOne => {
            let db_dir = config.data_dir.join("db");
            std::fs::create_dir_all(&db_dir)
                .with_context(|| format!("cannot create data directory {}", db_dir.display()))?;
            let db_dir = db_dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", db_dir.display()))?;
            let cases_db = sqlite(&db_dir, "cases").await?;
            Ok(Storage {
                bus: Arc::new(InProcessBus::default()),
                cases_db,
            })
        }
        Mode::Service(name) => {
            if name != "cases" {
                bail!(
                    "the {name} service is not implemented in this version; \
                     only `--service cases` can run on its own yet (see docs/architecture.md)"
                );
            }
            let (Some(nats_url), Some(database_url)) = (&config.nats_url, &config.database_url)
            else {
                bail!("one-service mode needs nats_url and database_url (validated earlier)");
            };
            let mut options = JetStreamOptions::new(nats_url.clone());
            options.namespace = config.nats_namespace.clone();
            let bus = JetStreamBus::connect(&options)
                .await
                .with_context(|| format!("cannot connect to NATS at {}", redact_url(nats_url)))?;
            let db_options = DbOptions {
                max_connections: config.max_db_connections,
                ..DbOptions::default()
            };
            let cases_db = Database::connect(database_url, &db_options)
                .await
                .with_context(|| format!("cannot open database {}", redact_url(database_url)))?;
            Ok(Storage {
                bus: Arc::new(bus),
                cases_db,
            })
        }
    }
}

async fn sqlite(dir: &Path, service: &str) -> anyhow::Result<Database> {
    let path = dir.join(format!("{service}.sqlite"));
    let url = format!("sqlite://{}", path.display());
    Database::connect(&url, &DbOptions::default())
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve_config(args)?;
    let process_name = match &config.mode {
        Mode::AllInOne => "all".to_string(),
        Mode::Service(name) => name.clone(),
    };
    let telemetry =
        casescope_runtime::telemetry::init(&process_name, &config.log_filter, config.log_format)?;
    let result = serve(config, &process_name).await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "casescope stopped with an error");
    }
    telemetry.shutdown();
    result
}

async fn serve(config: Config, process_name: &str) -> anyhow::Result<()> {
    let storage = open_storage(&config).await?;
    storage
        .cases_db
        .migrate(casescope_cases::ALL_MIGRATIONS)
        .await
        .context("cannot migrate the cases database")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;

    let background = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let cases_outbox = Outbox::new(storage.cases_db.clone(), storage.bus.clone());
    tasks.spawn(
        cases_outbox
            .clone()
            .relay(Duration::from_secs(2), background.clone()),
    );
    let cases = CasesServiceServer::new(casescope_cases::CasesApi::new(
        storage.cases_db.clone(),
        cases_outbox,
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CasesServiceServer<casescope_cases::CasesApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(casescope_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build gRPC reflection")?;
    let routes = tonic::service::Routes::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(cases)
        .clone()
        .routes();
    let readiness = Readiness::new(
        storage.bus.clone(),
        vec![("cases", storage.cases_db.clone())],
    );
    let app = server_http::router(routes, readiness.clone());

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    tracing::info!(
        listen = %config.listen,
        process = process_name,
        data_dir = %config.data_dir.display(),
        "casescope is serving"
    );
    let drain = {
        let shutdown = shutdown.clone();
        let readiness = readiness.clone();
        async move {
            shutdown.cancelled().await;
            readiness.set_draining();
            health_reporter
                .set_not_serving::<CasesServiceServer<casescope_cases::CasesApi>>()
                .await;
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            tracing::info!("shutting down: draining requests");
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(drain);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.context("server failed")?,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(config.shutdown_timeout).await;
        } => tracing::warn!(timeout = ?config.shutdown_timeout, "requests still running at the shutdown timeout; closing"),
    }

    background.cancel();
    let stop_tasks = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_timeout, stop_tasks)
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within the shutdown timeout");
    }
    storage.cases_db.close().await;
    tracing::info!("casescope stopped");
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}
