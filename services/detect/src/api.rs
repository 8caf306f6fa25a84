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

mod convert;
mod events;
mod rules;

use convert::*;

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

    async fn detected_events(
        &self,
        request: Request<pb::DetectedEventsRequest>,
    ) -> ApiResult<pb::DetectedEventsResponse> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let filter = detection_filter(&case, request.filter.as_ref())?;
        let (tiebreaks, detections) = events::detected_events(self.repo.db(), &filter).await?;
        Ok(Response::new(pb::DetectedEventsResponse {
            tiebreaks,
            detections,
        }))
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
        match crate::purge::case_state(self.repo.db(), &case)
            .await
            .map_err(db_error)?
            .as_deref()
        {
            Some("archived") => {
                return Err(ApiError::failed_precondition(
                    "CASE_ARCHIVED",
                    format!("case {case} is archived; restore it before re-running detection"),
                )
                .into());
            }
            Some("restoring") => {
                return Err(ApiError::failed_precondition(
                    "CASE_RESTORING",
                    format!("case {case} is being restored; wait until it is open before re-running detection"),
                )
                .into());
            }
            _ => {}
        }
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
