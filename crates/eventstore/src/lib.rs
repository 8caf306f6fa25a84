//! The event store: where normalised events live and how they are queried. One
//! [`EventStore`] trait, a tantivy backend for embedded mode ([`TantivyStore`]) and —
//! behind the same conformance suite — an OpenSearch backend for clusters; one query
//! language ([`query`]) that both translate, so a query means the same on either.
//! The OpenSearch backend ([`OpenSearchStore`]) keeps every case in one index, routed
//! by case id.
//!
//! Writes are idempotent by construction: event ids are deterministic, and a file's
//! events are replaced as a unit ([`EventStore::delete_file`] then writes). Reads are
//! bounded: every page has a maximum size, scans page with a cursor, histograms have a
//! maximum bucket count. CPU work (indexing, searching) runs off the async runtime.
//!
//! Not here: parsing (casescope-evidence), the ingest stage's leases and counts.

mod event_set;
mod opensearch;
pub mod query;
mod tantivy_store;
mod tokenizer;

pub use casescope_evidence::Event;
pub use casescope_query::tiebreak_of;
pub use event_set::{EventSet, MAX_SET_MEMBERS, check_sets};
pub use opensearch::{FileScan, OpenSearchOptions, OpenSearchStore, RefreshPolicy};
pub use query::{Query, QueryError, parse_query};
pub use tantivy_store::{MAX_FACET_DISTINCT, MAX_FACET_POSTINGS};
pub use tantivy_store::{TantivyOptions, TantivyStore};

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest page a search API returns.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Largest batch the store itself reads at once (streams and exports walk a selection
/// in batches this large: fewer passes than pages of [`MAX_PAGE_SIZE`]; with the one
/// extra hit a page asks for, under OpenSearch's default `max_result_window`).
pub const MAX_STREAM_BATCH: usize = 5_000;
/// Most buckets one histogram may have.
pub const MAX_HISTOGRAM_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

/// Position after the last hit of a page: (timestamp µs, tie-breaker from the event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp_micros: i64,
    pub tiebreak: u64,
}

impl Cursor {
    /// Opaque text form for APIs: `<timestamp>.<tiebreak hex>`.
    pub fn encode(&self) -> String {
        format!("{}.{:016x}", self.timestamp_micros, self.tiebreak)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (timestamp, tiebreak) = text.split_once('.')?;
        Some(Cursor {
            timestamp_micros: timestamp.parse().ok()?,
            tiebreak: u64::from_str_radix(tiebreak, 16).ok()?,
        })
    }
}

/// A search over one case's events.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub case_id: String,
    pub query: Query,
    /// Inclusive start, exclusive end, UTC µs.
    pub start_micros: Option<i64>,
    pub end_micros: Option<i64>,
    pub file_ids: Vec<String>,
    pub channels: Vec<String>,
    pub event_codes: Vec<u32>,
    pub computers: Vec<String>,
    pub sort: SortOrder,
    /// 1..=MAX_PAGE_SIZE.
    pub page_size: usize,
    pub after: Option<Cursor>,
    /// The events each annotation clause of `query` names, by [`query::Annotation::key`]
    /// (given by the cases service, which owns annotations), plus any other named sets.
    pub sets: BTreeMap<String, Arc<EventSet>>,
    /// Names of sets (in `sets`) every hit must belong to.
    pub required_sets: Vec<String>,
    /// Leave [`SearchPage::total`] at 0: a stream's later batches need no count (it
    /// costs a pass over the selection).
    pub skip_total: bool,
    /// Leave each [`Event::raw`] empty (JSON null): pages that show no raw record need
    /// not read it, nor check it is JSON.
    pub skip_raw: bool,
}

impl EventQuery {
    pub fn new(case_id: impl Into<String>, query: Query) -> Self {
        Self {
            case_id: case_id.into(),
            query,
            start_micros: None,
            end_micros: None,
            file_ids: Vec::new(),
            channels: Vec::new(),
            event_codes: Vec::new(),
            computers: Vec::new(),
            sort: SortOrder::Ascending,
            page_size: 50,
            after: None,
            sets: BTreeMap::new(),
            required_sets: Vec::new(),
            skip_total: false,
            skip_raw: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub events: Vec<Event>,
    /// All matches of the query (not just this page).
    pub total: u64,
    /// Set when more events follow.
    pub next: Option<Cursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start_micros: i64,
    pub count: u64,
}

/// Most values one facet lists.
pub const MAX_FACET_TOP: usize = 100;

/// One value of a facet and how many events of the selection have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetValue {
    /// The value as matched: lower-cased text, or the number it is.
    pub value: String,
    pub count: u64,
}

/// The top values of one field over a selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facet {
    pub field: String,
    /// Most frequent first (ties by value).
    pub values: Vec<FacetValue>,
    /// Occurrences of every other value.
    pub other: u64,
    /// Events in the selection.
    pub selected: u64,
}

/// Result of writing a batch: how many were accepted and which were refused, why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: u64,
    pub rejected: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store failure: {0}")]
    Internal(String),
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Adds events (any files of any cases). Visible to searches after [`Self::flush`].
    async fn write(&self, events: Vec<Event>) -> Result<WriteReport, StoreError>;
    /// Makes every write so far durable and searchable.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Removes every event of one file (applied with the next flush).
    async fn delete_file(&self, case_id: &str, file_id: &str) -> Result<(), StoreError>;
    /// Removes every event of one case (applied with the next flush).
    async fn delete_case(&self, case_id: &str) -> Result<(), StoreError>;
    /// Events of one file that are searchable now.
    async fn count_file(&self, case_id: &str, file_id: &str) -> Result<u64, StoreError>;
    async fn search(&self, query: &EventQuery) -> Result<SearchPage, StoreError>;
    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError>;
    async fn get(&self, case_id: &str, event_id: &str) -> Result<Option<Event>, StoreError>;
    /// Whether the store answers now (readiness probes): one quick request, no retry.
    /// Embedded stores are always ready.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The `top` (at most [`MAX_FACET_TOP`]) most frequent whole values of `field` over
    /// the selection of `query` (its page position and size are ignored), exact.
    async fn facet(&self, query: &EventQuery, field: &str, top: usize)
    -> Result<Facet, StoreError>;
    /// Matches per time bucket of `interval_micros`, from the first to the last match.
    async fn histogram(
        &self,
        query: &EventQuery,
        interval_micros: i64,
    ) -> Result<Vec<Bucket>, StoreError>;
}

/// Refuses a facet request every backend refuses the same way.
pub(crate) fn check_facet(field: &str, top: usize) -> Result<(), StoreError> {
    if field.is_empty() || field.len() > 256 {
        return Err(StoreError::Invalid(
            "a facet needs a field name (at most 256 bytes)".into(),
        ));
    }
    if top == 0 || top > MAX_FACET_TOP {
        return Err(StoreError::Invalid(format!(
            "a facet lists 1..={MAX_FACET_TOP} values, not {top}"
        )));
    }
    Ok(())
}

/// Refuses a histogram interval that is not positive (every backend, before any work).
pub(crate) fn check_interval(interval_micros: i64) -> Result<(), StoreError> {
    if interval_micros <= 0 {
        return Err(StoreError::Invalid(
            "the histogram interval must be positive".into(),
        ));
    }
    Ok(())
}

/// The bucket grid from the first to the last match: the first bucket's start (aligned
/// to the interval) and the bucket count, refused past [`MAX_HISTOGRAM_BUCKETS`].
pub(crate) fn histogram_grid(
    first: i64,
    last: i64,
    interval_micros: i64,
) -> Result<(i64, usize), StoreError> {
    let start = first - first.rem_euclid(interval_micros);
    let buckets = last
        .checked_sub(start)
        .map(|span| span / interval_micros + 1)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    if buckets > MAX_HISTOGRAM_BUCKETS {
        return Err(StoreError::Invalid(format!(
            "{buckets} buckets needed; at most {MAX_HISTOGRAM_BUCKETS} (use a larger interval)"
        )));
    }
    Ok((start, buckets))
}

/// Counts per bucket of the grid as [`Bucket`]s.
pub(crate) fn grid_buckets(start: i64, interval_micros: i64, counts: Vec<u64>) -> Vec<Bucket> {
    counts
        .into_iter()
        .enumerate()
        .map(|(n, count)| Bucket {
            start_micros: start + n as i64 * interval_micros,
            count,
        })
        .collect()
}

/// Checks the parts of a query every backend validates the same way.
pub fn validate(query: &EventQuery) -> Result<(), StoreError> {
    check_sets(query)?;
    if query.page_size == 0 || query.page_size > MAX_STREAM_BATCH {
        return Err(StoreError::Invalid(format!(
            "page size {} is outside 1..={MAX_STREAM_BATCH}",
            query.page_size
        )));
    }
    if let (Some(start), Some(end)) = (query.start_micros, query.end_micros)
        && start >= end
    {
        return Err(StoreError::Invalid(
            "the time range ends before it starts".into(),
        ));
    }
    Ok(())
}
