//! Sets of events named by the caller of a search: what an annotation clause of the
//! query (`tag:x`, `starred:true`) or a required filter stands for. Members are event
//! tie-breakers (the first 64 bits of the event id: 8 bytes each on the wire instead
//! of 64 characters); two events of one case sharing them is a 1-in-2^64 event per
//! pair, documented in docs/investigation.md.

use crate::query::Annotation;
use crate::{EventQuery, StoreError};
use std::sync::Arc;

/// Most members all the sets of one search may hold together (8 MiB of tie-breakers).
pub const MAX_SET_MEMBERS: usize = 1_000_000;

/// A set of events by tie-breaker: sorted members plus a bitmap over their top bits,
/// so a membership test is usually one bit read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSet {
    members: Vec<u64>,
    filter: Vec<u64>,
    shift: u32,
}

impl EventSet {
    pub fn new(mut members: Vec<u64>) -> Self {
        members.sort_unstable();
        members.dedup();
        // About 32 bits per member (a 1-in-32 false hit goes on to the binary search),
        // between 1 Kibit and 16 Mibit (2 MiB).
        let bits = (members.len() * 32)
            .next_power_of_two()
            .clamp(1 << 10, 1 << 24);
        let log2 = bits.trailing_zeros();
        let shift = 64 - log2;
        let mut filter = vec![0u64; bits / 64];
        for member in &members {
            let bit = (member >> shift) as usize;
            filter[bit / 64] |= 1 << (bit % 64);
        }
        Self {
            members,
            filter,
            shift,
        }
    }

    #[inline]
    pub fn contains(&self, tiebreak: u64) -> bool {
        let bit = (tiebreak >> self.shift) as usize;
        self.filter[bit / 64] & (1 << (bit % 64)) != 0
            && self.members.binary_search(&tiebreak).is_ok()
    }

    pub fn members(&self) -> &[u64] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The set the query's caller gave for `annotation`.
pub(crate) fn set_for<'a>(
    query: &'a EventQuery,
    annotation: &Annotation,
) -> Result<&'a Arc<EventSet>, StoreError> {
    let key = annotation.key();
    query.sets.get(&key).ok_or_else(|| {
        StoreError::Invalid(format!(
            "{key} names annotations, which the cases service keeps: search with the case \
             timeline (SearchTimeline, `casescope timeline`)"
        ))
    })
}

/// The sets every hit must belong to ([`EventQuery::required_sets`]).
pub(crate) fn required(query: &EventQuery) -> Result<Vec<&Arc<EventSet>>, StoreError> {
    query
        .required_sets
        .iter()
        .map(|key| {
            query
                .sets
                .get(key)
                .ok_or_else(|| StoreError::Invalid(format!("required set {key:?} was not given")))
        })
        .collect()
}

/// Refuses sets above [`MAX_SET_MEMBERS`] together.
pub fn check_sets(query: &EventQuery) -> Result<(), StoreError> {
    let total: usize = query.sets.values().map(|set| set.len()).sum();
    if total > MAX_SET_MEMBERS {
        return Err(StoreError::Invalid(format!(
            "the query's annotation sets hold {total} events together; at most {MAX_SET_MEMBERS}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_exact() {
        let members: Vec<u64> = (0..10_000u64)
            .map(|n| n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let set = EventSet::new(members.clone());
        assert_eq!(set.len(), 10_000);
        assert!(members.iter().all(|m| set.contains(*m)));
        let outside = (0..100_000u64)
            .map(|n| n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) ^ 1)
            .filter(|n| !members.contains(n))
            .filter(|n| set.contains(*n))
            .count();
        assert_eq!(outside, 0);
        assert!(!EventSet::new(Vec::new()).contains(0));
        assert!(EventSet::new(vec![u64::MAX, 0]).contains(u64::MAX));
    }
}
