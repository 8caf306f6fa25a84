//! The gRPC face of the detect service.

use crate::DetectSettings;
use crate::import::{ImportFile, ImportOptions, Planned};
use crate::reconcile::Reconciler;
use crate::repo::{DetectRepo, DetectionRow, Filter, Param, RuleRow};
use crate::ruleset::RulesetCache;
use crate::stage::{DetectStage, enqueue_job, level_name, level_number};
use casescope_bus::Outbox;
use casescope_db::{Database, DbError, LeaseStore};
use casescope_proto::common::v1::{
    CaseId, DetectionId, EventId, FileId, PageResponse, RuleId, SortOrder,
};
use casescope_proto::detect::v1 as pb;
use casescope_proto::detect::v1::detect_service_server::DetectService;
use casescope_proto::error::ApiError;
use casescope_proto::paging::{MAX_PAGE_SIZE, validate_page};
use casescope_proto::time::micros_to_timestamp;
use casescope_sigma::LogsourceMapping;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;
use tonic::{Request, Response, Status, Streaming};

fn db_error(error: DbError) -> ApiError {
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

fn case_id(id: Option<&CaseId>, field: &str) -> Result<String, ApiError> {
    let value = id.map(|id| id.value.trim()).unwrap_or_default();
    uuid::Uuid::parse_str(value)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| {
            ApiError::invalid_field("CASE_ID_INVALID", field, "a case id (UUID) is required")
        })
}

fn plain_id(value: &str, reason: &'static str, field: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid_field(
            reason,
            field,
            "an id (letters, digits, '-', '_', '.', ':') is required",
        ))
    }
}

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

fn level_text(level: i32) -> Option<&'static str> {
    match pb::RuleLevel::try_from(level).ok()? {
        pb::RuleLevel::Informational => Some("informational"),
        pb::RuleLevel::Low => Some("low"),
        pb::RuleLevel::Medium => Some("medium"),
        pb::RuleLevel::High => Some("high"),
        pb::RuleLevel::Critical => Some("critical"),
        pb::RuleLevel::Unspecified => None,
    }
}

fn status_enum(status: &str) -> pb::RuleStatus {
    match status {
        "stable" => pb::RuleStatus::Stable,
        "test" => pb::RuleStatus::Test,
        "experimental" => pb::RuleStatus::Experimental,
        "deprecated" => pb::RuleStatus::Deprecated,
        "unsupported" => pb::RuleStatus::Unsupported,
        _ => pb::RuleStatus::Unspecified,
    }
}

fn status_text(status: i32) -> Option<&'static str> {
    match pb::RuleStatus::try_from(status).ok()? {
        pb::RuleStatus::Stable => Some("stable"),
        pb::RuleStatus::Test => Some("test"),
        pb::RuleStatus::Experimental => Some("experimental"),
        pb::RuleStatus::Deprecated => Some("deprecated"),
        pb::RuleStatus::Unsupported => Some("unsupported"),
        pb::RuleStatus::Unspecified => None,
    }
}

fn correlation_enum(kind: &str) -> pb::CorrelationType {
    match kind {
        "event_count" => pb::CorrelationType::EventCount,
        "value_count" => pb::CorrelationType::ValueCount,
        "temporal" => pb::CorrelationType::Temporal,
        "temporal_ordered" => pb::CorrelationType::TemporalOrdered,
        _ => pb::CorrelationType::Unspecified,
    }
}

fn list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn rule_to_pb(row: &RuleRow) -> pb::Rule {
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

fn detection_to_pb(row: &DetectionRow) -> pb::Detection {
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

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The SQL filter of a detection query (`case_id` always first).
fn detection_filter(case: &str, filter: Option<&pb::DetectionFilter>) -> Result<Filter, ApiError> {
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
        let mut alternatives = Vec::new();
        for event in &filter.event_ids {
            let id = plain_id(&event.value, "EVENT_ID_INVALID", "filter.event_ids")?;
            let p = sql.bind(Param::Text(format!("%\"{}\"%", like_escape(&id))));
            alternatives.push(format!("event_ids LIKE {p} ESCAPE '\\'"));
        }
        sql.push(format!("({})", alternatives.join(" OR ")));
    }
    if let Some(correlation) = filter.is_correlation {
        sql.push(format!("is_correlation = {}", i64::from(correlation)));
    }
    Ok(sql)
}

/// Detection cursors: `<event time µs>:<detection id>`.
fn detection_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
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

#[derive(Clone)]
pub struct DetectApi {
    repo: DetectRepo,
    settings: DetectSettings,
    outbox: Outbox,
    mapping: Arc<LogsourceMapping>,
    stage: DetectStage,
    wake: Arc<Notify>,
}

impl DetectApi {
    pub fn new(
        db: Database,
        settings: DetectSettings,
        outbox: Outbox,
        events: crate::EventsClient,
    ) -> Self {
        let repo = DetectRepo::new(db.clone());
        let mapping = settings.mapping.clone();
        let wake = Arc::new(Notify::new());
        let stage = DetectStage {
            repo: repo.clone(),
            leases: LeaseStore::new(db),
            events,
            rules: Arc::new(RulesetCache::new(repo.clone(), mapping.clone())),
            settings: settings.clone(),
            outbox: outbox.clone(),
            holder: format!("detect-{}", uuid::Uuid::new_v4()),
            wake: wake.clone(),
        };
        Self {
            repo,
            settings,
            outbox,
            mapping,
            stage,
            wake,
        }
    }

    pub fn stage(&self) -> DetectStage {
        self.stage.clone()
    }

    pub fn reconciler(&self) -> Reconciler {
        Reconciler {
            stage: self.stage.clone(),
        }
    }

    /// Imports the built-in rule pack when the rule store is empty (first start).
    pub async fn seed_builtin_rules(&self) -> Result<(), ApiError> {
        if !self.settings.seed_builtin_rules || self.repo.rule_count().await.map_err(db_error)? > 0
        {
            return Ok(());
        }
        let files = casescope_sigma::built_in_texts()
            .into_iter()
            .map(|(path, text)| ImportFile {
                path: path.trim_start_matches("builtin:").to_string(),
                bytes: text.into_bytes(),
            })
            .collect();
        let options = ImportOptions {
            source_label: "builtin".into(),
            import_disabled: false,
        };
        let (planned, version) = self.import(files, options, false).await?;
        tracing::info!(
            rules = planned.added,
            ruleset_version = version,
            "built-in rule pack imported"
        );
        Ok(())
    }

    /// Plans and (unless `dry_run`) stores an import; returns the plan and the version.
    pub async fn import(
        &self,
        files: Vec<ImportFile>,
        options: ImportOptions,
        dry_run: bool,
    ) -> Result<(Planned, i64), ApiError> {
        let existing: HashMap<String, RuleRow> = self
            .repo
            .all_rules(true)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mapping = self.mapping.clone();
        let max = self.settings.max_rule_file_bytes;
        let now = casescope_db::now_micros();
        let planned = tokio::task::spawn_blocking(move || {
            let (docs, refused) = crate::import::documents(files, max);
            crate::import::plan(&docs, refused, &existing, &options, &mapping, now)
        })
        .await
        .map_err(|e| ApiError::internal_logged("rule import crashed", e))?;
        if dry_run {
            let (version, _) = self.repo.ruleset_version().await.map_err(db_error)?;
            return Ok((planned, version));
        }
        // Read before the transaction: SQLite has one connection.
        let (current, _) = self.repo.ruleset_version().await.map_err(db_error)?;
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        for row in &planned.rows {
            self.repo
                .upsert_rule(&mut tx, row)
                .await
                .map_err(db_error)?;
        }
        let version = if planned.changed.is_empty() {
            current
        } else {
            let version = self
                .repo
                .bump_version(
                    &mut tx,
                    &planned.changed,
                    self.settings.change_log_versions,
                    now,
                )
                .await
                .map_err(db_error)?;
            self.repo
                .request_all(&mut tx, version, now)
                .await
                .map_err(db_error)?;
            if planned.correlations_changed {
                self.repo.touch_all_cases(&mut tx).await.map_err(db_error)?;
            }
            version
        };
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.wake.notify_one();
        Ok((planned, version))
    }

    async fn read_import(
        &self,
        mut stream: Streaming<pb::ImportRulesChunk>,
    ) -> Result<(Vec<ImportFile>, pb::ImportRulesOptions), ApiError> {
        use pb::import_rules_chunk::Part;
        let mut options = None;
        let mut files: Vec<ImportFile> = Vec::new();
        let mut declared: u64 = 0;
        let mut total: u64 = 0;
        let mut first = true;
        while let Some(chunk) = stream.message().await.map_err(|status| {
            ApiError::invalid_field("STREAM_FAILED", "stream", status.message().to_string())
        })? {
            match chunk.part {
                Some(Part::Options(o)) if first => options = Some(o),
                Some(Part::Options(_)) => {
                    return Err(ApiError::invalid_field(
                        "OPTIONS_NOT_FIRST",
                        "options",
                        "options may only be the first message",
                    ));
                }
                Some(Part::File(header)) => {
                    if let Some(last) = files.last()
                        && last.bytes.len() as u64 != declared
                    {
                        return Err(ApiError::invalid_field(
                            "FILE_SIZE_MISMATCH",
                            "data",
                            format!(
                                "{}: {} bytes received, {declared} declared",
                                last.path,
                                last.bytes.len()
                            ),
                        ));
                    }
                    let path = header.path.trim().to_string();
                    let lower = path.to_lowercase();
                    if path.is_empty()
                        || path.len() > 1024
                        || !(lower.ends_with(".yml")
                            || lower.ends_with(".yaml")
                            || lower.ends_with(".zip"))
                    {
                        return Err(ApiError::invalid_field(
                            "PATH_INVALID",
                            "file.path",
                            format!(
                                "{path:?}: a relative path ending in .yml, .yaml or .zip is required"
                            ),
                        ));
                    }
                    if header.size_bytes > self.settings.max_rule_file_bytes {
                        return Err(ApiError::invalid_field(
                            "FILE_TOO_LARGE",
                            "file.size_bytes",
                            format!(
                                "{path}: {} bytes is above the maximum {}",
                                header.size_bytes, self.settings.max_rule_file_bytes
                            ),
                        ));
                    }
                    declared = header.size_bytes;
                    files.push(ImportFile {
                        path,
                        bytes: Vec::new(),
                    });
                }
                Some(Part::Data(data)) => {
                    let Some(file) = files.last_mut() else {
                        return Err(ApiError::invalid_field(
                            "DATA_BEFORE_FILE",
                            "data",
                            "file data before any file header",
                        ));
                    };
                    if data.data.len() > self.settings.max_import_chunk_bytes {
                        return Err(ApiError::invalid_field(
                            "CHUNK_TOO_LARGE",
                            "data.data",
                            format!(
                                "chunks are at most {} bytes",
                                self.settings.max_import_chunk_bytes
                            ),
                        ));
                    }
                    total += data.data.len() as u64;
                    if file.bytes.len() as u64 + data.data.len() as u64 > declared
                        || total > self.settings.max_import_bytes
                    {
                        return Err(ApiError::invalid_field(
                            "FILE_TOO_LARGE",
                            "data",
                            format!(
                                "{}: more bytes than declared, or the import exceeds {} bytes",
                                file.path, self.settings.max_import_bytes
                            ),
                        ));
                    }
                    file.bytes.extend_from_slice(&data.data);
                }
                None => {}
            }
            first = false;
        }
        if let Some(last) = files.last()
            && last.bytes.len() as u64 != declared
        {
            return Err(ApiError::invalid_field(
                "FILE_SIZE_MISMATCH",
                "data",
                format!(
                    "{}: {} bytes received, {declared} declared",
                    last.path,
                    last.bytes.len()
                ),
            ));
        }
        if files.is_empty() {
            return Err(ApiError::invalid_field(
                "NO_FILES",
                "file",
                "the import holds no file",
            ));
        }
        Ok((files, options.unwrap_or_default()))
    }

    fn selected(selector: &pb::RuleSelector, row: &RuleRow) -> bool {
        let ids = selector.rule_ids.is_empty()
            || selector.rule_ids.iter().any(|r| r.value.trim() == row.id);
        let levels = selector.levels.is_empty()
            || selector
                .levels
                .iter()
                .any(|l| level_text(*l) == Some(row.level.as_str()));
        let statuses = selector.statuses.is_empty()
            || selector
                .statuses
                .iter()
                .any(|s| status_text(*s) == Some(row.status.as_str()));
        let tags = selector.tags.is_empty() || {
            let tags = list(&row.tags);
            selector
                .tags
                .iter()
                .any(|t| tags.iter().any(|tag| tag.eq_ignore_ascii_case(t.trim())))
        };
        let logsource = selector.logsource.as_ref().is_none_or(|ls| {
            (ls.product.is_empty() || ls.product == row.ls_product)
                && (ls.category.is_empty() || ls.category == row.ls_category)
                && (ls.service.is_empty() || ls.service == row.ls_service)
        });
        ids && levels && statuses && tags && logsource
    }
}

type ApiResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl DetectService for DetectApi {
    async fn import_rules(
        &self,
        request: Request<Streaming<pb::ImportRulesChunk>>,
    ) -> ApiResult<pb::ImportRulesResponse> {
        let (files, options) = self.read_import(request.into_inner()).await?;
        let import_options = ImportOptions {
            source_label: options
                .source_label
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
            import_disabled: options.import_disabled,
        };
        let (planned, version) = self.import(files, import_options, options.dry_run).await?;
        let refused_count = planned.refused.len() as u32;
        let refused = planned
            .refused
            .iter()
            .take(MAX_PAGE_SIZE as usize)
            .map(|r| pb::RuleRefusal {
                path: r.path.clone(),
                title: r.title.clone(),
                rule_id: r.rule_id.clone().map(|value| RuleId { value }),
                reason: r.reason.clone(),
            })
            .collect();
        Ok(Response::new(pb::ImportRulesResponse {
            rules_seen: planned.rules_seen,
            loaded: planned.added + planned.updated + planned.unchanged,
            added: planned.added,
            updated: planned.updated,
            unchanged: planned.unchanged,
            refused_count,
            refused,
            ruleset_version: u64::try_from(version).unwrap_or_default(),
        }))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> ApiResult<pb::ListRulesResponse> {
        let request = request.into_inner();
        let page = validate_page(request.page.as_ref(), "page")?;
        let mut filter = Filter::default();
        if let Some(enabled) = request.enabled {
            filter.push(format!("enabled = {}", i64::from(enabled)));
        }
        let levels: Vec<String> = request
            .levels
            .iter()
            .filter_map(|l| level_text(*l).map(str::to_string))
            .collect();
        filter.any_text("level", &levels);
        let statuses: Vec<String> = request
            .statuses
            .iter()
            .filter_map(|s| status_text(*s).map(str::to_string))
            .collect();
        filter.any_text("status", &statuses);
        if !request.tag.trim().is_empty() {
            let p = filter.bind(Param::Text(format!(
                "%\"{}\"%",
                like_escape(request.tag.trim())
            )));
            filter.push(format!("tags LIKE {p} ESCAPE '\\'"));
        }
        if let Some(ls) = &request.logsource {
            for (column, value) in [
                ("ls_product", &ls.product),
                ("ls_category", &ls.category),
                ("ls_service", &ls.service),
            ] {
                if !value.is_empty() {
                    let p = filter.bind(Param::Text(value.clone()));
                    filter.push(format!("{column} = {p}"));
                }
            }
        }
        if request.refused_only {
            filter.push("refusal_reason <> ''".into());
        }
        if !request.title_contains.trim().is_empty() {
            let p = filter.bind(Param::Text(format!(
                "%{}%",
                like_escape(&request.title_contains.trim().to_lowercase())
            )));
            filter.push(format!("LOWER(title) LIKE {p} ESCAPE '\\'"));
        }
        if let Some(correlation) = request.is_correlation {
            filter.push(format!("is_correlation = {}", i64::from(correlation)));
        }
        let after = match &page.cursor {
            None => None,
            Some(cursor) => {
                let id = plain_id(cursor, "CURSOR_INVALID", "page.cursor")?;
                let row = self
                    .repo
                    .rule(&id)
                    .await
                    .map_err(db_error)?
                    .ok_or_else(|| {
                        ApiError::invalid_field("CURSOR_INVALID", "page.cursor", "unknown cursor")
                    })?;
                Some((row.title, row.id))
            }
        };
        let (rows, total) = self
            .repo
            .list_rules(&filter, after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = if more {
            rows.last().map(|r| r.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListRulesResponse {
            rules: rows.iter().map(rule_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
            total: u64::try_from(total).unwrap_or_default(),
        }))
    }

    async fn get_rule(&self, request: Request<pb::GetRuleRequest>) -> ApiResult<pb::Rule> {
        let request = request.into_inner();
        let id = plain_id(
            request
                .id
                .as_ref()
                .map(|r| r.value.as_str())
                .unwrap_or_default(),
            "RULE_ID_INVALID",
            "id",
        )?;
        let row = self
            .repo
            .rule(&id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("RULE_NOT_FOUND", format!("no rule {id}")))?;
        Ok(Response::new(rule_to_pb(&row)))
    }

    async fn set_rule_state(
        &self,
        request: Request<pb::SetRuleStateRequest>,
    ) -> ApiResult<pb::SetRuleStateResponse> {
        let request = request.into_inner();
        let selector = request.selector.unwrap_or_default();
        let empty = selector.rule_ids.is_empty()
            && selector.levels.is_empty()
            && selector.statuses.is_empty()
            && selector.tags.is_empty()
            && selector.logsource.as_ref().is_none_or(|ls| {
                ls.product.is_empty() && ls.category.is_empty() && ls.service.is_empty()
            });
        if empty && !selector.all_rules {
            return Err(ApiError::invalid_field(
                "SELECTOR_EMPTY",
                "selector",
                "select rules by id, level, status, tag or logsource, or set all_rules",
            )
            .into());
        }
        let rows = self.repo.all_rules(false).await.map_err(db_error)?;
        let mut changed = Vec::new();
        let mut skipped_refused = 0u32;
        for row in rows.iter().filter(|row| Self::selected(&selector, row)) {
            if !row.refusal_reason.is_empty() {
                if request.enabled {
                    skipped_refused += 1;
                }
                continue;
            }
            if row.enabled != request.enabled {
                changed.push(row.id.clone());
            }
        }
        let now = casescope_db::now_micros();
        let version = if changed.is_empty() {
            self.repo.ruleset_version().await.map_err(db_error)?.0
        } else {
            let mut tx = self.repo.db().begin().await.map_err(db_error)?;
            for id in &changed {
                self.repo
                    .set_enabled(&mut tx, id, request.enabled, now)
                    .await
                    .map_err(db_error)?;
            }
            let version = self
                .repo
                .bump_version(&mut tx, &changed, self.settings.change_log_versions, now)
                .await
                .map_err(db_error)?;
            self.repo
                .request_all(&mut tx, version, now)
                .await
                .map_err(db_error)?;
            let correlation_changed = rows
                .iter()
                .any(|r| r.is_correlation && changed.contains(&r.id));
            if correlation_changed {
                self.repo.touch_all_cases(&mut tx).await.map_err(db_error)?;
            }
            tx.commit().await.map_err(|e| db_error(e.into()))?;
            self.wake.notify_one();
            version
        };
        Ok(Response::new(pb::SetRuleStateResponse {
            changed: changed.len() as u32,
            skipped_refused,
            ruleset_version: u64::try_from(version).unwrap_or_default(),
        }))
    }

    async fn get_ruleset(
        &self,
        _request: Request<pb::GetRulesetRequest>,
    ) -> ApiResult<pb::Ruleset> {
        let (version, updated_at) = self.repo.ruleset_version().await.map_err(db_error)?;
        let rows = self.repo.all_rules(false).await.map_err(db_error)?;
        let mut by_level: BTreeMap<i32, u64> = BTreeMap::new();
        let mut digest = Sha256::new();
        let mut enabled: Vec<&RuleRow> = rows.iter().filter(|r| r.enabled).collect();
        enabled.sort_by(|a, b| a.id.cmp(&b.id));
        for row in &enabled {
            *by_level.entry(level_enum(&row.level) as i32).or_default() += 1;
            digest.update(row.id.as_bytes());
            digest.update([0]);
            digest.update(row.content_sha256.as_bytes());
            digest.update([0]);
        }
        let loaded = rows.iter().filter(|r| r.refusal_reason.is_empty()).count();
        Ok(Response::new(pb::Ruleset {
            version: u64::try_from(version).unwrap_or_default(),
            total_rules: rows.len() as u32,
            loaded_rules: loaded as u32,
            refused_rules: (rows.len() - loaded) as u32,
            enabled_rules: enabled.len() as u32,
            correlation_rules: rows
                .iter()
                .filter(|r| r.is_correlation && r.refusal_reason.is_empty())
                .count() as u32,
            enabled_by_level: by_level
                .into_iter()
                .map(|(level, count)| pb::LevelCount { level, count })
                .collect(),
            digest: hex::encode(digest.finalize()),
            updated_at: Some(micros_to_timestamp(updated_at)),
        }))
    }

    async fn list_detections(
        &self,
        request: Request<pb::ListDetectionsRequest>,
    ) -> ApiResult<pb::ListDetectionsResponse> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let filter = detection_filter(&case, request.filter.as_ref())?;
        let descending = request.sort == SortOrder::Descending as i32;
        let after = page.cursor.as_deref().map(detection_cursor).transpose()?;
        let (rows, total) = self
            .repo
            .list_detections(&filter, descending, after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = match rows.last() {
            Some(last) if more => format!("{}:{}", last.event_ts, last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListDetectionsResponse {
            detections: rows.iter().map(detection_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
            total: u64::try_from(total).unwrap_or_default(),
        }))
    }

    async fn get_detection(
        &self,
        request: Request<pb::GetDetectionRequest>,
    ) -> ApiResult<pb::Detection> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let id = plain_id(
            request
                .id
                .as_ref()
                .map(|d| d.value.as_str())
                .unwrap_or_default(),
            "DETECTION_ID_INVALID",
            "id",
        )?;
        let row = self
            .repo
            .detection(&case, &id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "DETECTION_NOT_FOUND",
                    format!("no detection {id} in case {case}"),
                )
            })?;
        Ok(Response::new(detection_to_pb(&row)))
    }

    async fn count_detections(
        &self,
        request: Request<pb::CountDetectionsRequest>,
    ) -> ApiResult<pb::CountDetectionsResponse> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let filter = detection_filter(&case, request.filter.as_ref())?;
        let by_rule = self.repo.count_by_rule(&filter).await.map_err(db_error)?;
        let total: i64 = by_rule.iter().map(|(_, _, _, n)| n).sum();
        let mut by_level: BTreeMap<i32, u64> = BTreeMap::new();
        for (_, _, level, n) in &by_rule {
            *by_level
                .entry(level_enum(level_name(*level)) as i32)
                .or_default() += u64::try_from(*n).unwrap_or_default();
        }
        let mut tactics: HashMap<String, u64> = HashMap::new();
        let mut techniques: HashMap<String, u64> = HashMap::new();
        for (t, q, n) in self.repo.count_by_attack(&filter).await.map_err(db_error)? {
            let n = u64::try_from(n).unwrap_or_default();
            let unique = |s: &str| -> HashSet<String> {
                s.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            for tactic in unique(&t) {
                *tactics.entry(tactic).or_default() += n;
            }
            for technique in unique(&q) {
                *techniques.entry(technique).or_default() += n;
            }
        }
        let sorted = |map: HashMap<String, u64>| -> Vec<pb::AttackCount> {
            let mut list: Vec<_> = map.into_iter().collect();
            list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.into_iter()
                .take(MAX_PAGE_SIZE as usize)
                .map(|(name, count)| pb::AttackCount { name, count })
                .collect()
        };
        let truncated = by_rule.len() > MAX_PAGE_SIZE as usize;
        Ok(Response::new(pb::CountDetectionsResponse {
            total: u64::try_from(total).unwrap_or_default(),
            by_rule: by_rule
                .into_iter()
                .take(MAX_PAGE_SIZE as usize)
                .map(|(id, title, level, n)| pb::RuleDetectionCount {
                    rule_id: Some(RuleId { value: id }),
                    rule_title: title,
                    level: level_enum(level_name(level)) as i32,
                    count: u64::try_from(n).unwrap_or_default(),
                })
                .collect(),
            by_rule_truncated: truncated,
            by_level: by_level
                .into_iter()
                .map(|(level, count)| pb::LevelCount { level, count })
                .collect(),
            by_tactic: sorted(tactics),
            by_technique: sorted(techniques),
        }))
    }

    async fn rerun_detection(
        &self,
        request: Request<pb::RerunDetectionRequest>,
    ) -> ApiResult<pb::RerunDetectionResponse> {
        use pb::rerun_detection_request::Scope;
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let files: Vec<String> = match &request.scope {
            Some(Scope::Files(list)) => {
                if list.file_ids.is_empty() || list.file_ids.len() > MAX_PAGE_SIZE as usize {
                    return Err(ApiError::invalid_field(
                        "FILES_INVALID",
                        "files.file_ids",
                        format!("between 1 and {MAX_PAGE_SIZE} file ids"),
                    )
                    .into());
                }
                list.file_ids
                    .iter()
                    .map(|f| plain_id(&f.value, "FILE_ID_INVALID", "files.file_ids"))
                    .collect::<Result<_, _>>()?
            }
            Some(Scope::WholeCase(true)) => self
                .repo
                .case_files(&case, "", 100_000)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|f| f.file_id)
                .collect(),
            _ => {
                return Err(ApiError::invalid_field(
                    "SCOPE_REQUIRED",
                    "scope",
                    "name the files to re-run, or set whole_case",
                )
                .into());
            }
        };
        let (version, _) = self.repo.ruleset_version().await.map_err(db_error)?;
        let now = casescope_db::now_micros();
        // Every file is checked before the transaction (SQLite has one connection).
        let mut rows = Vec::with_capacity(files.len());
        for file_id in &files {
            let row = self.repo.file(file_id).await.map_err(db_error)?;
            let Some(row) = row.filter(|r| r.case_id == case) else {
                return Err(ApiError::not_found(
                    "FILE_NOT_FOUND",
                    format!("file {file_id} of case {case} has not been indexed for detection"),
                )
                .into());
            };
            rows.push(row);
        }
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        let mut scheduled = 0u32;
        for (file_id, row) in files.iter().zip(rows) {
            self.repo
                .request_full_rerun(&mut tx, file_id, version, now)
                .await
                .map_err(db_error)?;
            enqueue_job(&self.outbox, &mut tx, &row, &format!("rerun{now}"))
                .await
                .map_err(|e| ApiError::internal_logged("cannot queue the detect job", e))?;
            scheduled += 1;
        }
        if matches!(request.scope, Some(Scope::WholeCase(true))) {
            self.repo
                .touch_case(&mut tx, &case)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.outbox.nudge();
        self.wake.notify_one();
        Ok(Response::new(pb::RerunDetectionResponse {
            files_scheduled: scheduled,
            ruleset_version: u64::try_from(version).unwrap_or_default(),
        }))
    }

    async fn list_file_states(
        &self,
        request: Request<pb::ListFileStatesRequest>,
    ) -> ApiResult<pb::ListFileStatesResponse> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = match &page.cursor {
            Some(cursor) => plain_id(cursor, "CURSOR_INVALID", "page.cursor")?,
            None => String::new(),
        };
        let rows = self
            .repo
            .case_files(&case, &after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = match rows.last() {
            Some(last) if more => last.file_id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListFileStatesResponse {
            files: rows.iter().map(file_state_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
        }))
    }
}

fn file_state_to_pb(row: &crate::repo::FileRow) -> pb::FileDetectState {
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
