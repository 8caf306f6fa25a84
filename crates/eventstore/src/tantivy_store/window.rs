//! The first `k` events of a selection in time order without ranking all of it. A page
//! sorted by time (with or without a cursor) is the top `k` of every matching document,
//! which costs a pass over the whole selection — at 10,000,000 events, each page of an
//! export or a deep timeline page paid that. Instead the query is first run on a time
//! window next to where the page starts, sized from the index's density to hold about
//! twice `k` events: when the window holds `k` matches they are exactly the page (every
//! match outside the window sorts after every match inside it); otherwise the window
//! grows by the shortfall, a few times, before the plain query runs. When the page
//! already counted its selection, a small one skips windows (ranking it costs little)
//! and a large one sizes the first window from its own density.

use super::schema::{Fields, TIEBREAK, TIMESTAMP};
use crate::{EventQuery, SortOrder, StoreError};
use std::ops::Bound;
use tantivy::collector::TopDocs;
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::query::{BooleanQuery, InvertedIndexRangeQuery, Occur, Query, RangeQuery};
use tantivy::{DocAddress, Order, Searcher, Term};

/// Windowed attempts before the plain query.
const ATTEMPTS: usize = 4;
/// Largest factor one attempt widens the window by.
const MAX_GROWTH: u128 = 1024;
/// Selections up to this many matches are ranked whole.
const SMALL_SELECTION: u64 = 20_000;

pub type Hit = ((Option<i64>, Option<u64>), DocAddress);

/// Ranks a page of `query`: its first `page_size` matches by (time, tie-breaker).
pub fn collector(
    query: &EventQuery,
) -> impl tantivy::collector::Collector<Fruit = Vec<Hit>> + use<> {
    let order = match query.sort {
        SortOrder::Ascending => Order::Asc,
        SortOrder::Descending => Order::Desc,
    };
    TopDocs::with_limit(query.page_size).order_by((
        (SortByStaticFastValue::<i64>::for_field(TIMESTAMP), order),
        (SortByStaticFastValue::<u64>::for_field(TIEBREAK), order),
    ))
}

/// The first `query.page_size` matches of `full` (the whole query, cursor included) in
/// `query.sort` order; `matches`: the selection's size (without the cursor), if counted.
pub fn first_hits(
    searcher: &Searcher,
    fields: &Fields,
    query: &EventQuery,
    queries: (&dyn Query, &dyn Query),
    matches: Option<u64>,
) -> Result<Vec<Hit>, StoreError> {
    let (base, full) = queries;
    let internal = |e: tantivy::TantivyError| StoreError::Internal(e.to_string());
    let k = query.page_size;
    let collector = collector(query);
    let small = matches.is_some_and(|m| m <= SMALL_SELECTION.max(k as u64));
    let extent = if small {
        None
    } else {
        extent(searcher, query)?
    };
    let Some(Extent {
        lo,
        hi,
        docs,
        index_span,
    }) = extent
    else {
        return searcher.search(full, &collector).map_err(internal);
    };
    let docs = matches.unwrap_or(docs);
    // How far the selection can reach from where the page starts: [lo, hi).
    let span = (i128::from(hi) - i128::from(lo)).max(1) as u128;
    // Wide enough for twice the page at the index's (or the selection's) mean density.
    let mut width = (index_span * 2 * k as u128)
        .div_ceil(u128::from(docs.max(1)))
        .max(1);
    for _ in 0..ATTEMPTS {
        if width >= span {
            break;
        }
        let w = i64::try_from(width).unwrap_or(i64::MAX);
        let (start, end) = match query.sort {
            SortOrder::Ascending => (lo, lo.saturating_add(w)),
            SortOrder::Descending => (hi.saturating_sub(w), hi),
        };
        let windowed = BooleanQuery::new(vec![
            (Occur::Must, base.box_clone()),
            (Occur::Must, window(fields, query, start, end)),
        ]);
        let hits = searcher.search(&windowed, &collector).map_err(internal)?;
        if hits.len() >= k {
            return Ok(hits);
        }
        let growth = if hits.is_empty() {
            16
        } else {
            (2 * k as u128).div_ceil(hits.len() as u128)
        };
        width = width.saturating_mul(growth.clamp(2, MAX_GROWTH));
    }
    searcher.search(full, &collector).map_err(internal)
}

/// The documents of [start, end) in time that come after the page's cursor, from the
/// inverted index: a range over the fast column scans every document of every segment,
/// a narrow range of terms reads only the postings of the window.
fn window(fields: &Fields, query: &EventQuery, start: i64, end: i64) -> Box<dyn Query> {
    let ts = |t: i64| Term::from_field_i64(fields.timestamp, t);
    let times = |lower: Bound<i64>, upper: Bound<i64>| -> Box<dyn Query> {
        Box::new(InvertedIndexRangeQuery::new(lower.map(ts), upper.map(ts)))
    };
    let Some(cursor) = query.after else {
        return times(Bound::Included(start), Bound::Excluded(end));
    };
    let at = cursor.timestamp_micros;
    let tb = |t: u64| Term::from_field_u64(fields.tiebreak, t);
    // Strictly after the cursor: a later time, or its time and a later tie-breaker.
    let (later, same_and_later): (Box<dyn Query>, Box<dyn Query>) = match query.sort {
        SortOrder::Ascending => (
            times(Bound::Excluded(at), Bound::Excluded(end)),
            Box::new(RangeQuery::new(
                Bound::Excluded(tb(cursor.tiebreak)),
                Bound::Unbounded,
            )),
        ),
        SortOrder::Descending => (
            times(Bound::Included(start), Bound::Excluded(at)),
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(tb(cursor.tiebreak)),
            )),
        ),
    };
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, later),
        (
            Occur::Should,
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, times(Bound::Included(at), Bound::Included(at))),
                (Occur::Must, same_and_later),
            ])),
        ),
    ]))
}

/// Where a page of `query` can come from, as [lo, hi); the index's document count and
/// time span.
struct Extent {
    lo: i64,
    hi: i64,
    docs: u64,
    index_span: u128,
}

/// The extent of a page of `query`; `None` when there is nothing to narrow.
fn extent(searcher: &Searcher, query: &EventQuery) -> Result<Option<Extent>, StoreError> {
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for reader in searcher.segment_readers() {
        if reader.num_docs() == 0 {
            continue;
        }
        let column = reader
            .fast_fields()
            .i64(TIMESTAMP)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        min = min.min(column.min_value());
        max = max.max(column.max_value());
    }
    if min > max {
        return Ok(None);
    }
    let index_span = (i128::from(max) - i128::from(min) + 1) as u128;
    let mut lo = min;
    let mut hi = max.saturating_add(1);
    if let Some(start) = query.start_micros {
        lo = lo.max(start);
    }
    if let Some(end) = query.end_micros {
        hi = hi.min(end);
    }
    if let Some(cursor) = query.after {
        match query.sort {
            SortOrder::Ascending => lo = lo.max(cursor.timestamp_micros),
            SortOrder::Descending => hi = hi.min(cursor.timestamp_micros.saturating_add(1)),
        }
    }
    if lo >= hi {
        return Ok(None);
    }
    Ok(Some(Extent {
        lo,
        hi,
        docs: searcher.num_docs(),
        index_span,
    }))
}
