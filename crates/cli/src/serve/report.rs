//! The report service's part of `casescope serve`: its database, its job consumer,
//! reconciler and case purges, and its clients of the services it reads.

use super::backends::database;
use super::spawn_case_purges;
use crate::serve_gateway::guarded;
use anyhow::Context;
use casescope_bus::facts::SkipDeletedCases;
use casescope_bus::{Bus, ConsumerConfig, Outbox, run_consumer, subjects};
use casescope_db::{CasePurges, Database};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::identity::{InternalKey, with_service_identity};
use casescope_proto::report::v1::report_service_server::ReportServiceServer;
use casescope_runtime::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The channels of the services a report reads (in-process ones where they run here).
pub(super) struct ReportPeers {
    pub cases: Option<GrpcChannel>,
    pub detect: Option<GrpcChannel>,
    pub ioc: Option<GrpcChannel>,
    pub gateway: Option<GrpcChannel>,
}

/// Starts the report service; returns its server and database.
pub(super) async fn start(
    config: &Config,
    bus: &Arc<dyn Bus>,
    key: &InternalKey,
    here: ReportPeers,
    remote: &mut crate::channels::RemoteChannels,
    tasks: &mut JoinSet<()>,
    background: &CancellationToken,
) -> anyhow::Result<(
    casescope_proto::identity::Guarded<ReportServiceServer<casescope_report::ReportApi>>,
    Database,
)> {
    let db = database(config, "report").await?;
    db.migrate(casescope_report::ALL_MIGRATIONS)
        .await
        .context("cannot migrate the report database")?;
    let mut settings = casescope_report::ReportSettings {
        lease_ttl: config.lease_ttl,
        reconcile_period: config.reconcile_period,
        ..Default::default()
    };
    if let Some(dir) = &config.report_template_dir {
        settings.templates = casescope_report::Templates::from_dir(dir)
            .map_err(|error| anyhow::anyhow!("CASESCOPE_REPORT_TEMPLATE_DIR: {error}"))?;
        tracing::info!(dir = %dir.display(), "report templates of the deployment");
    }
    settings.pdf_fonts = match &config.report_pdf_font {
        Some(regular) => Some(
            casescope_report::PdfFonts::load(regular, config.report_pdf_bold_font.as_deref())
                .map_err(|error| anyhow::anyhow!("CASESCOPE_REPORT_PDF_FONT: {error}"))?,
        ),
        None => casescope_report::PdfFonts::discover(),
    };
    match &settings.pdf_fonts {
        Some(fonts) => tracing::info!(font = %fonts.origin, "PDF reports"),
        None => tracing::warn!(
            "no font for PDF reports (CASESCOPE_REPORT_PDF_FONT): PDF is refused, other formats work"
        ),
    }
    settings.ai = ai_settings(&config.ai)?;
    match (&settings.ai.endpoint, settings.ai.enabled) {
        (_, false) => {
            tracing::info!("AI report summaries are turned off (CASESCOPE_AI_ENABLED=false)")
        }
        (None, true) => {
            tracing::info!("no LLM endpoint (CASESCOPE_LLM_URL): AI report summaries are refused")
        }
        (Some(endpoint), true) => tracing::info!(
            api = endpoint.api.word(),
            url = %endpoint.url,
            model = %endpoint.model,
            redact = settings.ai.redact,
            "AI report summaries"
        ),
    }
    let identity = |channel: GrpcChannel| with_service_identity(channel, key.clone(), "report");
    let cases = match here.cases {
        Some(channel) => channel,
        None => remote
            .channel(config, "cases")
            .await
            .context("the report service reads cases (CASESCOPE_CASES_ADDR)")?,
    };
    let optional = |name: &'static str, local: Option<GrpcChannel>| async move {
        match local {
            Some(channel) => Ok::<_, anyhow::Error>(Some(channel)),
            None if config.service_addrs.contains_key(name) => {
                Ok(Some(remote_channel(config, name).await?))
            }
            None => {
                tracing::warn!(
                    service = name,
                    "reports will say this service's section is not available (no address)"
                );
                Ok(None)
            }
        }
    };
    let detect = optional("detect", here.detect).await?;
    let ioc = optional("ioc", here.ioc).await?;
    let gateway = optional("gateway", here.gateway).await?;
    let peers = casescope_report::Peers::new(
        identity(cases),
        detect.map(identity),
        ioc.map(identity),
        settings.peer_timeout,
    )
    .with_members(gateway.map(identity));
    let outbox = Outbox::new(db.clone(), bus.clone());
    tasks.spawn(
        outbox
            .clone()
            .relay(Duration::from_secs(2), background.clone()),
    );
    let api = casescope_report::ReportApi::new(db.clone(), settings.clone(), outbox, peers);
    let jobs = ConsumerConfig {
        ack_wait: settings.lease_ttl,
        max_deliver: u64::try_from(settings.max_attempts).unwrap_or(3) + 4,
        // Reports built at once; each holds at most a chunk per format in memory.
        batch: 2,
        ..ConsumerConfig::new(
            casescope_report::REPORT_CONSUMER,
            subjects::job(casescope_report::STAGE),
        )
    };
    let worker = Arc::new(SkipDeletedCases::new(
        api.worker(),
        CasePurges::new(db.clone()),
    ));
    let (consumer_bus, consumer_stop) = (bus.clone(), background.clone());
    tasks.spawn(async move {
        if let Err(error) = run_consumer(consumer_bus, jobs, worker, consumer_stop).await {
            tracing::error!(%error, "the report job consumer stopped");
        }
    });
    tasks.spawn(api.reconciler().run(background.clone()));
    let purger = casescope_report::CasePurger::new(&api);
    spawn_case_purges(
        tasks,
        bus,
        purger.clone(),
        casescope_report::REPORT_CASE_FACTS_CONSUMER,
        settings.lease_ttl,
        background,
    );
    tasks.spawn(casescope_db::run_periodically(
        "report-purges",
        settings.reconcile_period,
        background.clone(),
        move || {
            let purger = purger.clone();
            async move { casescope_bus::facts::PurgeCase::pass(&purger).await }
        },
    ));
    Ok((guarded(ReportServiceServer::new(api), key), db))
}

/// A network channel to `name` (cluster mode), from its configured address.
async fn remote_channel(config: &Config, name: &'static str) -> anyhow::Result<GrpcChannel> {
    crate::channels::RemoteChannels::new()
        .channel(config, name)
        .await
        .with_context(|| format!("the report service's client of {name}"))
}

/// The report service's AI settings from the configuration.
fn ai_settings(
    config: &casescope_runtime::config::AiConfig,
) -> anyhow::Result<casescope_report::AiSettings> {
    let endpoint = match &config.endpoint {
        None => None,
        Some(endpoint) => Some(casescope_report::LlmEndpoint {
            api: casescope_report::LlmApi::parse(&endpoint.api).ok_or_else(|| {
                anyhow::anyhow!(
                    "CASESCOPE_LLM_API: {:?} is not openai or ollama",
                    endpoint.api
                )
            })?,
            url: endpoint.url.clone(),
            model: endpoint.model.clone(),
            api_key: endpoint.api_key.as_ref().map(|k| k.expose().to_string()),
        }),
    };
    Ok(casescope_report::AiSettings {
        enabled: config.enabled,
        endpoint,
        timeouts: casescope_report::LlmTimeouts {
            connect: config.connect_timeout,
            first_token: config.first_token_timeout,
            stall: config.stall_timeout,
            total: config.total_timeout,
        },
        prompt_tokens: config.prompt_tokens,
        answer_tokens: config.answer_tokens,
        redact: config.redact,
        ..Default::default()
    })
}
