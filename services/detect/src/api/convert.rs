//! Conversions between the detect service's rows and its wire messages, and the
//! validation of request fields.

use super::*;

pub(super) fn db_error(error: DbError) -> ApiError {
    match error {
        DbError::Unavailable(message) => {
            tracing::warn!(%message, "detect database unavailable");
            ApiError::Unavailable {
                message: "the detect database is unavailable; retry shortly".into(),
            }
        }
        other => ApiError::internal_logged("detect database error", other),
    }
}

pub(super) use casescope_proto::ids::case_id;

pub(super) use casescope_proto::ids::plain_id;

pub fn level_enum(level: &str) -> pb::RuleLevel {
    match level {
        "informational" => pb::RuleLevel::Informational,
        "low" => pb::RuleLevel::Low,
        "medium" => pb::RuleLevel::Medium,
        "high" => pb::RuleLevel::High,
        "critical" => pb::RuleLevel::Critical,
        _ => pb::RuleLevel::Unspecified,
    }
}

pub(super) fn level_text(level: i32) -> Option<&'static str> {
    match pb::RuleLevel::try_from(level).ok()? {
        pb::RuleLevel::Informational => Some("informational"),
        pb::RuleLevel::Low => Some("low"),
        pb::RuleLevel::Medium => Some("medium"),
        pb::RuleLevel::High => Some("high"),
        pb::RuleLevel::Critical => Some("critical"),
        pb::RuleLevel::Unspecified => None,
    }
}

pub(super) fn status_enum(status: &str) -> pb::RuleStatus {
    match status {
        "stable" => pb::RuleStatus::Stable,
        "test" => pb::RuleStatus::Test,
        "experimental" => pb::RuleStatus::Experimental,
        "deprecated" => pb::RuleStatus::Deprecated,
        "unsupported" => pb::RuleStatus::Unsupported,
        _ => pb::RuleStatus::Unspecified,
    }
}

pub(super) fn status_text(status: i32) -> Option<&'static str> {
    match pb::RuleStatus::try_from(status).ok()? {
        pb::RuleStatus::Stable => Some("stable"),
        pb::RuleStatus::Test => Some("test"),
        pb::RuleStatus::Experimental => Some("experimental"),
        pb::RuleStatus::Deprecated => Some("deprecated"),
        pb::RuleStatus::Unsupported => Some("unsupported"),
        pb::RuleStatus::Unspecified => None,
    }
}

pub(super) fn correlation_enum(kind: &str) -> pb::CorrelationType {
    match kind {
        "event_count" => pb::CorrelationType::EventCount,
        "value_count" => pb::CorrelationType::ValueCount,
        "temporal" => pb::CorrelationType::Temporal,
        "temporal_ordered" => pb::CorrelationType::TemporalOrdered,
        _ => pb::CorrelationType::Unspecified,
    }
}

pub(super) fn list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub(super) fn rule_to_pb(row: &RuleRow) -> pb::Rule {
    pb::Rule {
        id: Some(RuleId {
            value: row.id.clone(),
        }),
        title: row.title.clone(),
        description: row.description.clone(),
        status: status_enum(&row.status) as i32,
        level: level_enum(&row.level) as i32,
        tags: list(&row.tags),
        tactics: list(&row.tactics),
        techniques: list(&row.techniques),
        author: row.author.clone(),
        references: list(&row.refs),
        false_positives: list(&row.falsepositives),
        logsource: Some(pb::LogSource {
            product: row.ls_product.clone(),
            category: row.ls_category.clone(),
            service: row.ls_service.clone(),
        }),
        content_sha256: row.content_sha256.clone(),
        enabled: row.enabled,
        refusal_reason: row.refusal_reason.clone(),
        is_correlation: row.is_correlation,
        correlation_type: correlation_enum(&row.correlation_type) as i32,
        correlated_rule_ids: list(&row.correlated)
            .into_iter()
            .map(|value| RuleId { value })
            .collect(),
        source_path: row.source_path.clone(),
        source_label: row.source_label.clone(),
        rule_date: row.rule_date.clone(),
        rule_modified: row.rule_modified.clone(),
        yaml: row.yaml.clone(),
        imported_at: Some(micros_to_timestamp(row.imported_at)),
        updated_at: Some(micros_to_timestamp(row.updated_at)),
    }
}

pub(super) fn detection_to_pb(row: &DetectionRow) -> pb::Detection {
    let fields: Vec<[String; 2]> = serde_json::from_str(&row.matched_fields).unwrap_or_default();
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    pb::Detection {
        id: Some(DetectionId {
            value: row.id.clone(),
        }),
        rule_id: Some(RuleId {
            value: row.rule_id.clone(),
        }),
        rule_content_sha256: row.rule_content_sha256.clone(),
        rule_title: row.rule_title.clone(),
        level: level_enum(level_name(row.level)) as i32,
        case_id: Some(CaseId {
            value: row.case_id.clone(),
        }),
        file_id: Some(FileId {
            value: row.file_id.clone(),
        }),
        event_ids: list(&row.event_ids)
            .into_iter()
            .map(|value| EventId { value })
            .collect(),
        event_timestamp: Some(micros_to_timestamp(row.event_ts)),
        computer: row.computer.clone(),
        channel: row.channel.clone(),
        event_code: row.event_code.and_then(|c| u32::try_from(c).ok()),
        record_id: row.record_id.and_then(|r| u64::try_from(r).ok()),
        tactics: split(&row.tactics),
        techniques: split(&row.techniques),
        matched_fields: fields
            .into_iter()
            .map(|[field, value]| pb::MatchedField { field, value })
            .collect(),
        is_correlation: row.is_correlation,
        correlated_event_count: u64::try_from(row.correlated_event_count).unwrap_or_default(),
        first_event_timestamp: row
            .is_correlation
            .then(|| micros_to_timestamp(row.first_ts)),
        ruleset_version: u64::try_from(row.ruleset_version).unwrap_or_default(),
        detected_at: Some(micros_to_timestamp(row.detected_at)),
    }
}

pub(super) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The SQL filter of a detection query (`case_id` always first).
pub(super) fn detection_filter(
    case: &str,
    filter: Option<&pb::DetectionFilter>,
) -> Result<Filter, ApiError> {
    let mut sql = Filter::default();
    let c = sql.bind(Param::Text(case.to_string()));
    sql.push(format!("case_id = {c}"));
    let Some(filter) = filter else {
        return Ok(sql);
    };
    let too_many = |field: &str, n: usize| -> Result<(), ApiError> {
        if n > MAX_PAGE_SIZE as usize {
            Err(ApiError::invalid_field(
                "FILTER_TOO_LARGE",
                format!("filter.{field}"),
                format!("at most {MAX_PAGE_SIZE} values"),
            ))
        } else {
            Ok(())
        }
    };
    too_many("rule_ids", filter.rule_ids.len())?;
    too_many("file_ids", filter.file_ids.len())?;
    too_many("event_ids", filter.event_ids.len())?;
    too_many("tactics", filter.tactics.len())?;
    too_many("techniques", filter.techniques.len())?;
    let rule_ids: Vec<String> = filter
        .rule_ids
        .iter()
        .map(|r| plain_id(&r.value, "RULE_ID_INVALID", "filter.rule_ids"))
        .collect::<Result<_, _>>()?;
    sql.any_text("rule_id", &rule_ids);
    let file_ids: Vec<String> = filter
        .file_ids
        .iter()
        .map(|f| plain_id(&f.value, "FILE_ID_INVALID", "filter.file_ids"))
        .collect::<Result<_, _>>()?;
    sql.any_text("file_id", &file_ids);
    let levels: Vec<String> = filter
        .levels
        .iter()
        .map(|l| {
            level_text(*l)
                .map(|t| level_number(t).to_string())
                .ok_or_else(|| {
                    ApiError::invalid_field("LEVEL_INVALID", "filter.levels", "unknown level")
                })
        })
        .collect::<Result<_, _>>()?;
    if !levels.is_empty() {
        sql.push(format!("level IN ({})", levels.join(", ")));
    }
    if !filter.tactics.is_empty() {
        let mut alternatives = Vec::new();
        for tactic in &filter.tactics {
            let normal = tactic.trim().to_lowercase().replace('_', "-");
            let p = sql.bind(Param::Text(format!("%,{},%", like_escape(&normal))));
            alternatives.push(format!("tactics LIKE {p} ESCAPE '\\'"));
        }
        sql.push(format!("({})", alternatives.join(" OR ")));
    }
    if !filter.techniques.is_empty() {
        let mut alternatives = Vec::new();
        for technique in &filter.techniques {
            let normal = like_escape(&technique.trim().to_uppercase());
            let exact = sql.bind(Param::Text(format!("%,{normal},%")));
            let sub = sql.bind(Param::Text(format!("%,{normal}.%")));
            alternatives.push(format!(
                "techniques LIKE {exact} ESCAPE '\\' OR techniques LIKE {sub} ESCAPE '\\'"
            ));
        }
        sql.push(format!("({})", alternatives.join(" OR ")));
    }
    if let Some(range) = &filter.time_range {
        if let Some(start) = range.start_unix_micros {
            let p = sql.bind(Param::Int(start));
            sql.push(format!("event_ts >= {p}"));
        }
        if let Some(end) = range.end_unix_micros {
            let p = sql.bind(Param::Int(end));
            sql.push(format!("event_ts < {p}"));
        }
    }
    if !filter.event_ids.is_empty() {
        let ids: Vec<String> = filter
            .event_ids
            .iter()
            .map(|e| plain_id(&e.value, "EVENT_ID_INVALID", "filter.event_ids"))
            .collect::<Result<_, _>>()?;
        let marks: Vec<String> = ids
            .into_iter()
            .map(|id| sql.bind(Param::Text(id)))
            .collect();
        // Through the event index (`detection_events`), never a scan of the lists.
        sql.push(format!(
            "id IN (SELECT detection_id FROM detection_events WHERE case_id = {c} AND event_id IN ({}))",
            marks.join(", ")
        ));
    }
    if let Some(correlation) = filter.is_correlation {
        sql.push(format!("is_correlation = {}", i64::from(correlation)));
    }
    Ok(sql)
}

/// Detection cursors: `<event time µs>:<detection id>`.
pub(super) fn detection_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    cursor
        .split_once(':')
        .and_then(|(ts, id)| Some((ts.parse().ok()?, id.to_string())))
        .filter(|(_, id)| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "CURSOR_INVALID",
                "page.cursor",
                "not a cursor of this listing; pass next_cursor unchanged",
            )
        })
}

pub(super) fn file_state_to_pb(row: &crate::repo::FileRow) -> pb::FileDetectState {
    let status = match row.status.as_str() {
        "pending" => pb::DetectStatus::Pending,
        "running" => pb::DetectStatus::Running,
        "done" => pb::DetectStatus::Done,
        "failed" => pb::DetectStatus::Failed,
        _ => pb::DetectStatus::Unspecified,
    };
    let count = |n: i64| u64::try_from(n).unwrap_or_default();
    pb::FileDetectState {
        file_id: Some(FileId {
            value: row.file_id.clone(),
        }),
        status: status as i32,
        evaluated_ruleset_version: count(row.evaluated_version),
        requested_ruleset_version: count(row.requested_version),
        last_mode: row.last_mode.clone(),
        events_scanned: count(row.events_scanned),
        detections: count(row.detections),
        completed_runs: count(row.completed_runs),
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        error: row.error.clone().unwrap_or_default(),
        updated_at: Some(micros_to_timestamp(row.updated_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_filters_bind_every_value() {
        let filter = pb::DetectionFilter {
            rule_ids: vec![RuleId {
                value: "abc-1".into(),
            }],
            levels: vec![pb::RuleLevel::High as i32],
            tactics: vec!["credential_access".into()],
            techniques: vec!["t1059".into()],
            ..Default::default()
        };
        let sql = detection_filter("c", Some(&filter)).unwrap();
        let text = sql.where_sql();
        assert!(text.contains("level IN (4)"), "{text}");
        assert!(text.contains("tactics LIKE $3"), "{text}");
        assert_eq!(sql.params.len(), 5, "{text}");
        match &sql.params[2] {
            Param::Text(t) => assert_eq!(t, "%,credential-access,%"),
            other => panic!("{other:?}"),
        }
        let bad = pb::DetectionFilter {
            rule_ids: vec![RuleId {
                value: "x' OR 1=1".into(),
            }],
            ..Default::default()
        };
        assert!(detection_filter("c", Some(&bad)).is_err());
    }

    #[test]
    fn cursors_are_validated() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            detection_cursor(&format!("42:{id}")).unwrap(),
            (42, id.into())
        );
        assert!(detection_cursor("42:zz").is_err());
        assert!(detection_cursor("x").is_err());
    }
}
