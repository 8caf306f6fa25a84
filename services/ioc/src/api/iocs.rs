//! Creating, reading, listing, changing and deleting IOCs, of a case or of a global
//! list (the same code, with the owner from the RPC: [`Via`]). A change of what is
//! hunted (a new enabled IOC; enabled or expiry changed; deletion) bumps the IOC version
//! of the case — or of every case using the list — with the IOC in its change log, so
//! files re-hunt that IOC alone; a disabled or deleted IOC's matches go in the same
//! transaction.

use super::convert::*;
use super::{IocApi, Via, db_error};
use crate::repo::{Filter, IocRow, Owner, Param};
use casescope_ioc::{IocType, Tlp, canonicalize};
use casescope_proto::common::v1::PageResponse;
use casescope_proto::error::ApiError;
use casescope_proto::ids::uuid_id;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::paging::validate_page;
use casescope_proto::time::timestamp_to_micros;

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl IocApi {
    /// Records, in `tx`, that `changed` IOCs of the owner changed what hunts find; the
    /// files of the case (of every case using the list) are re-hunted for them (the
    /// reconciler sends their jobs).
    pub(super) async fn changed(
        &self,
        tx: &mut casescope_db::Tx<'_>,
        owner: &Owner,
        changed: &[String],
    ) -> Result<(), ApiError> {
        let now = casescope_db::now_micros();
        let cases = match owner {
            Owner::Case(case) => vec![case.clone()],
            Owner::List(list) => {
                self.repo.lock_lists(tx).await.map_err(db_error)?;
                self.repo.cases_using(tx, list).await.map_err(db_error)?
            }
        };
        for case in cases {
            self.repo
                .bump_version(tx, &case, changed, now)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    pub(super) async fn create(
        &self,
        via: Via,
        request: pb::CreateIocRequest,
        author: &str,
    ) -> Result<pb::Ioc, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let case = owner.key();
        let kind = type_of(request.ioc_type).ok_or_else(|| {
            ApiError::invalid_field("IOC_TYPE_INVALID", "ioc_type", "an IOC type is required")
        })?;
        let normalized = canonicalize(kind, &request.value)
            .map_err(|reason| ApiError::invalid_field("IOC_VALUE_INVALID", "value", reason))?;
        let confidence = request.confidence.unwrap_or(50);
        if confidence > 100 {
            return Err(ApiError::invalid_field(
                "CONFIDENCE_INVALID",
                "confidence",
                "confidence is 0 to 100",
            ));
        }
        if self.repo.count_iocs(&case).await.map_err(db_error)? as u64
            >= self.settings.max_iocs_per_case
        {
            return Err(ApiError::FailedPrecondition {
                reason: "IOC_LIMIT",
                message: format!(
                    "the {} holds {} IOCs, the most one case or list may hold",
                    owner.describe(),
                    self.settings.max_iocs_per_case
                ),
            });
        }
        let now = casescope_db::now_micros();
        let row = IocRow {
            id: uuid::Uuid::now_v7().to_string(),
            case_id: case.clone(),
            ioc_type: kind.name().to_string(),
            value: request.value.trim().to_string(),
            normalized,
            description: clean_text(&request.description, MAX_DESCRIPTION_CHARS),
            source: match clean_text(request.source.trim(), MAX_SOURCE_CHARS) {
                s if s.is_empty() => "analyst".to_string(),
                s => s,
            },
            tlp: tlp_of(request.tlp).unwrap_or(Tlp::Amber).name().to_string(),
            confidence: i64::from(confidence),
            enabled: request.enabled.unwrap_or(true),
            labels: serde_json::to_string(&clean_labels(&request.labels)?)
                .unwrap_or_else(|_| "[]".into()),
            first_seen: request.first_seen.as_ref().map(timestamp_to_micros),
            last_seen: request.last_seen.as_ref().map(timestamp_to_micros),
            expires_at: request.expires_at.as_ref().map(timestamp_to_micros),
            enrichment_json: String::new(),
            enriched_at: None,
            created_by: author.to_string(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        if !self
            .repo
            .insert_ioc(&mut tx, &row)
            .await
            .map_err(db_error)?
        {
            // Released before reading on (SQLite gives a transaction its connection).
            drop(tx);
            let existing = self
                .repo
                .ioc_by_value(&case, &row.ioc_type, &row.normalized)
                .await
                .map_err(db_error)?
                .map(|r| r.id)
                .unwrap_or_default();
            return Err(ApiError::AlreadyExists {
                reason: "IOC_EXISTS",
                message: format!(
                    "the {} already has the {} {} (IOC {existing})",
                    owner.describe(),
                    row.ioc_type,
                    row.normalized
                ),
            });
        }
        if row.hunted(now) {
            self.changed(&mut tx, &owner, std::slice::from_ref(&row.id))
                .await?;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.wake.notify_one();
        Ok(ioc_to_pb(&row, 0))
    }

    async fn stored(&self, owner: &Owner, id: &str) -> Result<IocRow, ApiError> {
        self.repo
            .ioc(&owner.key(), id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "IOC_NOT_FOUND",
                    format!("no IOC {id} in {}", owner.describe()),
                )
            })
    }

    pub(super) async fn get(
        &self,
        via: Via,
        request: pb::GetIocRequest,
    ) -> Result<pb::Ioc, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let id = uuid_id(
            request.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
            "IOC_ID_INVALID",
            "id",
        )?;
        let row = self.stored(&owner, &id).await?;
        let counts = self
            .repo
            .match_counts_of(&owner, std::slice::from_ref(&row.id))
            .await
            .map_err(db_error)?;
        Ok(ioc_to_pb(&row, counts.get(&row.id).copied().unwrap_or(0)))
    }

    pub(super) async fn list(
        &self,
        via: Via,
        request: pb::ListIocsRequest,
    ) -> Result<pb::ListIocsResponse, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let filter = ioc_filter(
            &owner.key(),
            &request.ioc_types,
            request.enabled,
            &request.source,
            &request.value_contains,
        )?;
        let after = match &page.cursor {
            None => None,
            Some(cursor) => Some(
                cursor
                    .split_once(':')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(|| {
                        ApiError::invalid_field("CURSOR_INVALID", "page.cursor", "unknown cursor")
                    })?,
            ),
        };
        let (rows, total) = self
            .repo
            .list_iocs(&filter, after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = match rows.last() {
            Some(last) if more => format!("{}:{}", last.created_at, last.id),
            _ => String::new(),
        };
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let counts = self
            .repo
            .match_counts_of(&owner, &ids)
            .await
            .map_err(db_error)?;
        Ok(pb::ListIocsResponse {
            iocs: rows
                .iter()
                .map(|r| ioc_to_pb(r, counts.get(&r.id).copied().unwrap_or(0)))
                .collect(),
            page: Some(PageResponse { next_cursor }),
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    pub(super) async fn update(
        &self,
        via: Via,
        request: pb::UpdateIocRequest,
    ) -> Result<pb::Ioc, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let id = uuid_id(
            request.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
            "IOC_ID_INVALID",
            "id",
        )?;
        let paths = casescope_proto::paging::mask_paths(request.update_mask.as_ref())?;
        let stored = self.stored(&owner, &id).await?;
        if request.expected_version != 0 && request.expected_version != stored.version {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!(
                    "the IOC is at version {}, not {}",
                    stored.version, request.expected_version
                ),
            });
        }
        let mut row = stored.clone();
        for path in &paths {
            match path.as_str() {
                "description" => {
                    row.description = clean_text(&request.description, MAX_DESCRIPTION_CHARS)
                }
                "source" => row.source = clean_text(request.source.trim(), MAX_SOURCE_CHARS),
                "tlp" => {
                    row.tlp = tlp_of(request.tlp)
                        .ok_or_else(|| {
                            ApiError::invalid_field("TLP_INVALID", "tlp", "a TLP level is required")
                        })?
                        .name()
                        .to_string()
                }
                "confidence" => {
                    if request.confidence > 100 {
                        return Err(ApiError::invalid_field(
                            "CONFIDENCE_INVALID",
                            "confidence",
                            "confidence is 0 to 100",
                        ));
                    }
                    row.confidence = i64::from(request.confidence);
                }
                "enabled" => row.enabled = request.enabled,
                "labels" => {
                    row.labels = serde_json::to_string(&clean_labels(&request.labels)?)
                        .unwrap_or_else(|_| "[]".into())
                }
                "expires_at" => {
                    row.expires_at = request.expires_at.as_ref().map(timestamp_to_micros)
                }
                other => {
                    return Err(ApiError::invalid_field(
                        "UPDATE_MASK_INVALID",
                        "update_mask",
                        format!(
                            "{other:?} cannot be changed (description, source, tlp, confidence, enabled, labels, expires_at)"
                        ),
                    ));
                }
            }
        }
        let now = casescope_db::now_micros();
        row.updated_at = now;
        row.version = stored.version + 1;
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        if !self
            .repo
            .update_ioc(&mut tx, &row)
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: "the IOC changed meanwhile; read it again".into(),
            });
        }
        let hunt_changed =
            stored.hunted(now) != row.hunted(now) || stored.expires_at != row.expires_at;
        if hunt_changed {
            if !row.hunted(now) {
                self.repo
                    .delete_ioc_matches(&mut tx, &id)
                    .await
                    .map_err(db_error)?;
            }
            self.changed(&mut tx, &owner, std::slice::from_ref(&id))
                .await?;
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        if hunt_changed {
            self.wake.notify_one();
        }
        let counts = self
            .repo
            .match_counts_of(&owner, std::slice::from_ref(&id))
            .await
            .map_err(db_error)?;
        Ok(ioc_to_pb(&row, counts.get(&id).copied().unwrap_or(0)))
    }

    pub(super) async fn delete(
        &self,
        via: Via,
        request: pb::DeleteIocRequest,
    ) -> Result<pb::DeleteIocResponse, ApiError> {
        let owner = self
            .owner(via, request.case_id.as_ref(), &request.list_id, "")
            .await?;
        let id = uuid_id(
            request.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
            "IOC_ID_INVALID",
            "id",
        )?;
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        if !self
            .repo
            .delete_ioc(&mut tx, &owner.key(), &id)
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::not_found(
                "IOC_NOT_FOUND",
                format!("no IOC {id} in {}", owner.describe()),
            ));
        }
        let removed = self
            .repo
            .delete_ioc_matches(&mut tx, &id)
            .await
            .map_err(db_error)?;
        self.changed(&mut tx, &owner, std::slice::from_ref(&id))
            .await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(pb::DeleteIocResponse {
            matches_deleted: removed,
        })
    }
}

/// The SQL filter of an IOC listing (the owner's key first).
pub(super) fn ioc_filter(
    case: &str,
    types: &[i32],
    enabled: Option<bool>,
    source: &str,
    value_contains: &str,
) -> Result<Filter, ApiError> {
    let mut filter = Filter::default();
    let c = filter.bind(Param::Text(case.to_string()));
    filter.push(format!("case_id = {c}"));
    let names: Vec<String> = types
        .iter()
        .map(|t| {
            type_of(*t)
                .map(|k: IocType| k.name().to_string())
                .ok_or_else(|| {
                    ApiError::invalid_field("IOC_TYPE_INVALID", "ioc_types", "unknown IOC type")
                })
        })
        .collect::<Result<_, _>>()?;
    filter.any_text("ioc_type", &names);
    if let Some(enabled) = enabled {
        filter.push(format!("enabled = {}", i64::from(enabled)));
    }
    if !source.trim().is_empty() {
        let p = filter.bind(Param::Text(source.trim().to_string()));
        filter.push(format!("source = {p}"));
    }
    if !value_contains.trim().is_empty() {
        let p = filter.bind(Param::Text(format!(
            "%{}%",
            like_escape(&value_contains.trim().to_lowercase())
        )));
        filter.push(format!(
            "(LOWER(value) LIKE {p} ESCAPE '\\' OR LOWER(normalized) LIKE {p} ESCAPE '\\')"
        ));
    }
    Ok(filter)
}
