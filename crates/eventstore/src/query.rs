//! The query language ([`casescope_query`], shared with the cases service) and what
//! the backends share to read its values.

pub use casescope_query::*;

use std::ops::Bound;

/// A time value in a query (`timestamp:[a TO b]`), as UTC microseconds; every backend
/// reads times the same way.
pub(crate) fn parse_time(value: &str) -> Result<i64, crate::StoreError> {
    casescope_evidence::parse_timestamp(&serde_json::Value::String(value.to_string()))
        .map_err(|why| crate::StoreError::Invalid(format!("timestamp: {why}")))
}

/// A range bound's text parsed as `T`, or `None` when it does not parse.
pub(crate) fn map_bound<T>(
    bound: &Bound<String>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<Bound<T>> {
    Some(match bound {
        Bound::Included(v) => Bound::Included(parse(v)?),
        Bound::Excluded(v) => Bound::Excluded(parse(v)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}
