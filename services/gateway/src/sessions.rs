//! Sessions: login, refresh-token rotation with reuse detection, logout, password
//! change, and the authentication of an access token.
//!
//! A session is a family of refresh tokens. Each refresh spends the presented token
//! (a conditional update: exactly one caller can spend it) and issues the next one with
//! a new access token. Presenting a token that was already spent is treated as theft:
//! the whole family is revoked, so the thief's and the owner's newest tokens both stop
//! working. There is no grace window: two concurrent refreshes with the same token
//! revoke the session (clients must serialise their refreshes; the CLI does). Only
//! SHA-256 hashes of refresh tokens are stored. An access token stays valid until it
//! expires, but [`Sessions::authenticate`] also refuses it once its session is revoked
//! or its user disabled.

use crate::password;
use crate::tokens::{AccessClaims, KeySet, new_secret, secret_hash};
use crate::users::{UserRow, Users, user_from};
use casescope_db::{DbError, now_micros};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// Lifetimes of the credentials a session hands out.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Access token lifetime (at most 15 minutes).
    pub access_ttl: Duration,
    /// Lifetime of one refresh token (it is replaced at each refresh).
    pub refresh_ttl: Duration,
    /// A session ends this long after login, however often it is refreshed.
    pub session_max: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(10 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            session_max: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// What a login or refresh hands out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub user_id: String,
    pub session_id: String,
    pub access_token: String,
    /// Seconds since the epoch.
    pub access_expires_at: u64,
    pub refresh_token: String,
    /// Microseconds since the epoch.
    pub refresh_expires_at: i64,
}

/// Why a credential was refused. The caller sees UNAUTHENTICATED for all but
/// `Policy` (INVALID_ARGUMENT) and `Internal`; the variant is for the audit log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("unknown or expired token")]
    UnknownToken,
    #[error("session revoked: {0}")]
    Revoked(String),
    #[error("refresh token reused: the session is revoked")]
    Reused,
    #[error("the user is disabled")]
    Disabled,
    #[error("invalid access token: {0}")]
    BadAccessToken(String),
    #[error("{0}")]
    Policy(String),
    #[error("internal: {0}")]
    Internal(String),
}

fn internal(error: impl Into<DbError>) -> AuthError {
    AuthError::Internal(error.into().to_string())
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX / 4)
}

#[derive(Clone)]
pub struct Sessions {
    users: Users,
    keys: Arc<KeySet>,
    settings: SessionSettings,
}

impl Sessions {
    pub fn new(users: Users, keys: Arc<KeySet>, settings: SessionSettings) -> Self {
        Self {
            users,
            keys,
            settings,
        }
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    fn pool(&self) -> &sqlx::AnyPool {
        self.users.db().pool()
    }

    /// A new session for `username` if `password` matches. An unknown name, a wrong
    /// password and a disabled user are the same answer, in about the same time.
    pub async fn login(&self, username: &str, password: &str) -> Result<Issued, AuthError> {
        let user = self.users.by_name(username).await.map_err(internal)?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let matches = password::verify(password.to_string(), stored).await;
        let user = match user {
            Some(user) if matches && !user.disabled => user,
            _ => return Err(AuthError::BadCredentials),
        };
        self.start(&user).await
    }

    /// A new session for `user`, who has proven who they are (a password, or an identity
    /// provider's ID token).
    pub async fn start(&self, user: &UserRow) -> Result<Issued, AuthError> {
        let now = now_micros();
        let session_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.users.db().begin().await.map_err(internal)?;
        sqlx::query(
            "INSERT INTO gateway_sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&session_id)
        .bind(&user.id)
        .bind(now)
        .bind(now + micros(self.settings.session_max))
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        sqlx::query("UPDATE gateway_users SET last_login_at = $2 WHERE id = $1")
            .bind(&user.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        let issued = self
            .issue(
                &mut tx,
                &user.id,
                &session_id,
                now,
                now + micros(self.settings.session_max),
            )
            .await?;
        tx.commit().await.map_err(internal)?;
        Ok(issued)
    }

    /// Inserts the next refresh token of the session and signs an access token.
    async fn issue(
        &self,
        tx: &mut casescope_db::Tx<'_>,
        user_id: &str,
        session_id: &str,
        now: i64,
        session_expires_at: i64,
    ) -> Result<Issued, AuthError> {
        let refresh_token = new_secret("csr_");
        let refresh_expires_at = (now + micros(self.settings.refresh_ttl)).min(session_expires_at);
        sqlx::query(
            "INSERT INTO gateway_refresh_tokens (token_hash, session_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(secret_hash(&refresh_token))
        .bind(session_id)
        .bind(now)
        .bind(refresh_expires_at)
        .execute(&mut **tx)
        .await
        .map_err(internal)?;
        let now_secs = u64::try_from(now / 1_000_000).unwrap_or_default();
        let (access_token, claims) = self
            .keys
            .issue(user_id, session_id, now_secs, self.settings.access_ttl)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(Issued {
            user_id: user_id.to_string(),
            session_id: session_id.to_string(),
            access_token,
            access_expires_at: claims.exp,
            refresh_token,
            refresh_expires_at,
        })
    }

    /// Spends `refresh_token` and hands out the next pair (see the module docs).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, AuthError> {
        let hash = secret_hash(refresh_token);
        let now = now_micros();
        let row = sqlx::query(
            "SELECT t.session_id, t.expires_at AS token_expires_at, t.spent_at, \
               s.user_id, s.expires_at AS session_expires_at, s.revoked_reason, s.revoked_at \
             FROM gateway_refresh_tokens t JOIN gateway_sessions s ON s.id = t.session_id \
             WHERE t.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.pool())
        .await
        .map_err(internal)?
        .ok_or(AuthError::UnknownToken)?;
        let get_i64 = |name: &str| row.try_get::<Option<i64>, _>(name).map_err(internal);
        let session_id: String = row.try_get("session_id").map_err(internal)?;
        let user_id: String = row.try_get("user_id").map_err(internal)?;
        if get_i64("revoked_at")?.is_some() {
            let reason: Option<String> = row.try_get("revoked_reason").map_err(internal)?;
            return Err(AuthError::Revoked(reason.unwrap_or_default()));
        }
        if get_i64("spent_at")?.is_some() {
            self.revoke_session(&session_id, "refresh token reused")
                .await?;
            return Err(AuthError::Reused);
        }
        let session_expires_at = get_i64("session_expires_at")?.unwrap_or(0);
        if get_i64("token_expires_at")?.unwrap_or(0) <= now || session_expires_at <= now {
            return Err(AuthError::UnknownToken);
        }
        let user = self.users.by_id(&user_id).await.map_err(internal)?;
        if user.is_none_or(|u| u.disabled) {
            return Err(AuthError::Disabled);
        }
        let mut tx = self.users.db().begin().await.map_err(internal)?;
        let spent = sqlx::query(
            "UPDATE gateway_refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL",
        )
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        if spent.rows_affected() == 0 {
            // Spent by a concurrent refresh: the same as a reuse.
            drop(tx);
            self.revoke_session(&session_id, "refresh token reused")
                .await?;
            return Err(AuthError::Reused);
        }
        let issued = self
            .issue(&mut tx, &user_id, &session_id, now, session_expires_at)
            .await?;
        tx.commit().await.map_err(internal)?;
        Ok(issued)
    }

    async fn revoke_session(&self, session_id: &str, reason: &str) -> Result<(), AuthError> {
        tracing::warn!(session_id, reason, "session revoked");
        sqlx::query(
            "UPDATE gateway_sessions SET revoked_at = $2, revoked_reason = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(now_micros())
        .bind(reason)
        .execute(self.pool())
        .await
        .map_err(internal)?;
        Ok(())
    }

    /// Revokes the session of `refresh_token` (an unknown token is not an error: the
    /// session is gone either way).
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        let row =
            sqlx::query("SELECT session_id FROM gateway_refresh_tokens WHERE token_hash = $1")
                .bind(secret_hash(refresh_token))
                .fetch_optional(self.pool())
                .await
                .map_err(internal)?;
        if let Some(row) = row {
            let session_id: String = row.try_get("session_id").map_err(internal)?;
            self.revoke_session(&session_id, "logged out").await?;
        }
        Ok(())
    }

    /// Changes the password of the caller (authenticated in `session_id`), after
    /// checking the current one; revokes every other session of the user.
    pub async fn change_password(
        &self,
        user_id: &str,
        session_id: &str,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let user = self
            .users
            .by_id(user_id)
            .await
            .map_err(internal)?
            .ok_or(AuthError::BadCredentials)?;
        if !password::verify(current.to_string(), Some(user.password_hash.clone())).await {
            return Err(AuthError::BadCredentials);
        }
        if let Some(problem) = password::policy_violation(new) {
            return Err(AuthError::Policy(problem));
        }
        let hash = password::hash(new.to_string())
            .await
            .map_err(AuthError::Internal)?;
        let now = now_micros();
        let mut tx = self.users.db().begin().await.map_err(internal)?;
        sqlx::query(
            "UPDATE gateway_users SET password_hash = $2, updated_at = $3, version = version + 1 \
             WHERE id = $1",
        )
        .bind(user_id)
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        sqlx::query(
            "UPDATE gateway_sessions SET revoked_at = $3, revoked_reason = 'password changed' \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    /// The user and claims of a valid access token whose session is live and whose
    /// user is enabled.
    pub async fn authenticate(
        &self,
        access_token: &str,
    ) -> Result<(AccessClaims, UserRow), AuthError> {
        let claims = self
            .keys
            .verify(access_token)
            .map_err(|e| AuthError::BadAccessToken(e.to_string()))?;
        let row = sqlx::query(
            "SELECT u.*, s.revoked_at AS session_revoked_at, s.revoked_reason \
             FROM gateway_sessions s JOIN gateway_users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.user_id = $2",
        )
        .bind(&claims.sid)
        .bind(&claims.sub)
        .fetch_optional(self.pool())
        .await
        .map_err(internal)?
        .ok_or(AuthError::UnknownToken)?;
        if row
            .try_get::<Option<i64>, _>("session_revoked_at")
            .map_err(internal)?
            .is_some()
        {
            let reason: Option<String> = row.try_get("revoked_reason").map_err(internal)?;
            return Err(AuthError::Revoked(reason.unwrap_or_default()));
        }
        let user = user_from(&row).map_err(internal)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok((claims, user))
    }

    /// Forgets sessions that ended more than a day ago, with their refresh tokens
    /// (bounded table growth); returns how many sessions.
    pub async fn sweep(&self) -> Result<u64, AuthError> {
        let cutoff = now_micros() - micros(Duration::from_secs(24 * 3600));
        let mut tx = self.users.db().begin().await.map_err(internal)?;
        let ended = "SELECT id FROM gateway_sessions WHERE expires_at < $1 OR revoked_at < $1";
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM gateway_refresh_tokens WHERE session_id IN ({ended})"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        let removed =
            sqlx::query("DELETE FROM gateway_sessions WHERE expires_at < $1 OR revoked_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await
                .map_err(internal)?
                .rows_affected();
        tx.commit().await.map_err(internal)?;
        Ok(removed)
    }
}
