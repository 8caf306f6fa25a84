//! `DetectedEvents`: the events detections matching a filter fired on, as event
//! tie-breakers (what the case timeline's detection filters hand the event store). Read
//! in keyset pages of the case's detections; bounded by [`MAX_DETECTED_EVENTS`].

use crate::repo::{Filter, Param};
use casescope_db::{Database, DbError};
use casescope_proto::error::ApiError;
use sqlx::Row;

/// Most distinct events one answer holds (the event store's set limit).
pub const MAX_DETECTED_EVENTS: usize = 1_000_000;
/// Detections read per page.
const PAGE: i64 = 10_000;

/// Sorted, distinct tie-breakers of the events of the detections `filter` selects,
/// and how many detections that was.
pub async fn detected_events(db: &Database, filter: &Filter) -> Result<(Vec<u64>, u64), ApiError> {
    let mut tiebreaks = Vec::new();
    let mut detections = 0u64;
    let mut after: Option<(i64, String)> = None;
    let db_error = |e: DbError| ApiError::internal_logged("read detected events", e);
    loop {
        let mut page = filter.clone();
        if let Some((ts, id)) = &after {
            let t = page.bind(Param::Int(*ts));
            let t2 = page.bind(Param::Int(*ts));
            let i = page.bind(Param::Text(id.clone()));
            page.push(format!(
                "(event_ts > {t} OR (event_ts = {t2} AND id > {i}))"
            ));
        }
        let l = page.bind(Param::Int(PAGE));
        let sql = format!(
            "SELECT id, event_ts, event_ids FROM detections{} ORDER BY event_ts, id LIMIT {l}",
            page.where_sql()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for param in &page.params {
            query = match param {
                Param::Text(text) => query.bind(text.clone()),
                Param::Int(n) => query.bind(*n),
            };
        }
        let rows = query
            .fetch_all(db.pool())
            .await
            .map_err(|e| db_error(e.into()))?;
        let last = rows.len() < PAGE as usize;
        for row in &rows {
            detections += 1;
            let ids: String = row.try_get("event_ids").map_err(|e| db_error(e.into()))?;
            for id in serde_json::from_str::<Vec<String>>(&ids).unwrap_or_default() {
                tiebreaks.push(casescope_query::tiebreak_of(&id));
            }
            after = Some((
                row.try_get("event_ts").map_err(|e| db_error(e.into()))?,
                row.try_get("id").map_err(|e| db_error(e.into()))?,
            ));
        }
        // Keep memory near the answer's size: de-duplicate as pages come.
        if tiebreaks.len() > 2 * MAX_DETECTED_EVENTS {
            tiebreaks.sort_unstable();
            tiebreaks.dedup();
        }
        if tiebreaks.len() > 2 * MAX_DETECTED_EVENTS {
            break;
        }
        if last {
            break;
        }
    }
    tiebreaks.sort_unstable();
    tiebreaks.dedup();
    if tiebreaks.len() > MAX_DETECTED_EVENTS {
        return Err(ApiError::failed_precondition(
            "TOO_MANY_DETECTED_EVENTS",
            format!(
                "the detections of this filter fired on more than {MAX_DETECTED_EVENTS} events, \
                 the most a timeline filter takes; narrow it (level, rule, tactic)"
            ),
        ));
    }
    Ok((tiebreaks, detections))
}
