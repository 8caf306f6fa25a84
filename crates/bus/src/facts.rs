//! Reading the facts other services publish, for the services that act on them, and
//! dropping the jobs of cases that were deleted.

use crate::{Handler, HandlerError, ReceivedMessage};
use async_trait::async_trait;
use casescope_db::CasePurges;

/// What a service acting on case facts reads of one (`casescope.v1.cases.<case>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFactInfo {
    /// `case.created`, `case.archived`, `case.restore_requested`, `case.deleted`, …
    pub kind: String,
    pub case_id: String,
    /// The case's version after the change (facts of one case are ordered by it).
    pub version: i64,
}

/// Reads a case fact; an error for a payload that is not one.
pub fn case_fact(payload: &[u8]) -> Result<CaseFactInfo, String> {
    let fact: serde_json::Value =
        serde_json::from_slice(payload).map_err(|error| format!("not a case fact: {error}"))?;
    let header = &fact["header"];
    let kind = header["kind"]
        .as_str()
        .ok_or_else(|| "a case fact without a kind".to_string())?;
    let case_id = header["case_id"]
        .as_str()
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(|| format!("a {kind} fact without a case id"))?;
    // JSON of an int64 field is a string (proto3 JSON) or a number.
    let version = &fact["case_snapshot"]["version"];
    let version = version
        .as_i64()
        .or_else(|| version.as_str().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Ok(CaseFactInfo {
        kind: kind.to_string(),
        case_id: case_id.to_string(),
        version,
    })
}

/// The case id of a `case.deleted` fact, `None` for any other case fact, an error for a
/// payload that is not a case fact.
pub fn deleted_case(payload: &[u8]) -> Result<Option<String>, String> {
    let fact = case_fact(payload)?;
    Ok((fact.kind == "case.deleted").then_some(fact.case_id))
}

/// Wraps a stage's job handler: a job of a case whose deletion was recorded (its data
/// is gone or going) is acknowledged without work, and a job that failed for good
/// because its case or file vanished with that deletion is not a dead letter.
pub struct SkipDeletedCases<H> {
    inner: H,
    purges: CasePurges,
}

impl<H> SkipDeletedCases<H> {
    pub fn new(inner: H, purges: CasePurges) -> Self {
        Self { inner, purges }
    }

    async fn deleted(&self, case_id: Option<&str>) -> Result<bool, HandlerError> {
        match case_id {
            Some(case_id) => self
                .purges
                .is_recorded(case_id)
                .await
                .map_err(HandlerError::transient),
            None => Ok(false),
        }
    }
}

#[async_trait]
impl<H: Handler> Handler for SkipDeletedCases<H> {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let job: Option<serde_json::Value> = serde_json::from_slice(&message.payload).ok();
        let case_id = job.as_ref().and_then(|job| job["case_id"].as_str());
        if self.deleted(case_id).await? {
            tracing::info!(case_id, subject = %message.subject, "job of a deleted case dropped");
            return Ok(());
        }
        match self.inner.handle(message).await {
            Err(HandlerError::Poison(reason)) if self.deleted(case_id).await? => {
                tracing::info!(case_id, reason, "job of a case deleted meanwhile dropped");
                Ok(())
            }
            outcome => outcome,
        }
    }
}

/// A service's deletion of a deleted case's data: the service says how to purge one
/// case; recording the request and the reconciler's pass are the same everywhere.
#[async_trait]
pub trait PurgeCase: Send + Sync + 'static {
    /// The service's record of deleted cases.
    fn purges(&self) -> &CasePurges;
    /// How long after a finished purge it is run once more (a stalled worker's last
    /// write, an upload completing as the case went).
    fn settle(&self) -> std::time::Duration;
    /// Deletes what the service holds of `case_id` now; `Some(reason)` when it has to
    /// wait (the reconciler tries again).
    async fn purge(&self, case_id: &str) -> Result<Option<String>, String>;

    /// Any other fact of a case (archived, restore requested, …); acknowledged by
    /// default. An error is retried (the message is redelivered).
    async fn on_case_fact(&self, _fact: &CaseFactInfo) -> Result<(), String> {
        Ok(())
    }

    /// Records the deletion of `case_id` (from then on the reconciler sees it through)
    /// and purges what it can now.
    async fn purge_deleted_case(&self, case_id: &str) -> Result<Option<String>, String> {
        self.purges()
            .record(case_id)
            .await
            .map_err(|e| e.to_string())?;
        self.purge(case_id).await
    }

    /// One reconciler pass: unfinished purges, finished ones once more after
    /// [`Self::settle`], old ones forgotten. Returns how many passes finished.
    async fn pass(&self) -> Result<usize, String> {
        self.purges()
            .run_due(self.settle(), PURGES_PER_PASS, |case_id| async move {
                self.purge(&case_id).await
            })
            .await
    }
}

/// Purges looked at per reconciler pass.
const PURGES_PER_PASS: i64 = 50;

/// The handler of a service's durable consumer of case facts: `case.deleted` starts the
/// purge; other facts go to [`PurgeCase::on_case_fact`].
pub struct OnCaseFacts<P>(pub P);

#[async_trait]
impl<P: PurgeCase> Handler for OnCaseFacts<P> {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let fact = case_fact(&message.payload).map_err(HandlerError::Poison)?;
        if fact.kind != "case.deleted" {
            return self
                .0
                .on_case_fact(&fact)
                .await
                .map_err(HandlerError::transient);
        }
        let case_id = fact.case_id;
        let waiting = self
            .0
            .purge_deleted_case(&case_id)
            .await
            .map_err(HandlerError::transient)?;
        if let Some(reason) = waiting {
            tracing::info!(case_id, reason, "case purge recorded; it finishes later");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deletions_name_a_case() {
        let id = "01a20545-ff79-73bd-be57-fc0fc36e8375";
        let fact = |kind: &str| {
            serde_json::json!({"header": {"kind": kind, "case_id": id}, "case_snapshot": {}})
                .to_string()
        };
        assert_eq!(
            deleted_case(fact("case.deleted").as_bytes()),
            Ok(Some(id.into()))
        );
        assert_eq!(deleted_case(fact("case.created").as_bytes()), Ok(None));
        assert!(deleted_case(b"not json").is_err());
        let archived = serde_json::json!({
            "header": {"kind": "case.archived", "case_id": id},
            "case_snapshot": {"version": "7"}
        });
        assert_eq!(
            case_fact(archived.to_string().as_bytes()),
            Ok(CaseFactInfo {
                kind: "case.archived".into(),
                case_id: id.into(),
                version: 7
            })
        );
        let without_id = r#"{"header": {"kind": "case.deleted", "case_id": "../x"}}"#;
        assert!(deleted_case(without_id.as_bytes()).is_err());
    }
}

/// What a downstream stage reads of a `file.indexed` / `file.archived` fact
/// (`casescope.v1.files.<case>`, published by the ingest service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIndexedInfo {
    /// `file.indexed` or `file.archived`.
    pub kind: String,
    pub case_id: String,
    pub file_id: String,
    pub generation: i64,
}

/// Reads a file fact: `Ok(None)` for kinds other than `file.indexed` and
/// `file.archived` (e.g. `file.status_changed`), an error for a payload that is not a
/// file fact.
pub fn file_indexed_fact(payload: &[u8]) -> Result<Option<FileIndexedInfo>, String> {
    let fact: serde_json::Value =
        serde_json::from_slice(payload).map_err(|error| format!("not a file fact: {error}"))?;
    let kind = fact["header"]["kind"].as_str().unwrap_or("");
    if kind != "file.indexed" && kind != "file.archived" {
        return Ok(None);
    }
    let case_id = fact["header"]["case_id"]
        .as_str()
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(|| format!("a {kind} fact without a case id"))?;
    let file_id = fact["file_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("a {kind} fact without a file id"))?;
    // JSON of an int64 field is a string (proto3 JSON) or a number.
    let generation = &fact["generation"];
    let generation = generation
        .as_i64()
        .or_else(|| generation.as_str().and_then(|g| g.parse().ok()))
        .unwrap_or(0);
    Ok(Some(FileIndexedInfo {
        kind: kind.to_string(),
        case_id: case_id.to_string(),
        file_id: file_id.to_string(),
        generation,
    }))
}

/// Wraps a stage that starts from `file.indexed` facts: each such fact of a case not
/// being deleted becomes a call of `start(case, file, generation)`; other file facts
/// are acknowledged and ignored.
pub struct OnFileIndexed<S> {
    stage: S,
    purges: CasePurges,
}

/// A stage started by `file.indexed` facts.
#[async_trait]
pub trait StartsOnIndexed: Send + Sync + 'static {
    async fn start(&self, fact: &FileIndexedInfo) -> Result<(), HandlerError>;
}

impl<S> OnFileIndexed<S> {
    pub fn new(stage: S, purges: CasePurges) -> Self {
        Self { stage, purges }
    }
}

#[async_trait]
impl<S: StartsOnIndexed> Handler for OnFileIndexed<S> {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let Some(fact) = file_indexed_fact(&message.payload).map_err(HandlerError::Poison)? else {
            return Ok(());
        };
        if self
            .purges
            .is_recorded(&fact.case_id)
            .await
            .map_err(HandlerError::transient)?
        {
            return Ok(());
        }
        self.stage.start(&fact).await
    }
}

/// A stage's state of a file, for the cases service (`file.stage_changed` on
/// `casescope.v1.files.<case>`), queued in the caller's transaction.
pub fn stage_fact(
    case_id: &str,
    file_id: &str,
    stage: &str,
    generation: i64,
    state: &str,
    error: &str,
) -> Result<crate::OutboundMessage, String> {
    let now = casescope_db::now_micros();
    let fact_id = format!("stage:{file_id}:{stage}:{generation}:{state}:{now}");
    let fact = casescope_proto::bus::v1::FileStageFact {
        header: Some(casescope_proto::bus::v1::FactHeader {
            fact_id: fact_id.clone(),
            kind: "file.stage_changed".into(),
            case_id: case_id.to_string(),
            occurred_at: casescope_proto::time::micros_to_rfc3339(now),
            producer: stage.to_string(),
        }),
        file_id: file_id.to_string(),
        stage: stage.to_string(),
        generation,
        state: state.to_string(),
        error: error.chars().take(2000).collect(),
        changed_at: now,
    };
    crate::OutboundMessage::json(crate::subjects::file_facts(case_id), fact_id, &fact)
        .map_err(|e| e.to_string())
}

/// What the cases service reads of a `file.stage_changed` fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    pub case_id: String,
    pub file_id: String,
    pub stage: String,
    pub generation: i64,
    pub state: String,
    pub error: String,
    pub changed_at: i64,
}

/// Reads a file fact: `Ok(None)` for kinds other than `file.stage_changed`.
pub fn stage_changed_fact(payload: &[u8]) -> Result<Option<StageInfo>, String> {
    let fact: serde_json::Value =
        serde_json::from_slice(payload).map_err(|error| format!("not a file fact: {error}"))?;
    if fact["header"]["kind"].as_str() != Some("file.stage_changed") {
        return Ok(None);
    }
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("").to_string();
    let int = |value: &serde_json::Value| {
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    let info = StageInfo {
        case_id: text(&fact["header"]["case_id"]),
        file_id: text(&fact["file_id"]),
        stage: text(&fact["stage"]),
        generation: int(&fact["generation"]),
        state: text(&fact["state"]),
        error: text(&fact["error"]),
        changed_at: int(&fact["changed_at"]),
    };
    if uuid::Uuid::parse_str(&info.case_id).is_err()
        || info.file_id.is_empty()
        || info.stage.is_empty()
    {
        return Err("a file.stage_changed fact without its case, file or stage".into());
    }
    if !matches!(info.state.as_str(), "running" | "done" | "failed") {
        return Err(format!("unknown stage state {:?}", info.state));
    }
    Ok(Some(info))
}
