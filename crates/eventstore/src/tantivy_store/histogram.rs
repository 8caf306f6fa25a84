//! Histograms in one pass over the selection: each matching document's bucket (its time
//! divided by the interval, buckets aligned on multiples of it) is counted as it comes —
//! in a dense array over the segment's own time span when that span has few enough
//! buckets, else in a map — together with the first and last times. The grid check and
//! its refusal are then the same as before (they read the edges in two more passes).

use super::schema::TIMESTAMP;
use crate::{Bucket, MAX_HISTOGRAM_BUCKETS, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Counts per bucket number, and the first and last times seen.
#[derive(Default)]
pub struct Counts {
    buckets: HashMap<i64, u64>,
    first: Option<i64>,
    last: Option<i64>,
}

pub struct BucketCollector {
    pub interval: i64,
}

pub struct SegmentBuckets {
    times: Arc<dyn ColumnValues<i64>>,
    interval: i64,
    /// Dense counts from bucket `base` on, when the segment spans few buckets.
    dense: Option<(i64, Vec<u64>)>,
    counts: Counts,
}

impl Collector for BucketCollector {
    type Fruit = Counts;
    type Child = SegmentBuckets;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentBuckets> {
        let column = reader.fast_fields().i64(TIMESTAMP)?;
        let (low, high) = (
            column.min_value().div_euclid(self.interval),
            column.max_value().div_euclid(self.interval),
        );
        let span = high.saturating_sub(low).saturating_add(1);
        let dense = (reader.max_doc() > 0 && (1..=MAX_HISTOGRAM_BUCKETS as i64).contains(&span))
            .then(|| (low, vec![0u64; span as usize]));
        Ok(SegmentBuckets {
            times: column.first_or_default_col(0),
            interval: self.interval,
            dense,
            counts: Counts::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Counts>) -> tantivy::Result<Counts> {
        let mut all = Counts::default();
        for fruit in fruits {
            for (bucket, count) in fruit.buckets {
                *all.buckets.entry(bucket).or_default() += count;
            }
            all.first = min_some(all.first, fruit.first);
            all.last = max_some(all.last, fruit.last);
        }
        Ok(all)
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl SegmentCollector for SegmentBuckets {
    type Fruit = Counts;

    fn collect(&mut self, doc: DocId, _: Score) {
        let time = self.times.get_val(doc);
        let bucket = time.div_euclid(self.interval);
        match &mut self.dense {
            Some((base, counts)) => {
                if let Some(count) = usize::try_from(bucket - *base)
                    .ok()
                    .and_then(|n| counts.get_mut(n))
                {
                    *count += 1;
                }
            }
            None => {
                // Past the most a grid may hold, only the edges matter (for the refusal).
                if self.counts.buckets.len() <= MAX_HISTOGRAM_BUCKETS
                    || self.counts.buckets.contains_key(&bucket)
                {
                    *self.counts.buckets.entry(bucket).or_default() += 1;
                }
            }
        }
        self.counts.first = min_some(self.counts.first, Some(time));
        self.counts.last = max_some(self.counts.last, Some(time));
    }

    fn harvest(mut self) -> Counts {
        if let Some((base, counts)) = self.dense {
            for (n, count) in counts.into_iter().enumerate() {
                if count > 0 {
                    *self.counts.buckets.entry(base + n as i64).or_default() += count;
                }
            }
        }
        self.counts
    }
}

/// The histogram's buckets from `counts`: every bucket from the first match's to the
/// last's, empty ones included (refused past [`MAX_HISTOGRAM_BUCKETS`]).
pub fn buckets(counts: Counts, interval: i64) -> Result<Vec<Bucket>, StoreError> {
    let (Some(first), Some(last)) = (counts.first, counts.last) else {
        return Ok(Vec::new());
    };
    let (start, n) = crate::histogram_grid(first, last, interval)?;
    let base = start.div_euclid(interval);
    let grid: Vec<u64> = (0..n as i64)
        .map(|k| counts.buckets.get(&(base + k)).copied().unwrap_or(0))
        .collect();
    Ok(crate::grid_buckets(start, interval, grid))
}
