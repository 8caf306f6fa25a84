//! The integrations service: DFIR-IRIS pushes, OpenCTI enrichment and indicator imports,
//! and webhooks of chosen facts, each a recorded delivery (docs/integrations.md).
//!
//! - [`outbound`]: the layer every call goes through — timeouts, retries with backoff
//!   and jitter honouring `Retry-After`, a circuit breaker per integration, bounded
//!   answers, TLS with an optional CA, the SSRF guard after DNS resolution and on every
//!   redirect;
//! - [`IntegrationsApi`]: configurations (secrets write-only, sealed at rest by
//!   [`secrets`] or resolved from a reference at call time) and the delivery RPCs;
//! - [`delivery`] and the workers: the log that is also the queue, each delivery run
//!   under its lease, its outcome a fact on `casescope.v1.integrations.<case>`;
//! - [`iris`] (pushes linked item by item, never duplicated), [`enrich`] and
//!   [`import`] (OpenCTI, [`opencti`]), [`fanout`] and [`webhook`] (signed facts);
//! - [`source`]: what a delivery reads of a case from the cases and IOC services.

mod api;
mod config;
pub mod delivery;
pub mod enrich;
pub mod fanout;
pub mod import;
pub mod iris;
pub mod opencti;
pub mod outbound;
mod probe;
mod purge;
mod repo;
pub mod secrets;
pub mod source;
pub mod webhook;
mod worker;

pub use api::IntegrationsApi;
pub use purge::{CasePurger, INTEGRATIONS_CASE_FACTS_CONSUMER};
pub use repo::MIGRATIONS;
pub use worker::{DeliveryWorker, WorkerSettings};

use casescope_bus::OUTBOX_MIGRATIONS;
use casescope_db::{CORE_MIGRATIONS, Migrations, PURGE_MIGRATIONS};
use outbound::OutboundSettings;
use outbound::guard::Guard;
use secrets::SecretBox;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[
    CORE_MIGRATIONS,
    OUTBOX_MIGRATIONS,
    MIGRATIONS,
    PURGE_MIGRATIONS,
];

#[derive(Debug, Clone)]
pub struct IntegrationsSettings {
    /// The SSRF guard and its allow-list.
    pub guard: Guard,
    pub outbound: OutboundSettings,
    /// Seals secrets given as values (`None`: only references are accepted).
    pub secrets: Option<Arc<SecretBox>>,
    /// Where `file:` secret references are read from.
    pub secrets_dir: Option<PathBuf>,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub default_attempts: u32,
    pub max_attempts: u32,
    /// Consecutive failures that open an integration's circuit, and for how long.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

impl Default for IntegrationsSettings {
    fn default() -> Self {
        Self {
            guard: Guard::default(),
            outbound: OutboundSettings::default(),
            secrets: None,
            secrets_dir: None,
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(120),
            default_attempts: 5,
            max_attempts: 20,
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}
