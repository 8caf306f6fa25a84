//! The integrations service's part of `casescope serve`: its database, its delivery
//! workers, case purges and retention, and its clients of the services a push reads.

use super::backends::database;
use super::spawn_case_purges;
use crate::serve_gateway::guarded;
use anyhow::Context;
use casescope_bus::{Bus, ConsumerConfig, Outbox, run_consumer};
use casescope_db::Database;
use casescope_integrations::outbound::guard::Guard;
use casescope_integrations::secrets::SecretBox;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::identity::{InternalKey, with_service_identity};
use casescope_proto::integrations::v1::integrations_service_server::IntegrationsServiceServer;
use casescope_runtime::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long finished deliveries are kept.
const DELIVERY_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Timeout of each call to another service (an export: between two chunks).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// The channels of the services a push reads (in-process ones where they run here).
pub(super) struct IntegrationsPeers {
    pub cases: Option<GrpcChannel>,
    pub ioc: Option<GrpcChannel>,
}

/// The service's settings from the configuration.
fn settings(config: &Config) -> anyhow::Result<casescope_integrations::IntegrationsSettings> {
    let deployment = &config.integrations;
    let secrets = match &deployment.key {
        Some(key) => Some(Arc::new(SecretBox::from_text(key.expose()).map_err(
            |error| anyhow::anyhow!("CASESCOPE_INTEGRATIONS_KEY: {error}"),
        )?)),
        None => {
            tracing::info!(
                "no CASESCOPE_INTEGRATIONS_KEY: integration secrets must be env:/file: references"
            );
            None
        }
    };
    Ok(casescope_integrations::IntegrationsSettings {
        guard: Guard::new(deployment.allow_nets.clone()),
        secrets,
        secrets_dir: deployment.secrets_dir.clone(),
        ..Default::default()
    })
}

/// Starts the integrations service; returns its server and database.
pub(super) async fn start(
    config: &Config,
    bus: &Arc<dyn Bus>,
    key: &InternalKey,
    here: IntegrationsPeers,
    remote: &mut crate::channels::RemoteChannels,
    tasks: &mut JoinSet<()>,
    background: &CancellationToken,
) -> anyhow::Result<(
    casescope_proto::identity::Guarded<
        IntegrationsServiceServer<casescope_integrations::IntegrationsApi>,
    >,
    Database,
)> {
    let db = database(config, "integrations").await?;
    db.migrate(casescope_integrations::ALL_MIGRATIONS)
        .await
        .context("cannot migrate the integrations database")?;
    let settings = settings(config)?;
    casescope_runtime::metrics::metrics().zero_integrations();
    let identity =
        |channel: GrpcChannel| with_service_identity(channel, key.clone(), "integrations");
    let cases = match here.cases {
        Some(channel) => channel,
        None => remote
            .channel(config, "cases")
            .await
            .context("the integrations service reads cases (CASESCOPE_CASES_ADDR)")?,
    };
    let ioc = match here.ioc {
        Some(channel) => Some(channel),
        None if config.service_addrs.contains_key("ioc") => Some(
            remote
                .channel(config, "ioc")
                .await
                .context("the integrations service's client of ioc")?,
        ),
        None => {
            tracing::warn!("pushes carry no IOCs: the IOC service's address is not known");
            None
        }
    };
    let source = Arc::new(casescope_integrations::source::Peers::new(
        identity(cases),
        ioc.map(identity),
        PEER_TIMEOUT,
    ));
    let outbox = Outbox::new(db.clone(), bus.clone());
    tasks.spawn(
        outbox
            .clone()
            .relay(Duration::from_secs(2), background.clone()),
    );
    let api = casescope_integrations::IntegrationsApi::new(db.clone(), settings);
    let worker_settings = casescope_integrations::WorkerSettings {
        lease_ttl: config.lease_ttl,
        ..Default::default()
    };
    tasks.spawn(
        api.worker(outbox, source, worker_settings)
            .run(background.clone()),
    );
    // Webhooks: one durable consumer per fact family a webhook may ask for.
    let fanout = Arc::new(api.fanout());
    for (_, family) in casescope_integrations::fanout::TOPICS {
        let facts = ConsumerConfig {
            ack_wait: config.lease_ttl,
            max_deliver: 10,
            batch: 4,
            ..ConsumerConfig::new(
                casescope_integrations::fanout::consumer_name(family),
                casescope_integrations::fanout::filter(family),
            )
        };
        let (bus, stop, handler) = (bus.clone(), background.clone(), fanout.clone());
        tasks.spawn(async move {
            if let Err(error) = run_consumer(bus, facts, handler, stop).await {
                tracing::error!(%error, "a webhook facts consumer stopped");
            }
        });
    }
    let purger = casescope_integrations::CasePurger::new(&api, config.lease_ttl);
    spawn_case_purges(
        tasks,
        bus,
        purger.clone(),
        casescope_integrations::INTEGRATIONS_CASE_FACTS_CONSUMER,
        config.lease_ttl,
        background,
    );
    tasks.spawn(casescope_db::run_periodically(
        "integrations-purges",
        config.reconcile_period,
        background.clone(),
        move || {
            let purger = purger.clone();
            async move {
                let old = purger.retention_pass(DELIVERY_RETENTION).await?;
                let purged = casescope_bus::facts::PurgeCase::pass(&purger).await?;
                Ok::<usize, String>(purged + old as usize)
            }
        },
    ));
    Ok((guarded(IntegrationsServiceServer::new(api), key), db))
}
