//! The field names (JSON paths of the flattened fields) the store has indexed, so a
//! field-less term can be looked up under each of them instead of in a catch-all field
//! that would index every value a second time.
//!
//! The set only grows (a name whose events were all deleted costs an empty lookup). It
//! is kept in memory and, for an on-disk index, in `casescope-field-names.json` beside
//! the index, written before every commit so the file always covers what is committed.
//! Bounded: past [`MAX_FIELD_NAMES`] distinct names the set stops growing and field-less
//! searches are refused with a message naming the limit (fielded searches still work).

use crate::StoreError;
use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Most distinct field names a field-less search expands to.
pub const MAX_FIELD_NAMES: usize = 4096;
const FILE_NAME: &str = "casescope-field-names.json";

#[derive(Default)]
struct State {
    /// Hashed: every field of every event is looked up here (a tree's string
    /// comparisons were 3 % of ingest CPU); sorted when written or listed.
    names: FxHashSet<String>,
    /// Changes so far, and how many of them the file holds.
    changes: u64,
    persisted: u64,
    /// More names were seen than the set may hold.
    overflow: bool,
    /// The names as a list for queries, rebuilt after a change.
    snapshot: Option<Arc<Vec<String>>>,
}

impl State {
    fn sorted(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.iter().cloned().collect();
        names.sort_unstable();
        names
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OnDisk {
    names: Vec<String>,
    overflow: bool,
}

pub struct FieldNames {
    file: Option<PathBuf>,
    state: RwLock<State>,
}

/// What field-less queries may expand to.
pub enum Expansion {
    Names(Arc<Vec<String>>),
    TooMany,
}

impl FieldNames {
    /// Loads the names kept beside the index in `dir` (none yet is an empty set).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let file = dir.join(FILE_NAME);
        let mut state = State::default();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let on_disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Internal(format!("{} is damaged: {e}", file.display()))
                })?;
                state.names = on_disk.names.into_iter().collect();
                state.overflow = on_disk.overflow;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StoreError::Internal(format!(
                    "read {}: {error}",
                    file.display()
                )));
            }
        }
        Ok(Self {
            file: Some(file),
            state: RwLock::new(state),
        })
    }

    pub fn in_memory() -> Self {
        Self {
            file: None,
            state: RwLock::new(State::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the names of one batch of events.
    pub fn note<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let missing: Vec<&str> = {
            let state = self.read();
            if state.overflow {
                return;
            }
            names.filter(|name| !state.names.contains(*name)).collect()
        };
        if missing.is_empty() {
            return;
        }
        let mut state = self.write();
        for name in missing {
            if state.names.contains(name) {
                continue;
            }
            if state.names.len() >= MAX_FIELD_NAMES {
                state.overflow = true;
                state.changes += 1;
                break;
            }
            state.names.insert(name.to_string());
            state.changes += 1;
            state.snapshot = None;
        }
    }

    /// Writes the names to disk if they changed (before the index commits).
    pub fn persist(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let (body, changes) = {
            let state = self.read();
            if state.persisted == state.changes {
                return Ok(());
            }
            let body = serde_json::to_vec(&OnDisk {
                names: state.sorted(),
                overflow: state.overflow,
            })
            .map_err(|e| StoreError::Internal(format!("encode field names: {e}")))?;
            (body, state.changes)
        };
        let temporary = file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut out = std::fs::File::create(&temporary)?;
            out.write_all(&body)?;
            out.sync_all()?;
            std::fs::rename(&temporary, file)
        };
        write().map_err(|e| StoreError::Internal(format!("write {}: {e}", file.display())))?;
        // Names noted meanwhile are written by the next persist.
        let mut state = self.write();
        state.persisted = state.persisted.max(changes);
        Ok(())
    }

    pub fn expansion(&self) -> Expansion {
        {
            let state = self.read();
            if state.overflow {
                return Expansion::TooMany;
            }
            if let Some(snapshot) = &state.snapshot {
                return Expansion::Names(snapshot.clone());
            }
        }
        let mut state = self.write();
        let snapshot = Arc::new(state.sorted());
        state.snapshot = Some(snapshot.clone());
        Expansion::Names(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_reopening_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let names = FieldNames::open(dir.path()).unwrap();
        names.note(["CommandLine", "Image", "CommandLine"].into_iter());
        names.persist().unwrap();
        let reopened = FieldNames::open(dir.path()).unwrap();
        match reopened.expansion() {
            Expansion::Names(list) => assert_eq!(*list, ["CommandLine", "Image"]),
            Expansion::TooMany => panic!("two names are not too many"),
        }
        let many: Vec<String> = (0..=MAX_FIELD_NAMES).map(|n| format!("f{n}")).collect();
        reopened.note(many.iter().map(String::as_str));
        assert!(matches!(reopened.expansion(), Expansion::TooMany));
        reopened.persist().unwrap();
        assert!(matches!(
            FieldNames::open(dir.path()).unwrap().expansion(),
            Expansion::TooMany
        ));
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let Err(error) = FieldNames::open(dir.path()) else {
            panic!("a damaged file must not open")
        };
        assert!(error.to_string().contains("damaged"), "{error}");
    }
}
