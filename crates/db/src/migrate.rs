//! A small migration runner that lets several services share one database (all-in-one
//! mode) or each own one (cluster mode): applied steps are recorded per service in
//! `schema_migrations`, each step runs in its own transaction, and on PostgreSQL an
//! advisory lock serialises replicas that start at the same time.

use crate::database::{Backend, Database, DbError};
use sqlx::Row;

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements in the SQL subset shared by SQLite and PostgreSQL.
    pub sql: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub service: &'static str,
    pub steps: &'static [Migration],
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    service TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (service, version)
)";

/// Arbitrary constant key for `pg_advisory_xact_lock`.
const MIGRATION_LOCK_KEY: i64 = 0x0CA5_E5C0_9E00;

impl Database {
    /// Applies the steps of each set that are not applied yet, in version order.
    pub async fn migrate(&self, sets: &[Migrations]) -> Result<(), DbError> {
        sqlx::raw_sql(CREATE_TABLE).execute(self.pool()).await?;
        for set in sets {
            let mut steps = set.steps.to_vec();
            steps.sort_by_key(|step| step.version);
            for step in steps {
                self.apply(set.service, &step).await?;
            }
        }
        Ok(())
    }

    async fn apply(&self, service: &str, step: &Migration) -> Result<(), DbError> {
        let failed = |message: String| DbError::Migration {
            service: service.to_string(),
            version: step.version,
            name: step.name.to_string(),
            message,
        };
        let mut tx = self.begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(|error| failed(error.to_string()))?;
        }
        let applied = sqlx::query(
            "SELECT COUNT(*) AS n FROM schema_migrations WHERE service = $1 AND version = $2",
        )
        .bind(service)
        .bind(step.version)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| failed(error.to_string()))?
        .try_get::<i64, _>("n")
        .map_err(|error| failed(error.to_string()))?;
        if applied > 0 {
            return Ok(());
        }
        sqlx::raw_sql(step.sql)
            .execute(&mut *tx)
            .await
            .map_err(|error| failed(error.to_string()))?;
        sqlx::query(
            "INSERT INTO schema_migrations (service, version, name, applied_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(service)
        .bind(step.version)
        .bind(step.name)
        .bind(crate::now_micros())
        .execute(&mut *tx)
        .await
        .map_err(|error| failed(error.to_string()))?;
        tx.commit()
            .await
            .map_err(|error| failed(error.to_string()))?;
        tracing::info!(
            service,
            version = step.version,
            name = step.name,
            "migration applied"
        );
        Ok(())
    }
}
