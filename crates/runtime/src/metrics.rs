//! Every operational metric CaseScope records, in one place, so that the names the code
//! records, the alert rules and dashboard in the Helm chart, and the table in
//! docs/operations.md can be kept in step (a test checks the chart against that table).
//!
//! Instruments are created on first use from the global meter provider that
//! [`crate::telemetry::init`] installs; created before that (unit tests), they stay
//! no-ops for the life of the process.
//! Attribute values are always from small, fixed sets (stage names, consumer names,
//! outcomes): never a case id, file id or message text, so the series stay bounded.

pub use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use std::sync::OnceLock;

pub struct Metrics {
    /// Requests handled, by `rpc.path` and `outcome` (`ok` or `error`).
    pub rpc_requests: Counter<u64>,
    /// Request duration, by `rpc.path`.
    pub rpc_duration: Histogram<f64>,
    /// Files whose ingest ended, by `outcome` (`indexed` or `failed`).
    pub ingest_files: Counter<u64>,
    /// Events read from evidence, by `outcome` (`indexed` or `rejected`).
    pub ingest_events: Counter<u64>,
    /// Messages given up on and recorded in the dead-letter stream, by `consumer`.
    pub dead_letters: Counter<u64>,
    /// Messages of a durable consumer's filter not yet delivered (its lag), by
    /// `consumer`; sampled every 15 s by each process running that consumer.
    pub consumer_pending: Gauge<u64>,
    /// Work found with an expired lease (its holder died or stalled) and taken back by
    /// a reconciler, by `stage`.
    pub leases_expired: Counter<u64>,
    /// Documents the event store refused in a bulk request, by `backend` and `reason`
    /// (`rejected`: refused for good; `throttled`: refused for now, retried).
    pub bulk_rejected: Counter<u64>,
    /// Events written to the event store, by `backend`.
    pub store_written: Counter<u64>,
    /// Duration of one bulk write to the event store, by `backend`.
    pub bulk_duration: Histogram<f64>,
    /// Detection runs that ended, by `outcome` (`done` or `failed`).
    pub detect_runs: Counter<u64>,
    /// Detections new to their case (a re-run finding the same ones adds nothing).
    pub detections: Counter<u64>,
    /// IOC hunt runs of a file that ended, by `outcome` (`done` or `failed`).
    pub ioc_hunts: Counter<u64>,
    /// IOC matches new to their case.
    pub ioc_matches: Counter<u64>,
    /// Delivery attempts of the integrations service that ended, by `kind`
    /// (`iris_push`, `opencti_enrich`, `opencti_import`, `webhook`) and `outcome`
    /// (`succeeded`, `retry_scheduled`, `failed`).
    pub integration_deliveries: Counter<u64>,
}

/// The process-wide instruments.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = opentelemetry::global::meter("casescope");
        Metrics {
            rpc_requests: meter
                .u64_counter("casescope.rpc.requests")
                .with_description("Requests handled, by RPC path and outcome")
                .build(),
            rpc_duration: meter
                .f64_histogram("casescope.rpc.duration")
                .with_unit("s")
                .with_description("Request duration, by RPC path")
                .build(),
            ingest_files: meter
                .u64_counter("casescope.ingest.files")
                .with_description("Files whose ingest ended, by outcome (indexed, failed)")
                .build(),
            ingest_events: meter
                .u64_counter("casescope.ingest.events")
                .with_description("Events read from evidence, by outcome (indexed, rejected)")
                .build(),
            dead_letters: meter
                .u64_counter("casescope.bus.dead_letters")
                .with_description("Messages given up on and recorded as dead letters, by consumer")
                .build(),
            consumer_pending: meter
                .u64_gauge("casescope.bus.consumer.pending")
                .with_description("Messages not yet delivered to a durable consumer, by consumer")
                .build(),
            leases_expired: meter
                .u64_counter("casescope.leases.expired")
                .with_description("Work taken back from an expired lease, by stage")
                .build(),
            bulk_rejected: meter
                .u64_counter("casescope.eventstore.bulk.rejected")
                .with_description(
                    "Documents refused by the event store, by backend and reason (rejected, throttled)",
                )
                .build(),
            store_written: meter
                .u64_counter("casescope.eventstore.written")
                .with_description("Events written to the event store, by backend")
                .build(),
            bulk_duration: meter
                .f64_histogram("casescope.eventstore.bulk.duration")
                .with_unit("s")
                .with_description("Duration of one bulk write to the event store, by backend")
                .build(),
            detect_runs: meter
                .u64_counter("casescope.detect.runs")
                .with_description("Detection runs that ended, by outcome (done, failed)")
                .build(),
            detections: meter
                .u64_counter("casescope.detect.detections")
                .with_description("Detections new to their case")
                .build(),
            ioc_hunts: meter
                .u64_counter("casescope.ioc.hunts")
                .with_description("IOC hunt runs of a file that ended, by outcome (done, failed)")
                .build(),
            ioc_matches: meter
                .u64_counter("casescope.ioc.matches")
                .with_description("IOC matches new to their case")
                .build(),
            integration_deliveries: meter
                .u64_counter("casescope.integrations.deliveries")
                .with_description(
                    "Delivery attempts that ended, by kind and outcome (succeeded, retry_scheduled, failed)",
                )
                .build(),
        }
    })
}

impl Metrics {
    /// Records zero for the series the ingest service may later increase: an alert on
    /// `increase()` cannot see the first failure of a series that did not exist before.
    pub fn zero_ingest(&self, backend: &'static str) {
        for outcome in ["indexed", "failed"] {
            self.ingest_files.add(0, &attr("outcome", outcome));
        }
        for outcome in ["indexed", "rejected"] {
            self.ingest_events.add(0, &attr("outcome", outcome));
        }
        self.leases_expired.add(0, &attr("stage", "ingest"));
        self.store_written.add(0, &attr("backend", backend));
        for reason in ["rejected", "throttled"] {
            self.bulk_rejected.add(
                0,
                &[
                    KeyValue::new("backend", backend),
                    KeyValue::new("reason", reason),
                ],
            );
        }
    }

    /// [`Self::zero_ingest`] for the detect service.
    pub fn zero_detect(&self) {
        for outcome in ["done", "failed"] {
            self.detect_runs.add(0, &attr("outcome", outcome));
        }
        self.detections.add(0, &[]);
        self.leases_expired.add(0, &attr("stage", "detect"));
    }

    /// [`Self::zero_ingest`] for the ioc service.
    pub fn zero_ioc(&self) {
        for outcome in ["done", "failed"] {
            self.ioc_hunts.add(0, &attr("outcome", outcome));
        }
        self.ioc_matches.add(0, &[]);
        self.leases_expired.add(0, &attr("stage", "ioc_hunt"));
    }
}

impl Metrics {
    /// [`Self::zero_ingest`] for the integrations service.
    pub fn zero_integrations(&self) {
        for kind in ["iris_push", "opencti_enrich", "opencti_import", "webhook"] {
            for outcome in ["succeeded", "retry_scheduled", "failed"] {
                self.integration_deliveries.add(
                    0,
                    &[
                        KeyValue::new("kind", kind),
                        KeyValue::new("outcome", outcome),
                    ],
                );
            }
        }
    }
}

/// One attribute, for the common case.
pub fn attr(key: &'static str, value: impl Into<opentelemetry::Value>) -> [KeyValue; 1] {
    [KeyValue::new(key, value)]
}
