//! W3C trace context (`traceparent`, `tracestate`) carried in bus message headers and
//! gRPC metadata, so one trace spans upload → parse → detect → hunt across processes.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(name, _)| !name.eq_ignore_ascii_case(key));
        if !value.is_empty() {
            self.0.push((key.to_string(), value));
        }
    }
}

struct HeaderExtractor<'a>(&'a [(String, String)]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// Adds the current span's trace context to `headers` (no-op without a sampled trace).
pub fn inject_current(headers: &mut Vec<(String, String)>) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes the trace context in `headers`, if any, the parent of `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &[(String, String)]) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut http::HeaderMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a http::HeaderMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Adds the current span's trace context to outgoing gRPC/HTTP headers.
pub fn inject_into_http(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(headers));
}

/// Makes the trace context in incoming gRPC/HTTP headers the parent of `span`.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&MetadataExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Adds the current span's trace context to an outgoing gRPC request's metadata.
pub fn inject_into_request<T>(request: &mut tonic::Request<T>) {
    let mut headers = http::HeaderMap::new();
    inject_into_http(&mut headers);
    for (name, value) in &headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_bytes()),
        ) {
            request.metadata_mut().insert(key, value);
        }
    }
}

/// A tonic client interceptor that propagates the current trace context.
pub fn grpc_client_interceptor(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_into_request(&mut request);
    Ok(request)
}

/// The trace id of the current span (32 hex digits), or empty outside a trace.
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_what_a_peer_injected() {
        let headers = vec![(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        )];
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        use opentelemetry::trace::TraceContextExt;
        let span_context = context.span().span_context().clone();
        assert!(span_context.is_valid());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = Vec::new();
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut out));
        assert_eq!(out, headers);
    }

    #[test]
    fn a_span_context_survives_a_trip_through_message_headers() {
        use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let producer = tracing::info_span!("publish");
            let mut headers = Vec::new();
            producer.in_scope(|| inject_current(&mut headers));
            let sent_trace = producer.context().span().span_context().trace_id();
            let traceparent = &headers
                .iter()
                .find(|(name, _)| name == "traceparent")
                .expect("traceparent injected")
                .1;
            assert!(
                traceparent.contains(&sent_trace.to_string()),
                "{traceparent}"
            );

            let consumer = tracing::info_span!("handle");
            set_parent_from_headers(&consumer, &headers);
            let received_trace = consumer.context().span().span_context().trace_id();
            assert_eq!(
                received_trace, sent_trace,
                "the consumer span joins the producer's trace"
            );
        });
    }
}
