//! Reading a whole file: one point-in-time view of the index, paged with
//! `search_after` in (timestamp, tie-breaker) order, closed at the end.

use super::client::{Body, json_body, status_error};
use super::{OpenSearchStore, response, routing, translate};
use crate::{Cursor, MAX_PAGE_SIZE, SortOrder, StoreError, tiebreak_of};
use casescope_evidence::Event;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl OpenSearchStore {
    /// Reads every event of one file, oldest first, page by page, from one
    /// point-in-time view of the index (events written meanwhile are not seen). The
    /// trait has no scan; this is the OpenSearch way to read a whole file (detection,
    /// IOC hunts, export) without deep paging. `after` resumes behind a cursor.
    pub fn scan_file(
        &self,
        case_id: &str,
        file_id: &str,
        page_size: usize,
        after: Option<Cursor>,
    ) -> Result<FileScan, StoreError> {
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(StoreError::Invalid(format!(
                "page size {page_size} is outside 1..={MAX_PAGE_SIZE}"
            )));
        }
        Ok(FileScan {
            store: self.clone(),
            case_id: case_id.to_string(),
            file_id: file_id.to_string(),
            page_size,
            pit: None,
            search_after: after.map(translate::search_after),
            last: after,
            finished: false,
        })
    }

    async fn delete_pit(&self, pit: &str) -> Result<(), StoreError> {
        let reply = self
            .transport()
            .send(
                "close the point in time",
                Method::DELETE,
                self.transport().url(&["_search", "point_in_time"], &[])?,
                json_body(&json!({"pit_id": [pit]}))?,
            )
            .await?;
        // Already expired or gone: nothing to close.
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(status_error("close the point in time", &reply))
        }
    }
}

/// The position of an event in page order.
pub(super) fn cursor_of(event: &Event) -> Cursor {
    Cursor {
        timestamp_micros: event.timestamp_micros,
        tiebreak: tiebreak_of(&event.event_id),
    }
}

/// A scan over one file's events (see [`OpenSearchStore::scan_file`]). The point in
/// time opens with the first page and closes after the last, on [`FileScan::close`],
/// or (best effort) when dropped; OpenSearch expires it a minute after the last page
/// in any case.
pub struct FileScan {
    store: OpenSearchStore,
    case_id: String,
    file_id: String,
    page_size: usize,
    pit: Option<String>,
    search_after: Option<Value>,
    last: Option<Cursor>,
    finished: bool,
}

impl FileScan {
    /// How long OpenSearch keeps the view between two pages.
    const KEEP_ALIVE: &'static str = "1m";

    /// The next page, `None` once every event was read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Event>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let pit = match &self.pit {
            Some(pit) => pit.clone(),
            None => {
                let mut query = routing(&self.case_id);
                query.push(("keep_alive", Self::KEEP_ALIVE));
                let answer = self
                    .store
                    .transport()
                    .json(
                        "open a point in time",
                        Method::POST,
                        self.store
                            .index_url(&["_search", "point_in_time"], &query)?,
                        Body::Empty,
                    )
                    .await?;
                let pit = response::pit_id(&answer)?;
                self.pit = Some(pit.clone());
                pit
            }
        };
        let mut body = json!({
            "pit": {"id": pit, "keep_alive": Self::KEEP_ALIVE},
            "size": self.page_size,
            "query": translate::case_and_file(&self.case_id, &self.file_id),
            "sort": translate::sort(SortOrder::Ascending),
            "track_total_hits": false,
        });
        if let Some(after) = &self.search_after {
            body["search_after"] = after.clone();
        }
        let answer = self
            .store
            .transport()
            .json(
                "scan",
                Method::POST,
                self.store.transport().url(&["_search"], &[])?,
                json_body(&body)?,
            )
            .await?;
        response::require_all_shards(&answer)?;
        if let Some(newer) = answer.get("pit_id").and_then(Value::as_str) {
            self.pit = Some(newer.to_string());
        }
        let hits = response::hits(&answer)?;
        if hits.len() < self.page_size {
            self.finished = true;
        }
        if let Some(last) = hits.last() {
            self.last = Some(cursor_of(&last.event));
            self.search_after = Some(
                last.sort
                    .clone()
                    .unwrap_or_else(|| translate::search_after(cursor_of(&last.event))),
            );
        }
        let events: Vec<Event> = hits.into_iter().map(|hit| hit.event).collect();
        if self.finished
            && let Some(pit) = self.pit.take()
        {
            self.store.delete_pit(&pit).await?;
        }
        Ok(if events.is_empty() {
            self.finished = true;
            None
        } else {
            Some(events)
        })
    }

    /// Position after the last event returned, to resume a later scan.
    pub fn cursor(&self) -> Option<Cursor> {
        self.last
    }

    /// Ends the scan early and frees the point in time.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.finished = true;
        match self.pit.take() {
            Some(pit) => self.store.delete_pit(&pit).await,
            None => Ok(()),
        }
    }
}

impl Drop for FileScan {
    fn drop(&mut self) {
        if let Some(pit) = self.pit.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            runtime.spawn(async move {
                if let Err(error) = store.delete_pit(&pit).await {
                    tracing::debug!("closing an abandoned point in time: {error}");
                }
            });
        }
    }
}
