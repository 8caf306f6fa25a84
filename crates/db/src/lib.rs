//! Relational storage shared by every CaseScope service: one [`Database`] handle over
//! SQLite (embedded mode) or PostgreSQL (cluster mode) through sqlx's `Any` driver, so
//! the same repository code and SQL run on both; a per-service migration runner; leases
//! with epoch fencing for per-(file, stage) work; an inbox for idempotent bus consumers;
//! and the periodic loop reconcilers are built on.
//!
//! It owns no service's tables: each service passes its own [`Migrations`]. The shared
//! tables (`leases`, `bus_inbox`, `schema_migrations`) exist in every service database.
//! SQL here is written once in the common subset of both dialects (`$N` parameters,
//! `ON CONFLICT`, `RETURNING`, BIGINT microsecond timestamps, no backend-only types).
//! No `sqlx::Error` leaves this crate: callers see [`DbError`].

mod database;
pub mod filter;
mod inbox;
mod lease;
mod migrate;
mod purges;
mod reconcile;

pub use database::{Backend, Database, DbError, DbOptions, Tx, redact_url};
pub use inbox::Inbox;
pub use lease::{KeepAlive, Lease, LeaseError, LeaseKey, LeaseStore};
pub use migrate::{Migration, Migrations};
pub use purges::{CasePurges, PURGE_MIGRATIONS, PURGE_RETENTION, PurgeLeases, PurgeLeasing};
pub use reconcile::run_periodically;

/// Current UTC time in microseconds since the Unix epoch (the unit of every stored time).
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The tables this crate itself needs in every service database.
pub const CORE_MIGRATIONS: Migrations = Migrations {
    service: "core",
    steps: &[Migration {
        version: 1,
        name: "leases and bus inbox",
        sql: "
CREATE TABLE IF NOT EXISTS leases (
    resource TEXT NOT NULL,
    stage TEXT NOT NULL,
    holder TEXT,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    PRIMARY KEY (resource, stage)
);
CREATE INDEX IF NOT EXISTS leases_by_stage_expiry ON leases (stage, expires_at);
CREATE TABLE IF NOT EXISTS bus_inbox (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS bus_inbox_by_age ON bus_inbox (processed_at);
",
    }],
};
