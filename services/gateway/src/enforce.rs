//! The checks every public RPC passes through, in front of the gRPC routes (all-in-one:
//! in process; cluster mode: in the gateway, which then forwards the call): the bearer
//! credential is authenticated, the principal's request rate checked, the case the
//! request addresses read from its first message (the policy entry's case field), the
//! caller's role on it looked up, [`policy::decide`] applied, the outcome audited, and an
//! identity signed with the internal key passed to the service
//! ([`casescope_proto::identity`]). Creating a case makes its creator its `case_admin`;
//! deleting one forgets its roles.

use crate::audit::{AuditLog, AuditRecord};
use crate::client_address::client_address;
use crate::limits::RateLimiter;
use crate::policy::{self, Access, Decision, GlobalRole, Rule};
use crate::principal::{Authenticator, CaseRole, CaseRoles, Credential, Principal};
use crate::sessions::AuthError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use casescope_db::now_micros;
use casescope_proto::error::ApiError;
use casescope_proto::identity::{self, CallerKind, Identity, InternalKey};
use casescope_runtime::config::IpNet;
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use tonic::transport::server::TcpConnectInfo;

/// Largest first message read to find the case (bytes); uploads send their header first.
const MAX_FIRST_MESSAGE: usize = 16 * 1024 * 1024;

/// Largest answer read back to learn a created case's id (bytes).
const MAX_CREATED_CASE: usize = 1024 * 1024;

/// Most cases named in one identity's list (a user on more cases sees the first ones
/// in lists and is told so in the log; direct calls to any of their cases still work).
const MAX_LISTED_CASES: i64 = 10_000;

const CREATE_CASE: &str = "/casescope.cases.v1.CasesService/CreateCase";
const DELETE_CASE: &str = "/casescope.cases.v1.CasesService/DeleteCase";
const UPLOAD: &str = "/casescope.ingest.v1.IngestService/Upload";
const LOGIN: &str = "/casescope.gateway.v1.AuthService/Login";

/// The request message of every RPC of the contract.
static INPUTS: LazyLock<HashMap<String, MessageDescriptor>> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(casescope_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled contract decodes");
    pool.services()
        .flat_map(|service| {
            let name = service.full_name().to_string();
            service
                .methods()
                .map(|method| (format!("/{name}/{}", method.name()), method.input()))
                .collect::<Vec<_>>()
        })
        .collect()
});

/// The message of a call refused for carrying no credential.
pub const NO_CREDENTIALS: &str =
    "no credentials: log in (casescope login) or set CASESCOPE_TOKEN to an API token";

/// The message of a call refused for an expired, revoked or unknown credential.
pub const BAD_CREDENTIAL: &str = "the credential is not valid (expired, revoked or unknown); log in \
     again (casescope login) or use another API token";

/// Everything the checks need; one per process.
pub struct Gate {
    authenticator: Authenticator,
    roles: CaseRoles,
    audit: AuditLog,
    key: InternalKey,
    limiter: RateLimiter,
    trusted_proxies: Vec<IpNet>,
}

impl Gate {
    pub fn new(
        authenticator: Authenticator,
        roles: CaseRoles,
        audit: AuditLog,
        key: InternalKey,
        limiter: RateLimiter,
    ) -> Arc<Self> {
        LazyLock::force(&INPUTS);
        Arc::new(Self {
            authenticator,
            roles,
            audit,
            key,
            limiter,
            trusted_proxies: Vec::new(),
        })
    }

    /// Believes `X-Forwarded-For` from these proxies ([`client_address`]).
    pub fn trusting(mut self: Arc<Self>, proxies: Vec<IpNet>) -> Arc<Self> {
        if let Some(gate) = Arc::get_mut(&mut self) {
            gate.trusted_proxies = proxies;
        }
        self
    }
}

/// Where a call came from, for the audit log.
struct Origin {
    address: String,
    user_agent: String,
    trace_id: String,
}

fn status_response(error: impl Into<tonic::Status>) -> Response {
    let status: tonic::Status = error.into();
    status.into_http::<Body>()
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated {
        reason: "UNAUTHENTICATED",
        message: message.into(),
    }
}

/// The bearer credential of `headers`, if any.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The axum middleware (`from_fn_with_state(gate, enforce)`) in front of the gRPC routes.
pub async fn enforce(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let method = request.uri().path().to_string();
    // Another CaseScope service calling an internal RPC this process serves (the
    // report service reading case members from the gateway) proves itself with a
    // service identity signed with the internal key; the service's guard checks it
    // again. Anything else internal is refused below.
    if policy::rule_of(&method).is_some_and(|rule| rule.access == Access::Internal)
        && gate
            .key
            .verify(
                request.headers().get(identity::HEADER),
                &method,
                identity::now_secs(),
            )
            .is_ok_and(|caller| caller.kind == CallerKind::Service)
    {
        return next.run(request).await;
    }
    // Nobody outside may bring their own identity.
    request.headers_mut().remove(identity::HEADER);
    let Some(rule) = policy::rule_of(&method) else {
        // Health, reflection, HTTP endpoints, and paths that are not RPCs (404).
        return next.run(request).await;
    };
    // The client behind the ingress, also for the services (the login throttle).
    let connection = request.extensions().get::<TcpConnectInfo>().cloned();
    let peer = connection.as_ref().and_then(|c| c.remote_addr());
    let client = client_address(
        peer.map(|a| a.ip()),
        request.headers(),
        &gate.trusted_proxies,
    );
    if let (Some(client), Some(peer), Some(connection)) = (client, peer, &connection)
        && client != peer.ip()
    {
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: connection.local_addr(),
            remote_addr: Some(std::net::SocketAddr::new(client, peer.port())),
        });
    }
    let origin = Origin {
        address: client.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect())
            .unwrap_or_default(),
        trace_id: casescope_runtime::trace_context::current_trace_id(),
    };
    gate.check(rule, &method, origin, request, next).await
}

impl Gate {
    async fn check(
        &self,
        rule: &'static Rule,
        method: &str,
        origin: Origin,
        request: Request,
        next: Next,
    ) -> Response {
        let mut record = AuditRecord {
            at: now_micros(),
            method: method.to_string(),
            client_address: origin.address,
            user_agent: origin.user_agent,
            trace_id: origin.trace_id,
            ..AuditRecord::default()
        };
        // Public RPCs (login, refresh, logout) need no credential, and a stale one a
        // client still sends must not stand in their way.
        let presented = match rule.access {
            Access::Public => None,
            _ => bearer(request.headers()),
        };
        let principal = match presented {
            None => None,
            Some(token) => match self.authenticator.authenticate(token).await {
                Ok(principal) => Some(principal),
                Err(AuthError::Internal(message)) => {
                    return status_response(ApiError::internal_logged("authenticate", message));
                }
                Err(error) => {
                    tracing::info!(reason = %error, method, "credential refused");
                    record.outcome = "unauthenticated".into();
                    record.status_code = tonic::Code::Unauthenticated as i64;
                    self.append(&record).await;
                    return status_response(unauthenticated(BAD_CREDENTIAL));
                }
            },
        };
        if let Some(principal) = &principal {
            record.actor_user_id = principal.user.id.clone();
            record.actor_username = principal.user.username.clone();
            match &principal.credential {
                Credential::Session { .. } => record.auth_method = "session".into(),
                Credential::ApiToken(token) => {
                    record.auth_method = "api_token".into();
                    record.api_token_id = token.id.clone();
                }
            }
            if let Err(wait) = self.limiter.check(&principal.user.id) {
                record.outcome = "rate_limited".into();
                record.status_code = tonic::Code::ResourceExhausted as i64;
                self.append(&record).await;
                return status_response(ApiError::RateLimited {
                    message: format!(
                        "too many requests: at most {} per second (burst {}) per user",
                        self.limiter.settings().requests_per_second,
                        self.limiter.settings().burst
                    ),
                    retry_after_secs: wait.as_secs().max(1),
                });
            }
        }

        // The first message: the case it addresses (and a login's account name).
        let needs_message = rule.case_field.is_some() || method == LOGIN;
        let (request, first) = if needs_message {
            match read_first_message(request, method).await {
                Ok(pair) => pair,
                Err(error) => return status_response(error),
            }
        } else {
            (request, None)
        };
        let case_id = match (rule.case_field, &first) {
            (Some(path), Some(message)) => match case_of(message, path) {
                Some(id) => Some(id),
                None if matches!(rule.access, Access::Case(_)) => {
                    return status_response(ApiError::invalid_field(
                        "CASE_ID_REQUIRED",
                        path,
                        "the case id is required",
                    ));
                }
                None => None,
            },
            _ => None,
        };
        if method == LOGIN
            && let Some(Value::String(name)) = first
                .as_ref()
                .and_then(|m| m.get_field_by_name("username"))
                .as_deref()
        {
            record.actor_username = name.trim().chars().take(64).collect();
        }
        record.case_id = case_id.clone().unwrap_or_default();

        let case_role = match (&principal, &case_id, rule.access) {
            (Some(principal), Some(case), Access::Case(_))
                if principal.user.role != GlobalRole::Admin =>
            {
                match self.roles.role(&principal.user.id, case).await {
                    Ok(role) => role,
                    Err(error) => {
                        return status_response(ApiError::internal_logged(
                            "look up the case role",
                            error,
                        ));
                    }
                }
            }
            _ => None,
        };
        let decision = policy::decide(rule, principal.as_ref(), case_id.as_deref(), case_role);
        if decision != Decision::Allow {
            let error = refusal(decision, rule, principal.as_ref(), case_id.as_deref());
            let status: tonic::Status = error.into();
            record.outcome = match decision {
                Decision::Unauthenticated => "unauthenticated",
                _ => "denied",
            }
            .into();
            record.status_code = status.code() as i64;
            self.append(&record).await;
            return status_response(status);
        }

        let mut request = request;
        let _upload_slot = match (&principal, method) {
            (Some(principal), UPLOAD) => match self.limiter.upload_slot(&principal.user.id) {
                Some(slot) => Some(slot),
                None => {
                    record.outcome = "rate_limited".into();
                    record.status_code = tonic::Code::ResourceExhausted as i64;
                    self.append(&record).await;
                    return status_response(ApiError::RateLimited {
                        message: format!(
                            "too many uploads at once: at most {} per user",
                            self.limiter.settings().max_uploads
                        ),
                        retry_after_secs: 5,
                    });
                }
            },
            _ => None,
        };
        if let Some(principal) = &principal {
            let cases = match self.listed_cases(rule, principal).await {
                Ok(cases) => cases,
                Err(error) => return status_response(error),
            };
            let identity = Identity {
                kind: CallerKind::User,
                user_id: principal.user.id.clone(),
                username: principal.user.username.clone(),
                role: principal.user.role.as_str().to_string(),
                cases,
                method: method.to_string(),
                expires: identity::now_secs() + identity::TTL_SECS,
            };
            request
                .headers_mut()
                .insert(identity::HEADER, self.key.mint(&identity));
        }

        let mut response = next.run(request).await;
        let code = grpc_code(&response);
        if code == tonic::Code::Ok
            && let Some(principal) = &principal
        {
            response = match method {
                CREATE_CASE => self.grant_creator(principal, response).await,
                DELETE_CASE => {
                    if let Some(case) = &case_id
                        && let Err(error) = self.roles.forget_case(case).await
                    {
                        tracing::warn!(%error, case, "cannot forget the roles of a deleted case");
                    }
                    response
                }
                _ => response,
            };
        }
        // Mutating calls, and every call made with an API token (automation's trail).
        let token_use = matches!(
            principal.as_ref().map(|p| &p.credential),
            Some(Credential::ApiToken(_))
        );
        if rule.mutating || token_use {
            record.outcome = if code == tonic::Code::Ok {
                "succeeded"
            } else {
                "failed"
            }
            .into();
            record.status_code = code as i64;
            record.at = now_micros();
            self.append(&record).await;
        }
        response
    }

    /// The cases the identity may list: `None` (all) for admins and auditors, else the
    /// cases the user holds a role on; an API token limited to some cases narrows both.
    async fn listed_cases(
        &self,
        rule: &Rule,
        principal: &Principal,
    ) -> Result<Option<Vec<String>>, ApiError> {
        if rule.access != Access::OwnCases {
            return Ok(None);
        }
        let token_cases = match &principal.credential {
            Credential::ApiToken(token) if !token.case_ids.is_empty() => {
                Some(token.case_ids.clone())
            }
            _ => None,
        };
        if matches!(principal.user.role, GlobalRole::Admin | GlobalRole::Auditor) {
            return Ok(token_cases);
        }
        let grants = self
            .roles
            .list(None, Some(&principal.user.id), "", MAX_LISTED_CASES)
            .await
            .map_err(|e| ApiError::internal_logged("list the caller's cases", e))?;
        if grants.len() as i64 >= MAX_LISTED_CASES {
            tracing::warn!(
                user = %principal.user.username,
                limit = MAX_LISTED_CASES,
                "the user holds roles on more cases than a list carries; lists show the first"
            );
        }
        let mut cases: Vec<String> = grants.into_iter().map(|g| g.case_id).collect();
        if let Some(allowed) = token_cases {
            cases.retain(|case| allowed.contains(case));
        }
        Ok(Some(cases))
    }

    /// Makes the creator of the case in `response` its `case_admin`.
    async fn grant_creator(&self, principal: &Principal, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let collected = match http_body_util::Limited::new(body, MAX_CREATED_CASE)
            .collect()
            .await
        {
            Ok(collected) => collected,
            Err(error) => {
                return status_response(ApiError::internal_logged(
                    "read the created case",
                    error.to_string(),
                ));
            }
        };
        let trailers = collected.trailers().cloned();
        let bytes = collected.to_bytes();
        let case = bytes
            .get(5..)
            .and_then(|message| casescope_proto::cases::v1::Case::decode(message).ok())
            .and_then(|case| case.id)
            .map(|id| id.value);
        match case {
            Some(case) => {
                if let Err(error) = self
                    .roles
                    .set(
                        &principal.user.id,
                        &case,
                        CaseRole::CaseAdmin,
                        &principal.user.id,
                    )
                    .await
                {
                    return status_response(ApiError::internal_logged(
                        "make the creator the case's admin",
                        error,
                    ));
                }
            }
            None => {
                return status_response(ApiError::internal_logged(
                    "read the created case",
                    "the answer holds no case id",
                ));
            }
        }
        // Replayed as frames of no announced length: a body that says its exact size
        // gets a `content-length` from HTTP/1.1, which ends a gRPC-web answer before its
        // trailer frame (browsers then see "missing trailer").
        let frames = futures::stream::iter(
            std::iter::once(http_body::Frame::data(bytes))
                .chain(trailers.map(http_body::Frame::trailers))
                .map(Ok::<_, std::convert::Infallible>),
        );
        Response::from_parts(parts, Body::new(http_body_util::StreamBody::new(frames)))
    }

    async fn append(&self, record: &AuditRecord) {
        if let Err(error) = self.audit.append(record).await {
            tracing::error!(%error, method = %record.method, "cannot append to the audit log");
        }
    }
}

/// The error a refused call gets.
fn refusal(
    decision: Decision,
    rule: &Rule,
    principal: Option<&Principal>,
    case_id: Option<&str>,
) -> ApiError {
    match decision {
        Decision::Unauthenticated => unauthenticated(NO_CREDENTIALS),
        Decision::NotFound => ApiError::not_found(
            "CASE_NOT_FOUND",
            format!("case {} does not exist", case_id.unwrap_or_default()),
        ),
        Decision::Denied | Decision::Allow => {
            let message = if rule.access == Access::Internal {
                format!(
                    "{} is internal: only CaseScope's services call it",
                    rule.method
                )
            } else if rule.mutating && principal.is_some_and(Principal::read_only) {
                "this API token is read-only".to_string()
            } else {
                format!(
                    "your role does not allow {}",
                    rule.method.rsplit('/').next().unwrap_or_default()
                )
            };
            ApiError::PermissionDenied {
                reason: "PERMISSION_DENIED",
                message,
            }
        }
    }
}

/// The gRPC status of a response's headers (a trailers-only answer); OK when absent
/// (the status then comes in the trailers of a successful stream).
fn grpc_code(response: &Response) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

/// Reads the request's first gRPC message (bounded) and gives back a request whose body
/// is unchanged, with the message decoded.
async fn read_first_message(
    request: Request,
    method: &str,
) -> Result<(Request, Option<DynamicMessage>), ApiError> {
    let Some(descriptor) = INPUTS.get(method) else {
        return Ok((request, None));
    };
    let (parts, mut body) = request.into_parts();
    let mut buffered = BytesMut::new();
    let mut ended = false;
    let needed = loop {
        if buffered.len() >= 5 {
            let length =
                u32::from_be_bytes([buffered[1], buffered[2], buffered[3], buffered[4]]) as usize;
            if length > MAX_FIRST_MESSAGE {
                return Err(ApiError::invalid_field(
                    "MESSAGE_TOO_LARGE",
                    "request",
                    format!("the first message is over {MAX_FIRST_MESSAGE} bytes"),
                ));
            }
            if buffered.len() >= 5 + length {
                break Some(length);
            }
        }
        if ended {
            break None;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffered.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => {
                return Err(ApiError::invalid_field(
                    "REQUEST_UNREADABLE",
                    "request",
                    format!("cannot read the request: {error}"),
                ));
            }
            None => ended = true,
        }
    };
    let buffered = buffered.freeze();
    let message = match needed {
        Some(length) => {
            if buffered[0] != 0 {
                return Err(ApiError::invalid_field(
                    "COMPRESSED_REQUEST",
                    "request",
                    "compressed requests are not accepted",
                ));
            }
            let mut bytes = buffered.slice(5..5 + length);
            let message = DynamicMessage::decode(descriptor.clone(), &mut bytes).map_err(|e| {
                ApiError::invalid_field(
                    "REQUEST_MALFORMED",
                    "request",
                    format!("not a valid {} message: {e}", descriptor.full_name()),
                )
            })?;
            debug_assert!(!bytes.has_remaining());
            Some(message)
        }
        // No message at all: the service answers for the empty request.
        None => None,
    };
    // Empty chunks are dropped: forwarded as empty DATA frames they count against the
    // receiving server's flood protection (h2 closes a connection after a few).
    let rest = futures::StreamExt::filter(body.into_data_stream(), |chunk| {
        std::future::ready(!matches!(chunk, Ok(bytes) if bytes.is_empty()))
    });
    let replay =
        futures::stream::iter((!buffered.is_empty()).then_some(Ok::<Bytes, axum::Error>(buffered)));
    let body = Body::from_stream(futures::StreamExt::chain(replay, rest));
    Ok((Request::from_parts(parts, body), message))
}

/// The case id at `path` (`case_id`, `header.case_id`) of `message`, if set.
fn case_of(message: &DynamicMessage, path: &str) -> Option<String> {
    // Walked by reference: the message may be large (100,000 event ids to tag).
    let mut current = message;
    for part in path.split('.') {
        let field = current.descriptor().get_field_by_name(part)?;
        if !current.has_field(&field) {
            return None;
        }
        let std::borrow::Cow::Borrowed(Value::Message(inner)) = current.get_field(&field) else {
            return None;
        };
        current = inner;
    }
    match current.get_field_by_name("value")?.as_ref() {
        Value::String(id) if !id.trim().is_empty() => Some(id.trim().to_string()),
        _ => None,
    }
}
