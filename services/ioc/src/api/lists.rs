//! Global IOC lists: creating, reading, listing, changing and deleting them. Their IOCs
//! go through the case IOC code with a list owner ([`Via::List`]).
//!
//! A list joining a case (created with it, the case added, `all_cases` set) logs the
//! list's IOCs in the case's IOC version, so its files hunt them; a list leaving a case
//! drops those matches in the same transaction (and logs the IOCs too, so a hunt running
//! meanwhile is redone for them).

use super::convert::*;
use super::{IocApi, db_error};
use crate::repo::{ListRow, Owner};
use casescope_proto::common::v1::{CaseId, PageResponse};
use casescope_proto::error::ApiError;
use casescope_proto::ids::{case_id, uuid_id};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::paging::validate_page;
use std::collections::BTreeSet;

/// Which RPCs a request came through: a case's IOCs or a global list's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Case,
    List,
}

/// Characters of a list name.
const MAX_NAME_CHARS: usize = 128;
/// Chosen cases of one list.
const MAX_LIST_CASES: usize = 1000;

fn clean_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "LIST_NAME_INVALID",
            "name",
            format!("a list name is 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "LIST_NAME_INVALID",
            "name",
            "a list name has no control characters",
        ));
    }
    Ok(name.to_string())
}

fn clean_cases(ids: &[CaseId], all_cases: bool) -> Result<Vec<String>, ApiError> {
    if all_cases && !ids.is_empty() {
        return Err(ApiError::invalid_field(
            "LIST_CASES_INVALID",
            "case_ids",
            "a list for all cases names no cases",
        ));
    }
    if ids.len() > MAX_LIST_CASES {
        return Err(ApiError::invalid_field(
            "LIST_CASES_INVALID",
            "case_ids",
            format!("a list names at most {MAX_LIST_CASES} cases"),
        ));
    }
    let mut cases = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        cases.insert(case_id(Some(id), &format!("case_ids[{i}]"))?);
    }
    Ok(cases.into_iter().collect())
}

impl IocApi {
    /// The owner of the IOCs a request addresses: its case through the case RPCs, its
    /// (existing) list through the list RPCs; the other field must be unset. `prefix`
    /// is the path of the fields (`header.` in an import).
    pub(super) async fn owner(
        &self,
        via: Via,
        case: Option<&CaseId>,
        list_id: &str,
        prefix: &str,
    ) -> Result<Owner, ApiError> {
        match via {
            Via::Case => {
                if !list_id.is_empty() {
                    return Err(ApiError::invalid_field(
                        "LIST_ID_UNEXPECTED",
                        format!("{prefix}list_id"),
                        "a case's IOCs name no list (the list RPCs, e.g. CreateListIoc, do)",
                    ));
                }
                Ok(Owner::Case(case_id(case, &format!("{prefix}case_id"))?))
            }
            Via::List => {
                if case.is_some_and(|c| !c.value.is_empty()) {
                    return Err(ApiError::invalid_field(
                        "CASE_ID_UNEXPECTED",
                        format!("{prefix}case_id"),
                        "a list's IOCs name no case",
                    ));
                }
                let id = uuid_id(list_id, "LIST_ID_INVALID", &format!("{prefix}list_id"))?;
                let list = self.stored_list(&id).await?;
                Ok(Owner::List(list.id))
            }
        }
    }

    async fn stored_list(&self, key: &str) -> Result<ListRow, ApiError> {
        if key.trim().is_empty() {
            return Err(ApiError::invalid_field(
                "LIST_ID_INVALID",
                "id",
                "a list id or name is required",
            ));
        }
        self.repo
            .list_by_id_or_name(key)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("LIST_NOT_FOUND", format!("no IOC list {key:?}")))
    }

    async fn list_pb(&self, row: &ListRow) -> Result<pb::IocList, ApiError> {
        let cases = self.repo.list_cases(&row.id).await.map_err(db_error)?;
        let count = self
            .repo
            .count_iocs(&Owner::List(row.id.clone()).key())
            .await
            .map_err(db_error)?;
        Ok(list_to_pb(row, &cases, count))
    }

    pub(super) async fn create_list(
        &self,
        request: pb::CreateIocListRequest,
        author: &str,
    ) -> Result<pb::IocList, ApiError> {
        let name = clean_name(&request.name)?;
        let cases = clean_cases(&request.case_ids, request.all_cases)?;
        let now = casescope_db::now_micros();
        let row = ListRow {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            description: clean_text(&request.description, MAX_DESCRIPTION_CHARS),
            all_cases: request.all_cases,
            created_by: author.to_string(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        if !self
            .repo
            .insert_list(&mut tx, &row, &cases)
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::AlreadyExists {
                reason: "LIST_EXISTS",
                message: format!("an IOC list is already named {:?}", row.name),
            });
        }
        // A new list holds no IOCs: nothing to hunt yet.
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        tracing::info!(list_id = %row.id, name = %row.name, all_cases = row.all_cases, cases = cases.len(), "IOC list created");
        Ok(list_to_pb(&row, &cases, 0))
    }

    pub(super) async fn get_list(
        &self,
        request: pb::GetIocListRequest,
    ) -> Result<pb::IocList, ApiError> {
        let row = self.stored_list(&request.id).await?;
        self.list_pb(&row).await
    }

    pub(super) async fn lists(
        &self,
        request: pb::ListIocListsRequest,
    ) -> Result<pb::ListIocListsResponse, ApiError> {
        let page = validate_page(request.page.as_ref(), "page")?;
        let case = match &request.case_id {
            Some(c) if !c.value.is_empty() => Some(case_id(Some(c), "case_id")?),
            _ => None,
        };
        let after = page.cursor.clone().unwrap_or_default();
        let rows = self
            .repo
            .lists_page(case.as_deref(), &after, i64::from(page.size) + 1)
            .await
            .map_err(db_error)?;
        let more = rows.len() > page.size as usize;
        let rows = &rows[..rows.len().min(page.size as usize)];
        let next_cursor = match rows.last() {
            Some(last) if more => crate::repo::list_name_key(&last.name),
            _ => String::new(),
        };
        let mut lists = Vec::with_capacity(rows.len());
        for row in rows {
            lists.push(self.list_pb(row).await?);
        }
        Ok(pb::ListIocListsResponse {
            lists,
            page: Some(PageResponse { next_cursor }),
        })
    }

    pub(super) async fn update_list(
        &self,
        request: pb::UpdateIocListRequest,
    ) -> Result<pb::IocList, ApiError> {
        let paths = casescope_proto::paging::mask_paths(request.update_mask.as_ref())?;
        let stored = self.stored_list(&request.id).await?;
        if request.expected_version != 0 && request.expected_version != stored.version {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!(
                    "the list is at version {}, not {}",
                    stored.version, request.expected_version
                ),
            });
        }
        let mut row = stored.clone();
        let mut new_cases = None;
        for path in &paths {
            match path.as_str() {
                "name" => row.name = clean_name(&request.name)?,
                "description" => {
                    row.description = clean_text(&request.description, MAX_DESCRIPTION_CHARS)
                }
                "all_cases" => row.all_cases = request.all_cases,
                "case_ids" => new_cases = Some(&request.case_ids),
                other => {
                    return Err(ApiError::invalid_field(
                        "UPDATE_MASK_INVALID",
                        "update_mask",
                        format!(
                            "{other:?} cannot be changed (name, description, all_cases, case_ids)"
                        ),
                    ));
                }
            }
        }
        let cases = match new_cases {
            Some(ids) => Some(clean_cases(ids, row.all_cases)?),
            // Switching to all cases forgets the chosen ones.
            None if row.all_cases && !stored.all_cases => Some(Vec::new()),
            None => None,
        };
        if row.all_cases
            && cases.is_none()
            && !self
                .repo
                .list_cases(&row.id)
                .await
                .map_err(db_error)?
                .is_empty()
        {
            return Err(ApiError::invalid_field(
                "LIST_CASES_INVALID",
                "case_ids",
                "a list for all cases names no cases",
            ));
        }
        row.updated_at = casescope_db::now_micros();
        row.version = stored.version + 1;
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        self.repo.lock_lists(&mut tx).await.map_err(db_error)?;
        let before: BTreeSet<String> = self
            .repo
            .cases_using(&mut tx, &row.id)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
        match self
            .repo
            .update_list(&mut tx, &row)
            .await
            .map_err(db_error)?
        {
            None => {
                return Err(ApiError::Aborted {
                    reason: "VERSION_MISMATCH",
                    message: "the list changed meanwhile; read it again".into(),
                });
            }
            Some(false) => {
                return Err(ApiError::AlreadyExists {
                    reason: "LIST_EXISTS",
                    message: format!("an IOC list is already named {:?}", row.name),
                });
            }
            Some(true) => {}
        }
        if let Some(cases) = &cases {
            self.repo
                .set_list_cases(&mut tx, &row.id, cases)
                .await
                .map_err(db_error)?;
        }
        let after: BTreeSet<String> = self
            .repo
            .cases_using(&mut tx, &row.id)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
        let owner = Owner::List(row.id.clone());
        let ids = self
            .repo
            .owner_ioc_ids(&mut tx, &owner)
            .await
            .map_err(db_error)?;
        let now = row.updated_at;
        let mut touched = 0;
        if !ids.is_empty() {
            for case in before.difference(&after) {
                self.repo
                    .delete_list_matches_in(&mut tx, &row.id, case)
                    .await
                    .map_err(db_error)?;
                self.repo
                    .bump_version(&mut tx, case, &ids, now)
                    .await
                    .map_err(db_error)?;
                touched += 1;
            }
            for case in after.difference(&before) {
                self.repo
                    .bump_version(&mut tx, case, &ids, now)
                    .await
                    .map_err(db_error)?;
                touched += 1;
            }
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        if touched > 0 {
            self.wake.notify_one();
        }
        tracing::info!(list_id = %row.id, cases_changed = touched, "IOC list updated");
        self.list_pb(&row).await
    }

    pub(super) async fn delete_list(
        &self,
        request: pb::DeleteIocListRequest,
    ) -> Result<pb::DeleteIocListResponse, ApiError> {
        let stored = self.stored_list(&request.id).await?;
        let owner = Owner::List(stored.id.clone());
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        self.repo.lock_lists(&mut tx).await.map_err(db_error)?;
        let cases = self
            .repo
            .cases_using(&mut tx, &stored.id)
            .await
            .map_err(db_error)?;
        let ids = self
            .repo
            .owner_ioc_ids(&mut tx, &owner)
            .await
            .map_err(db_error)?;
        let (iocs, matches) = self
            .repo
            .delete_list(&mut tx, &stored.id)
            .await
            .map_err(db_error)?;
        if !ids.is_empty() {
            let now = casescope_db::now_micros();
            for case in &cases {
                self.repo
                    .bump_version(&mut tx, case, &ids, now)
                    .await
                    .map_err(db_error)?;
            }
        }
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        tracing::info!(list_id = %stored.id, iocs, matches, "IOC list deleted");
        Ok(pb::DeleteIocListResponse {
            iocs_deleted: iocs,
            matches_deleted: matches,
        })
    }
}
