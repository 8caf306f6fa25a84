//! A caller-given [`EventSet`] as a tantivy query: per segment, one pass over the
//! tie-breaker column (a fast field every document has) marks the members in a bit set.
//! The pass costs a few nanoseconds per document of the segment, whatever the set's
//! size; other clauses of the query then intersect with it. The bit sets are kept
//! with the query (shared by its clones), so running it again — as a page's time
//! windows do — costs no second pass.

use super::schema::TIEBREAK;
use crate::EventSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tantivy::index::SegmentId;
use tantivy::query::{
    BitSetDocSet, ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::{BitSet, DocId, DocSet, Score, SegmentReader, TantivyError};

/// Members per segment, found so far.
type Found = Arc<Mutex<HashMap<SegmentId, BitSet>>>;

#[derive(Debug, Clone)]
pub struct EventSetQuery {
    set: Arc<EventSet>,
    found: Found,
}

impl EventSetQuery {
    pub fn new(set: Arc<EventSet>) -> Self {
        Self {
            set,
            found: Found::default(),
        }
    }
}

impl Query for EventSetQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(EventSetWeight {
            set: self.set.clone(),
            found: self.found.clone(),
        }))
    }
}

struct EventSetWeight {
    set: Arc<EventSet>,
    found: Found,
}

/// Documents scanned per column read.
const BLOCK: usize = 4096;

impl EventSetWeight {
    fn members(&self, reader: &SegmentReader) -> tantivy::Result<BitSet> {
        let max_doc = reader.max_doc();
        let mut docs = BitSet::with_max_value(max_doc);
        if self.set.is_empty() || max_doc == 0 {
            return Ok(docs);
        }
        let column = reader.fast_fields().u64(TIEBREAK)?;
        let values = column.first_or_default_col(0);
        let mut block = vec![0u64; BLOCK];
        let mut start = 0u32;
        while start < max_doc {
            let len = BLOCK.min((max_doc - start) as usize);
            values.get_range(u64::from(start), &mut block[..len]);
            for (offset, tiebreak) in block[..len].iter().enumerate() {
                if self.set.contains(*tiebreak) {
                    docs.insert(start + offset as u32);
                }
            }
            start += len as u32;
        }
        Ok(docs)
    }
}

impl Weight for EventSetWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let segment = reader.segment_id();
        let known = self
            .found
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&segment)
            .cloned();
        let members = match known {
            Some(members) => members,
            None => {
                let members = self.members(reader)?;
                self.found
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(segment, members.clone());
                members
            }
        };
        let docs = BitSetDocSet::from(members);
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} is not in the event set"
            )));
        }
        Ok(Explanation::new("event set", 1.0))
    }
}
