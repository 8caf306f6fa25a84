//! The gateway service: users, sessions, API tokens, case roles and the audit log, and
//! the checks every public RPC passes through (docs/security.md).
//!
//! Password hashing, access tokens and their keys, sessions with rotating refresh
//! tokens, the login throttle, API tokens, case roles, the policy, the hash-chained
//! audit log, the AuthService and AdminService RPCs, and the enforcement layer in front
//! of every public RPC ([`enforce`]). Sign-in through an OpenID Connect provider: [`oidc`].

pub mod admin_api;
pub mod api_tokens;
pub mod audit;
pub mod auth_api;
pub mod bootstrap;
pub mod client_address;
pub mod enforce;
pub mod limits;
pub mod members_api;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod principal;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use admin_api::AdminApi;
pub use api_tokens::{ApiTokenRow, ApiTokens};
pub use audit::{AUDIT_MIGRATIONS, AuditLog, AuditRecord, ChainBreak};
pub use auth_api::AuthApi;
pub use enforce::{Gate, enforce};
pub use limits::{LimitSettings, RateLimiter};
pub use members_api::CaseMembersApi;
pub use principal::{Authenticator, CaseGrant, CaseRole, CaseRoles, Credential, Principal};
pub use sessions::{AuthError, Issued, SessionSettings, Sessions};
pub use throttle::LoginThrottle;
pub use users::{MIGRATIONS, UserRow, Users};

use casescope_db::{CORE_MIGRATIONS, Migrations};

/// Everything this service needs in its database, in order.
pub const ALL_MIGRATIONS: &[Migrations] = &[CORE_MIGRATIONS, MIGRATIONS, AUDIT_MIGRATIONS];
