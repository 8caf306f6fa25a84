//! The integrations service's tables (SQL of the subset SQLite and PostgreSQL share):
//! integration configurations — the secret only sealed ([`crate::secrets`]) or as a
//! reference resolved at call time — with their health.

use casescope_db::{Database, DbError, Migration, Migrations};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "integrations",
    steps: &[
        Migration {
            version: 1,
            name: "integration configurations",
            sql: "
CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    kind BIGINT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    secret_reference TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    ca_pem TEXT NOT NULL,
    settings TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    last_success_at BIGINT,
    last_failure_at BIGINT,
    last_error TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX integrations_by_name ON integrations (name);
",
        },
        Migration {
            version: 2,
            name: "deliveries and DFIR-IRIS links",
            sql: "
CREATE TABLE integration_deliveries (
    id TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    integration_kind BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    case_id TEXT NOT NULL,
    target TEXT NOT NULL,
    status BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    last_http_status BIGINT NOT NULL,
    items_total BIGINT NOT NULL,
    items_succeeded BIGINT NOT NULL,
    items_failed BIGINT NOT NULL,
    remote_reference TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    next_attempt_at BIGINT,
    completed_at BIGINT
);
CREATE INDEX integration_deliveries_due ON integration_deliveries (status, next_attempt_at);
CREATE INDEX integration_deliveries_newest ON integration_deliveries (created_at, id);
CREATE INDEX integration_deliveries_by_case ON integration_deliveries (case_id, created_at);
CREATE TABLE iris_links (
    integration_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    item_kind TEXT NOT NULL,
    local_key TEXT NOT NULL,
    remote_id BIGINT,
    fingerprint TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (integration_id, case_id, item_kind, local_key)
);
",
        },
    ],
};

/// One integration as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRow {
    pub id: String,
    pub kind: i32,
    pub name: String,
    pub base_url: String,
    /// `v1:…` sealed under the deployment's key, or empty.
    pub secret_sealed: String,
    /// `env:NAME` or `file:NAME`, or empty.
    pub secret_reference: String,
    pub timeout_ms: i64,
    pub max_attempts: i64,
    pub enabled: bool,
    pub ca_pem: String,
    /// The kind's settings as JSON (`IntegrationSettings`).
    pub settings: String,
    pub consecutive_failures: i64,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_error: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl IntegrationRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get::<i64, _>("kind")? as i32,
            name: row.try_get("name")?,
            base_url: row.try_get("base_url")?,
            secret_sealed: row.try_get("secret_sealed")?,
            secret_reference: row.try_get("secret_reference")?,
            timeout_ms: row.try_get("timeout_ms")?,
            max_attempts: row.try_get("max_attempts")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            ca_pem: row.try_get("ca_pem")?,
            settings: row.try_get("settings")?,
            consecutive_failures: row.try_get("consecutive_failures")?,
            last_success_at: row.try_get("last_success_at")?,
            last_failure_at: row.try_get("last_failure_at")?,
            last_error: row.try_get("last_error")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub fn secret_set(&self) -> bool {
        !self.secret_sealed.is_empty() || !self.secret_reference.is_empty()
    }
}

/// Whether `error` is the unique name index refusing a second integration of a name.
pub fn is_duplicate_name(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let text = db.message().to_ascii_lowercase();
            db.code()
                .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
                || text.contains("unique")
        }
        _ => false,
    }
}

#[derive(Clone)]
pub struct IntegrationRepo {
    db: Database,
}

impl IntegrationRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Inserts `row`; `Ok(false)` when the name is taken.
    pub async fn insert(&self, row: &IntegrationRow) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO integrations (id, kind, name, base_url, secret_sealed, secret_reference, \
             timeout_ms, max_attempts, enabled, ca_pem, settings, consecutive_failures, \
             last_success_at, last_failure_at, last_error, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, NULL, NULL, '', 1, $12, $12)",
        )
        .bind(&row.id)
        .bind(i64::from(row.kind))
        .bind(&row.name)
        .bind(&row.base_url)
        .bind(&row.secret_sealed)
        .bind(&row.secret_reference)
        .bind(row.timeout_ms)
        .bind(row.max_attempts)
        .bind(i64::from(row.enabled))
        .bind(&row.ca_pem)
        .bind(&row.settings)
        .bind(row.created_at)
        .execute(self.db.pool())
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(error) if is_duplicate_name(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<IntegrationRow>, DbError> {
        let row = sqlx::query("SELECT * FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(IntegrationRow::from_row).transpose()?)
    }

    /// A page ordered by name then id, after `(name, id)`; of one kind when non-zero.
    pub async fn list(
        &self,
        kind: i32,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<IntegrationRow>, DbError> {
        let (after_name, after_id) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT * FROM integrations WHERE ($1 = 0 OR kind = $1) \
             AND (name > $2 OR (name = $2 AND id > $3)) ORDER BY name, id LIMIT $4",
        )
        .bind(i64::from(kind))
        .bind(after_name)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(IntegrationRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Writes `row` if it is still at `row.version - 1`: `Some(true)` done, `Some(false)`
    /// the new name is taken, `None` it changed meanwhile (or was deleted).
    pub async fn update(&self, row: &IntegrationRow) -> Result<Option<bool>, DbError> {
        let done = sqlx::query(
            "UPDATE integrations SET name = $2, base_url = $3, secret_sealed = $4, \
             secret_reference = $5, timeout_ms = $6, max_attempts = $7, enabled = $8, \
             ca_pem = $9, settings = $10, version = $11, updated_at = $12 \
             WHERE id = $1 AND version = $13",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.base_url)
        .bind(&row.secret_sealed)
        .bind(&row.secret_reference)
        .bind(row.timeout_ms)
        .bind(row.max_attempts)
        .bind(i64::from(row.enabled))
        .bind(&row.ca_pem)
        .bind(&row.settings)
        .bind(row.version)
        .bind(row.updated_at)
        .bind(row.version - 1)
        .execute(self.db.pool())
        .await;
        match done {
            Ok(done) if done.rows_affected() == 1 => Ok(Some(true)),
            Ok(_) => Ok(None),
            Err(error) if is_duplicate_name(&error) => Ok(Some(false)),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn delete(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM integrations WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the outcome of a call (the error already redacted).
    pub async fn record_health(
        &self,
        id: &str,
        error: Option<&str>,
        at: i64,
    ) -> Result<(), DbError> {
        match error {
            None => {
                sqlx::query(
                    "UPDATE integrations SET consecutive_failures = 0, last_success_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(self.db.pool())
                .await?;
            }
            Some(why) => {
                sqlx::query(
                    "UPDATE integrations SET consecutive_failures = consecutive_failures + 1, \
                     last_failure_at = $2, last_error = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .bind(why)
                .execute(self.db.pool())
                .await?;
            }
        }
        Ok(())
    }
}
