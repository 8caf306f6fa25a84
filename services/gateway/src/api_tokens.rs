//! API tokens for automation: the value (`cst_…`) is shown once and only its SHA-256 is
//! stored; each token acts for one user, may be limited to some cases and to read-only
//! RPCs, always expires (at most [`MAX_LIFETIME`] ahead), can be revoked at once, and
//! records when it was last used (at most one write a minute per token).

use crate::tokens::{new_secret, secret_hash};
use casescope_db::{Database, DbError, now_micros};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::time::Duration;

/// The longest an API token may live.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// Last-use times are written at most this often per token.
const LAST_USE_RESOLUTION: i64 = 60 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub value_prefix: String,
    /// Empty: every case of the user.
    pub case_ids: Vec<String>,
    pub read_only: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRequestError {
    #[error("name: {0}")]
    Name(String),
    #[error("expires_at: {0}")]
    Expiry(String),
    #[error("case_ids: {0}")]
    Cases(String),
    #[error("a token named {0:?} exists for this user")]
    Exists(String),
    #[error("{0}")]
    Internal(String),
}

fn row_from(row: &AnyRow) -> Result<ApiTokenRow, DbError> {
    let cases: String = row.try_get("case_ids")?;
    Ok(ApiTokenRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        value_prefix: row.try_get("value_prefix")?,
        case_ids: serde_json::from_str(&cases).unwrap_or_default(),
        read_only: row.try_get::<i64, _>("read_only")? != 0,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl ApiTokenRow {
    /// Usable now: not revoked and not expired.
    pub fn active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Clone)]
pub struct ApiTokens {
    db: Database,
}

impl ApiTokens {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a token for `user_id`; the row and the value (shown once).
    pub async fn create(
        &self,
        user_id: &str,
        name: &str,
        case_ids: &[String],
        read_only: bool,
        expires_at: i64,
    ) -> Result<(ApiTokenRow, String), TokenRequestError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(TokenRequestError::Name(
                "1 to 100 characters, no control characters".into(),
            ));
        }
        let now = now_micros();
        let max = now + i64::try_from(MAX_LIFETIME.as_micros()).unwrap_or(i64::MAX / 4);
        if expires_at <= now || expires_at > max {
            return Err(TokenRequestError::Expiry(
                "required, in the future and at most 366 days ahead".into(),
            ));
        }
        if case_ids.len() > 1000 || case_ids.iter().any(|c| uuid::Uuid::parse_str(c).is_err()) {
            return Err(TokenRequestError::Cases(
                "at most 1000 case ids (UUIDs)".into(),
            ));
        }
        let value = new_secret("cst_");
        let row = ApiTokenRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            value_prefix: value.chars().take(10).collect(),
            case_ids: case_ids.to_vec(),
            read_only,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO gateway_api_tokens (id, user_id, name, token_hash, value_prefix, case_ids, \
             read_only, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.name)
        .bind(secret_hash(&value))
        .bind(&row.value_prefix)
        .bind(serde_json::to_string(&row.case_ids).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(read_only))
        .bind(now)
        .bind(expires_at)
        .execute(self.db.pool())
        .await
        .map_err(|e| TokenRequestError::Internal(DbError::from(e).to_string()))?;
        if inserted.rows_affected() == 0 {
            return Err(TokenRequestError::Exists(row.name));
        }
        Ok((row, value))
    }

    /// The active token whose value is `value` (recording its use); `None` for an
    /// unknown, revoked or expired one.
    pub async fn authenticate(&self, value: &str) -> Result<Option<ApiTokenRow>, DbError> {
        let row = sqlx::query("SELECT * FROM gateway_api_tokens WHERE token_hash = $1")
            .bind(secret_hash(value))
            .fetch_optional(self.db.pool())
            .await?;
        let Some(token) = row.as_ref().map(row_from).transpose()? else {
            return Ok(None);
        };
        let now = now_micros();
        if !token.active(now) {
            return Ok(None);
        }
        if token
            .last_used_at
            .is_none_or(|used| now - used >= LAST_USE_RESOLUTION)
        {
            sqlx::query("UPDATE gateway_api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(&token.id)
                .bind(now)
                .execute(self.db.pool())
                .await?;
        }
        Ok(Some(token))
    }

    pub async fn get(&self, id: &str) -> Result<Option<ApiTokenRow>, DbError> {
        let row = sqlx::query("SELECT * FROM gateway_api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(row_from).transpose()
    }

    /// A user's tokens, newest first, `limit` after the id `after` (empty: from the
    /// start); inactive ones only when asked.
    pub async fn list(
        &self,
        user_id: &str,
        include_inactive: bool,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ApiTokenRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM gateway_api_tokens WHERE user_id = $1 \
             AND ($2 = 1 OR (revoked_at IS NULL AND expires_at > $3)) \
             AND ($4 = '' OR id < $4) ORDER BY id DESC LIMIT $5",
        )
        .bind(user_id)
        .bind(i64::from(include_inactive))
        .bind(now_micros())
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(row_from).collect()
    }

    /// Revokes a token (idempotent: the first revocation time is kept).
    pub async fn revoke(&self, id: &str) -> Result<Option<ApiTokenRow>, DbError> {
        sqlx::query(
            "UPDATE gateway_api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        self.get(id).await
    }
}
