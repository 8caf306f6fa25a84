//! The cluster event store on OpenSearch 2.x (2.7 or later, for `flat_object`).
//!
//! Layout: ONE index (default `casescope-events`) for all cases, every document routed
//! by its case id (`routing` = case id on writes, reads and deletes). One index
//! instead of one per case avoids the shard explosion of per-case indices (thousands of
//! small shards, each with its own heap and file handles, that a large deployment ends
//! up with); routing keeps one case's events on one shard, so a case's queries touch
//! one shard, and every query also filters on `case_id`. The index is created on open
//! when missing (settings, analysers and a strict mapping, see [`document`]); an
//! existing index is checked for the fields this version needs.
//!
//! Writes are `_bulk` `index` actions with `_id` = event id (so a retried write
//! replaces rather than duplicates), in requests of at most
//! [`OpenSearchOptions::bulk_max_bytes`]. Items refused for overload (429, or 502–504)
//! are sent again, alone, with exponential backoff; other refusals are reported in
//! [`WriteReport::rejected`] with OpenSearch's error type and reason. Whole requests
//! answered 429/502–504, or failing to connect or to answer in time, are retried the
//! same way. [`EventStore::flush`] refreshes the index (or, with
//! [`RefreshPolicy::WaitFor`], every bulk request waits for its refresh).
//!
//! Reads translate the shared query language to the query DSL ([`translate`]) so that
//! a query answers the same as on tantivy, sort by timestamp then the event id's
//! tie-breaker, and page with `search_after`. Whole files are read with
//! [`OpenSearchStore::scan_file`] from one point-in-time view.
//!
//! Every request has a timeout, answers are read up to a byte cap, pages and
//! histograms are bounded as on every backend.

mod bulk;
mod client;
mod document;
mod facet;
mod options;
mod response;
mod scan;
mod translate;

pub use options::{OpenSearchOptions, RefreshPolicy};
pub use scan::FileScan;
use scan::cursor_of;

use crate::{Bucket, EventQuery, EventStore, SearchPage, StoreError, WriteReport, validate};
use bulk::{BulkItem, Outcome};
use casescope_evidence::Event;
use client::{Backoff, Body, Transport, error_type, json_body, status_error};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Inner {
    transport: Transport,
    index: String,
    refresh: RefreshPolicy,
    bulk_max_bytes: usize,
    delete_timeout: Duration,
}

/// The OpenSearch backend of [`EventStore`]. Cheap to clone (one HTTP client).
#[derive(Clone)]
pub struct OpenSearchStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenSearchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchStore")
            .field("index", &self.inner.index)
            .finish_non_exhaustive()
    }
}

/// `routing=<case>` (left out for an empty case id, which OpenSearch refuses).
fn routing(case_id: &str) -> Vec<(&'static str, &str)> {
    if case_id.is_empty() {
        Vec::new()
    } else {
        vec![("routing", case_id)]
    }
}

impl OpenSearchStore {
    /// Connects, and creates the index if it is missing (or checks the existing one).
    pub async fn open(options: OpenSearchOptions) -> Result<Self, StoreError> {
        let base = options.check()?;
        // TLS through ring, as everywhere in CaseScope (an error only means a provider
        // is already installed for the process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("casescope-eventstore/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_certificate_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                StoreError::Invalid(format!("OpenSearch options: CA certificate: {e}"))
            })?;
            builder = builder.tls_certs_merge(certificates);
        }
        if options.danger_accept_invalid_certs {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::Internal(format!("HTTP client: {e}")))?;
        let credentials = options
            .username
            .clone()
            .map(|user| (user, options.password.clone().unwrap_or_default()));
        let transport = Transport::new(
            client,
            base,
            credentials,
            Backoff {
                max_retries: options.max_retries,
                initial: options.initial_backoff,
                max: options.max_backoff.max(options.initial_backoff),
            },
            options.max_response_bytes,
        );
        let store = Self {
            inner: Arc::new(Inner {
                transport,
                index: options.index.clone(),
                refresh: options.refresh,
                bulk_max_bytes: options.bulk_max_bytes,
                delete_timeout: options.delete_timeout,
            }),
        };
        store
            .ensure_index(options.number_of_shards, options.number_of_replicas)
            .await?;
        Ok(store)
    }

    /// The index name.
    pub fn index(&self) -> &str {
        &self.inner.index
    }

    fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    fn index_url(&self, rest: &[&str], query: &[(&str, &str)]) -> Result<Url, StoreError> {
        let mut segments = vec![self.inner.index.as_str()];
        segments.extend_from_slice(rest);
        self.transport().url(&segments, query)
    }

    /// Checks the index if it exists (needing only read rights on it), creates it
    /// otherwise; another process creating it meanwhile is fine.
    async fn ensure_index(
        &self,
        shards: Option<u32>,
        replicas: Option<u32>,
    ) -> Result<(), StoreError> {
        if self.check_existing_index().await? {
            return self.raise_terms_limit().await;
        }
        let body = json_body(&document::index_body(shards, replicas))?;
        let reply = self
            .transport()
            .send(
                "create the index",
                Method::PUT,
                self.index_url(&[], &[])?,
                body,
            )
            .await?;
        if reply.status.is_success() {
            tracing::info!(index = %self.inner.index, "created the OpenSearch event index");
            return Ok(());
        }
        if reply.status == StatusCode::BAD_REQUEST
            && error_type(&reply.body).as_deref() == Some("resource_already_exists_exception")
            && self.check_existing_index().await?
        {
            return Ok(());
        }
        Err(status_error("create the index", &reply))
    }

    /// An index created before annotation filters existed has OpenSearch's default
    /// `max_terms_count` (65,536): raise it to what one search may filter by.
    async fn raise_terms_limit(&self) -> Result<(), StoreError> {
        let what = "raise the index's max_terms_count";
        let body = json!({"index": {"max_terms_count": crate::MAX_SET_MEMBERS}});
        let reply = self
            .transport()
            .send(
                what,
                Method::PUT,
                self.index_url(&["_settings"], &[])?,
                json_body(&body)?,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(what, &reply));
        }
        Ok(())
    }

    /// `true` if the index exists with a fitting mapping, `false` if it is missing.
    async fn check_existing_index(&self) -> Result<bool, StoreError> {
        let what = "read the index mapping";
        let reply = self
            .transport()
            .send(
                what,
                Method::GET,
                self.index_url(&["_mapping"], &[])?,
                Body::Empty,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !reply.status.is_success() {
            return Err(status_error(what, &reply));
        }
        document::check_mapping(&reply.json()?)?;
        Ok(true)
    }

    async fn search_request(&self, case_id: &str, body: &Value) -> Result<Value, StoreError> {
        let answer = self
            .transport()
            .json(
                "search",
                Method::POST,
                self.index_url(&["_search"], &routing(case_id))?,
                json_body(body)?,
            )
            .await?;
        response::require_all_shards(&answer)?;
        Ok(answer)
    }

    async fn count_request(&self, case_id: &str, query: Value) -> Result<u64, StoreError> {
        let answer = self
            .transport()
            .json(
                "count",
                Method::POST,
                self.index_url(&["_count"], &routing(case_id))?,
                json_body(&json!({"query": query}))?,
            )
            .await?;
        response::count(&answer)
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        self.transport()
            .json(
                "refresh",
                Method::POST,
                self.index_url(&["_refresh"], &[])?,
                Body::Empty,
            )
            .await
            .map(drop)
    }

    /// Sends one chunk; items refused for overload are sent again (only they) with
    /// backoff, at most `max_retries` times.
    async fn send_chunk(
        &self,
        mut pending: Vec<BulkItem>,
        report: &mut WriteReport,
    ) -> Result<(), StoreError> {
        let mut query = vec![(
            "filter_path",
            "errors,items.*._id,items.*.status,items.*.error",
        )];
        if self.inner.refresh == RefreshPolicy::WaitFor {
            query.push(("refresh", "wait_for"));
        }
        let backoff = self.transport().backoff;
        let metrics = casescope_runtime::metrics::metrics();
        let backend = casescope_runtime::metrics::attr("backend", "opensearch");
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let answer = self
                .transport()
                .json(
                    "bulk write",
                    Method::POST,
                    self.index_url(&["_bulk"], &query)?,
                    Body::NdJson(bulk::body(&pending)),
                )
                .await?;
            metrics
                .bulk_duration
                .record(started.elapsed().as_secs_f64(), &backend);
            let outcomes = bulk::outcomes(&answer, &pending)?;
            let mut again = Vec::new();
            let mut last_reason = String::new();
            let (mut written, mut rejected) = (0u64, 0u64);
            for (item, outcome) in pending.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Written => written += 1,
                    Outcome::Rejected(reason) => {
                        rejected += 1;
                        report.rejected.push((item.event_id, reason));
                    }
                    Outcome::Retry(reason) => {
                        last_reason = reason;
                        again.push(item);
                    }
                }
            }
            report.written += written;
            metrics.store_written.add(written, &backend);
            let refused = |reason: &'static str| {
                [
                    casescope_runtime::metrics::KeyValue::new("backend", "opensearch"),
                    casescope_runtime::metrics::KeyValue::new("reason", reason),
                ]
            };
            metrics.bulk_rejected.add(rejected, &refused("rejected"));
            metrics
                .bulk_rejected
                .add(again.len() as u64, &refused("throttled"));
            if again.is_empty() {
                return Ok(());
            }
            if attempt >= backoff.max_retries {
                return Err(StoreError::Unavailable(format!(
                    "bulk write: {} events still refused after {attempt} retries: {last_reason}",
                    again.len()
                )));
            }
            let delay = backoff.delay(attempt);
            tracing::warn!(
                items = again.len(),
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                "OpenSearch refused bulk items for now; sending them again: {last_reason}"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
            pending = again;
        }
    }

    /// Waits for a delete-by-query task, polling with growing pauses, up to the
    /// delete timeout.
    /// Refreshes first, so that events written but not yet searchable are deleted
    /// too, then runs `_delete_by_query` (routed to the case's shard) as a task and
    /// waits for it.
    async fn delete_matching(
        &self,
        what: &str,
        case_id: &str,
        query_clause: Value,
    ) -> Result<(), StoreError> {
        self.refresh().await?;
        let mut query = routing(case_id);
        query.extend([
            ("conflicts", "proceed"),
            ("refresh", "true"),
            ("wait_for_completion", "false"),
        ]);
        let answer = self
            .transport()
            .json(
                what,
                Method::POST,
                self.index_url(&["_delete_by_query"], &query)?,
                json_body(&json!({ "query": query_clause }))?,
            )
            .await?;
        let task = response::task_id(&answer)?;
        let deleted = self.wait_for_delete(&task).await?;
        tracing::debug!(deleted, "{what}");
        Ok(())
    }

    async fn wait_for_delete(&self, task: &str) -> Result<u64, StoreError> {
        let deadline = Instant::now() + self.inner.delete_timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let answer = self
                .transport()
                .json(
                    "delete-by-query task",
                    Method::GET,
                    self.transport().url(&["_tasks", task], &[])?,
                    Body::Empty,
                )
                .await?;
            if let response::TaskState::Deleted(count) = response::delete_task(&answer)? {
                return Ok(count);
            }
            if Instant::now() + pause > deadline {
                return Err(StoreError::Unavailable(format!(
                    "deleting the file's events did not finish within {:?} (task {task} goes on)",
                    self.inner.delete_timeout
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait::async_trait]
impl EventStore for OpenSearchStore {
    async fn ready(&self) -> Result<(), StoreError> {
        self.transport()
            .probe("OpenSearch", self.index_url(&["_count"], &[])?)
            .await
    }

    /// Documents are built on the blocking pool, one request's worth ahead of the
    /// request being sent (so at most about two requests' bodies are in memory).
    async fn write(&self, events: Vec<Event>) -> Result<WriteReport, StoreError> {
        let (chunks, mut ready) = tokio::sync::mpsc::channel::<Vec<BulkItem>>(1);
        let max_bytes = self.inner.bulk_max_bytes;
        let builder = tokio::task::spawn_blocking(move || {
            let mut unserialisable = Vec::new();
            let mut chunk = bulk::Chunk::new(max_bytes);
            for event in events {
                match bulk::item(&event) {
                    Ok(item) => {
                        if let Some(full) = chunk.push(item)
                            && chunks.blocking_send(full).is_err()
                        {
                            // The writer gave up (an error is on its way back).
                            return unserialisable;
                        }
                    }
                    Err(error) => unserialisable.push((event.event_id, error.to_string())),
                }
            }
            if let Some(last) = chunk.finish() {
                let _ = chunks.blocking_send(last);
            }
            unserialisable
        });
        let mut report = WriteReport::default();
        while let Some(chunk) = ready.recv().await {
            self.send_chunk(chunk, &mut report).await?;
        }
        let unserialisable = builder
            .await
            .map_err(|e| StoreError::Internal(format!("building bulk requests failed: {e}")))?;
        report.rejected.extend(unserialisable);
        Ok(report)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match self.inner.refresh {
            RefreshPolicy::OnFlush => self.refresh().await,
            RefreshPolicy::WaitFor => Ok(()),
        }
    }

    async fn delete_file(&self, case_id: &str, file_id: &str) -> Result<(), StoreError> {
        self.delete_matching(
            "delete the file's events",
            case_id,
            translate::case_and_file(case_id, file_id),
        )
        .await
    }

    /// Like [`Self::delete_file`], for every event of the case.
    async fn delete_case(&self, case_id: &str) -> Result<(), StoreError> {
        self.delete_matching(
            "delete the case's events",
            case_id,
            translate::case_only(case_id),
        )
        .await
    }

    async fn count_file(&self, case_id: &str, file_id: &str) -> Result<u64, StoreError> {
        self.count_request(case_id, translate::case_and_file(case_id, file_id))
            .await
    }

    async fn search(&self, query: &EventQuery) -> Result<SearchPage, StoreError> {
        validate(query)?;
        let answer = self
            .search_request(&query.case_id, &translate::search_body(query)?)
            .await?;
        let total = if query.skip_total {
            0
        } else {
            response::total(&answer)?
        };
        let mut hits = response::hits(&answer)?;
        let more = hits.len() > query.page_size;
        hits.truncate(query.page_size);
        let events: Vec<Event> = hits.into_iter().map(|hit| hit.event).collect();
        let next = if more {
            events.last().map(cursor_of)
        } else {
            None
        };
        Ok(SearchPage {
            events,
            total,
            next,
        })
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.count_request(&query.case_id, translate::build(query)?)
            .await
    }

    async fn get(&self, case_id: &str, event_id: &str) -> Result<Option<Event>, StoreError> {
        // No stored id looks like these; they are not worth a request (and `.`/`..`
        // would not stay one path segment).
        if event_id.is_empty() || event_id == "." || event_id == ".." || event_id.len() > 512 {
            return Ok(None);
        }
        let reply = self
            .transport()
            .send(
                "get an event",
                Method::GET,
                self.index_url(&["_doc", event_id], &routing(case_id))?,
                Body::Empty,
            )
            .await?;
        // 404 with `found: false` is a missing document; 404 with an error is a
        // missing index.
        if reply.status == StatusCode::NOT_FOUND && error_type(&reply.body).is_none() {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(status_error("get an event", &reply));
        }
        Ok(response::document(&reply.json()?)?.filter(|event| event.case_id == case_id))
    }

    async fn facet(
        &self,
        query: &EventQuery,
        field: &str,
        top: usize,
    ) -> Result<crate::Facet, StoreError> {
        crate::check_facet(field, top)?;
        let (body, prefix) = facet::body(query, field, top)?;
        let answer = match self.search_request(&query.case_id, &body).await {
            Err(StoreError::Invalid(why)) if why.contains("fielddata") => {
                return Err(StoreError::Invalid(format!(
                    "this OpenSearch index was created by a version without facets (its \
                     field_terms have no doc values); re-index the case into a new index to \
                     facet it ({why})"
                )));
            }
            other => other?,
        };
        facet::read(&answer, field, &prefix)
    }

    async fn histogram(
        &self,
        query: &EventQuery,
        interval_micros: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        crate::check_interval(interval_micros)?;
        let edges = self
            .search_request(&query.case_id, &translate::edges_body(query)?)
            .await?;
        let Some((first, last)) = response::edges(&edges)? else {
            return Ok(Vec::new());
        };
        let (start, buckets) = crate::histogram_grid(first, last, interval_micros)?;
        let answer = self
            .search_request(
                &query.case_id,
                &translate::histogram_body(query, interval_micros, start, last)?,
            )
            .await?;
        response::histogram(&answer, start, interval_micros, buckets)
    }
}
