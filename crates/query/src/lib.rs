//! The query language analysts type, parsed once into [`Query`]: the event store's
//! backends translate it (so a query means the same on tantivy and OpenSearch), and
//! the cases service reads its annotation clauses ([`Annotation`]) to hand the store
//! the sets of events they name.

mod annotation;
mod parse;

pub use annotation::{
    Annotation, MAX_TAG_CHARS, annotation_field, annotations, normalise_tag, wildcard_match,
};
pub use parse::{MAX_CLAUSES, MAX_QUERY_LEN, Query, QueryError, parse_query};

/// The tie-breaker of an event id (its first 64 bits): how sorts break equal
/// timestamps, and how an event set names its members.
pub fn tiebreak_of(event_id: &str) -> u64 {
    event_id
        .get(..16)
        .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
        .unwrap_or(0)
}
