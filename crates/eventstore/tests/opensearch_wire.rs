//! The OpenSearch backend against a local HTTP server that speaks OpenSearch 2.x's wire
//! format for index creation, `_mapping`, `_refresh` and `_bulk` (request NDJSON,
//! answer JSON, per-item statuses and error objects, whole-request errors). It stands
//! in for OpenSearch because no OpenSearch server can run on this machine; the
//! answers it gives are shaped like the real ones, and tests/opensearch.rs runs the
//! full conformance suite against a real cluster when one is configured.
//!
//! What is checked here: items refused with 429 are sent again, and only they; a
//! per-item `mapper_parsing_exception` is reported in `rejected` with its reason; a
//! whole request answered 503 is sent again; batches are cut by bytes; endless
//! throttling, bad requests, silence and malformed answers end in clear errors. Also
//! the request sequences of a file scan (point in time), a file deletion (task) and a
//! read by id.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use casescope_eventstore::{
    Event, EventStore, OpenSearchOptions, OpenSearchStore, RefreshPolicy, StoreError,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers to the n-th `_bulk` request (0-based), given the ids sent.
type BulkScript = dyn Fn(usize, &[String]) -> Reply + Send + Sync;

enum Reply {
    /// 200 with one item per id: the status given for that id (201 otherwise).
    Items(Vec<(String, u16)>),
    /// A whole-request answer.
    Whole(StatusCode, String),
    /// No answer for this long.
    Silence(Duration),
}

#[derive(Default)]
struct Log {
    /// Ids of every `_bulk` request, in order.
    bulks: Vec<Vec<String>>,
    /// Body size of every `_bulk` request.
    bulk_bytes: Vec<usize>,
    /// Query string of every `_bulk` request.
    bulk_queries: Vec<String>,
    refreshes: usize,
    mapping_reads: usize,
    creations: usize,
    /// Bodies of `PUT /<index>/_settings`.
    settings_updates: Vec<Value>,
    /// The mappings of the index once created.
    created: Option<Value>,
    /// Documents written (as sent, derived fields included).
    documents: Vec<Value>,
    /// Query strings of point-in-time creations, bodies of scan searches, ids closed.
    pits_opened: Vec<String>,
    scans: Vec<Value>,
    pits_closed: Vec<Value>,
    /// Query strings of delete-by-query requests, and task polls.
    deletions: Vec<String>,
    task_polls: usize,
}

struct Shared {
    script: Box<BulkScript>,
    log: Mutex<Log>,
    /// The mapping `_mapping` answers when the index already exists.
    existing_mapping: Option<Value>,
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn opensearch_error(status: u16, kind: &str, reason: &str) -> String {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason
        },
        "status": status
    })
    .to_string()
}

async fn update_settings(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    shared.log.lock().unwrap().settings_updates.push(body);
    json_response(StatusCode::OK, json!({"acknowledged": true}).to_string())
}

async fn create_index(
    State(shared): State<Arc<Shared>>,
    Path(index): Path<String>,
    body: Bytes,
) -> Response {
    shared.log.lock().unwrap().creations += 1;
    if shared.existing_mapping.is_some() {
        return json_response(
            StatusCode::BAD_REQUEST,
            opensearch_error(
                400,
                "resource_already_exists_exception",
                &format!("index [{index}/Qx3Kx5pBQ0-l3mWkk2T6Ww] already exists"),
            ),
        );
    }
    let Ok(settings) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            opensearch_error(400, "parse_exception", "request body is required"),
        );
    };
    shared.log.lock().unwrap().created = Some(settings["mappings"].clone());
    json_response(
        StatusCode::OK,
        json!({"acknowledged": true, "shards_acknowledged": true, "index": index}).to_string(),
    )
}

async fn mapping(State(shared): State<Arc<Shared>>, Path(index): Path<String>) -> Response {
    shared.log.lock().unwrap().mapping_reads += 1;
    let Some(mappings) = shared.existing_mapping.clone() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({
                "error": {
                    "root_cause": [{"type": "index_not_found_exception", "reason": format!("no such index [{index}]"), "index": index, "resource.id": index, "resource.type": "index_or_alias", "index_uuid": "_na_"}],
                    "type": "index_not_found_exception",
                    "reason": format!("no such index [{index}]"),
                    "index": index, "resource.id": index, "resource.type": "index_or_alias", "index_uuid": "_na_"
                },
                "status": 404
            })
            .to_string(),
        );
    };
    json_response(
        StatusCode::OK,
        json!({ index: {"mappings": mappings} }).to_string(),
    )
}

async fn refresh(State(shared): State<Arc<Shared>>) -> Response {
    shared.log.lock().unwrap().refreshes += 1;
    json_response(
        StatusCode::OK,
        json!({"_shards": {"total": 2, "successful": 1, "failed": 0}}).to_string(),
    )
}

async fn bulk(
    State(shared): State<Arc<Shared>>,
    Path(index): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            opensearch_error(400, "illegal_argument_exception", "not UTF-8"),
        );
    };
    if !text.ends_with('\n') {
        return json_response(
            StatusCode::BAD_REQUEST,
            opensearch_error(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
        );
    }
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let mut ids = Vec::new();
    for pair in lines.chunks(2) {
        let (Ok(action), Some(Ok(document))) = (
            serde_json::from_str::<Value>(pair[0]),
            pair.get(1).map(|l| serde_json::from_str::<Value>(l)),
        ) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                opensearch_error(400, "x_content_parse_exception", "malformed bulk line"),
            );
        };
        let (Some(id), Some(routing)) = (
            action.pointer("/index/_id").and_then(Value::as_str),
            action.pointer("/index/routing").and_then(Value::as_str),
        ) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                opensearch_error(400, "action_request_validation_exception", "no id/routing"),
            );
        };
        assert_eq!(document["case_id"], routing, "routed by case");
        assert_eq!(document["event_id"], id, "_id is the event id");
        ids.push(id.to_string());
        shared.log.lock().unwrap().documents.push(document);
    }
    let number = {
        let mut log = shared.log.lock().unwrap();
        log.bulks.push(ids.clone());
        log.bulk_bytes.push(body.len());
        log.bulk_queries.push(query.unwrap_or_default());
        log.bulks.len() - 1
    };
    match (shared.script)(number, &ids) {
        Reply::Whole(status, body) => json_response(status, body),
        Reply::Silence(pause) => {
            tokio::time::sleep(pause).await;
            json_response(StatusCode::OK, "{}".into())
        }
        Reply::Items(statuses) => {
            let mut errors = false;
            let items: Vec<Value> = statuses
                .iter()
                .enumerate()
                .map(|(seq, (id, status))| match status {
                    201 => json!({"index": {
                        "_index": index, "_id": id, "_version": 1, "result": "created",
                        "_shards": {"total": 2, "successful": 1, "failed": 0},
                        "_seq_no": seq, "_primary_term": 1, "status": 201
                    }}),
                    429 => {
                        errors = true;
                        json!({"index": {"_index": index, "_id": id, "status": 429, "error": {
                            "type": "es_rejected_execution_exception",
                            "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=52428800, replica_bytes=0, all_bytes=52428800, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=53687091]"
                        }}})
                    }
                    _ => {
                        errors = true;
                        json!({"index": {"_index": index, "_id": id, "status": status, "error": {
                            "type": "mapper_parsing_exception",
                            "reason": format!("failed to parse field [fields] of type [flat_object] in document with id '{id}'. Preview of field's value: '{{EventID=4624}}'"),
                            "caused_by": {"type": "illegal_argument_exception", "reason": "Document contains at least one immense term in field=\"fields._value\""}
                        }}})
                    }
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"took": 12, "errors": errors, "items": items}).to_string(),
            )
        }
    }
}

/// What `_source` holds: the mapping excludes the derived fields.
fn stored_source(document: &Value) -> Value {
    let mut source = document.clone();
    if let Some(map) = source.as_object_mut() {
        for derived in ["text", "field_terms", "field_words"] {
            map.remove(derived);
        }
    }
    source
}

fn sort_key(document: &Value) -> (i64, i64) {
    (
        document["timestamp_micros"].as_i64().unwrap(),
        document["tiebreak"].as_i64().unwrap(),
    )
}

async fn open_pit(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    shared
        .log
        .lock()
        .unwrap()
        .pits_opened
        .push(query.unwrap_or_default());
    json_response(
        StatusCode::OK,
        json!({"pit_id": "pit-1", "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}, "creation_time": 1_700_000_000_000i64}).to_string(),
    )
}

/// `POST /_search` with a point in time: every stored document in sort order, after
/// `search_after`, `size` at most.
async fn pit_search(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let mut log = shared.log.lock().unwrap();
    log.scans.push(request.clone());
    let mut documents = log.documents.clone();
    documents.sort_by_key(sort_key);
    let after = request
        .get("search_after")
        .map(|after| (after[0].as_i64().unwrap(), after[1].as_i64().unwrap()));
    let size = request["size"].as_u64().unwrap() as usize;
    let hits: Vec<Value> = documents
        .iter()
        .filter(|d| after.is_none_or(|after| sort_key(d) > after))
        .take(size)
        .map(|d| {
            let (timestamp, tiebreak) = sort_key(d);
            json!({"_index": "casescope-wire", "_id": d["event_id"], "_score": null,
                "_routing": d["case_id"], "_source": stored_source(d), "sort": [timestamp, tiebreak]})
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"pit_id": "pit-1", "took": 2, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"max_score": null, "hits": hits}})
        .to_string(),
    )
}

async fn close_pit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    shared.log.lock().unwrap().pits_closed.push(request);
    json_response(
        StatusCode::OK,
        json!({"pits": [{"successful": true, "pit_id": "pit-1"}]}).to_string(),
    )
}

async fn delete_by_query(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    shared
        .log
        .lock()
        .unwrap()
        .deletions
        .push(query.unwrap_or_default());
    json_response(
        StatusCode::OK,
        json!({"task": "oTUltX4IQMOUUVeiohTt8A:2213"}).to_string(),
    )
}

/// Running for two polls, then done.
async fn task(State(shared): State<Arc<Shared>>, Path(task): Path<String>) -> Response {
    assert_eq!(task, "oTUltX4IQMOUUVeiohTt8A:2213");
    let polls = {
        let mut log = shared.log.lock().unwrap();
        log.task_polls += 1;
        log.task_polls
    };
    let body = if polls < 3 {
        json!({"completed": false, "task": {"node": "oTUltX4IQMOUUVeiohTt8A", "id": 2213,
            "type": "transport", "action": "indices:data/write/delete/byquery",
            "status": {"total": 3, "deleted": 1, "batches": 1}, "cancellable": true}})
    } else {
        json!({"completed": true, "task": {"node": "oTUltX4IQMOUUVeiohTt8A", "id": 2213},
            "response": {"took": 40, "timed_out": false, "total": 3, "deleted": 3, "batches": 1,
                "version_conflicts": 0, "noops": 0, "retries": {"bulk": 0, "search": 0},
                "throttled_millis": 0, "requests_per_second": -1.0, "throttled_until_millis": 0,
                "failures": []}})
    };
    json_response(StatusCode::OK, body.to_string())
}

async fn get_document(
    State(shared): State<Arc<Shared>>,
    Path((index, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let log = shared.log.lock().unwrap();
    let routing = query.unwrap_or_default();
    let found = log.documents.iter().find(|d| {
        d["event_id"] == id.as_str()
            && routing == format!("routing={}", d["case_id"].as_str().unwrap())
    });
    match found {
        Some(document) => json_response(
            StatusCode::OK,
            json!({"_index": index, "_id": id, "_version": 1, "_seq_no": 0, "_primary_term": 1,
                "_routing": document["case_id"], "found": true, "_source": stored_source(document)})
            .to_string(),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"_index": index, "_id": id, "found": false}).to_string(),
        ),
    }
}

struct Server {
    url: String,
    shared: Arc<Shared>,
}

impl Server {
    fn log<T>(&self, read: impl FnOnce(&Log) -> T) -> T {
        read(&self.shared.log.lock().unwrap())
    }
}

async fn serve(script: Box<BulkScript>, existing_mapping: Option<Value>) -> Server {
    let shared = Arc::new(Shared {
        script,
        log: Mutex::new(Log::default()),
        existing_mapping,
    });
    let app = Router::new()
        .route("/{index}", put(create_index))
        .route("/{index}/_mapping", get(mapping))
        .route("/{index}/_settings", put(update_settings))
        .route("/{index}/_refresh", post(refresh))
        .route("/{index}/_bulk", post(bulk))
        .route("/{index}/_search/point_in_time", post(open_pit))
        .route("/_search/point_in_time", axum::routing::delete(close_pit))
        .route("/_search", post(pit_search))
        .route("/{index}/_delete_by_query", post(delete_by_query))
        .route("/_tasks/{task}", get(task))
        .route("/{index}/_doc/{id}", get(get_document))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("http://{address}"),
        shared,
    }
}

fn options(server: &Server) -> OpenSearchOptions {
    let mut options = OpenSearchOptions::new(&server.url);
    options.index = "casescope-wire".into();
    options.max_retries = 3;
    options.initial_backoff = Duration::from_millis(5);
    options.max_backoff = Duration::from_millis(20);
    options.request_timeout = Duration::from_secs(5);
    options
}

fn events(count: u64) -> Vec<Event> {
    (0..count)
        .map(|n| {
            let locator = format!("record:{n}");
            let fields = json!({"EventID": 4624, "TargetUserName": format!("user{n}"), "Padding": "x".repeat(700)});
            Event {
                event_id: casescope_evidence::event_id("case-wire", "file-1", &locator),
                case_id: "case-wire".into(),
                file_id: "file-1".into(),
                source: "evtx",
                timestamp_micros: 1_700_000_000_000_000 + n as i64,
                locator,
                record_id: Some(n),
                line: None,
                event_code: Some(4624),
                channel: Some("Security".into()),
                provider: None,
                computer: Some("WS01".into()),
                level: Some(4),
                fields: fields.as_object().cloned().unwrap_or_default(),
                raw: casescope_evidence::RawJson::from_value(&json!({"Event": {"System": {"EventRecordID": n}}})),
                fields_from_raw: false,
            }
        })
        .collect()
}

fn all_created(ids: &[String]) -> Reply {
    Reply::Items(ids.iter().map(|id| (id.clone(), 201)).collect())
}

#[tokio::test]
async fn throttled_items_are_sent_again_and_only_they() {
    let batch = events(10);
    let throttled: Vec<String> = [2, 5, 7]
        .iter()
        .map(|n: &usize| batch[*n].event_id.clone())
        .collect();
    let first_refusals = throttled.clone();
    let server = serve(
        Box::new(move |number, ids| match number {
            0 => Reply::Items(
                ids.iter()
                    .map(|id| {
                        let status = if first_refusals.contains(id) {
                            429
                        } else {
                            201
                        };
                        (id.clone(), status)
                    })
                    .collect(),
            ),
            _ => all_created(ids),
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let sent: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    let report = store.write(batch).await.unwrap();
    assert_eq!(report.written, 10, "7 the first time + 3 on retry");
    assert!(report.rejected.is_empty(), "{report:?}");
    let bulks = server.log(|log| log.bulks.clone());
    assert_eq!(
        bulks,
        vec![sent, throttled],
        "the retry holds only the 429s"
    );
    assert!(
        server.log(|log| log.bulk_queries[0].contains("filter_path=")),
        "answers are trimmed to what is read"
    );
}

#[tokio::test]
async fn a_refused_document_is_reported_with_its_reason() {
    let batch = events(10);
    let refused = batch[4].event_id.clone();
    let refused_in_script = refused.clone();
    let server = serve(
        Box::new(move |_, ids| {
            Reply::Items(
                ids.iter()
                    .map(|id| {
                        let status = if *id == refused_in_script { 400 } else { 201 };
                        (id.clone(), status)
                    })
                    .collect(),
            )
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let report = store.write(batch).await.unwrap();
    assert_eq!(report.written, 9);
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    let (id, reason) = &report.rejected[0];
    assert_eq!(*id, refused);
    assert!(
        reason.starts_with(
            "mapper_parsing_exception: failed to parse field [fields] of type [flat_object]"
        ),
        "{reason}"
    );
    assert!(reason.contains("immense term"), "{reason}");
    assert_eq!(
        server.log(|log| log.bulks.len()),
        1,
        "a refusal for good is not retried"
    );
}

#[tokio::test]
async fn an_unavailable_cluster_gets_the_whole_request_again() {
    let server = serve(
        Box::new(|number, ids| match number {
            0 => Reply::Whole(
                StatusCode::SERVICE_UNAVAILABLE,
                opensearch_error(
                    503,
                    "cluster_block_exception",
                    "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];",
                ),
            ),
            _ => all_created(ids),
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let report = store.write(events(10)).await.unwrap();
    assert_eq!(report.written, 10);
    assert!(report.rejected.is_empty());
    let bulks = server.log(|log| log.bulks.clone());
    assert_eq!(bulks.len(), 2);
    assert_eq!(bulks[0], bulks[1], "the same request, whole");
}

#[tokio::test]
async fn batches_are_cut_by_bytes() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let mut options = options(&server);
    options.bulk_max_bytes = 8 * 1024;
    let store = OpenSearchStore::open(options).await.unwrap();
    let batch = events(40);
    let sent: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    let report = store.write(batch).await.unwrap();
    assert_eq!(report.written, 40);
    let (bulks, sizes) = server.log(|log| (log.bulks.clone(), log.bulk_bytes.clone()));
    assert!(bulks.len() > 3, "{} requests", bulks.len());
    assert!(sizes.iter().all(|size| *size <= 8 * 1024), "{sizes:?}");
    assert_eq!(bulks.concat(), sent, "every event once, in order");
}

#[tokio::test]
async fn endless_throttling_ends_in_an_error() {
    let server = serve(
        Box::new(|_, ids| {
            Reply::Items(
                ids.iter()
                    .enumerate()
                    .map(|(n, id)| (id.clone(), if n == 0 { 429 } else { 201 }))
                    .collect(),
            )
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let error = store.write(events(3)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("es_rejected_execution_exception")),
        "{error}"
    );
    assert_eq!(
        server.log(|log| log.bulks.len()),
        4,
        "the first request and 3 retries"
    );
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let server = serve(
        Box::new(|_, _| {
            Reply::Whole(
                StatusCode::BAD_REQUEST,
                opensearch_error(
                    400,
                    "illegal_argument_exception",
                    "Malformed action/metadata line [1]",
                ),
            )
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let error = store.write(events(2)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Invalid(m) if m.contains("Malformed action/metadata line")),
        "{error}"
    );
    assert_eq!(server.log(|log| log.bulks.len()), 1);
}

#[tokio::test]
async fn malformed_answers_are_errors_not_panics() {
    let server = serve(
        Box::new(|number, ids| match number {
            0 => Reply::Whole(StatusCode::OK, "<html>proxy page</html>".into()),
            _ => Reply::Items(vec![(ids[0].clone(), 201)]),
        }),
        None,
    )
    .await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let error = store.write(events(2)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Internal(m) if m.contains("not JSON") && m.contains("proxy page")),
        "{error}"
    );
    let error = store.write(events(2)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Internal(m) if m.contains("lists 1 items for 2 sent")),
        "{error}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = serve(
        Box::new(|_, _| Reply::Silence(Duration::from_secs(3))),
        None,
    )
    .await;
    let mut options = options(&server);
    options.request_timeout = Duration::from_millis(200);
    options.max_retries = 1;
    let store = OpenSearchStore::open(options).await.unwrap();
    let started = std::time::Instant::now();
    let error = store.write(events(1)).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(m) if m.contains("no answer in time")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.log(|log| log.bulks.len()), 2);
}

#[tokio::test]
async fn the_index_is_created_with_a_strict_mapping_and_checked_when_it_exists() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let mappings = server.log(|log| log.created.clone()).unwrap();
    assert_eq!(mappings["dynamic"], "strict");
    assert_eq!(mappings["properties"]["fields"]["type"], "flat_object");
    assert_eq!(mappings["properties"]["raw"]["enabled"], false);
    store.flush().await.unwrap();
    assert_eq!(server.log(|log| log.refreshes), 1);

    assert_eq!(server.log(|log| (log.mapping_reads, log.creations)), (1, 1));

    let existing = serve(Box::new(|_, ids| all_created(ids)), Some(mappings.clone())).await;
    OpenSearchStore::open(options(&existing)).await.unwrap();
    assert_eq!(
        existing.log(|log| (log.mapping_reads, log.creations)),
        (1, 0),
        "an existing index is only read"
    );
    assert_eq!(
        existing.log(|log| log.settings_updates.clone()),
        vec![json!({"index": {"max_terms_count": casescope_eventstore::MAX_SET_MEMBERS}})],
        "an existing index gets the terms limit annotation filters need"
    );

    let foreign = serve(
        Box::new(|_, ids| all_created(ids)),
        Some(json!({"properties": {"message": {"type": "text"}}})),
    )
    .await;
    let error = OpenSearchStore::open(options(&foreign)).await.unwrap_err();
    assert!(error.to_string().contains("another layout"), "{error}");
}

#[tokio::test]
async fn wait_for_refresh_is_asked_on_every_bulk_request() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let mut options = options(&server);
    options.refresh = RefreshPolicy::WaitFor;
    let store = OpenSearchStore::open(options).await.unwrap();
    store.write(events(2)).await.unwrap();
    store.flush().await.unwrap();
    assert!(server.log(|log| log.bulk_queries[0].contains("refresh=wait_for")));
    assert_eq!(server.log(|log| log.refreshes), 0);
}

#[tokio::test]
async fn a_file_scan_pages_through_one_point_in_time() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let mut batch = events(25);
    // Out of order on purpose: the scan returns time order.
    batch.reverse();
    let mut expected: Vec<Event> = batch.clone();
    expected.sort_by_key(|e| {
        (
            e.timestamp_micros,
            casescope_eventstore::tiebreak_of(&e.event_id),
        )
    });
    store.write(batch).await.unwrap();

    let mut scan = store.scan_file("case-wire", "file-1", 10, None).unwrap();
    let mut read = Vec::new();
    while let Some(page) = scan.next_page().await.unwrap() {
        read.extend(page);
    }
    assert_eq!(read, expected, "every event, whole and in order");
    let (opened, scans, closed) = server.log(|log| {
        (
            log.pits_opened.clone(),
            log.scans.clone(),
            log.pits_closed.clone(),
        )
    });
    assert_eq!(opened.len(), 1, "one view for the whole file");
    assert!(
        opened[0].contains("routing=case-wire") && opened[0].contains("keep_alive=1m"),
        "{opened:?}"
    );
    assert_eq!(scans.len(), 3, "10 + 10 + 5");
    for scan in &scans {
        assert_eq!(scan["pit"], json!({"id": "pit-1", "keep_alive": "1m"}));
        assert_eq!(scan["size"], 10);
    }
    assert!(scans[0].get("search_after").is_none());
    assert_eq!(
        scans[1]["search_after"][0], expected[9].timestamp_micros,
        "the next page starts after the last hit's sort values"
    );
    assert_eq!(
        closed,
        vec![json!({"pit_id": ["pit-1"]})],
        "closed once, at the end"
    );
}

#[tokio::test]
async fn deleting_a_file_waits_for_its_task() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    store.delete_file("case-wire", "file-1").await.unwrap();
    let (deletions, polls, refreshes) =
        server.log(|log| (log.deletions.clone(), log.task_polls, log.refreshes));
    assert_eq!(
        refreshes, 1,
        "unrefreshed writes are refreshed first, then deleted"
    );
    assert_eq!(deletions.len(), 1);
    for part in [
        "routing=case-wire",
        "conflicts=proceed",
        "refresh=true",
        "wait_for_completion=false",
    ] {
        assert!(deletions[0].contains(part), "{part} in {}", deletions[0]);
    }
    assert_eq!(polls, 3, "polled until the task completed");
}

#[tokio::test]
async fn an_event_is_read_by_id_with_its_case_as_routing() {
    let server = serve(Box::new(|_, ids| all_created(ids)), None).await;
    let store = OpenSearchStore::open(options(&server)).await.unwrap();
    let batch = events(3);
    let wanted = batch[1].clone();
    store.write(batch).await.unwrap();
    assert_eq!(
        store.get("case-wire", &wanted.event_id).await.unwrap(),
        Some(wanted.clone())
    );
    assert_eq!(
        store.get("other-case", &wanted.event_id).await.unwrap(),
        None
    );
    assert_eq!(store.get("case-wire", "..").await.unwrap(), None);
}
