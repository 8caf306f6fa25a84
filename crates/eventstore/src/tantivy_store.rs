//! The embedded event store on tantivy: one index for all cases under the data
//! directory, one writer (memory-bounded), searchers reloaded on every flush. Indexing
//! and searching run on tokio's blocking pool, never on the async workers.

mod event_set;
mod facets;
mod histogram;
mod paths;
mod schema;
mod stored;
mod translate;
mod window;

use crate::{
    Bucket, Cursor, EventQuery, EventStore, SearchPage, StoreError, WriteReport, validate,
};
use casescope_evidence::Event;
pub use facets::{MAX_FACET_DISTINCT, MAX_FACET_POSTINGS};
use paths::FieldNames;
use schema::Fields;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tantivy::collector::{Count, TopDocs};
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

#[derive(Debug, Clone)]
pub struct TantivyOptions {
    /// Memory the writer may use before it flushes a segment (split across its threads).
    pub writer_memory_bytes: usize,
    pub writer_threads: usize,
    /// Automaton steps a field-less wildcard may take over the term dictionary before
    /// the query is refused (asking for a field).
    pub fieldless_wildcard_steps: u64,
}

impl Default for TantivyOptions {
    fn default() -> Self {
        Self {
            writer_memory_bytes: 256 * 1024 * 1024,
            writer_threads: 2,
            fieldless_wildcard_steps: translate::FIELDLESS_WILDCARD_STEPS,
        }
    }
}

/// Pages of at least this many events are read on several threads.
const PARALLEL_LOAD: usize = 256;

struct Inner {
    fields: Fields,
    /// Field names indexed so far (what a field-less term is looked up under).
    names: FieldNames,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Group commit: flush requests taken and covered so far (see `flush`).
    commits: Mutex<(u64, u64)>,
    committer: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
pub struct TantivyStore {
    inner: Arc<Inner>,
}

/// A store failure; a tantivy error marked as the caller's ([`translate::INVALID_MARK`])
/// is an invalid request instead.
fn internal(error: impl std::fmt::Display) -> StoreError {
    let text = error.to_string();
    match text.find(translate::INVALID_MARK) {
        Some(at) => StoreError::Invalid(
            text[at + translate::INVALID_MARK.len()..]
                .trim_end_matches(['\'', '"'])
                .to_string(),
        ),
        None => StoreError::Internal(text),
    }
}

impl TantivyStore {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path, options: &TantivyOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("create {}: {e}", dir.display())))?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(internal)?;
        // An existing index keeps its own schema (an index of an earlier layout is read
        // as it is; `Fields::from_schema` refuses one it does not know).
        let index = match Index::exists(&directory).map_err(internal)? {
            true => Index::open(directory),
            false => Index::create(directory, schema::build(), Default::default()),
        }
        .map_err(internal)?;
        Self::from_index(index, FieldNames::open(dir)?, options)
    }

    /// An in-memory store, for tests and one-shot analysis.
    pub fn in_memory(options: &TantivyOptions) -> Result<Self, StoreError> {
        Self::from_index(
            Index::create_in_ram(schema::build()),
            FieldNames::in_memory(),
            options,
        )
    }

    fn from_index(
        index: Index,
        names: FieldNames,
        options: &TantivyOptions,
    ) -> Result<Self, StoreError> {
        schema::register_tokenizers(&index);
        let mut fields = Fields::from_schema(&index.schema())?;
        fields.wildcard_steps = options.fieldless_wildcard_steps;
        let writer = index
            .writer_with_options(
                IndexWriterOptions::builder()
                    .num_worker_threads(options.writer_threads.max(1))
                    .memory_budget_per_thread(
                        options.writer_memory_bytes / options.writer_threads.max(1),
                    )
                    .build(),
            )
            .map_err(internal)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|error| {
                let text = error.to_string();
                if text.contains("Unsupported dictionary type") {
                    // Versions before 2026-11-23 wrote FST term dictionaries; this build
                    // reads SSTable ones (cheaper to write: ~9 % of ingest CPU).
                    internal(format!(
                        "the index was written by an earlier CaseScope version, whose term \
                         dictionaries this one cannot read ({text}); move the index \
                         directory aside and re-index the case's files"
                    ))
                } else {
                    internal(text)
                }
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                fields,
                names,
                reader,
                writer: Mutex::new(writer),
                commits: Mutex::new((0, 0)),
                committer: tokio::sync::Mutex::new(()),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| internal(format!("store task failed: {e}")))?
    }
}

impl Inner {
    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn case_and_file(&self, case_id: &str, file_id: &str) -> BooleanQuery {
        BooleanQuery::new(vec![
            (
                Occur::Must,
                self.keyword_query(self.fields.case_id, case_id),
            ),
            (
                Occur::Must,
                self.keyword_query(self.fields.file_id, file_id),
            ),
        ])
    }

    fn keyword_query(&self, field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    }

    /// The query, its filters and the page position as one tantivy query.
    fn full_query(
        &self,
        query: &EventQuery,
        with_cursor: bool,
    ) -> Result<Box<dyn Query>, StoreError> {
        translate::build(&self.fields, &self.names.expansion(), query, with_cursor)
    }

    /// The event at `address`, read with `searcher`: the one that found it. A
    /// `DocAddress` is only meaningful in its searcher's segments; a later searcher (after
    /// a commit or merge of other writes) could hold another document there.
    fn load(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        skip_raw: bool,
    ) -> Result<Event, StoreError> {
        let document: stored::StoredDoc = searcher.doc(address).map_err(internal)?;
        stored::to_event(&self.fields, document, skip_raw)
    }
}

#[async_trait::async_trait]
impl EventStore for TantivyStore {
    async fn write(&self, events: Vec<Event>) -> Result<WriteReport, StoreError> {
        self.blocking(move |inner| {
            let started = std::time::Instant::now();
            let mut report = WriteReport::default();
            inner.names.note(
                events
                    .iter()
                    .flat_map(|event| event.fields.keys().map(String::as_str)),
            );
            let documents: Vec<_> = events
                .into_iter()
                .map(|event| {
                    (
                        event.event_id.clone(),
                        schema::to_document(&inner.fields, event),
                    )
                })
                .collect();
            let writer = inner.writer();
            for (event_id, document) in documents {
                match writer.add_document(document) {
                    Ok(_) => report.written += 1,
                    Err(error) => report.rejected.push((event_id, error.to_string())),
                }
            }
            let metrics = casescope_runtime::metrics::metrics();
            let backend = casescope_runtime::metrics::attr("backend", "tantivy");
            metrics.store_written.add(report.written, &backend);
            metrics
                .bulk_duration
                .record(started.elapsed().as_secs_f64(), &backend);
            metrics.bulk_rejected.add(
                report.rejected.len() as u64,
                &[
                    casescope_runtime::metrics::KeyValue::new("backend", "tantivy"),
                    casescope_runtime::metrics::KeyValue::new("reason", "rejected"),
                ],
            );
            Ok(report)
        })
        .await
    }

    /// Group commit: concurrent flushes share one commit. A caller's writes precede its
    /// ticket, and a commit started after the ticket was taken includes them.
    async fn flush(&self) -> Result<(), StoreError> {
        let ticket = {
            let mut commits = self.inner.commits.lock().unwrap_or_else(|p| p.into_inner());
            commits.0 += 1;
            commits.0
        };
        let _one_committer = self.inner.committer.lock().await;
        let covering = {
            let commits = self.inner.commits.lock().unwrap_or_else(|p| p.into_inner());
            if commits.1 >= ticket {
                return Ok(());
            }
            commits.0
        };
        self.blocking(|inner| {
            // The names first, so the file covers everything the commit makes visible.
            inner.names.persist()?;
            inner.writer().commit().map_err(internal)?;
            inner.reader.reload().map_err(internal)
        })
        .await?;
        let mut commits = self.inner.commits.lock().unwrap_or_else(|p| p.into_inner());
        commits.1 = commits.1.max(covering);
        Ok(())
    }

    async fn delete_file(&self, case_id: &str, file_id: &str) -> Result<(), StoreError> {
        let (case_id, file_id) = (case_id.to_string(), file_id.to_string());
        self.blocking(move |inner| {
            let query = inner.case_and_file(&case_id, &file_id);
            inner
                .writer()
                .delete_query(Box::new(query))
                .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn delete_case(&self, case_id: &str) -> Result<(), StoreError> {
        let case_id = case_id.to_string();
        self.blocking(move |inner| {
            let query = inner.keyword_query(inner.fields.case_id, &case_id);
            inner.writer().delete_query(query).map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn count_file(&self, case_id: &str, file_id: &str) -> Result<u64, StoreError> {
        let (case_id, file_id) = (case_id.to_string(), file_id.to_string());
        self.blocking(move |inner| {
            let query = inner.case_and_file(&case_id, &file_id);
            let count = inner
                .reader
                .searcher()
                .search(&query, &Count)
                .map_err(internal)?;
            Ok(count as u64)
        })
        .await
    }

    async fn search(&self, query: &EventQuery) -> Result<SearchPage, StoreError> {
        validate(query)?;
        let query = query.clone();
        self.blocking(move |inner| {
            let searcher = inner.reader.searcher();
            // One query object for every pass of this page (count, windows, ranking):
            // its annotation sets are then evaluated once per segment.
            let base = inner.full_query(&query, false)?;
            let full: Box<dyn Query> = match query.after {
                Some(cursor) => Box::new(BooleanQuery::new(vec![
                    (Occur::Must, base.box_clone()),
                    (
                        Occur::Must,
                        translate::after_cursor(&inner.fields, query.sort, cursor),
                    ),
                ])),
                None => base.box_clone(),
            };
            let queries = (&*base, &*full);
            let (total, hits) = if query.skip_total {
                let hits = window::first_hits(&searcher, &inner.fields, &query, queries, None)?;
                (0, hits)
            } else if query.after.is_none() && translate::has_fieldless(&query.query) {
                // A field-less clause looks its words up under every field name, in every
                // segment, on each pass: one pass counts and ranks together.
                let (count, hits) = searcher
                    .search(&*full, &(Count, window::collector(&query)))
                    .map_err(internal)?;
                (count as u64, hits)
            } else {
                let total = searcher.search(&*base, &Count).map_err(internal)? as u64;
                let hits =
                    window::first_hits(&searcher, &inner.fields, &query, queries, Some(total))?;
                (total, hits)
            };
            let last = hits.last().map(|((timestamp, tiebreak), _)| Cursor {
                timestamp_micros: timestamp.unwrap_or_default(),
                tiebreak: tiebreak.unwrap_or_default(),
            });
            let load = |address: &DocAddress| {
                inner
                    .load(&searcher, *address, query.skip_raw)
                    .map(|mut event| {
                        event.case_id = query.case_id.clone();
                        event
                    })
            };
            // Reading and decoding stored events is most of a large page's cost: spread
            // over the cores (rayon's pool) for large pages.
            let events: Vec<Event> = if hits.len() >= PARALLEL_LOAD {
                use rayon::prelude::*;
                hits.par_iter()
                    .map(|(_, address)| load(address))
                    .collect::<Result<_, _>>()?
            } else {
                hits.iter()
                    .map(|(_, address)| load(address))
                    .collect::<Result<_, _>>()?
            };
            let next = if events.len() == query.page_size {
                last
            } else {
                None
            };
            Ok(SearchPage {
                events,
                total,
                next,
            })
        })
        .await
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let query = query.clone();
        self.blocking(move |inner| {
            let count = inner
                .reader
                .searcher()
                .search(&*inner.full_query(&query, false)?, &Count)
                .map_err(internal)?;
            Ok(count as u64)
        })
        .await
    }

    async fn get(&self, case_id: &str, event_id: &str) -> Result<Option<Event>, StoreError> {
        let (case_id, event_id) = (case_id.to_string(), event_id.to_string());
        self.blocking(move |inner| {
            let query = BooleanQuery::new(vec![
                (
                    Occur::Must,
                    inner.keyword_query(inner.fields.case_id, &case_id),
                ),
                (
                    Occur::Must,
                    inner.keyword_query(inner.fields.event_id, &event_id),
                ),
            ]);
            let searcher = inner.reader.searcher();
            let hits = searcher
                .search(&query, &TopDocs::with_limit(1).order_by_score())
                .map_err(internal)?;
            let mut event = hits
                .first()
                .map(|(_, address)| inner.load(&searcher, *address, false))
                .transpose()?;
            if let Some(event) = &mut event {
                event.case_id = case_id;
            }
            Ok(event)
        })
        .await
    }

    async fn facet(
        &self,
        query: &EventQuery,
        field: &str,
        top: usize,
    ) -> Result<crate::Facet, StoreError> {
        crate::check_facet(field, top)?;
        let (query, field) = (query.clone(), field.to_string());
        self.blocking(move |inner| {
            let searcher = inner.reader.searcher();
            facets::facet(
                &searcher,
                &inner.fields,
                &inner.names.expansion(),
                &query,
                &field,
                top,
            )
        })
        .await
    }

    async fn histogram(
        &self,
        query: &EventQuery,
        interval_micros: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        crate::check_interval(interval_micros)?;
        let query = query.clone();
        self.blocking(move |inner| {
            let searcher = inner.reader.searcher();
            let full = inner.full_query(&query, false)?;
            let counts = searcher
                .search(
                    &*full,
                    &histogram::BucketCollector {
                        interval: interval_micros,
                    },
                )
                .map_err(internal)?;
            histogram::buckets(counts, interval_micros)
        })
        .await
    }
}
