//! Every subject CaseScope uses (documented in docs/bus.md). Versioned: a breaking
//! payload change gets `v2` subjects, published alongside `v1` for a deprecation period.

/// Work-queue stream: one message is processed by one consumer.
pub const JOBS_STREAM_SUBJECTS: &[&str] = &["casescope.v1.jobs.>"];
/// Limits stream of facts, retained for SOC tooling and replays.
pub const FACTS_STREAM_SUBJECTS: &[&str] = &[
    "casescope.v1.cases.>",
    "casescope.v1.annotations.>",
    "casescope.v1.files.>",
    "casescope.v1.detections.>",
    "casescope.v1.ioc_matches.>",
    "casescope.v1.reports.>",
    "casescope.v1.integrations.>",
];
/// Dead letters: messages a consumer gave up on.
pub const DEADLETTER_STREAM_SUBJECTS: &[&str] = &["casescope.v1.deadletter.>"];

pub fn job(stage: &str) -> String {
    format!("casescope.v1.jobs.{stage}")
}

pub fn case_facts(case_id: &str) -> String {
    format!("casescope.v1.cases.{case_id}")
}

pub fn annotation_facts(case_id: &str) -> String {
    format!("casescope.v1.annotations.{case_id}")
}

pub fn file_facts(case_id: &str) -> String {
    format!("casescope.v1.files.{case_id}")
}

pub fn detection_facts(case_id: &str) -> String {
    format!("casescope.v1.detections.{case_id}")
}

pub fn deadletter(consumer: &str) -> String {
    format!("casescope.v1.deadletter.{consumer}")
}

/// Which stream a subject belongs to, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Jobs,
    Facts,
    DeadLetter,
}

pub fn stream_of(subject: &str) -> Option<StreamKind> {
    let any = |filters: &[&str]| filters.iter().any(|f| crate::subject_matches(f, subject));
    if any(JOBS_STREAM_SUBJECTS) {
        Some(StreamKind::Jobs)
    } else if any(FACTS_STREAM_SUBJECTS) {
        Some(StreamKind::Facts)
    } else if any(DEADLETTER_STREAM_SUBJECTS) {
        Some(StreamKind::DeadLetter)
    } else {
        None
    }
}

/// Which stream a consumer's subject filter (wildcards allowed) reads from, if any.
pub fn stream_of_filter(filter: &str) -> Option<StreamKind> {
    let concrete: Vec<&str> = filter
        .split('.')
        .map(|token| match token {
            "*" | ">" => "x",
            other => other,
        })
        .collect();
    stream_of(&concrete.join("."))
}

pub fn ioc_match_facts(case_id: &str) -> String {
    format!("casescope.v1.ioc_matches.{case_id}")
}

pub fn report_facts(case_id: &str) -> String {
    format!("casescope.v1.reports.{case_id}")
}

pub fn integration_facts(case_id: &str) -> String {
    format!("casescope.v1.integrations.{case_id}")
}
