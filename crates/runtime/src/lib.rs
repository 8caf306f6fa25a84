//! The runtime every CaseScope process shares: typed, validated configuration
//! ([`config`]), telemetry set-up — structured logs always, OpenTelemetry traces and
//! metrics over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, metrics in the Prometheus
//! text format always ([`telemetry`]), the instruments themselves ([`metrics`]) — and W3C
//! trace-context propagation through bus headers and gRPC metadata ([`trace_context`]).
//!
//! It knows nothing of any service's behaviour.

pub mod config;
pub mod metrics;
pub mod percent;
pub mod telemetry;
pub mod trace_context;
