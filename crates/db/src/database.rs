//! The database handle: connection, readiness, and error mapping.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor};
use std::time::Duration;

/// A transaction on either backend.
pub type Tx<'a> = sqlx::Transaction<'a, Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url scheme in {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("cannot connect to the {backend:?} database: {message}")]
    Connect { backend: Backend, message: String },
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {0}")]
    Query(String),
    #[error("migration {service}/{version} ({name}) failed: {message}")]
    Migration {
        service: String,
        version: i64,
        name: String,
        message: String,
    },
    #[error("row conflicts with an existing one: {0}")]
    Conflict(String),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                DbError::Unavailable(error.to_string())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                DbError::Conflict(db.message().to_string())
            }
            _ => DbError::Query(error.to_string()),
        }
    }
}

/// Pool settings. SQLite gets a single connection: it has one writer anyway, and one
/// connection avoids `SQLITE_BUSY` on read-to-write upgrades under concurrency.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Connects to `url` (`sqlite://PATH` creates the file if missing; `postgres://...`).
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(options.acquire_timeout);
        let url = match backend {
            Backend::Sqlite => {
                pool_options = pool_options.max_connections(1).after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        Ok(())
                    })
                });
                if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Backend::Postgres => {
                pool_options = pool_options.max_connections(options.max_connections);
                url.to_string()
            }
        };
        let pool = pool_options
            .connect(&url)
            .await
            .map_err(|error| DbError::Connect {
                backend,
                message: error.to_string(),
            })?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Tx<'static>, DbError> {
        Ok(self.pool.begin().await?)
    }

    /// A cheap round trip, for readiness probes (within about 2 s). When the pool has
    /// no connection to give in 1.5 s, a new connection is tried, to say why (e.g.
    /// "Connection refused") rather than only that nothing answered.
    pub async fn ping(&self) -> Result<(), DbError> {
        let query = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(std::time::Duration::from_millis(1500), query).await {
            Ok(result) => result
                .map(drop)
                .map_err(|error| DbError::Unavailable(error.to_string())),
            Err(_) => {
                use sqlx::ConnectOptions;
                let options = self.pool.connect_options();
                let attempt =
                    tokio::time::timeout(std::time::Duration::from_millis(400), options.connect())
                        .await;
                Err(DbError::Unavailable(match attempt {
                    Ok(Err(error)) => error.to_string(),
                    Ok(Ok(_connection)) => {
                        "no free connection in the pool within 1.5 s".to_string()
                    }
                    Err(_) => "no answer within 2 s".to_string(),
                }))
            }
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL with any password replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}:***@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/cases"),
            "postgres://app:***@db:5432/cases"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
