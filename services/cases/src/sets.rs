//! The events each annotation clause of a timeline query names, as tie-breakers for the
//! event store, cached by (case, clause, the case's annotation version): paging,
//! histograms and facets of one selection read the annotation tables once, and any
//! change to a case's annotations (which bumps its version) retires its entries. The
//! cache holds at most [`CACHE_MEMBERS`] tie-breakers (8 bytes each), least recently
//! used out first.

use crate::annotations::store;
use casescope_db::{Database, DbError};
use casescope_query::Annotation;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most tie-breakers kept in the cache, all entries together (32 MiB).
pub const CACHE_MEMBERS: usize = 4_000_000;

/// Most members all the sets of one timeline query may hold together (the event
/// store's limit, `casescope_eventstore::MAX_SET_MEMBERS`, is the same).
pub const MAX_QUERY_MEMBERS: usize = 1_000_000;

struct Entry {
    version: i64,
    members: Arc<Vec<u64>>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, Annotation), Entry>,
    held: usize,
    clock: u64,
}

#[derive(Clone, Default)]
pub struct SetCache {
    inner: Arc<Mutex<Inner>>,
}

/// Why a set could not be given.
#[derive(Debug)]
pub enum SetError {
    Db(DbError),
    /// The clause names more events than one query may filter by.
    TooLarge {
        key: String,
    },
}

impl SetCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The members of `annotation` in case `case_id` at annotation version `version`.
    pub async fn members(
        &self,
        db: &Database,
        case_id: &str,
        annotation: &Annotation,
        version: i64,
    ) -> Result<Arc<Vec<u64>>, SetError> {
        let key = (case_id.to_string(), annotation.clone());
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            if let Some(entry) = inner.entries.get_mut(&key)
                && entry.version == version
            {
                entry.used = clock;
                return Ok(entry.members.clone());
            }
        }
        let members = store::members(db, case_id, annotation, MAX_QUERY_MEMBERS)
            .await
            .map_err(SetError::Db)?;
        if members.len() > MAX_QUERY_MEMBERS {
            return Err(SetError::TooLarge {
                key: annotation.key(),
            });
        }
        let members = Arc::new(members);
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.insert(
            key,
            Entry {
                version,
                members: members.clone(),
                used,
            },
        ) {
            inner.held -= old.members.len();
        }
        inner.held += members.len();
        while inner.held > CACHE_MEMBERS {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.held -= gone.members.len();
            }
        }
        Ok(members)
    }
}
