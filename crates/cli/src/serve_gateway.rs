//! The gateway's part of `casescope serve`: the internal key every process needs, the
//! gateway service itself (users, sessions, API tokens, case roles, audit log, and the
//! enforcement layer), its periodic sweeps, and — when the gateway runs alone — the
//! forwarding of every other service's RPCs to that service.

use anyhow::Context;
use casescope_db::{Database, run_periodically};
use casescope_gateway::bootstrap::{FirstAdmin, KeySources, ensure_first_admin, load_keys};
use casescope_gateway::oidc::Oidc;
use casescope_gateway::policy::{Access, rule_of};
use casescope_gateway::{
    AdminApi, ApiTokens, AuditLog, AuthApi, Authenticator, CaseRoles, Gate, LimitSettings,
    LoginThrottle, RateLimiter, SessionSettings, Sessions, Users,
};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::gateway::v1::admin_service_server::AdminServiceServer;
use casescope_proto::gateway::v1::auth_service_server::AuthServiceServer;
use casescope_proto::gateway::v1::case_members_service_server::CaseMembersServiceServer;
use casescope_proto::identity::{Guarded, InternalKey};
use casescope_runtime::config::{Config, Mode};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Issuer and audience of access tokens.
const ISSUER: &str = "casescope";

/// The key that signs identities between the gateway and the services: configured, or
/// (all-in-one mode only, where nothing outside the process needs it) random.
pub fn internal_key(config: &Config) -> anyhow::Result<InternalKey> {
    match &config.gateway.internal_key {
        Some(secret) => InternalKey::from_secret(secret.expose())
            .map_err(|problem| anyhow::anyhow!("internal_key: {problem}")),
        None => match &config.mode {
            Mode::AllInOne => Ok(InternalKey::generate()),
            Mode::Service(name) => {
                anyhow::bail!("internal_key is required when running the {name} service alone")
            }
        },
    }
}

/// Whether `method` may be called only by CaseScope's own services.
fn internal_only(method: &str) -> bool {
    rule_of(method).is_some_and(|rule| rule.access == Access::Internal)
}

/// `server` answering only calls that carry an identity signed with `key`.
pub fn guarded<S>(server: S, key: &InternalKey) -> Guarded<S> {
    Guarded::new(server, key.clone(), internal_only)
}

/// The running gateway: its enforcement layer and its two services.
pub struct GatewayParts {
    pub gate: Arc<Gate>,
    pub auth: AuthServiceServer<AuthApi>,
    pub admin: AdminServiceServer<AdminApi>,
    /// Internal: the case members the report service lists.
    pub members: CaseMembersServiceServer<casescope_gateway::CaseMembersApi>,
}

/// Starts the gateway on its migrated database `db`.
pub async fn start(
    config: &Config,
    db: &Database,
    key: InternalKey,
    tasks: &mut JoinSet<()>,
    background: &CancellationToken,
) -> anyhow::Result<GatewayParts> {
    let sources = KeySources {
        signing_key_file: config.gateway.signing_key_file.clone(),
        verify_key_files: config.gateway.verify_key_files.clone(),
    };
    let (keys, generated) = load_keys(&sources, &config.data_dir, ISSUER, ISSUER)
        .map_err(|problem| anyhow::anyhow!(problem))?;
    if let Some(path) = generated {
        tracing::info!(path = %path.display(), "created the access-token signing key");
    }
    let keys = Arc::new(keys);
    let users = Users::new(db.clone());
    let admin_password = config.gateway.admin_password.as_ref().map(|s| s.expose());
    match ensure_first_admin(&users, admin_password, &config.data_dir)
        .await
        .map_err(|problem| anyhow::anyhow!(problem))?
    {
        FirstAdmin::Exists => {}
        FirstAdmin::Configured => {
            tracing::info!("created the first administrator, admin, with the configured password");
        }
        FirstAdmin::Generated { password, file } => {
            // Shown once, on the console only (never in the log stream).
            eprintln!(
                "\n  CaseScope's first administrator is `admin` with the password\n\n      {password}\n\n  \
                 (also in {}, readable by you only). Sign in with:\n\n      casescope login --user admin\n",
                file.display()
            );
            tracing::info!(
                file = %file.display(),
                "created the first administrator, admin, with a generated password (printed on the console)"
            );
        }
    }
    let sessions = Sessions::new(users.clone(), keys.clone(), SessionSettings::default());
    let tokens = ApiTokens::new(db.clone());
    let roles = CaseRoles::new(db.clone());
    let audit = AuditLog::new(db.clone(), keys);
    let throttle = LoginThrottle::new(db.clone());
    let authenticator = Authenticator::new(sessions.clone(), tokens.clone());
    let auth = AuthApi::new(
        sessions.clone(),
        throttle.clone(),
        authenticator.clone(),
        roles.clone(),
    );
    let oidc = match &config.gateway.oidc {
        Some(settings) => {
            let oidc = Oidc::new(settings.clone(), sessions.clone())
                .map_err(|problem| anyhow::anyhow!("OIDC: {problem}"))?;
            tracing::info!(issuer = %settings.issuer, "sign-in through an OpenID Connect provider");
            Some(Arc::new(oidc))
        }
        None => None,
    };
    let auth = match &oidc {
        Some(oidc) => auth.with_oidc(oidc.clone()),
        None => auth,
    };
    let admin = AdminApi::new(auth.clone(), users, roles.clone(), tokens, audit.clone());
    let limiter = RateLimiter::new(LimitSettings {
        requests_per_second: config.gateway.requests_per_second,
        burst: config.gateway.burst,
        max_uploads: config.gateway.max_uploads_per_user,
    });
    let members =
        CaseMembersServiceServer::new(casescope_gateway::CaseMembersApi::new(roles.clone()));
    let gate = Gate::new(authenticator, roles, audit.clone(), key, limiter)
        .trusting(config.gateway.trusted_proxies.clone());

    // Ended sessions, old login failures, unfinished OIDC sign-ins and audit records
    // past retention.
    let retention = config.gateway.audit_retention;
    tasks.spawn(run_periodically(
        "gateway-sweeps",
        Duration::from_secs(15 * 60),
        background.clone(),
        move || {
            let (sessions, throttle, audit) = (sessions.clone(), throttle.clone(), audit.clone());
            let oidc = oidc.clone();
            async move {
                let pending = match &oidc {
                    Some(oidc) => oidc.sweep().await.map_err(|e| e.to_string())?,
                    None => 0,
                };
                let swept = pending
                    + sessions.sweep().await.map_err(|e| e.to_string())?
                    + throttle.sweep().await.map_err(|e| e.to_string())?
                    + audit
                        .apply_retention(retention)
                        .await
                        .map_err(|e| e.to_string())?;
                Ok::<usize, String>(usize::try_from(swept).unwrap_or(usize::MAX))
            }
        },
    ));
    Ok(GatewayParts {
        gate,
        auth: AuthServiceServer::new(auth),
        admin: AdminServiceServer::new(admin),
        members,
    })
}

/// The RPCs of the services that do not run here, forwarded to their processes (the
/// gateway alone in cluster mode): the router gets one route per service, so the
/// enforcement layer in front of the routes sees them like local ones.
pub async fn forward_remote_services(
    mut router: axum::Router,
    config: &Config,
    remote: &mut crate::channels::RemoteChannels,
) -> anyhow::Result<axum::Router> {
    let mut channels: std::collections::BTreeMap<&str, GrpcChannel> = Default::default();
    for (grpc_service, owner) in casescope_proto::GRPC_SERVICES {
        if *owner == "gateway" || !config.service_addrs.contains_key(*owner) {
            continue;
        }
        let channel = match channels.get(owner) {
            Some(channel) => channel.clone(),
            None => {
                // Uploads and streams last as long as they last: no total timeout here.
                let channel = remote
                    .channel_with_timeout(config, owner, None)
                    .await
                    .with_context(|| format!("forwarding to the {owner} service"))?;
                channels.insert(owner, channel.clone());
                channel
            }
        };
        tracing::info!(service = grpc_service, to = owner, "forwarding RPCs");
        router = router.route_service(
            &format!("/{grpc_service}/{{*method}}"),
            forwarder(channel, owner),
        );
    }
    Ok(router)
}

/// A route service that sends the request on its channel (without the caller's bearer
/// credential: the service trusts the identity the gateway signed, nothing else).
#[derive(Clone)]
struct Forwarder {
    channel: GrpcChannel,
    owner: &'static str,
}

fn forwarder(channel: GrpcChannel, owner: &'static str) -> Forwarder {
    Forwarder { channel, owner }
}

impl tower::Service<axum::extract::Request> for Forwarder {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        use tower::ServiceExt;
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(http::header::AUTHORIZATION);
        // Only non-empty chunks go on: empty DATA frames count against the service's
        // HTTP/2 flood protection, which closes a connection after a few hundred.
        let data = futures::StreamExt::filter_map(body.into_data_stream(), |chunk| {
            std::future::ready(match chunk {
                Ok(bytes) if bytes.is_empty() => None,
                Ok(bytes) => Some(Ok(http_body::Frame::data(bytes))),
                Err(error) => Some(Err(error)),
            })
        });
        let body = http_body_util::StreamBody::new(data);
        let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
        let channel = self.channel.clone();
        let owner = self.owner;
        Box::pin(async move {
            Ok(match channel.oneshot(request).await {
                Ok(response) => response.map(axum::body::Body::new),
                Err(error) => tonic::Status::unavailable(format!(
                    "the {owner} service cannot be reached: {error}"
                ))
                .into_http::<axum::body::Body>(),
            })
        })
    }
}
