//! Logs, traces and metrics. Structured logs (text or JSON) always; metrics always in
//! the Prometheus text format ([`prometheus_text`], served at `/metrics`); when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, traces and metrics are also exported over OTLP
//! (gRPC) with `service.name` = `casescope-<service>`. [`TelemetryGuard::shutdown`]
//! flushes both; call it last in the shutdown sequence.

use crate::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("cannot set up the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("telemetry was already initialised")]
    AlreadyInitialised,
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
}

/// The registry the Prometheus exporter fills; set by [`init`].
static REGISTRY: std::sync::OnceLock<prometheus::Registry> = std::sync::OnceLock::new();

/// The current value of every metric of this process in the Prometheus text format
/// (version 0.0.4), or `None` before [`init`].
pub fn prometheus_text() -> Option<String> {
    use prometheus::Encoder as _;
    let registry = REGISTRY.get()?;
    let mut text = Vec::new();
    if let Err(error) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::warn!(%error, "cannot encode the metrics");
    }
    Some(String::from_utf8_lossy(&text).into_owned())
}

#[derive(Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporters.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("casescope: flushing traces failed: {error}");
        }
        if let Some(provider) = self.meter_provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("casescope: flushing metrics failed: {error}");
        }
    }
}

/// The reader that fills the process's Prometheus registry (once per process).
fn prometheus_reader() -> Result<opentelemetry_prometheus::PrometheusExporter, TelemetryError> {
    let registry = prometheus::Registry::new();
    let reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .scope_info_enabled(false)
        .build()
        .map_err(|error| TelemetryError::Prometheus(error.to_string()))?;
    REGISTRY
        .set(registry)
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(reader)
}

/// Metrics only, for tests and tools that want [`prometheus_text`] without logs or
/// export: installs the global meter provider once; later calls do nothing.
pub fn init_metrics_only() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        if let Ok(reader) = prometheus_reader() {
            let provider = SdkMeterProvider::builder().with_reader(reader).build();
            opentelemetry::global::set_meter_provider(provider);
        }
    });
}

/// Log targets that carry credentials below some level, with the level they are held to
/// (the canary test, tests/tests/canary.rs, runs every process at `trace`).
pub const SECRET_BEARING_TARGETS: &[&str] = &["async_nats::connection=debug"];

/// Installs the global subscriber for process `service` (e.g. "all", "cases").
/// Must run inside a tokio runtime when OTLP is enabled.
pub fn init(
    service: &str,
    filter: &str,
    format: LogFormat,
) -> Result<TelemetryGuard, TelemetryError> {
    // Whatever the filter asks, these never log below their ceiling: they would write
    // secrets (the NATS client logs its CONNECT, password included, at trace).
    let capped = format!("{filter},{}", SECRET_BEARING_TARGETS.join(","));
    let env_filter = EnvFilter::try_new(&capped).map_err(|error| TelemetryError::Filter {
        filter: filter.to_string(),
        message: error.to_string(),
    })?;
    let fmt_layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour only for a person at a terminal, never in log files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut guard = TelemetryGuard::default();
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|value| !value.is_empty());
    let resource = Resource::builder()
        .with_service_name(format!("casescope-{service}"))
        .build();
    let mut meter_provider = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(prometheus_reader()?);
    let otel_layer = match endpoint {
        None => None,
        Some(endpoint) => {
            let exporter_error = |message: String| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                message,
            };
            let span_exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|error| exporter_error(error.to_string()))?;
            let tracer_provider = SdkTracerProvider::builder()
                .with_resource(resource)
                .with_batch_exporter(span_exporter)
                .build();
            let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|error| exporter_error(error.to_string()))?;
            meter_provider = meter_provider.with_periodic_exporter(metric_exporter);
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            let tracer = tracer_provider.tracer("casescope");
            guard.tracer_provider = Some(tracer_provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
    };
    let meter_provider = meter_provider.build();
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    guard.meter_provider = Some(meter_provider);
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(guard)
}
