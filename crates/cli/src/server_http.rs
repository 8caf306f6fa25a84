//! The HTTP side of every CaseScope process, on the same port as gRPC: `/healthz`
//! (alive), `/readyz` (databases, bus and event store reachable, not draining), `/metrics`
//! (Prometheus text format), the web app where the gateway runs (`web_ui`), a clear
//! `UNIMPLEMENTED` for contract RPCs this process does not serve, and per-request
//! tracing (W3C trace context from the caller) with RED metrics labelled by RPC path.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use casescope_bus::Bus;
use casescope_db::Database;
use casescope_eventstore::EventStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Clone)]
pub struct Readiness {
    bus: Arc<dyn Bus>,
    databases: Arc<Vec<(&'static str, Database)>>,
    event_store: Option<Arc<dyn EventStore>>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(
        bus: Arc<dyn Bus>,
        databases: Vec<(&'static str, Database)>,
        event_store: Option<Arc<dyn EventStore>>,
    ) -> Self {
        Self {
            bus,
            databases: Arc::new(databases),
            event_store,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Problems that make this process not ready; empty when ready.
    async fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            problems.push("shutting down".to_string());
        }
        let timeout = Duration::from_secs(2);
        for (service, db) in self.databases.iter() {
            match tokio::time::timeout(timeout, db.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => problems.push(format!("{service} database: {error}")),
                Err(_) => problems.push(format!("{service} database: no answer within 2 s")),
            }
        }
        match tokio::time::timeout(timeout, self.bus.ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => problems.push(format!("bus: {error}")),
            Err(_) => problems.push("bus: no answer within 2 s".to_string()),
        }
        if let Some(store) = &self.event_store {
            match tokio::time::timeout(timeout, store.ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => problems.push(format!("event store: {error}")),
                Err(_) => problems.push("event store: no answer within 2 s".to_string()),
            }
        }
        problems
    }
}

/// Headers every HTTP answer carries (unless the handler set them): no sniffing, no
/// framing, no referrer, no caching (answers carry tokens and evidence), and a
/// content policy that allows nothing (these are API answers, not pages).
fn security_headers(router: axum::Router) -> axum::Router {
    use axum::http::{HeaderName, HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    let headers: [(HeaderName, &'static str); 5] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    headers.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// Cross-origin grants for exactly `origins` (none when empty: no layer at all).
fn cors(router: axum::Router, origins: &[String]) -> axum::Router {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return router;
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("casescope-error-bin"),
            HeaderName::from_static("retry-after"),
        ])
        .max_age(std::time::Duration::from_secs(3600));
    router.layer(layer)
}

/// The HTTP app: the gRPC routes `grpc` (behind the gateway's checks when `gate` is
/// given: the gateway runs in this process) with gRPC-web, and the HTTP endpoints.
pub fn router(
    grpc: axum::Router,
    gate: Option<std::sync::Arc<casescope_gateway::Gate>>,
    readiness: Readiness,
    cors_origins: &[String],
) -> axum::Router {
    // RPCs of the contract no service here implements answer UNIMPLEMENTED, but only
    // to callers the gateway lets through: an anonymous caller learns nothing more.
    let mut unserved = axum::Router::new().fallback(not_served);
    // The web app comes from the process that runs the gateway (same origin as its API).
    let web = gate.is_some();
    let grpc = match gate {
        Some(gate) => {
            unserved = unserved.layer(axum::middleware::from_fn_with_state(
                gate.clone(),
                casescope_gateway::enforce,
            ));
            grpc.layer(axum::middleware::from_fn_with_state(
                gate,
                casescope_gateway::enforce,
            ))
        }
        None => grpc,
    };
    let router = grpc
        // gRPC-web (HTTP/1.1 or 2, `application/grpc-web[+proto]`, base64 `-text` too)
        // for browsers, translated to gRPC in front of the same services. Only the gRPC
        // routes: it refuses plain HTTP/1.1 requests, which the routes below serve.
        .layer(tonic_web::GrpcWebLayer::new())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(prometheus_metrics))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let problems = readiness.problems().await;
                    if problems.is_empty() {
                        (StatusCode::OK, "ready\n".to_string())
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}\n", problems.join("; ")),
                        )
                    }
                }
            }),
        )
        .fallback_service(unserved)
        .layer(axum::middleware::from_fn(observe));
    let router = if web {
        if !crate::web_ui::built() {
            tracing::warn!(
                "the web app was not built into this binary (Node.js was missing at build \
                 time): `/` says so; run `make web` and rebuild to serve it"
            );
        }
        router.merge(crate::web_ui::routes())
    } else {
        router
    };
    cors(security_headers(router), cors_origins)
}

/// Every metric of this process in the Prometheus text format.
async fn prometheus_metrics() -> Response {
    match casescope_runtime::telemetry::prometheus_text() {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not set up in this process\n",
        )
            .into_response(),
    }
}

/// Contract RPCs that no service in this process implements answer UNIMPLEMENTED with
/// the RPC's name; anything else is a plain 404.
async fn not_served(request: Request) -> Response {
    let path = request.uri().path().to_string();
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if let Some((_, owner)) = casescope_proto::GRPC_SERVICES
        .iter()
        .find(|(name, _)| *name == service)
    {
        let status = casescope_proto::error::unimplemented_status(path.trim_start_matches('/'));
        let status = tonic::Status::unimplemented(format!(
            "{} (this process does not serve the {owner} service)",
            status.message()
        ));
        return status.into_http();
    }
    (StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")).into_response()
}

/// The label for a request path: a known RPC or endpoint, else "other" (bounded).
fn path_label(path: &str) -> String {
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let known = casescope_proto::GRPC_SERVICES
        .iter()
        .any(|(name, _)| *name == service)
        || service.starts_with("grpc.")
        || matches!(path, "/healthz" | "/readyz" | "/metrics");
    if known && path.len() <= 120 {
        path.to_string()
    } else {
        "other".to_string()
    }
}

async fn observe(request: Request, next: Next) -> Response {
    let path = path_label(request.uri().path());
    let span = tracing::info_span!("rpc", path = %path);
    casescope_runtime::trace_context::set_parent_from_http(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span).await;
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("0")
        .to_string();
    let outcome = if !response.status().is_success() || grpc_status != "0" {
        "error"
    } else {
        "ok"
    };
    let attributes = [
        opentelemetry::KeyValue::new("rpc.path", path),
        opentelemetry::KeyValue::new("outcome", outcome),
    ];
    let metrics = casescope_runtime::metrics::metrics();
    metrics.rpc_requests.add(1, &attributes);
    metrics
        .rpc_duration
        .record(started.elapsed().as_secs_f64(), &attributes[..1]);
    response
}
