//! `casescope serve`: resolves configuration, opens storage and the bus for the chosen
//! mode, starts the services and serves gRPC + HTTP on one port until SIGTERM/SIGINT,
//! then shuts down in order: mark not-ready, stop accepting and drain requests, stop
//! background work (consumers finish their batch, the outbox relay flushes), close
//! databases, flush telemetry — each step bounded by the shutdown timeout.

mod backends;
mod integrations;
mod report;

use crate::ServeArgs;
use crate::accept;
use crate::serve_gateway::{self, guarded};
use crate::server_http::{self, Readiness};
use anyhow::{Context, bail};
use backends::*;
use casescope_bus::facts::{OnCaseFacts, OnFileIndexed, PurgeCase, SkipDeletedCases};
use casescope_bus::{Bus, ConsumerConfig, Outbox, run_consumer, subjects};
use casescope_db::{CasePurges, Database, run_periodically};
use casescope_eventstore::EventStore;
use casescope_ingest::{CasesClient, INGEST_CONSUMER, IngestApi, IngestSettings};
use casescope_proto::cases::v1::cases_service_server::CasesServiceServer;
use casescope_proto::cases::v1::file_records_service_server::FileRecordsServiceServer;
use casescope_proto::channel::{self, GrpcChannel};
use casescope_proto::detect::v1::detect_service_server::DetectServiceServer;
use casescope_proto::identity::with_service_identity;
use casescope_proto::ingest::v1::ingest_service_server::IngestServiceServer;
use casescope_proto::integrations::v1::integrations_service_server::IntegrationsServiceServer;
use casescope_proto::ioc::v1::ioc_enrichment_service_server::IocEnrichmentServiceServer;
use casescope_proto::ioc::v1::ioc_service_server::IocServiceServer;
use casescope_proto::report::v1::report_service_server::ReportServiceServer;
use casescope_runtime::config::{Config, EventStoreConfig, Mode};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Services this release can run.
const IMPLEMENTED: &[&str] = &[
    "cases",
    "ingest",
    "detect",
    "ioc",
    "report",
    "integrations",
    "gateway",
];

/// Runs `casescope serve` with telemetry until a signal (or a failure) stops it.
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
    if let Mode::Service(name) = &config.mode
        && !IMPLEMENTED.contains(&name.as_str())
    {
        bail!(
            "the {name} service is not implemented in this version; services that run on their own: {} \
             (see docs/architecture.md)",
            IMPLEMENTED.join(", ")
        );
    }
    let bus = open_bus(&config).await?;
    let background = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut routes = tonic::service::Routes::builder();
    let mut databases: Vec<(&'static str, Database)> = Vec::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let mut serving: Vec<&'static str> = Vec::new();
    let mut event_store: Option<String> = None;

    let mut remote = crate::channels::RemoteChannels::new();
    let mut readiness_store: Option<Arc<dyn EventStore>> = None;
    let key = serve_gateway::internal_key(&config)?;

    let mut gate = None;
    let mut gateway_channel: Option<GrpcChannel> = None;
    if runs(&config, "gateway") {
        let db = database(&config, "gateway").await?;
        db.migrate(casescope_gateway::ALL_MIGRATIONS)
            .await
            .context("cannot migrate the gateway database")?;
        let parts =
            serve_gateway::start(&config, &db, key.clone(), &mut tasks, &background).await?;
        gate = Some(parts.gate);
        routes.add_service(parts.auth.clone());
        routes.add_service(parts.admin);
        let members = guarded(parts.members, &key);
        gateway_channel = Some(channel::in_process(
            tonic::service::Routes::new(members.clone()).prepare(),
        ));
        routes.add_service(members);
        health_reporter
            .set_serving::<casescope_proto::gateway::v1::auth_service_server::AuthServiceServer<
                casescope_gateway::AuthApi,
            >>()
            .await;
        serving.push("casescope.gateway.v1.AuthService");
        databases.push(("gateway", db));
    }

    let mut cases_channel: Option<GrpcChannel> = None;
    // In one process the cases service calls ingest and detect, which start after it.
    let mut ingest_target: Option<channel::DeferredTarget> = None;
    let mut detect_target: Option<channel::DeferredTarget> = None;
    if runs(&config, "cases") {
        let db = database(&config, "cases").await?;
        db.migrate(casescope_cases::ALL_MIGRATIONS)
            .await
            .context("cannot migrate the cases database")?;
        let outbox = Outbox::new(db.clone(), bus.clone());
        tasks.spawn(
            outbox
                .clone()
                .relay(Duration::from_secs(2), background.clone()),
        );
        let peer = |service: &'static str, target: &mut Option<channel::DeferredTarget>| {
            if runs(&config, service) {
                let (deferred, set) = channel::deferred(service);
                *target = Some(set);
                Some(deferred)
            } else {
                None
            }
        };
        let ingest_here = peer("ingest", &mut ingest_target);
        let detect_here = peer("detect", &mut detect_target);
        let events = match ingest_here {
            Some(channel) => Some(channel),
            None if config.service_addrs.contains_key("ingest") => {
                Some(remote.channel(&config, "ingest").await?)
            }
            None => None,
        };
        let detections = match detect_here {
            Some(channel) => Some(channel),
            None if config.service_addrs.contains_key("detect") => {
                Some(remote.channel(&config, "detect").await?)
            }
            None => None,
        };
        let mut api = casescope_cases::CasesApi::new(db.clone(), outbox);
        // One process runs every stage; a cluster names the ones it deploys.
        let stages = config
            .file_stages
            .clone()
            .unwrap_or_else(|| match config.mode {
                Mode::AllInOne => casescope_cases::DEFAULT_FILE_STAGES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                Mode::Service(_) => Vec::new(),
            });
        api = api.with_file_stages(stages);
        match events {
            Some(events) => {
                api = api.with_peers(
                    with_service_identity(events, key.clone(), "cases"),
                    detections.map(|channel| with_service_identity(channel, key.clone(), "cases")),
                );
            }
            None => tracing::warn!(
                "the timeline is unavailable: the cases service needs the ingest service's \
                 address (CASESCOPE_INGEST_ADDR)"
            ),
        }
        tasks.spawn(api.clone().run_annotation_jobs(background.clone()));
        // Each file's status follows its downstream stages' facts.
        let stage_facts = ConsumerConfig {
            ack_wait: config.lease_ttl,
            max_deliver: 10,
            batch: 4,
            ..ConsumerConfig::new(
                casescope_cases::CASES_FILE_STAGES_CONSUMER,
                subjects::file_facts("*"),
            )
        };
        let handler = Arc::new(casescope_cases::StageFacts(api.clone()));
        let (consumer_bus, consumer_stop) = (bus.clone(), background.clone());
        tasks.spawn(async move {
            if let Err(error) =
                run_consumer(consumer_bus, stage_facts, handler, consumer_stop).await
            {
                tracing::error!(%error, "the cases file-stages consumer stopped");
            }
        });
        let sweeper = api.clone();
        tasks.spawn(run_periodically(
            "cases-history",
            Duration::from_secs(3600),
            background.clone(),
            move || {
                let sweeper = sweeper.clone();
                async move { sweeper.sweep_history().await }
            },
        ));
        let cases_server = guarded(
            CasesServiceServer::new(api.clone())
                .max_decoding_message_size(casescope_cases::MAX_REQUEST_BYTES),
            &key,
        );
        let records_server = guarded(FileRecordsServiceServer::new(api), &key);
        let cases_routes =
            tonic::service::Routes::new(cases_server.clone()).add_service(records_server.clone());
        cases_channel = Some(channel::in_process(cases_routes.prepare()));
        routes.add_service(cases_server);
        routes.add_service(records_server);
        health_reporter
            .set_serving::<CasesServiceServer<casescope_cases::CasesApi>>()
            .await;
        serving.push("casescope.cases.v1.CasesService");
        databases.push(("cases", db));
    }

    let mut ingest_channel: Option<GrpcChannel> = None;
    if runs(&config, "ingest") {
        let db = database(&config, "ingest").await?;
        db.migrate(casescope_ingest::ALL_MIGRATIONS)
            .await
            .context("cannot migrate the ingest database")?;
        let data_dir = config.data_dir.join("ingest");
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let (store, description) = open_event_store(&config).await?;
        event_store = Some(description);
        readiness_store = Some(store.clone());
        casescope_runtime::metrics::metrics().zero_ingest(match config.event_store {
            EventStoreConfig::Tantivy => "tantivy",
            EventStoreConfig::OpenSearch(_) => "opensearch",
        });
        let cases = CasesClient::new(with_service_identity(
            match cases_channel.clone() {
                Some(channel) => channel,
                None => remote.channel(&config, "cases").await?,
            },
            key.clone(),
            "ingest",
        ));
        let mut settings = IngestSettings::new(data_dir.clone());
        settings.blobs = casescope_ingest::BlobStore::from_config(&config.evidence_store, data_dir)
            .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(evidence_store = ?settings.blobs, "evidence store");
        settings.lease_ttl = config.lease_ttl;
        settings.reconcile_period = config.reconcile_period;
        let outbox = Outbox::new(db.clone(), bus.clone());
        tasks.spawn(
            outbox
                .clone()
                .relay(Duration::from_secs(2), background.clone()),
        );
        let api = IngestApi::new(db.clone(), settings.clone(), cases, outbox, store);
        let consumer = ConsumerConfig {
            ack_wait: settings.lease_ttl,
            max_deliver: u64::try_from(settings.max_attempts).unwrap_or(5) + 2,
            // Files in flight at once; memory per file is bounded by the stage's batches.
            batch: 4,
            ..ConsumerConfig::new(INGEST_CONSUMER, subjects::job(casescope_ingest::STAGE))
        };
        let stage = Arc::new(SkipDeletedCases::new(
            api.stage(),
            CasePurges::new(db.clone()),
        ));
        let consumer_bus = bus.clone();
        let consumer_stop = background.clone();
        tasks.spawn(async move {
            if let Err(error) = run_consumer(consumer_bus, consumer, stage, consumer_stop).await {
                tracing::error!(%error, "the ingest consumer stopped");
            }
        });
        let purger = api.purger();
        spawn_case_purges(
            &mut tasks,
            &bus,
            purger.clone(),
            casescope_ingest::INGEST_CASE_FACTS_CONSUMER,
            settings.lease_ttl,
            &background,
        );
        let reconciler = api.reconciler();
        tasks.spawn(run_periodically(
            "ingest",
            settings.reconcile_period,
            background.clone(),
            move || {
                let reconciler = reconciler.clone();
                let purger = purger.clone();
                async move {
                    Ok::<usize, String>(
                        reconciler.pass().await?
                            + purger.pass().await?
                            + purger.archiver().pass().await?,
                    )
                }
            },
        ));
        let server = guarded(
            IngestServiceServer::new(api).max_decoding_message_size(
                (settings.max_chunk_bytes + 64 * 1024)
                    .max(casescope_ingest::MAX_QUERY_REQUEST_BYTES),
            ),
            &key,
        );
        ingest_channel = Some(channel::in_process(
            tonic::service::Routes::new(server.clone()).prepare(),
        ));
        if let (Some(target), Some(channel)) = (&ingest_target, &ingest_channel) {
            target.set(channel.clone());
        }
        routes.add_service(server);
        health_reporter
            .set_serving::<IngestServiceServer<IngestApi>>()
            .await;
        serving.push("casescope.ingest.v1.IngestService");
        databases.push(("ingest", db));
    }

    let mut detect_channel: Option<GrpcChannel> = None;
    if runs(&config, "detect") {
        let db = database(&config, "detect").await?;
        db.migrate(casescope_detect::ALL_MIGRATIONS)
            .await
            .context("cannot migrate the detect database")?;
        casescope_runtime::metrics::metrics().zero_detect();
        let events = casescope_detect::EventsClient::new(
            with_service_identity(
                match ingest_channel.clone() {
                    Some(channel) => channel,
                    None => remote.channel(&config, "ingest").await?,
                },
                key.clone(),
                "detect",
            ),
            casescope_runtime::trace_context::inject_into_request,
        );
        let mut settings = casescope_detect::DetectSettings {
            lease_ttl: config.lease_ttl,
            reconcile_period: config.reconcile_period,
            ..casescope_detect::DetectSettings::default()
        };
        if let Some(path) = &config.logsource_mapping {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "CASESCOPE_LOGSOURCE_MAPPING: cannot read {}",
                    path.display()
                )
            })?;
            let mapping = casescope_sigma::LogsourceMapping::parse(&text).map_err(|why| {
                anyhow::anyhow!("CASESCOPE_LOGSOURCE_MAPPING {}: {why}", path.display())
            })?;
            settings.mapping = std::sync::Arc::new(mapping);
        }
        let outbox = Outbox::new(db.clone(), bus.clone());
        tasks.spawn(
            outbox
                .clone()
                .relay(Duration::from_secs(2), background.clone()),
        );
        let api = casescope_detect::DetectApi::new(db.clone(), settings.clone(), outbox, events);
        api.seed_builtin_rules()
            .await
            .map_err(|error| anyhow::anyhow!("cannot import the built-in rule pack: {error}"))?;
        let consumer = ConsumerConfig {
            ack_wait: settings.lease_ttl,
            max_deliver: u64::try_from(settings.max_attempts).unwrap_or(5) + 2,
            // Files evaluated at once; each run uses every core for its batches.
            batch: 2,
            ..ConsumerConfig::new(
                casescope_detect::DETECT_CONSUMER,
                subjects::job(casescope_detect::STAGE),
            )
        };
        let stage = Arc::new(SkipDeletedCases::new(
            api.stage(),
            CasePurges::new(db.clone()),
        ));
        let consumer_bus = bus.clone();
        let consumer_stop = background.clone();
        tasks.spawn(async move {
            if let Err(error) = run_consumer(consumer_bus, consumer, stage, consumer_stop).await {
                tracing::error!(%error, "the detect consumer stopped");
            }
        });
        // Newly indexed (or archived) files, from the ingest service's facts.
        let indexed = ConsumerConfig {
            ack_wait: settings.lease_ttl,
            max_deliver: u64::try_from(settings.max_attempts).unwrap_or(5) + 2,
            batch: 2,
            ..ConsumerConfig::new(
                casescope_detect::DETECT_INDEXED_CONSUMER,
                subjects::file_facts("*"),
            )
        };
        let facts = Arc::new(OnFileIndexed::new(api.stage(), CasePurges::new(db.clone())));
        let (consumer_bus, consumer_stop) = (bus.clone(), background.clone());
        tasks.spawn(async move {
            if let Err(error) = run_consumer(consumer_bus, indexed, facts, consumer_stop).await {
                tracing::error!(%error, "the detect file-facts consumer stopped");
            }
        });
        tasks.spawn(api.reconciler().run(background.clone()));
        let purger = casescope_detect::CasePurger::new(&api.stage());
        spawn_case_purges(
            &mut tasks,
            &bus,
            purger.clone(),
            casescope_detect::DETECT_CASE_FACTS_CONSUMER,
            settings.lease_ttl,
            &background,
        );
        tasks.spawn(run_periodically(
            "detect-purges",
            settings.reconcile_period,
            background.clone(),
            move || {
                let purger = purger.clone();
                async move { purger.pass().await }
            },
        ));
        let server = guarded(
            DetectServiceServer::new(api)
                .max_decoding_message_size(settings.max_import_chunk_bytes + 64 * 1024),
            &key,
        );
        let in_process = channel::in_process(tonic::service::Routes::new(server.clone()).prepare());
        if let Some(target) = &detect_target {
            target.set(in_process.clone());
        }
        detect_channel = Some(in_process);
        routes.add_service(server);
        health_reporter
            .set_serving::<DetectServiceServer<casescope_detect::DetectApi>>()
            .await;
        serving.push("casescope.detect.v1.DetectService");
        databases.push(("detect", db));
    }

    let mut ioc_channel: Option<GrpcChannel> = None;
    if runs(&config, "ioc") {
        let db = database(&config, "ioc").await?;
        db.migrate(casescope_ioc_service::ALL_MIGRATIONS)
            .await
            .context("cannot migrate the ioc database")?;
        casescope_runtime::metrics::metrics().zero_ioc();
        let events = casescope_ioc_service::EventsClient::new(
            with_service_identity(
                match ingest_channel.clone() {
                    Some(channel) => channel,
                    None => remote.channel(&config, "ingest").await?,
                },
                key.clone(),
                "ioc",
            ),
            casescope_runtime::trace_context::inject_into_request,
        );
        let settings = casescope_ioc_service::IocSettings {
            lease_ttl: config.lease_ttl,
            reconcile_period: config.reconcile_period,
            ..casescope_ioc_service::IocSettings::default()
        };
        let outbox = Outbox::new(db.clone(), bus.clone());
        tasks.spawn(
            outbox
                .clone()
                .relay(Duration::from_secs(2), background.clone()),
        );
        let api = casescope_ioc_service::IocApi::new(db.clone(), settings.clone(), outbox, events);
        let max_deliver = u64::try_from(settings.max_attempts).unwrap_or(5) + 2;
        // Hunt jobs (re-hunts after IOC changes, on request, from the reconciler).
        let jobs = ConsumerConfig {
            ack_wait: settings.lease_ttl,
            max_deliver,
            batch: 2,
            ..ConsumerConfig::new(
                casescope_ioc_service::IOC_CONSUMER,
                subjects::job(casescope_ioc_service::STAGE),
            )
        };
        let stage = Arc::new(SkipDeletedCases::new(
            api.stage(),
            CasePurges::new(db.clone()),
        ));
        let (consumer_bus, consumer_stop) = (bus.clone(), background.clone());
        tasks.spawn(async move {
            if let Err(error) = run_consumer(consumer_bus, jobs, stage, consumer_stop).await {
                tracing::error!(%error, "the ioc hunt consumer stopped");
            }
        });
        // Newly indexed (or archived) files, from the ingest service's facts.
        let indexed = ConsumerConfig {
            ack_wait: settings.lease_ttl,
            max_deliver,
            batch: 2,
            ..ConsumerConfig::new(
                casescope_ioc_service::IOC_INDEXED_CONSUMER,
                subjects::file_facts("*"),
            )
        };
        let facts = Arc::new(OnFileIndexed::new(api.stage(), CasePurges::new(db.clone())));
        let (consumer_bus, consumer_stop) = (bus.clone(), background.clone());
        tasks.spawn(async move {
            if let Err(error) = run_consumer(consumer_bus, indexed, facts, consumer_stop).await {
                tracing::error!(%error, "the ioc file-facts consumer stopped");
            }
        });
        tasks.spawn(api.reconciler().run(background.clone()));
        let purger = casescope_ioc_service::CasePurger::new(&api.stage());
        spawn_case_purges(
            &mut tasks,
            &bus,
            purger.clone(),
            casescope_ioc_service::IOC_CASE_FACTS_CONSUMER,
            settings.lease_ttl,
            &background,
        );
        tasks.spawn(run_periodically(
            "ioc-purges",
            settings.reconcile_period,
            background.clone(),
            move || {
                let purger = purger.clone();
                async move { purger.pass().await }
            },
        ));
        let server = guarded(
            IocServiceServer::new(api.clone()).max_decoding_message_size(
                settings
                    .max_import_chunk_bytes
                    .max(casescope_ioc_service::MAX_FILE_IMPORT_BYTES)
                    + 64 * 1024,
            ),
            &key,
        );
        let enrichment = guarded(IocEnrichmentServiceServer::new(api.clone()), &key);
        ioc_channel = Some(channel::in_process(
            tonic::service::Routes::new(server.clone())
                .add_service(enrichment.clone())
                .prepare(),
        ));
        routes.add_service(server);
        routes.add_service(enrichment);
        health_reporter
            .set_serving::<IocServiceServer<casescope_ioc_service::IocApi>>()
            .await;
        serving.push("casescope.ioc.v1.IocService");
        databases.push(("ioc", db));
    }

    if runs(&config, "report") {
        let peers = report::ReportPeers {
            cases: cases_channel.clone(),
            detect: detect_channel.clone(),
            ioc: ioc_channel.clone(),
            gateway: gateway_channel.clone(),
        };
        let (server, db) = report::start(
            &config,
            &bus,
            &key,
            peers,
            &mut remote,
            &mut tasks,
            &background,
        )
        .await?;
        routes.add_service(server);
        health_reporter
            .set_serving::<ReportServiceServer<casescope_report::ReportApi>>()
            .await;
        serving.push("casescope.report.v1.ReportService");
        databases.push(("report", db));
    }

    if runs(&config, "integrations") {
        let peers = integrations::IntegrationsPeers {
            cases: cases_channel.clone(),
            ioc: ioc_channel.clone(),
        };
        let (server, db) = integrations::start(
            &config,
            &bus,
            &key,
            peers,
            &mut remote,
            &mut tasks,
            &background,
        )
        .await?;
        routes.add_service(server);
        health_reporter
            .set_serving::<IntegrationsServiceServer<casescope_integrations::IntegrationsApi>>()
            .await;
        serving.push("casescope.integrations.v1.IntegrationsService");
        databases.push(("integrations", db));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(casescope_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build gRPC reflection")?;
    routes.add_service(health_service);
    routes.add_service(reflection);
    let readiness = Readiness::new(bus.clone(), databases.clone(), readiness_store);
    let mut grpc = routes.routes().into_axum_router();
    if matches!(&config.mode, Mode::Service(name) if name == "gateway") {
        grpc = serve_gateway::forward_remote_services(grpc, &config, &mut remote).await?;
    }
    let app = server_http::router(grpc, gate, readiness.clone(), &config.cors_allowed_origins);

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    tracing::info!(
        listen = %config.listen,
        process = process_name,
        data_dir = %config.data_dir.display(),
        services = ?serving,
        event_store = event_store.as_deref().unwrap_or("none (no ingest service here)"),
        "casescope is serving"
    );
    let drain = {
        let shutdown = shutdown.clone();
        let readiness = readiness.clone();
        async move {
            shutdown.cancelled().await;
            readiness.set_draining();
            for service in serving {
                health_reporter
                    .set_service_status(service, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            tracing::info!("shutting down: draining requests");
        }
    };
    let server = accept::serve(listener, app, drain);
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {}
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
    for (_, db) in &databases {
        db.close().await;
    }
    tracing::info!("casescope stopped");
    Ok(())
}

/// Deleting a case deletes a service's data: a durable consumer of case facts records
/// the purge when `case.deleted` arrives (the service's reconciler finishes it,
/// whatever happens to the message).
fn spawn_case_purges<P: PurgeCase>(
    tasks: &mut JoinSet<()>,
    bus: &Arc<dyn Bus>,
    purger: P,
    consumer_name: &str,
    lease_ttl: Duration,
    shutdown: &CancellationToken,
) {
    let config = ConsumerConfig {
        ack_wait: lease_ttl,
        max_deliver: 10,
        batch: 2,
        ..ConsumerConfig::new(consumer_name, subjects::case_facts("*"))
    };
    let handler = Arc::new(OnCaseFacts(purger));
    let bus = bus.clone();
    let shutdown = shutdown.clone();
    let name = consumer_name.to_string();
    tasks.spawn(async move {
        if let Err(error) = run_consumer(bus, config, handler, shutdown).await {
            tracing::error!(%error, consumer = name, "the case-facts consumer stopped");
        }
    });
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
