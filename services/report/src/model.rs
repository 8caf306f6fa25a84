//! What a report shows, section by section: plain serialisable values handed to the
//! templates (HTML, Markdown) and to the JSON writer. Every text here is data, much
//! of it attacker-controlled: the renderers escape it for their format.

use serde::Serialize;

/// The report as a whole (the templates' `report`).
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub id: String,
    pub title: String,
    pub case_id: String,
    pub case_name: String,
    pub case_description: String,
    pub case_state: String,
    pub case_created_at: String,
    pub generated_at: String,
    pub requested_by: String,
    /// The case's members (who has a role on it).
    pub members: Vec<Member>,
    /// Why the members are not listed, when they are not.
    pub members_unavailable: String,
    /// Section keys in the order shown.
    pub sections: Vec<&'static str>,
    pub timeline_tags: Vec<String>,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    /// "viewer", "analyst", "case admin".
    pub role: String,
    /// When the role was granted.
    pub since: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    pub files: u64,
    pub files_failed: u64,
    pub bytes: u64,
    pub records_read: u64,
    pub events_indexed: u64,
    pub records_rejected: u64,
    pub duplicates_skipped: u64,
    pub first_event: String,
    pub last_event: String,
    pub detections: Option<u64>,
    pub ioc_matches: Option<u64>,
    pub tagged_events: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    pub reason: String,
    pub count: u64,
}

/// One file of the case: chain of custody and counts.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub format: String,
    pub status: String,
    pub error: String,
    pub uploaded_at: String,
    /// The uploader's name (empty when not recorded).
    pub uploaded_by: String,
    pub records_read: u64,
    pub events_indexed: u64,
    pub records_rejected: u64,
    pub duplicates_skipped: u64,
    pub rejects: Vec<Reject>,
    /// The archive it was extracted from, when it was.
    pub from_archive: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleCount {
    pub rule_id: String,
    pub title: String,
    pub level: String,
    pub count: u64,
}

/// Detections by rule (one section) or by ATT&CK tactic and technique (another).
#[derive(Debug, Clone, Serialize)]
pub struct Detections {
    /// Why the section is empty when the detect service cannot be asked.
    pub unavailable: String,
    pub total: u64,
    pub by_level: Vec<Count>,
    pub by_rule: Vec<RuleCount>,
    pub by_rule_truncated: bool,
    pub by_tactic: Vec<Count>,
    pub by_technique: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IocCount {
    pub ioc_type: String,
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IocMatches {
    pub unavailable: String,
    pub total: u64,
    pub distinct_events: u64,
    pub by_type: Vec<Count>,
    pub by_ioc: Vec<IocCount>,
    pub by_ioc_truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub author: String,
    pub body: String,
    /// The body was cut to the report's limit.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// One tagged or starred event.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub datetime: String,
    pub event_id: String,
    pub computer: String,
    pub channel: String,
    pub provider: String,
    pub event_code: Option<u32>,
    pub record_id: Option<u64>,
    pub tags: Vec<String>,
    pub starred: bool,
    pub comments: Vec<Comment>,
    pub fields: Vec<Field>,
    /// Fields not shown (beyond the report's per-event limit).
    pub more_fields: usize,
}

/// How the tagged timeline ended (the templates' `timeline` in its closing part).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelineEnd {
    pub unavailable: String,
    pub shown: u64,
    /// Events of the selection left out (beyond the report's limit).
    pub left_out: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Notes {
    pub unavailable: String,
    pub text: String,
    pub version: i64,
    pub updated_at: String,
}

/// One sentence of an AI summary, with the evidence ids it cites.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AiSentence {
    pub text: String,
    /// Ids that were given (invented ones are removed).
    pub citations: Vec<String>,
    /// No citation of a given id: the claim points at nothing.
    pub uncited: bool,
}

/// One item of evidence given to the LLM, by its id.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AiSource {
    /// `E3`, `D1`, `I2`.
    pub id: String,
    /// "event" | "detection" | "ioc".
    pub kind: String,
    /// What it is, in a line.
    pub label: String,
    /// The event id (events only).
    pub event_id: String,
}

/// The AI summary section (the templates' `ai_summary`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AiSummary {
    /// "included" | "failed".
    pub status: String,
    /// Why it is missing (failed).
    pub error: String,
    pub model: String,
    pub sentences: Vec<AiSentence>,
    /// Sentences without a citation of a given id.
    pub uncited: usize,
    /// Ids the answer cited that were not given (removed from the text).
    pub invented_citations: Vec<String>,
    /// The evidence given, by id.
    pub sources: Vec<AiSource>,
    pub events_given: u64,
    /// Tagged or starred events of the case (of which `events_given` were given).
    pub events_selected: u64,
    pub detections_given: u64,
    pub iocs_given: u64,
    /// Secret-looking values replaced before sending.
    pub redactions: u64,
    /// Redaction was turned off by the deployment.
    pub redaction_off: bool,
    /// The answer was cut at the size limit.
    pub truncated: bool,
    /// Why the model stopped ("stop", "length", …).
    pub finish_reason: String,
    pub prompt_tokens: Option<u64>,
    pub answer_tokens: Option<u64>,
    pub seconds: f64,
}
