//! `casescope.gateway.v1.AdminService`: users, case roles, API tokens and the audit
//! log. Every RPC is authorised by its policy entry (`policy.rs`) before it runs; the
//! RPCs open to every signed-in user limit the caller to their own things here.

use crate::api_tokens::{ApiTokenRow, ApiTokens, TokenRequestError};
use crate::audit::{AuditFilter, AuditLog};
use crate::auth_api::{AuthApi, grant_to_pb};
use crate::password;
use crate::policy::{Decision, GlobalRole, decide, rule_of};
use crate::principal::{CaseRole, CaseRoles, Principal};
use crate::users::{UserError, UserRow, Users};
use casescope_db::DbError;
use casescope_proto::common::v1::{CaseId, PageResponse, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::admin_service_server::AdminService;
use casescope_proto::paging::validate_page;
use casescope_proto::time::micros_to_timestamp;
use tonic::{Request, Response, Status};

type RpcResult<T> = Result<Response<T>, Status>;

const SERVICE: &str = "/casescope.gateway.v1.AdminService/";

fn db(error: impl Into<DbError>) -> ApiError {
    ApiError::internal_logged("gateway database", error.into())
}

fn not_found(what: &str) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("{what} does not exist"))
}

fn denied(message: &str) -> ApiError {
    ApiError::PermissionDenied {
        reason: "PERMISSION_DENIED",
        message: message.to_string(),
    }
}

fn id_of(value: Option<&UserId>) -> String {
    value
        .map(|v| v.value.trim().to_string())
        .unwrap_or_default()
}

fn case_of(value: Option<&CaseId>) -> Option<String> {
    value
        .map(|v| v.value.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub(crate) fn user_to_pb(user: &UserRow) -> pb::User {
    pb::User {
        id: Some(UserId {
            value: user.id.clone(),
        }),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        email: user.email.clone(),
        is_admin: user.role == GlobalRole::Admin,
        disabled: user.disabled,
        created_at: Some(micros_to_timestamp(user.created_at)),
        updated_at: Some(micros_to_timestamp(user.updated_at)),
        last_login_at: user.last_login_at.map(micros_to_timestamp),
        version: user.version,
        role: user.role.as_str().to_string(),
    }
}

fn token_to_pb(token: &ApiTokenRow) -> pb::ApiToken {
    pb::ApiToken {
        id: Some(pb::ApiTokenId {
            value: token.id.clone(),
        }),
        name: token.name.clone(),
        user_id: Some(UserId {
            value: token.user_id.clone(),
        }),
        case_ids: token
            .case_ids
            .iter()
            .map(|value| CaseId {
                value: value.clone(),
            })
            .collect(),
        read_only: token.read_only,
        value_prefix: token.value_prefix.clone(),
        created_at: Some(micros_to_timestamp(token.created_at)),
        expires_at: Some(micros_to_timestamp(token.expires_at)),
        last_used_at: token.last_used_at.map(micros_to_timestamp),
        revoked_at: token.revoked_at.map(micros_to_timestamp),
    }
}

fn role_from(text: &str, is_admin: bool) -> Result<GlobalRole, ApiError> {
    if text.trim().is_empty() {
        return Ok(if is_admin {
            GlobalRole::Admin
        } else {
            GlobalRole::Analyst
        });
    }
    GlobalRole::parse(text.trim()).ok_or_else(|| {
        ApiError::invalid_field(
            "ROLE_INVALID",
            "role",
            "one of admin, analyst, auditor, viewer",
        )
    })
}

fn case_role_from(value: i32) -> Result<CaseRole, ApiError> {
    match pb::CaseRole::try_from(value) {
        Ok(pb::CaseRole::Viewer) => Ok(CaseRole::Viewer),
        Ok(pb::CaseRole::Analyst) => Ok(CaseRole::Analyst),
        Ok(pb::CaseRole::CaseAdmin) => Ok(CaseRole::CaseAdmin),
        _ => Err(ApiError::invalid_field(
            "CASE_ROLE_INVALID",
            "role",
            "viewer, analyst or case_admin (use RemoveCaseRole to take a role away)",
        )),
    }
}

fn page_response(next: Option<String>) -> Option<PageResponse> {
    Some(PageResponse {
        next_cursor: next.unwrap_or_default(),
    })
}

#[derive(Clone)]
pub struct AdminApi {
    auth: AuthApi,
    users: Users,
    roles: CaseRoles,
    tokens: ApiTokens,
    audit: AuditLog,
}

impl AdminApi {
    pub fn new(
        auth: AuthApi,
        users: Users,
        roles: CaseRoles,
        tokens: ApiTokens,
        audit: AuditLog,
    ) -> Self {
        Self {
            auth,
            users,
            roles,
            tokens,
            audit,
        }
    }

    /// Authenticates the caller and applies the RPC's policy entry (`case_id` for the
    /// entries that address a case).
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        case_id: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let rule = rule_of(&format!("{SERVICE}{rpc}"))
            .ok_or_else(|| ApiError::internal_logged("policy", format!("no entry for {rpc}")))?;
        let caller = self.auth.caller(request).await?;
        let case_role = match case_id {
            Some(case) => self.roles.role(&caller.user.id, case).await.map_err(db)?,
            None => None,
        };
        match decide(rule, Some(&caller), case_id, case_role) {
            Decision::Allow => Ok(caller),
            Decision::Unauthenticated => Err(ApiError::Unauthenticated {
                reason: "UNAUTHENTICATED",
                message: "log in first".into(),
            }),
            Decision::NotFound => Err(not_found(&format!("case {}", case_id.unwrap_or_default()))),
            Decision::Denied => Err(denied(&format!("{rpc} is not allowed for this caller"))),
        }
    }

    async fn user(&self, id: &str) -> Result<UserRow, ApiError> {
        self.users
            .by_id(id)
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(&format!("user {id}")))
    }

    /// The user named by id, or else by name.
    async fn user_named(&self, id: &str, username: &str) -> Result<UserRow, ApiError> {
        if !id.is_empty() || username.trim().is_empty() {
            return self.user(id).await;
        }
        self.users
            .by_name(username.trim())
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(&format!("user {}", username.trim())))
    }

    /// The user a self-service RPC is about: the caller, or (admins only) `asked`.
    fn subject(caller: &Principal, asked: &str) -> Result<String, ApiError> {
        if asked.is_empty() || asked == caller.user.id {
            Ok(caller.user.id.clone())
        } else if caller.user.role == GlobalRole::Admin {
            Ok(asked.to_string())
        } else {
            Err(denied("only administrators act for other users"))
        }
    }
}

fn user_error(error: UserError) -> ApiError {
    match error {
        UserError::Username(m) => ApiError::invalid_field("USERNAME_INVALID", "username", m),
        UserError::Password(m) => ApiError::invalid_field("PASSWORD_POLICY", "password", m),
        UserError::Exists(name) => ApiError::AlreadyExists {
            reason: "USER_EXISTS",
            message: format!("a user named {name:?} exists"),
        },
        UserError::Internal(m) => ApiError::internal_logged("create user", m),
    }
}

fn token_error(error: TokenRequestError) -> ApiError {
    match error {
        TokenRequestError::Name(m) => ApiError::invalid_field("TOKEN_NAME_INVALID", "name", m),
        TokenRequestError::Expiry(m) => {
            ApiError::invalid_field("TOKEN_EXPIRY_INVALID", "expires_at", m)
        }
        TokenRequestError::Cases(m) => ApiError::invalid_field("CASE_IDS_INVALID", "case_ids", m),
        TokenRequestError::Exists(name) => ApiError::AlreadyExists {
            reason: "TOKEN_EXISTS",
            message: format!("a token named {name:?} exists for this user"),
        },
        TokenRequestError::Internal(m) => ApiError::internal_logged("create token", m),
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> RpcResult<pb::User> {
        self.authorize(&request, "CreateUser", None).await?;
        let request = request.into_inner();
        let role = role_from(&request.role, request.is_admin)?;
        let user = self
            .users
            .create(
                request.username.trim(),
                request.display_name.trim(),
                &request.password,
                role,
            )
            .await
            .map_err(user_error)?;
        Ok(Response::new(user_to_pb(&user)))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> RpcResult<pb::User> {
        self.authorize(&request, "GetUser", None).await?;
        let user = self.user(&id_of(request.get_ref().id.as_ref())).await?;
        Ok(Response::new(user_to_pb(&user)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> RpcResult<pb::ListUsersResponse> {
        self.authorize(&request, "ListUsers", None).await?;
        let request = request.into_inner();
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page.cursor.clone().unwrap_or_default();
        let mut users = self
            .users
            .list(
                request.include_disabled,
                request.username_prefix.trim(),
                &after,
                i64::from(page.size) + 1,
            )
            .await
            .map_err(db)?;
        let more = users.len() > page.size as usize;
        users.truncate(page.size as usize);
        let next = more.then(|| users.last().map(|u| u.username.to_ascii_lowercase()));
        Ok(Response::new(pb::ListUsersResponse {
            users: users.iter().map(user_to_pb).collect(),
            page: page_response(next.flatten()),
        }))
    }

    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> RpcResult<pb::User> {
        let caller = self.authorize(&request, "UpdateUser", None).await?;
        let request = request.into_inner();
        let mut user = self.user(&id_of(request.id.as_ref())).await?;
        let stored_version = user.version;
        if request.expected_version != 0 && request.expected_version != stored_version {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!("the user is at version {stored_version}; reload and retry"),
            }
            .into());
        }
        let mask = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if mask.is_empty() {
            return Err(ApiError::invalid_field(
                "UPDATE_MASK_EMPTY",
                "update_mask",
                "name a field",
            )
            .into());
        }
        let mut revoke = false;
        for path in &mask {
            match path.as_str() {
                "display_name" => user.display_name = request.display_name.trim().to_string(),
                "email" => user.email = request.email.trim().to_string(),
                "is_admin" => {
                    user.role = if request.is_admin {
                        GlobalRole::Admin
                    } else {
                        GlobalRole::Analyst
                    }
                }
                "role" => user.role = role_from(&request.role, false)?,
                "disabled" => {
                    revoke |= request.disabled && !user.disabled;
                    user.disabled = request.disabled;
                }
                "password" => {
                    if let Some(problem) = password::policy_violation(&request.password) {
                        return Err(ApiError::invalid_field(
                            "PASSWORD_POLICY",
                            "password",
                            problem,
                        )
                        .into());
                    }
                    user.password_hash = password::hash(request.password.clone())
                        .await
                        .map_err(|e| ApiError::internal_logged("hash password", e))?;
                    revoke = true;
                }
                other => {
                    return Err(ApiError::invalid_field(
                        "UPDATE_MASK_UNKNOWN_FIELD",
                        "update_mask",
                        format!("{other:?} cannot be updated"),
                    )
                    .into());
                }
            }
        }
        let still_admin = user.role == GlobalRole::Admin && !user.disabled;
        if !still_admin && self.users.other_admins(&user.id).await.map_err(db)? == 0 {
            return Err(ApiError::failed_precondition(
                "LAST_ADMIN",
                "this is the last enabled administrator; make another one first",
            )
            .into());
        }
        if !self
            .users
            .update(&user, stored_version, revoke)
            .await
            .map_err(db)?
        {
            return Err(ApiError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: "the user was changed concurrently; retry".into(),
            }
            .into());
        }
        tracing::info!(user_id = %user.id, by = %caller.user.id, fields = ?mask, "user updated");
        Ok(Response::new(user_to_pb(&self.user(&user.id).await?)))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> RpcResult<pb::DeleteUserResponse> {
        self.authorize(&request, "DeleteUser", None).await?;
        let user = self.user(&id_of(request.get_ref().id.as_ref())).await?;
        if user.role == GlobalRole::Admin
            && self.users.other_admins(&user.id).await.map_err(db)? == 0
        {
            return Err(ApiError::failed_precondition(
                "LAST_ADMIN",
                "this is the last enabled administrator; make another one first",
            )
            .into());
        }
        self.users.delete(&user.id).await.map_err(db)?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn set_case_role(
        &self,
        request: Request<pb::SetCaseRoleRequest>,
    ) -> RpcResult<pb::CaseRoleGrant> {
        let case = case_of(request.get_ref().case_id.as_ref())
            .ok_or_else(|| ApiError::invalid_field("CASE_ID_INVALID", "case_id", "required"))?;
        let caller = self.authorize(&request, "SetCaseRole", Some(&case)).await?;
        let request = request.into_inner();
        let role = case_role_from(request.role)?;
        let user = self
            .user_named(&id_of(request.user_id.as_ref()), &request.username)
            .await?;
        self.roles
            .set(&user.id, &case, role, &caller.user.id)
            .await
            .map_err(db)?;
        let grant = self
            .roles
            .list(Some(&case), Some(&user.id), "", 1)
            .await
            .map_err(db)?
            .pop()
            .ok_or_else(|| ApiError::internal_logged("set case role", "grant not found"))?;
        Ok(Response::new(grant_to_pb(&grant)))
    }

    async fn remove_case_role(
        &self,
        request: Request<pb::RemoveCaseRoleRequest>,
    ) -> RpcResult<pb::RemoveCaseRoleResponse> {
        let case = case_of(request.get_ref().case_id.as_ref())
            .ok_or_else(|| ApiError::invalid_field("CASE_ID_INVALID", "case_id", "required"))?;
        self.authorize(&request, "RemoveCaseRole", Some(&case))
            .await?;
        let request = request.into_inner();
        let user = self
            .user_named(&id_of(request.user_id.as_ref()), &request.username)
            .await?;
        self.roles.remove(&user.id, &case).await.map_err(db)?;
        Ok(Response::new(pb::RemoveCaseRoleResponse {}))
    }

    async fn list_case_roles(
        &self,
        request: Request<pb::ListCaseRolesRequest>,
    ) -> RpcResult<pb::ListCaseRolesResponse> {
        let case = case_of(request.get_ref().case_id.as_ref());
        let user = id_of(request.get_ref().user_id.as_ref());
        if case.is_none() && user.is_empty() {
            return Err(ApiError::invalid_field(
                "FILTER_REQUIRED",
                "case_id",
                "name a case, a user or both",
            )
            .into());
        }
        let caller = self.authorize(&request, "ListCaseRoles", None).await?;
        // A case's grants to its viewers and up; a user's grants to themselves and admins.
        if let Some(case) = &case {
            let held = self.roles.role(&caller.user.id, case).await.map_err(db)?;
            let reads_all = matches!(caller.user.role, GlobalRole::Admin | GlobalRole::Auditor);
            if (held.is_none() && !reads_all) || !caller.credential_allows_case(case) {
                return Err(not_found(&format!("case {case}")).into());
            }
        } else {
            Self::subject(&caller, &user)?;
        }
        let page = validate_page(request.get_ref().page.as_ref(), "page")?;
        let after = page.cursor.clone().unwrap_or_default();
        let mut grants = self
            .roles
            .list(
                case.as_deref(),
                (!user.is_empty()).then_some(user.as_str()),
                &after,
                i64::from(page.size) + 1,
            )
            .await
            .map_err(db)?;
        let more = grants.len() > page.size as usize;
        grants.truncate(page.size as usize);
        let next = more
            .then(|| {
                grants
                    .last()
                    .map(|g| format!("{}|{}", g.case_id, g.user_id))
            })
            .flatten();
        Ok(Response::new(pb::ListCaseRolesResponse {
            grants: grants.iter().map(grant_to_pb).collect(),
            page: page_response(next),
        }))
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> RpcResult<pb::CreateApiTokenResponse> {
        let caller = self.authorize(&request, "CreateApiToken", None).await?;
        let request = request.into_inner();
        let owner = Self::subject(&caller, &id_of(request.user_id.as_ref()))?;
        let expires = request
            .expires_at
            .map(|t| t.seconds.saturating_mul(1_000_000))
            .unwrap_or(0);
        let cases: Vec<String> = request
            .case_ids
            .iter()
            .map(|c| c.value.trim().to_string())
            .collect();
        let (token, value) = self
            .tokens
            .create(&owner, &request.name, &cases, request.read_only, expires)
            .await
            .map_err(token_error)?;
        tracing::info!(token_id = %token.id, user_id = %owner, "API token created");
        Ok(Response::new(pb::CreateApiTokenResponse {
            token: Some(token_to_pb(&token)),
            token_value: value,
        }))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> RpcResult<pb::ListApiTokensResponse> {
        let caller = self.authorize(&request, "ListApiTokens", None).await?;
        let request = request.into_inner();
        let owner = Self::subject(&caller, &id_of(request.user_id.as_ref()))?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page.cursor.clone().unwrap_or_default();
        let mut tokens = self
            .tokens
            .list(
                &owner,
                request.include_inactive,
                &after,
                i64::from(page.size) + 1,
            )
            .await
            .map_err(db)?;
        let more = tokens.len() > page.size as usize;
        tokens.truncate(page.size as usize);
        let next = more.then(|| tokens.last().map(|t| t.id.clone())).flatten();
        Ok(Response::new(pb::ListApiTokensResponse {
            tokens: tokens.iter().map(token_to_pb).collect(),
            page: page_response(next),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> RpcResult<pb::ApiToken> {
        let caller = self.authorize(&request, "RevokeApiToken", None).await?;
        let id = request
            .get_ref()
            .id
            .as_ref()
            .map(|i| i.value.trim().to_string())
            .unwrap_or_default();
        // Someone else's token is "not found" unless the caller is an administrator.
        let token = self
            .tokens
            .get(&id)
            .await
            .map_err(db)?
            .filter(|t| t.user_id == caller.user.id || caller.user.role == GlobalRole::Admin)
            .ok_or_else(|| not_found(&format!("API token {id}")))?;
        let revoked = self
            .tokens
            .revoke(&token.id)
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(&format!("API token {id}")))?;
        Ok(Response::new(token_to_pb(&revoked)))
    }

    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> RpcResult<pb::ListAuditLogResponse> {
        self.authorize(&request, "ListAuditLog", None).await?;
        let request = request.into_inner();
        let page = validate_page(request.page.as_ref(), "page")?;
        let before = match page.cursor.as_deref() {
            None => 0,
            Some(cursor) => cursor.parse::<i64>().map_err(|_| {
                ApiError::invalid_field(
                    "PAGE_CURSOR_INVALID",
                    "page.cursor",
                    "not a cursor of this list",
                )
            })?,
        };
        let range = request.time_range.unwrap_or_default();
        let outcomes = request
            .outcomes
            .iter()
            .filter_map(|o| match pb::AuditOutcome::try_from(*o) {
                Ok(pb::AuditOutcome::Succeeded) => Some("succeeded"),
                Ok(pb::AuditOutcome::Unauthenticated) => Some("unauthenticated"),
                Ok(pb::AuditOutcome::Denied) => Some("denied"),
                Ok(pb::AuditOutcome::Failed) => Some("failed"),
                Ok(pb::AuditOutcome::RateLimited) => Some("rate_limited"),
                _ => None,
            })
            .map(String::from)
            .collect();
        let filter = AuditFilter {
            actor_user_id: id_of(request.actor_user_id.as_ref()),
            method: request.method.trim().to_string(),
            case_id: case_of(request.case_id.as_ref()).unwrap_or_default(),
            outcomes,
            from: range.start_unix_micros.unwrap_or(0),
            to: range.end_unix_micros.unwrap_or(i64::MAX),
        };
        let mut entries = self
            .audit
            .list(&filter, before, i64::from(page.size) + 1)
            .await
            .map_err(db)?;
        let more = entries.len() > page.size as usize;
        entries.truncate(page.size as usize);
        let next = more
            .then(|| entries.last().map(|e| e.sequence.to_string()))
            .flatten();
        Ok(Response::new(pb::ListAuditLogResponse {
            entries: entries.iter().map(crate::audit::entry_to_pb).collect(),
            page: page_response(next),
        }))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> RpcResult<pb::VerifyAuditLogResponse> {
        self.authorize(&request, "VerifyAuditLog", None).await?;
        Ok(Response::new(match self.audit.verify().await {
            Ok(verified) => pb::VerifyAuditLogResponse {
                intact: true,
                records_verified: verified,
                first_broken_sequence: 0,
                problem: String::new(),
            },
            Err(broken) => pb::VerifyAuditLogResponse {
                intact: false,
                records_verified: 0,
                first_broken_sequence: broken.sequence(),
                problem: broken.to_string(),
            },
        }))
    }
}
