//! Hunting on demand, and reading matches.

use super::convert::*;
use super::{IocApi, db_error};
use crate::repo::{Filter, Param};
use casescope_proto::common::v1::{CaseId, FileId, IocId, PageResponse, SortOrder};
use casescope_proto::error::ApiError;
use casescope_proto::ids::{case_id, plain_id, uuid_id};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::paging::{MAX_PAGE_SIZE, validate_page};

/// Files asked to re-hunt per transaction.
const FILES_PER_TX: i64 = 500;

impl IocApi {
    /// Schedules a full hunt of the case's files (all, or these).
    pub(super) async fn hunt(
        &self,
        case: Option<&CaseId>,
        files: Option<&[FileId]>,
    ) -> Result<pb::HuntResponse, ApiError> {
        let case = case_id(case, "case_id")?;
        let (version, _) = self.repo.case_version(&case).await.map_err(db_error)?;
        let now = casescope_db::now_micros();
        let mut scheduled = 0u32;
        match files {
            Some(files) => {
                if files.is_empty() || files.len() > MAX_PAGE_SIZE as usize {
                    return Err(ApiError::invalid_field(
                        "FILE_IDS_INVALID",
                        "file_ids",
                        format!("1 to {MAX_PAGE_SIZE} files"),
                    ));
                }
                let ids: Vec<String> = files
                    .iter()
                    .map(|f| plain_id(&f.value, "FILE_ID_INVALID", "file_ids"))
                    .collect::<Result<_, _>>()?;
                for id in &ids {
                    let known = self.repo.file(id).await.map_err(db_error)?;
                    if known.is_none_or(|f| f.case_id != case) {
                        return Err(ApiError::not_found(
                            "FILE_NOT_FOUND",
                            format!(
                                "file {id} of case {case} has not been indexed yet (or is not in it)"
                            ),
                        ));
                    }
                }
                let mut tx = self.repo.db().begin().await.map_err(db_error)?;
                for id in &ids {
                    if self
                        .repo
                        .request_full_hunt(&mut tx, id, version, now)
                        .await
                        .map_err(db_error)?
                        .is_some()
                    {
                        scheduled += 1;
                    }
                }
                tx.commit().await.map_err(|e| db_error(e.into()))?;
            }
            None => {
                let mut after = String::new();
                loop {
                    let page = self
                        .repo
                        .case_files(&case, &after, FILES_PER_TX)
                        .await
                        .map_err(db_error)?;
                    let Some(last) = page.last() else { break };
                    after = last.file_id.clone();
                    let mut tx = self.repo.db().begin().await.map_err(db_error)?;
                    for file in &page {
                        if self
                            .repo
                            .request_full_hunt(&mut tx, &file.file_id, version, now)
                            .await
                            .map_err(db_error)?
                            .is_some()
                        {
                            scheduled += 1;
                        }
                    }
                    tx.commit().await.map_err(|e| db_error(e.into()))?;
                }
            }
        }
        let enabled = self
            .repo
            .hunted_iocs(&case, now, None)
            .await
            .map_err(db_error)?
            .len();
        self.wake.notify_one();
        Ok(pb::HuntResponse {
            files_scheduled: scheduled,
            enabled_iocs: u32::try_from(enabled).unwrap_or(u32::MAX),
        })
    }

    pub(super) async fn hunt_states(
        &self,
        request: pb::ListHuntStatesRequest,
    ) -> Result<pb::ListHuntStatesResponse, ApiError> {
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page.cursor.clone().unwrap_or_default();
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
        let (case_version, _) = self.repo.case_version(&case).await.map_err(db_error)?;
        let n = |v: i64| u64::try_from(v).unwrap_or_default();
        Ok(pb::ListHuntStatesResponse {
            states: rows
                .iter()
                .map(|f| pb::HuntState {
                    file_id: Some(FileId {
                        value: f.file_id.clone(),
                    }),
                    status: f.status.clone(),
                    generation: f.generation,
                    requested_version: f.requested_version,
                    hunted_version: f.hunted_version,
                    last_mode: f.last_mode.clone(),
                    events_scanned: n(f.events_scanned),
                    matches: n(f.matches),
                    completed_runs: n(f.completed_runs),
                    error: f.error.clone().unwrap_or_default(),
                    updated_at: Some(casescope_proto::time::micros_to_timestamp(f.updated_at)),
                })
                .collect(),
            page: Some(PageResponse { next_cursor }),
            case_version,
        })
    }

    pub(super) async fn matches(
        &self,
        request: pb::ListMatchesRequest,
    ) -> Result<pb::ListMatchesResponse, ApiError> {
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let filter = match_filter(&case, request.filter.as_ref())?;
        let descending = request.sort == SortOrder::Descending as i32;
        let after = match &page.cursor {
            None => None,
            Some(cursor) => Some(
                cursor
                    .split_once(':')
                    .and_then(|(ts, id)| Some((ts.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(|| {
                        ApiError::invalid_field("CURSOR_INVALID", "page.cursor", "unknown cursor")
                    })?,
            ),
        };
        let (rows, total) = self
            .repo
            .list_matches(&filter, descending, after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = match rows.last() {
            Some(last) if more => format!("{}:{}", last.event_ts, last.id),
            _ => String::new(),
        };
        Ok(pb::ListMatchesResponse {
            matches: rows.iter().map(match_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    pub(super) async fn counts(
        &self,
        request: pb::CountMatchesRequest,
    ) -> Result<pb::CountMatchesResponse, ApiError> {
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let filter = match_filter(&case, request.filter.as_ref())?;
        let counts = self
            .repo
            .count_matches(&filter, i64::from(MAX_PAGE_SIZE))
            .await
            .map_err(db_error)?;
        let n = |v: i64| u64::try_from(v).unwrap_or_default();
        Ok(pb::CountMatchesResponse {
            total: n(counts.total),
            distinct_events: n(counts.distinct_events),
            by_ioc: counts
                .by_ioc
                .iter()
                .map(|(id, kind, value, count)| pb::IocMatchCount {
                    ioc_id: Some(IocId { value: id.clone() }),
                    ioc_type: stored_type(kind) as i32,
                    ioc_value: value.clone(),
                    count: n(*count),
                })
                .collect(),
            by_ioc_truncated: counts.by_ioc_truncated,
            by_type: counts
                .by_type
                .iter()
                .map(|(kind, count)| pb::IocTypeMatchCount {
                    ioc_type: stored_type(kind) as i32,
                    count: n(*count),
                })
                .collect(),
        })
    }
}

/// The SQL filter of a match query (`case_id` first).
fn match_filter(case: &str, filter: Option<&pb::MatchFilter>) -> Result<Filter, ApiError> {
    let mut sql = Filter::default();
    let c = sql.bind(Param::Text(case.to_string()));
    sql.push(format!("case_id = {c}"));
    let Some(filter) = filter else {
        return Ok(sql);
    };
    for (field, n) in [
        ("ioc_ids", filter.ioc_ids.len()),
        ("file_ids", filter.file_ids.len()),
        ("event_ids", filter.event_ids.len()),
        ("ioc_types", filter.ioc_types.len()),
    ] {
        if n > MAX_PAGE_SIZE as usize {
            return Err(ApiError::invalid_field(
                "FILTER_TOO_LARGE",
                format!("filter.{field}"),
                format!("at most {MAX_PAGE_SIZE} values"),
            ));
        }
    }
    let iocs: Vec<String> = filter
        .ioc_ids
        .iter()
        .map(|i| uuid_id(&i.value, "IOC_ID_INVALID", "filter.ioc_ids"))
        .collect::<Result<_, _>>()?;
    sql.any_text("ioc_id", &iocs);
    let files: Vec<String> = filter
        .file_ids
        .iter()
        .map(|f| plain_id(&f.value, "FILE_ID_INVALID", "filter.file_ids"))
        .collect::<Result<_, _>>()?;
    sql.any_text("file_id", &files);
    let events: Vec<String> = filter
        .event_ids
        .iter()
        .map(|e| plain_id(&e.value, "EVENT_ID_INVALID", "filter.event_ids"))
        .collect::<Result<_, _>>()?;
    sql.any_text("event_id", &events);
    let types: Vec<String> = filter
        .ioc_types
        .iter()
        .map(|t| {
            type_of(*t).map(|k| k.name().to_string()).ok_or_else(|| {
                ApiError::invalid_field("IOC_TYPE_INVALID", "filter.ioc_types", "unknown IOC type")
            })
        })
        .collect::<Result<_, _>>()?;
    sql.any_text("ioc_type", &types);
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
    Ok(sql)
}
