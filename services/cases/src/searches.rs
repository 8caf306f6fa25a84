//! Saved searches (per user, or shared with the case), search history (per user and
//! case: the newest [`HISTORY_KEPT`], a repeat folded into the entry before it, older
//! than the case's retention removed) and case notes (one versioned Markdown document
//! per case, the newest [`NOTE_VERSIONS_KEPT`] versions kept).
//!
//! Queries are stored as the prost encoding of `TimelineQuery` (base64 text, so the
//! same column works on SQLite and PostgreSQL).

use crate::annotations::Actor;
use crate::cursor;
use crate::repo::Position;
use crate::service::{CasesApi, db_error};
use crate::validate;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use casescope_db::{Database, DbError, Tx};
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, PageResponse, SavedSearchId, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::paging::validate_page;
use casescope_proto::time::micros_to_timestamp;
use prost::Message;
use sqlx::Row;

/// History entries kept per user per case.
pub const HISTORY_KEPT: i64 = 1_000;
/// Days of history kept when the case does not say.
pub const DEFAULT_HISTORY_DAYS: u32 = 90;
/// Saved searches per user per case.
pub const MAX_SAVED_SEARCHES: i64 = 500;
/// Largest case notes, in bytes.
pub const MAX_NOTES_BYTES: usize = 1024 * 1024;
/// Versions of a case's notes kept.
pub const NOTE_VERSIONS_KEPT: i64 = 100;

pub const MIGRATION: &str = "
CREATE TABLE saved_searches (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    name TEXT NOT NULL,
    query TEXT NOT NULL,
    shared BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX saved_searches_by_owner ON saved_searches (case_id, owner_id, name);
CREATE TABLE search_history (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    query TEXT NOT NULL,
    hit_count BIGINT NOT NULL,
    repeats BIGINT NOT NULL,
    searched_at BIGINT NOT NULL
);
CREATE INDEX search_history_by_user ON search_history (case_id, user_id, searched_at, id);
CREATE INDEX search_history_by_time ON search_history (searched_at);
CREATE TABLE case_notes (
    case_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, version)
);
";

fn encode(query: &pb::TimelineQuery) -> String {
    STANDARD.encode(query.encode_to_vec())
}

fn decode(text: &str) -> pb::TimelineQuery {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| pb::TimelineQuery::decode(bytes.as_slice()).ok())
        .unwrap_or_default()
}

fn saved_from_row(row: &sqlx::any::AnyRow) -> Result<pb::SavedSearch, DbError> {
    let text = |name: &str| row.try_get::<String, _>(name);
    Ok(pb::SavedSearch {
        id: Some(SavedSearchId { value: text("id")? }),
        case_id: Some(CaseId {
            value: text("case_id")?,
        }),
        name: text("name")?,
        query: Some(decode(&text("query")?)),
        owner: Some(UserId {
            value: text("owner_id")?,
        }),
        created_at: Some(micros_to_timestamp(row.try_get("created_at")?)),
        shared: row.try_get::<i64, _>("shared")? != 0,
        owner_name: text("owner_name")?,
        updated_at: Some(micros_to_timestamp(row.try_get("updated_at")?)),
    })
}

fn notes_from_row(row: &sqlx::any::AnyRow) -> Result<pb::CaseNotes, DbError> {
    Ok(pb::CaseNotes {
        case_id: Some(CaseId {
            value: row.try_get("case_id")?,
        }),
        body: row.try_get("body")?,
        version: row.try_get("version")?,
        updated_by: Some(UserId {
            value: row.try_get("author_id")?,
        }),
        updated_by_name: row.try_get("author_name")?,
        updated_at: Some(micros_to_timestamp(row.try_get("written_at")?)),
    })
}

/// Records one timeline search of `user` in `case_id`, folding a repeat of their
/// previous search into it, and keeps the history bounded.
pub async fn record_search(
    db: &Database,
    case_id: &str,
    user: &str,
    query: &pb::TimelineQuery,
    hits: u64,
    retention_days: u32,
) -> Result<(), DbError> {
    let now = casescope_db::now_micros();
    let encoded = encode(query);
    let hits = i64::try_from(hits).unwrap_or(i64::MAX);
    let mut tx = db.begin().await?;
    let last = sqlx::query(
        "SELECT id, query FROM search_history WHERE case_id = $1 AND user_id = $2 \
         ORDER BY searched_at DESC, id DESC LIMIT 1",
    )
    .bind(case_id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    match last {
        Some(row) if row.try_get::<String, _>("query")? == encoded => {
            sqlx::query(
                "UPDATE search_history SET repeats = repeats + 1, hit_count = $2, \
                 searched_at = $3 WHERE id = $1",
            )
            .bind(row.try_get::<String, _>("id")?)
            .bind(hits)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        _ => {
            sqlx::query(
                "INSERT INTO search_history (id, case_id, user_id, query, hit_count, repeats, \
                 searched_at) VALUES ($1, $2, $3, $4, $5, 1, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(case_id)
            .bind(user)
            .bind(&encoded)
            .bind(hits)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            trim_history(&mut tx, case_id, user, retention_days, now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn cutoff(retention_days: u32, now: i64) -> i64 {
    let days = if retention_days == 0 {
        DEFAULT_HISTORY_DAYS
    } else {
        retention_days
    };
    now - i64::from(days) * 86_400 * 1_000_000
}

async fn trim_history(
    tx: &mut Tx<'_>,
    case_id: &str,
    user: &str,
    retention_days: u32,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "DELETE FROM search_history WHERE case_id = $1 AND user_id = $2 AND searched_at < $3",
    )
    .bind(case_id)
    .bind(user)
    .bind(cutoff(retention_days, now))
    .execute(&mut **tx)
    .await?;
    // The newest HISTORY_KEPT stay: everything after the last of them goes.
    let last_kept = sqlx::query(
        "SELECT searched_at, id FROM search_history WHERE case_id = $1 AND user_id = $2 \
         ORDER BY searched_at DESC, id DESC LIMIT 1 OFFSET $3",
    )
    .bind(case_id)
    .bind(user)
    .bind(HISTORY_KEPT - 1)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = last_kept {
        let (at, id): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        sqlx::query(
            "DELETE FROM search_history WHERE case_id = $1 AND user_id = $2 \
             AND (searched_at < $3 OR (searched_at = $3 AND id < $4))",
        )
        .bind(case_id)
        .bind(user)
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes history past every case's retention (for users who stopped searching).
pub async fn sweep_history(db: &Database) -> Result<u64, DbError> {
    let now = casescope_db::now_micros();
    let default_cutoff = cutoff(0, now);
    let result = sqlx::query(
        "DELETE FROM search_history WHERE searched_at < (SELECT CASE \
           WHEN c.search_history_retention_days > 0 \
           THEN $1 - c.search_history_retention_days * 86400000000 ELSE $2 END \
         FROM cases c WHERE c.id = search_history.case_id)",
    )
    .bind(now)
    .bind(default_cutoff)
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected())
}

pub async fn delete_case(tx: &mut Tx<'_>, case_id: &str) -> Result<(), DbError> {
    for table in ["saved_searches", "search_history", "case_notes"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE case_id = $1"
        )))
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn search_name(name: &str) -> Result<String, ApiError> {
    validate::name(name, "name")
}

impl CasesApi {
    /// Removes search history past every case's retention; returns how many entries.
    pub async fn sweep_history(&self) -> Result<usize, String> {
        sweep_history(self.repo.db())
            .await
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn save_search_now(
        &self,
        actor: Actor,
        request: pb::SaveSearchRequest,
    ) -> Result<pb::SavedSearch, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let name = search_name(&request.name)?;
        let query = request.query.unwrap_or_default();
        // The same validation the timeline applies, so a saved search always runs.
        casescope_query::parse_query(&query.query).map_err(|error| {
            ApiError::invalid_field("QUERY_INVALID", "query.query", error.to_string())
        })?;
        self.require_case(&case_id).await?;
        let now = casescope_db::now_micros();
        let mut tx = self.begin().await?;
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) FROM saved_searches WHERE case_id = $1 AND owner_id = $2 AND name <> $3",
        )
        .bind(&case_id)
        .bind(&actor.id)
        .bind(&name)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| db_error(e.into()))?;
        if count >= MAX_SAVED_SEARCHES {
            return Err(ApiError::invalid_field(
                "TOO_MANY_SAVED_SEARCHES",
                "name",
                format!(
                    "you have {count} saved searches in this case, the most allowed is {MAX_SAVED_SEARCHES}; delete some"
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO saved_searches (id, case_id, owner_id, owner_name, name, query, shared, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (case_id, owner_id, name) DO UPDATE SET query = $6, shared = $7, updated_at = $8",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&case_id)
        .bind(&actor.id)
        .bind(&actor.name)
        .bind(&name)
        .bind(encode(&query))
        .bind(i64::from(request.shared))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(e.into()))?;
        let row = sqlx::query(
            "SELECT * FROM saved_searches WHERE case_id = $1 AND owner_id = $2 AND name = $3",
        )
        .bind(&case_id)
        .bind(&actor.id)
        .bind(&name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(e.into()))?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        saved_from_row(&row).map_err(db_error)
    }

    pub(crate) async fn list_saved_searches_now(
        &self,
        actor: Actor,
        request: pb::ListSavedSearchesRequest,
    ) -> Result<pb::ListSavedSearchesResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        // Position: "<name>\u{0}<id>" — by name, then id.
        let after = match page.cursor.as_deref() {
            None => String::new(),
            Some(text) => URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|text| text.contains('\0'))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "CURSOR_INVALID",
                        "page.cursor",
                        "not a cursor this server issued; pass next_cursor unchanged",
                    )
                })?,
        };
        let (after_name, after_id) = after.split_once('\0').unwrap_or(("", ""));
        self.require_case(&case_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM saved_searches WHERE case_id = $1 AND (owner_id = $2 OR shared = 1) \
               AND (name > $3 OR (name = $3 AND id > $4)) ORDER BY name, id LIMIT $5",
        )
        .bind(&case_id)
        .bind(&actor.id)
        .bind(after_name)
        .bind(after_id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(self.repo.db().pool())
        .await
        .map_err(|e| db_error(e.into()))?;
        let mut searches = rows
            .iter()
            .map(saved_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)?;
        let more = searches.len() > page.size as usize;
        searches.truncate(page.size as usize);
        let next_cursor = match searches.last() {
            Some(last) if more => URL_SAFE_NO_PAD.encode(format!(
                "{}\0{}",
                last.name,
                last.id.as_ref().map(|i| i.value.as_str()).unwrap_or("")
            )),
            _ => String::new(),
        };
        Ok(pb::ListSavedSearchesResponse {
            searches,
            page: Some(PageResponse { next_cursor }),
        })
    }

    pub(crate) async fn delete_saved_search_now(
        &self,
        actor: Actor,
        request: pb::DeleteSavedSearchRequest,
    ) -> Result<(), ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let id = request.id.map(|id| id.value).unwrap_or_default();
        let row = sqlx::query("SELECT owner_id FROM saved_searches WHERE case_id = $1 AND id = $2")
            .bind(&case_id)
            .bind(&id)
            .fetch_optional(self.repo.db().pool())
            .await
            .map_err(|e| db_error(e.into()))?;
        let Some(row) = row else {
            return Err(ApiError::not_found(
                "SAVED_SEARCH_NOT_FOUND",
                format!("saved search {id:?} does not exist in this case"),
            ));
        };
        let owner: String = row.try_get(0).map_err(|e| db_error(e.into()))?;
        if owner != actor.id {
            return Err(ApiError::PermissionDenied {
                reason: "NOT_THE_OWNER",
                message: "only a saved search's owner may delete it".into(),
            });
        }
        sqlx::query("DELETE FROM saved_searches WHERE case_id = $1 AND id = $2")
            .bind(&case_id)
            .bind(&id)
            .execute(self.repo.db().pool())
            .await
            .map_err(|e| db_error(e.into()))?;
        Ok(())
    }

    pub(crate) async fn list_history_now(
        &self,
        actor: Actor,
        request: pb::ListSearchHistoryRequest,
    ) -> Result<pb::ListSearchHistoryResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, "page.cursor"))
            .transpose()?;
        let case = self.require_case(&case_id).await?;
        let (at, id) = after
            .map(|p| (p.at, p.id))
            .unwrap_or((i64::MAX, String::new()));
        let now = casescope_db::now_micros();
        let rows = sqlx::query(
            "SELECT * FROM search_history WHERE case_id = $1 AND user_id = $2 AND searched_at >= $3 \
               AND (searched_at < $4 OR (searched_at = $4 AND ($5 = '' OR id < $5))) \
             ORDER BY searched_at DESC, id DESC LIMIT $6",
        )
        .bind(&case_id)
        .bind(&actor.id)
        .bind(cutoff(case.settings.search_history_retention_days, now))
        .bind(at)
        .bind(&id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(self.repo.db().pool())
        .await
        .map_err(|e| db_error(e.into()))?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut positions = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |name: &str| row.try_get::<i64, _>(name).map_err(|e| db_error(e.into()));
            let searched_at = get("searched_at")?;
            positions.push(Position {
                at: searched_at,
                id: row.try_get("id").map_err(|e| db_error(e.into()))?,
            });
            entries.push(pb::SearchHistoryEntry {
                query: Some(decode(
                    &row.try_get::<String, _>("query")
                        .map_err(|e| db_error(e.into()))?,
                )),
                user: Some(UserId {
                    value: actor.id.clone(),
                }),
                searched_at: Some(micros_to_timestamp(searched_at)),
                hit_count: u64::try_from(get("hit_count")?).unwrap_or_default(),
                repeats: u32::try_from(get("repeats")?).unwrap_or(u32::MAX),
            });
        }
        let more = entries.len() > page.size as usize;
        entries.truncate(page.size as usize);
        let next_cursor = if more {
            cursor::encode(&positions[page.size as usize - 1])
        } else {
            String::new()
        };
        Ok(pb::ListSearchHistoryResponse {
            entries,
            page: Some(PageResponse { next_cursor }),
        })
    }

    async fn current_notes(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
    ) -> Result<Option<pb::CaseNotes>, ApiError> {
        let row = sqlx::query(
            "SELECT * FROM case_notes WHERE case_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(case_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_error(e.into()))?;
        row.as_ref()
            .map(notes_from_row)
            .transpose()
            .map_err(db_error)
    }

    pub(crate) async fn get_notes_now(
        &self,
        request: pb::GetCaseNotesRequest,
    ) -> Result<pb::CaseNotes, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let mut tx = self.begin().await?;
        self.load(&mut tx, &case_id).await?;
        let notes = self.current_notes(&mut tx, &case_id).await?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(notes.unwrap_or(pb::CaseNotes {
            case_id: Some(CaseId { value: case_id }),
            ..Default::default()
        }))
    }

    pub(crate) async fn update_notes_now(
        &self,
        actor: Actor,
        request: pb::UpdateCaseNotesRequest,
    ) -> Result<pb::CaseNotes, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        if request.body.len() > MAX_NOTES_BYTES {
            return Err(ApiError::invalid_field(
                "NOTES_TOO_LONG",
                "body",
                format!(
                    "{} bytes; case notes are at most {MAX_NOTES_BYTES} bytes",
                    request.body.len()
                ),
            ));
        }
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, &case_id).await?;
        crate::service::require_open(&case, "changing its notes")?;
        let current = self
            .current_notes(&mut tx, &case_id)
            .await?
            .map_or(0, |n| n.version);
        if request.expected_version != current {
            return Err(ApiError::Aborted {
                reason: "VERSION_MISMATCH",
                message: format!(
                    "the notes are at version {current}, not {}; reload them and apply your change again",
                    request.expected_version
                ),
            });
        }
        let now = casescope_db::now_micros();
        let inserted = sqlx::query(
            "INSERT INTO case_notes (case_id, version, body, author_id, author_name, written_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id, version) DO NOTHING",
        )
        .bind(&case_id)
        .bind(current + 1)
        .bind(&request.body)
        .bind(&actor.id)
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(e.into()))?;
        if inserted.rows_affected() != 1 {
            return Err(ApiError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: "the notes were changed concurrently; reload and retry".into(),
            });
        }
        sqlx::query("DELETE FROM case_notes WHERE case_id = $1 AND version <= $2")
            .bind(&case_id)
            .bind(current + 1 - NOTE_VERSIONS_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(e.into()))?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        Ok(pb::CaseNotes {
            case_id: Some(CaseId { value: case_id }),
            body: request.body,
            version: current + 1,
            updated_by: Some(UserId { value: actor.id }),
            updated_by_name: actor.name,
            updated_at: Some(micros_to_timestamp(now)),
        })
    }

    pub(crate) async fn list_note_versions_now(
        &self,
        request: pb::ListCaseNotesVersionsRequest,
    ) -> Result<pb::ListCaseNotesVersionsResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let before = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, "page.cursor"))
            .transpose()?
            .map_or(i64::MAX, |p| p.at);
        self.require_case(&case_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM case_notes WHERE case_id = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3",
        )
        .bind(&case_id)
        .bind(before)
        .bind(i64::from(page.size) + 1)
        .fetch_all(self.repo.db().pool())
        .await
        .map_err(|e| db_error(e.into()))?;
        let mut versions = rows
            .iter()
            .map(notes_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)?;
        let more = versions.len() > page.size as usize;
        versions.truncate(page.size as usize);
        let next_cursor = match versions.last() {
            Some(last) if more => cursor::encode(&Position {
                at: last.version,
                id: "v".into(),
            }),
            _ => String::new(),
        };
        Ok(pb::ListCaseNotesVersionsResponse {
            versions,
            page: Some(PageResponse { next_cursor }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casescope_db::DbOptions;

    async fn databases() -> Vec<(Database, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cases.db").display());
        let sqlite = Database::connect(&url, &DbOptions::default())
            .await
            .unwrap();
        let postgres = Database::connect(
            &casescope_testkit::postgres_url().await,
            &DbOptions::default(),
        )
        .await
        .unwrap();
        let mut all = vec![(sqlite, Some(dir)), (postgres, None)];
        for (db, _) in &mut all {
            db.migrate(crate::ALL_MIGRATIONS).await.unwrap();
        }
        all
    }

    fn history(
        db: &Database,
        case_id: &str,
        user: &str,
    ) -> impl Future<Output = Vec<(String, i64)>> {
        let (db, case_id, user) = (db.clone(), case_id.to_string(), user.to_string());
        async move {
            sqlx::query(
                "SELECT query, repeats FROM search_history WHERE case_id = $1 AND user_id = $2 \
                 ORDER BY searched_at DESC, id DESC",
            )
            .bind(case_id)
            .bind(user)
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    decode(&row.try_get::<String, _>(0).unwrap()).query,
                    row.try_get::<i64, _>(1).unwrap(),
                )
            })
            .collect()
        }
    }

    #[tokio::test]
    async fn history_keeps_the_newest_thousand_and_folds_repeats() {
        for (db, _dir) in databases().await {
            let case_id = uuid::Uuid::now_v7().to_string();
            let q = |text: &str| pb::TimelineQuery {
                query: text.into(),
                ..Default::default()
            };
            for n in 0..1_005 {
                record_search(&db, &case_id, "alice", &q(&format!("EventID:{n}")), n, 0)
                    .await
                    .unwrap();
            }
            record_search(&db, &case_id, "alice", &q("EventID:1004"), 7, 0)
                .await
                .unwrap();
            record_search(&db, &case_id, "bob", &q("whoami"), 1, 0)
                .await
                .unwrap();
            let kept = history(&db, &case_id, "alice").await;
            assert_eq!(kept.len(), 1_000, "{:?}", db.backend());
            assert_eq!(
                kept[0],
                ("EventID:1004".to_string(), 2),
                "a repeat is folded"
            );
            assert_eq!(kept[999].0, "EventID:5", "the oldest five went");
            assert_eq!(history(&db, &case_id, "bob").await.len(), 1, "per user");

            // Retention: entries older than the case's days go, at the next search of
            // that user and in the periodic sweep.
            sqlx::query(
                "UPDATE search_history SET searched_at = searched_at - $1 WHERE user_id = 'bob'",
            )
            .bind(91i64 * 86_400 * 1_000_000)
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO cases (id, name, description, state, deduplicate_events, \
                 search_history_retention_days, evidence_retention_days, created_at, updated_at, \
                 version) VALUES ($1, 'c', '', 'open', 0, 0, 0, 0, 0, 1)",
            )
            .bind(&case_id)
            .execute(db.pool())
            .await
            .unwrap();
            assert_eq!(sweep_history(&db).await.unwrap(), 1);
            assert!(history(&db, &case_id, "bob").await.is_empty());
            assert_eq!(history(&db, &case_id, "alice").await.len(), 1_000);
        }
    }
}
