//! The gateway's tables, and users: create, look up, the first-run administrator.

use crate::password;
use crate::policy::GlobalRole;
use casescope_db::{Database, DbError, Migration, Migrations, now_micros};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "gateway",
    steps: &[
        Migration {
            version: 1,
            name: "users and sessions",
            sql: "
CREATE TABLE gateway_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT,
    version BIGINT NOT NULL
);
CREATE TABLE gateway_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX gateway_sessions_by_user ON gateway_sessions (user_id);
CREATE INDEX gateway_sessions_by_expiry ON gateway_sessions (expires_at);
CREATE TABLE gateway_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT
);
CREATE INDEX gateway_refresh_by_session ON gateway_refresh_tokens (session_id);
",
        },
        Migration {
            version: 2,
            name: "login throttle",
            sql: "
CREATE TABLE gateway_login_failures (
    throttle_key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
",
        },
        Migration {
            version: 3,
            name: "api tokens",
            sql: "
CREATE TABLE gateway_api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    value_prefix TEXT NOT NULL,
    case_ids TEXT NOT NULL,
    read_only BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    UNIQUE (user_id, name)
);
",
        },
        Migration {
            version: 4,
            name: "case roles",
            sql: "
CREATE TABLE gateway_case_roles (
    user_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, case_id)
);
CREATE INDEX gateway_case_roles_by_case ON gateway_case_roles (case_id, user_id);
",
        },
        Migration {
            version: 5,
            name: "global roles",
            sql: "
ALTER TABLE gateway_users ADD COLUMN role TEXT NOT NULL DEFAULT 'analyst';
UPDATE gateway_users SET role = 'admin' WHERE is_admin = 1;
",
        },
        Migration {
            version: 6,
            name: "oidc sign-in",
            sql: "
CREATE TABLE gateway_oidc_pending (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX gateway_oidc_pending_by_expiry ON gateway_oidc_pending (expires_at);
CREATE TABLE gateway_oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX gateway_oidc_identities_by_user ON gateway_oidc_identities (user_id);
",
        },
    ],
};

/// The password hash of a user who has no password (signs in through an identity
/// provider): not a PHC string, so no password ever verifies against it.
pub const NO_PASSWORD: &str = "!external";

/// Name of the administrator a fresh installation creates.
pub const FIRST_ADMIN: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub password_hash: String,
    /// Whether `role` is [`GlobalRole::Admin`].
    pub is_admin: bool,
    pub role: GlobalRole,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    pub version: i64,
}

pub(crate) fn user_from(row: &AnyRow) -> Result<UserRow, DbError> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        role: GlobalRole::parse(&row.try_get::<String, _>("role")?).unwrap_or(GlobalRole::Viewer),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login_at: row.try_get("last_login_at")?,
        version: row.try_get("version")?,
    })
}

/// Why a new user is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("username: {0}")]
    Username(String),
    #[error("password: {0}")]
    Password(String),
    #[error("a user named {0:?} exists")]
    Exists(String),
    #[error("{0}")]
    Internal(String),
}

/// Whether `name` is a valid username: 1..=64 of `[A-Za-z0-9._-]`.
pub fn username_violation(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 {
        return Some("1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Some("only letters, digits, '.', '_' and '-'".into());
    }
    None
}

#[derive(Clone)]
pub struct Users {
    db: Database,
}

impl Users {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Creates a user (the password is checked against the policy and hashed).
    pub async fn create(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
        role: GlobalRole,
    ) -> Result<UserRow, UserError> {
        if let Some(problem) = username_violation(username) {
            return Err(UserError::Username(problem));
        }
        if let Some(problem) = password::policy_violation(password) {
            return Err(UserError::Password(problem));
        }
        let hash = password::hash(password.to_string())
            .await
            .map_err(UserError::Internal)?;
        self.insert(username, display_name, "", hash, role).await
    }

    /// Creates a user who signs in through an identity provider only: no password
    /// ([`NO_PASSWORD`] never verifies).
    pub async fn create_external(
        &self,
        username: &str,
        display_name: &str,
        email: &str,
        role: GlobalRole,
    ) -> Result<UserRow, UserError> {
        if let Some(problem) = username_violation(username) {
            return Err(UserError::Username(problem));
        }
        self.insert(username, display_name, email, NO_PASSWORD.into(), role)
            .await
    }

    async fn insert(
        &self,
        username: &str,
        display_name: &str,
        email: &str,
        password_hash: String,
        role: GlobalRole,
    ) -> Result<UserRow, UserError> {
        let is_admin = role == GlobalRole::Admin;
        let now = now_micros();
        let user = UserRow {
            id: uuid::Uuid::now_v7().to_string(),
            username: username.to_string(),
            display_name: display_name.to_string(),
            email: email.to_string(),
            password_hash,
            is_admin,
            role,
            disabled: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            version: 1,
        };
        let inserted = sqlx::query(
            "INSERT INTO gateway_users (id, username, username_key, display_name, email, \
             password_hash, is_admin, disabled, created_at, updated_at, version, role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, 1, $9) \
             ON CONFLICT (username_key) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(user.username.to_ascii_lowercase())
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(i64::from(is_admin))
        .bind(now)
        .bind(role.as_str())
        .execute(self.db.pool())
        .await
        .map_err(|e| UserError::Internal(DbError::from(e).to_string()))?;
        if inserted.rows_affected() == 0 {
            return Err(UserError::Exists(username.to_string()));
        }
        Ok(user)
    }

    pub async fn by_name(&self, username: &str) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query("SELECT * FROM gateway_users WHERE username_key = $1")
            .bind(username.to_ascii_lowercase())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<UserRow>, DbError> {
        let row = sqlx::query("SELECT * FROM gateway_users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    /// Active (or all) users in username order, `limit` after the username key `after`,
    /// whose username starts with `prefix` (case-insensitive).
    pub async fn list(
        &self,
        include_disabled: bool,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UserRow>, DbError> {
        let prefix = prefix.to_ascii_lowercase();
        let rows = sqlx::query(
            "SELECT * FROM gateway_users WHERE ($1 = 1 OR disabled = 0) \
             AND substr(username_key, 1, length($2)) = $2 AND username_key > $3 \
             ORDER BY username_key LIMIT $4",
        )
        .bind(i64::from(include_disabled))
        .bind(&prefix)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(user_from).collect()
    }

    /// Writes the changed fields of `user` (a new `password_hash` is written as given)
    /// if it is still at `expected_version`; revokes the user's sessions when asked (a
    /// new password, a disabled user). False if the row changed meanwhile.
    pub async fn update(
        &self,
        user: &UserRow,
        expected_version: i64,
        revoke_sessions: bool,
    ) -> Result<bool, DbError> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let updated = sqlx::query(
            "UPDATE gateway_users SET display_name = $2, email = $3, is_admin = $4, role = $5, \
             disabled = $6, password_hash = $7, updated_at = $8, version = version + 1 \
             WHERE id = $1 AND version = $9",
        )
        .bind(&user.id)
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(i64::from(user.role == GlobalRole::Admin))
        .bind(user.role.as_str())
        .bind(i64::from(user.disabled))
        .bind(&user.password_hash)
        .bind(now)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        if revoke_sessions {
            sqlx::query(
                "UPDATE gateway_sessions SET revoked_at = $2, revoked_reason = 'changed by an administrator' \
                 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(&user.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Enabled administrators other than `except`.
    pub async fn other_admins(&self, except: &str) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM gateway_users WHERE role = 'admin' AND disabled = 0 AND id <> $1",
        )
        .bind(except)
        .fetch_one(self.db.pool())
        .await?;
        row.try_get("n").map_err(DbError::from)
    }

    /// Deletes a user with their sessions, refresh tokens, API tokens and case roles.
    pub async fn delete(&self, id: &str) -> Result<bool, DbError> {
        let mut tx = self.db.begin().await?;
        for statement in [
            "DELETE FROM gateway_refresh_tokens WHERE session_id IN \
             (SELECT id FROM gateway_sessions WHERE user_id = $1)",
            "DELETE FROM gateway_sessions WHERE user_id = $1",
            "DELETE FROM gateway_api_tokens WHERE user_id = $1",
            "DELETE FROM gateway_case_roles WHERE user_id = $1",
            "DELETE FROM gateway_oidc_identities WHERE user_id = $1",
        ] {
            sqlx::query(statement).bind(id).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM gateway_users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// Disables or enables a user.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<bool, DbError> {
        let result = sqlx::query(
            "UPDATE gateway_users SET disabled = $2, version = version + 1, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(disabled))
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// On a fresh installation (no user at all), creates the administrator
    /// [`FIRST_ADMIN`] with `password`, or with a generated one, which is returned to
    /// be shown once. `None` when users exist already.
    pub async fn ensure_first_admin(
        &self,
        password: Option<&str>,
    ) -> Result<Option<String>, UserError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM gateway_users")
            .fetch_one(self.db.pool())
            .await
            .map_err(|e| UserError::Internal(DbError::from(e).to_string()))?;
        let count: i64 = row
            .try_get("n")
            .map_err(|e| UserError::Internal(e.to_string()))?;
        if count > 0 {
            return Ok(None);
        }
        let password = match password {
            Some(password) => password.to_string(),
            None => generated_password(),
        };
        match self
            .create(FIRST_ADMIN, "Administrator", &password, GlobalRole::Admin)
            .await
        {
            Ok(_) => Ok(Some(password)),
            // Another replica created it first.
            Err(UserError::Exists(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// 24 characters from an alphabet without look-alikes (~137 bits).
pub fn generated_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..24)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
