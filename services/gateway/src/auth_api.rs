//! `casescope.gateway.v1.AuthService`: login, refresh, logout, who am I, password
//! change. Credentials and tokens never appear in a message, a log line or an error.

use crate::oidc::{Oidc, OidcError};
use crate::principal::{Authenticator, CaseGrant, CaseRoles, Credential, Principal};
use crate::sessions::{AuthError, Issued, Sessions};
use crate::throttle::{LoginThrottle, account_key, address_key};
use casescope_proto::common::v1::UserId;
use casescope_proto::error::ApiError;
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::auth_service_server::AuthService;
use casescope_proto::time::micros_to_timestamp;
use std::sync::Arc;
use tonic::{Request, Response, Status};

type RpcResult<T> = Result<Response<T>, Status>;

fn unauthenticated(message: &str) -> ApiError {
    ApiError::Unauthenticated {
        reason: "UNAUTHENTICATED",
        message: message.to_string(),
    }
}

/// The caller-facing error of an [`OidcError`].
fn oidc_error(error: OidcError) -> ApiError {
    match error {
        OidcError::NotConfigured => {
            ApiError::failed_precondition("OIDC_NOT_CONFIGURED", error.to_string())
        }
        OidcError::BadRequest(message) => {
            ApiError::invalid_field("REDIRECT_URI_NOT_ALLOWED", "redirect_uri", message)
        }
        OidcError::Refused(message) => {
            tracing::info!(reason = %message, "OIDC sign-in refused");
            ApiError::Unauthenticated {
                reason: "OIDC_SIGN_IN_REFUSED",
                message,
            }
        }
        OidcError::NoRole(message) => ApiError::PermissionDenied {
            reason: "NO_ROLE",
            message,
        },
        OidcError::Busy(message) => ApiError::RateLimited {
            message,
            retry_after_secs: 60,
        },
        OidcError::Provider(message) => {
            tracing::warn!(problem = %message, "identity provider");
            ApiError::Unavailable { message }
        }
        OidcError::Internal(message) => ApiError::internal_logged("OIDC sign-in", message),
    }
}

/// The caller-facing error of an [`AuthError`] (the variant itself is logged).
fn auth_error(error: AuthError, what: &str) -> ApiError {
    match error {
        AuthError::Internal(message) => ApiError::internal_logged(what, message),
        AuthError::Policy(message) => {
            ApiError::invalid_field("PASSWORD_POLICY", "new_password", message)
        }
        AuthError::BadCredentials => unauthenticated("wrong username or password"),
        other => {
            tracing::info!(reason = %other, what, "credential refused");
            unauthenticated(
                "the credential is not valid (expired, revoked or unknown); log in again",
            )
        }
    }
}

fn pair(issued: &Issued) -> pb::TokenPair {
    pb::TokenPair {
        access_token: issued.access_token.clone(),
        access_token_expires_at: Some(prost_types::Timestamp {
            seconds: i64::try_from(issued.access_expires_at).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        refresh_token: issued.refresh_token.clone(),
        refresh_token_expires_at: Some(micros_to_timestamp(issued.refresh_expires_at)),
        session_id: Some(pb::SessionId {
            value: issued.session_id.clone(),
        }),
    }
}

pub(crate) fn grant_to_pb(grant: &CaseGrant) -> pb::CaseRoleGrant {
    pb::CaseRoleGrant {
        user_id: Some(UserId {
            value: grant.user_id.clone(),
        }),
        username: grant.username.clone(),
        case_id: Some(casescope_proto::common::v1::CaseId {
            value: grant.case_id.clone(),
        }),
        role: match grant.role {
            crate::CaseRole::Viewer => pb::CaseRole::Viewer,
            crate::CaseRole::Analyst => pb::CaseRole::Analyst,
            crate::CaseRole::CaseAdmin => pb::CaseRole::CaseAdmin,
        } as i32,
        granted_by: Some(UserId {
            value: grant.granted_by.clone(),
        }),
        granted_at: Some(micros_to_timestamp(grant.granted_at)),
    }
}

/// The bearer credential of a request, if it carries one.
pub fn bearer<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

#[derive(Clone)]
pub struct AuthApi {
    sessions: Sessions,
    throttle: LoginThrottle,
    authenticator: Authenticator,
    roles: CaseRoles,
    oidc: Option<Arc<Oidc>>,
}

impl AuthApi {
    pub fn new(
        sessions: Sessions,
        throttle: LoginThrottle,
        authenticator: Authenticator,
        roles: CaseRoles,
    ) -> Self {
        Self {
            sessions,
            throttle,
            authenticator,
            roles,
            oidc: None,
        }
    }

    /// Offers sign-in through this OpenID Connect provider.
    pub fn with_oidc(mut self, oidc: Arc<Oidc>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    fn oidc(&self) -> Result<&Oidc, ApiError> {
        self.oidc.as_deref().ok_or_else(|| {
            ApiError::failed_precondition(
                "OIDC_NOT_CONFIGURED",
                OidcError::NotConfigured.to_string(),
            )
        })
    }

    /// The principal of the request's bearer credential.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Principal, ApiError> {
        let token = bearer(request).ok_or_else(|| {
            unauthenticated("no credentials: log in (casescope login) or set CASESCOPE_TOKEN")
        })?;
        self.authenticator
            .authenticate(token)
            .await
            .map_err(|e| auth_error(e, "authenticate"))
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(&self, request: Request<pb::LoginRequest>) -> RpcResult<pb::LoginResponse> {
        let address = request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let request = request.into_inner();
        let username = request.username.trim();
        if username.is_empty() || username.len() > 64 {
            return Err(ApiError::invalid_field(
                "USERNAME_INVALID",
                "username",
                "1 to 64 characters",
            )
            .into());
        }
        let (account, address) = (account_key(username), address_key(&address));
        let db = |e: casescope_db::DbError| ApiError::internal_logged("login throttle", e);
        if let Some(wait) = self
            .throttle
            .refused(&account, &address)
            .await
            .map_err(db)?
        {
            tracing::warn!(account, address, wait, "login refused: too many failures");
            return Err(ApiError::RateLimited {
                message: format!("too many failed logins; retry in {wait} s"),
                retry_after_secs: wait,
            }
            .into());
        }
        match self.sessions.login(username, &request.password).await {
            Ok(issued) => {
                self.throttle.succeeded(&account).await.map_err(db)?;
                tracing::info!(user_id = %issued.user_id, session_id = %issued.session_id, "login");
                Ok(Response::new(pb::LoginResponse {
                    tokens: Some(pair(&issued)),
                    user_id: Some(UserId {
                        value: issued.user_id.clone(),
                    }),
                }))
            }
            Err(AuthError::BadCredentials) => {
                self.throttle.failed(&account, &address).await.map_err(db)?;
                tracing::warn!(account, address, "failed login");
                Err(auth_error(AuthError::BadCredentials, "login").into())
            }
            Err(other) => Err(auth_error(other, "login").into()),
        }
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> RpcResult<pb::TokenPair> {
        let token = request.into_inner().refresh_token;
        self.sessions
            .refresh(token.trim())
            .await
            .map(|issued| Response::new(pair(&issued)))
            .map_err(|e| auth_error(e, "refresh").into())
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> RpcResult<pb::LogoutResponse> {
        let token = request.into_inner().refresh_token;
        self.sessions
            .logout(token.trim())
            .await
            .map_err(|e| Status::from(auth_error(e, "logout")))?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> RpcResult<pb::Principal> {
        let principal = self.caller(&request).await?;
        let grants = self
            .roles
            .list(None, Some(&principal.user.id), "", 1000)
            .await
            .map_err(|e| ApiError::internal_logged("case roles", e))?;
        let timestamp = |seconds: u64| prost_types::Timestamp {
            seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
            nanos: 0,
        };
        let (auth_method, session_id, api_token_id, expires) = match &principal.credential {
            Credential::Session {
                session_id,
                expires_at,
            } => (
                pb::AuthMethod::Session,
                Some(pb::SessionId {
                    value: session_id.clone(),
                }),
                None,
                Some(timestamp(*expires_at)),
            ),
            Credential::ApiToken(token) => (
                pb::AuthMethod::ApiToken,
                None,
                Some(pb::ApiTokenId {
                    value: token.id.clone(),
                }),
                Some(micros_to_timestamp(token.expires_at)),
            ),
        };
        let user = principal.user;
        Ok(Response::new(pb::Principal {
            user_id: Some(UserId {
                value: user.id.clone(),
            }),
            username: user.username,
            display_name: user.display_name,
            is_admin: user.is_admin,
            case_roles: grants.iter().map(grant_to_pb).collect(),
            auth_method: auth_method as i32,
            session_id,
            api_token_id,
            credential_expires_at: expires,
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> RpcResult<pb::ChangePasswordResponse> {
        let principal = self.caller(&request).await?;
        let Credential::Session { session_id, .. } = &principal.credential else {
            return Err(ApiError::PermissionDenied {
                reason: "SESSION_REQUIRED",
                message: "a password is changed in a signed-in session, not with an API token"
                    .into(),
            }
            .into());
        };
        let user = &principal.user;
        let request = request.into_inner();
        self.sessions
            .change_password(
                &user.id,
                session_id,
                &request.current_password,
                &request.new_password,
            )
            .await
            .map_err(|e| Status::from(auth_error(e, "change password")))?;
        tracing::info!(user_id = %user.id, "password changed; other sessions revoked");
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn begin_oidc_login(
        &self,
        request: Request<pb::BeginOidcLoginRequest>,
    ) -> RpcResult<pb::BeginOidcLoginResponse> {
        let oidc = self.oidc()?;
        let begun = oidc
            .begin(&request.into_inner().redirect_uri)
            .await
            .map_err(oidc_error)?;
        Ok(Response::new(pb::BeginOidcLoginResponse {
            authorization_url: begun.authorization_url,
            state: begun.state,
            expires_at: Some(micros_to_timestamp(begun.expires_at)),
        }))
    }

    async fn get_sign_in_options(
        &self,
        _request: Request<pb::GetSignInOptionsRequest>,
    ) -> RpcResult<pb::SignInOptions> {
        Ok(Response::new(pb::SignInOptions {
            password: true,
            oidc: self.oidc.is_some(),
            oidc_issuer: self
                .oidc
                .as_deref()
                .map(|oidc| oidc.issuer().to_string())
                .unwrap_or_default(),
        }))
    }

    async fn complete_oidc_login(
        &self,
        request: Request<pb::CompleteOidcLoginRequest>,
    ) -> RpcResult<pb::LoginResponse> {
        let oidc = self.oidc()?;
        let request = request.into_inner();
        let signed_in = oidc
            .complete(&request.state, &request.code)
            .await
            .map_err(oidc_error)?;
        tracing::info!(
            user_id = %signed_in.user.id,
            username = %signed_in.user.username,
            role = signed_in.user.role.as_str(),
            created = signed_in.created,
            session_id = %signed_in.issued.session_id,
            "OIDC sign-in"
        );
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(pair(&signed_in.issued)),
            user_id: Some(UserId {
                value: signed_in.issued.user_id.clone(),
            }),
        }))
    }
}
