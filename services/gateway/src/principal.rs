//! Who is calling: a [`Principal`] from a bearer credential — a session's access token
//! (JWT) or an API token (`cst_…`) — with the user's global role and case roles, and
//! case roles themselves (grant, remove, list).

use crate::api_tokens::{ApiTokenRow, ApiTokens};
use crate::sessions::{AuthError, Sessions};
use crate::users::UserRow;
use casescope_db::{Database, DbError, now_micros};
use sqlx::Row;

/// A user's role on one case (the contract's `CaseRole`, ordered by what it allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaseRole {
    Viewer,
    Analyst,
    CaseAdmin,
}

impl CaseRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseRole::Viewer => "viewer",
            CaseRole::Analyst => "analyst",
            CaseRole::CaseAdmin => "case_admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(CaseRole::Viewer),
            "analyst" => Some(CaseRole::Analyst),
            "case_admin" => Some(CaseRole::CaseAdmin),
            _ => None,
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An access token of session `session_id`, valid until `expires_at` (seconds).
    Session { session_id: String, expires_at: u64 },
    /// An API token (its scope applies on top of the user's roles).
    ApiToken(ApiTokenRow),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub credential: Credential,
}

impl Principal {
    /// Whether the credential allows only read-only RPCs.
    pub fn read_only(&self) -> bool {
        matches!(&self.credential, Credential::ApiToken(token) if token.read_only)
    }

    /// Whether the credential may address `case_id` at all (an API token limited to
    /// some cases); the user's role on the case is checked separately.
    pub fn credential_allows_case(&self, case_id: &str) -> bool {
        match &self.credential {
            Credential::ApiToken(token) => {
                token.case_ids.is_empty() || token.case_ids.iter().any(|c| c == case_id)
            }
            Credential::Session { .. } => true,
        }
    }
}

/// Resolves bearer credentials into principals.
#[derive(Clone)]
pub struct Authenticator {
    sessions: Sessions,
    tokens: ApiTokens,
}

impl Authenticator {
    pub fn new(sessions: Sessions, tokens: ApiTokens) -> Self {
        Self { sessions, tokens }
    }

    /// The principal of `bearer` (an access token or an API token).
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if bearer.starts_with("cst_") {
            let token = self
                .tokens
                .authenticate(bearer)
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?
                .ok_or(AuthError::UnknownToken)?;
            let user = self
                .sessions
                .users()
                .by_id(&token.user_id)
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?
                .ok_or(AuthError::UnknownToken)?;
            if user.disabled {
                return Err(AuthError::Disabled);
            }
            return Ok(Principal {
                user,
                credential: Credential::ApiToken(token),
            });
        }
        let (claims, user) = self.sessions.authenticate(bearer).await?;
        Ok(Principal {
            user,
            credential: Credential::Session {
                session_id: claims.sid,
                expires_at: claims.exp,
            },
        })
    }
}

/// One grant of a role on a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseGrant {
    pub user_id: String,
    pub username: String,
    pub case_id: String,
    pub role: CaseRole,
    pub granted_by: String,
    pub granted_at: i64,
}

/// Case roles (the `gateway_case_roles` table).
#[derive(Clone)]
pub struct CaseRoles {
    db: Database,
}

impl CaseRoles {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Grants `role` to `user_id` on `case_id` (replacing a previous role).
    pub async fn set(
        &self,
        user_id: &str,
        case_id: &str,
        role: CaseRole,
        granted_by: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO gateway_case_roles (user_id, case_id, role, granted_by, granted_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, case_id) DO UPDATE SET \
             role = excluded.role, granted_by = excluded.granted_by, granted_at = excluded.granted_at",
        )
        .bind(user_id)
        .bind(case_id)
        .bind(role.as_str())
        .bind(granted_by)
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Removes a grant; whether there was one.
    pub async fn remove(&self, user_id: &str, case_id: &str) -> Result<bool, DbError> {
        let result =
            sqlx::query("DELETE FROM gateway_case_roles WHERE user_id = $1 AND case_id = $2")
                .bind(user_id)
                .bind(case_id)
                .execute(self.db.pool())
                .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The role of `user_id` on `case_id`, if any.
    pub async fn role(&self, user_id: &str, case_id: &str) -> Result<Option<CaseRole>, DbError> {
        let row =
            sqlx::query("SELECT role FROM gateway_case_roles WHERE user_id = $1 AND case_id = $2")
                .bind(user_id)
                .bind(case_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row
            .map(|row| row.try_get::<String, _>("role"))
            .transpose()?
            .and_then(|role| CaseRole::parse(&role)))
    }

    /// Grants of a case and/or a user, ordered by (case, user), at most `limit` after
    /// the position `after` (`case_id|user_id`, empty for the start).
    pub async fn list(
        &self,
        case_id: Option<&str>,
        user_id: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<CaseGrant>, DbError> {
        let rows = sqlx::query(
            "SELECT r.user_id, u.username, r.case_id, r.role, r.granted_by, r.granted_at \
             FROM gateway_case_roles r JOIN gateway_users u ON u.id = r.user_id \
             WHERE ($1 = '' OR r.case_id = $1) AND ($2 = '' OR r.user_id = $2) \
             AND ($3 = '' OR r.case_id || '|' || r.user_id > $3) \
             ORDER BY r.case_id, r.user_id LIMIT $4",
        )
        .bind(case_id.unwrap_or(""))
        .bind(user_id.unwrap_or(""))
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(CaseGrant {
                    user_id: row.try_get("user_id")?,
                    username: row.try_get("username")?,
                    case_id: row.try_get("case_id")?,
                    role: CaseRole::parse(&role).unwrap_or(CaseRole::Viewer),
                    granted_by: row.try_get("granted_by")?,
                    granted_at: row.try_get("granted_at")?,
                })
            })
            .collect()
    }

    /// Removes every grant on a deleted case; how many.
    pub async fn forget_case(&self, case_id: &str) -> Result<u64, DbError> {
        let result = sqlx::query("DELETE FROM gateway_case_roles WHERE case_id = $1")
            .bind(case_id)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected())
    }
}
