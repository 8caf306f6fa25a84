//! The conformance suite on the tantivy backend (on disk, like embedded mode).

mod conformance;

use casescope_eventstore::{TantivyOptions, TantivyStore};

fn store() -> (TantivyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = TantivyOptions {
        writer_memory_bytes: 64 * 1024 * 1024,
        writer_threads: 1,
        ..TantivyOptions::default()
    };
    (TantivyStore::open(dir.path(), &options).unwrap(), dir)
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(#[tokio::test]
        async fn $name() {
            let (store, _dir) = store();
            conformance::$name(&store).await;
        })*
    };
}

suite!(
    round_trip_and_counts,
    the_query_language,
    annotation_sets,
    facets,
    filters_and_time_range,
    paging_visits_every_event_once_in_order,
    paging_over_uneven_time,
    paging_is_exact_while_other_files_are_written,
    deleting_a_file_touches_nothing_else,
    deleting_a_case_touches_nothing_else,
    histograms,
    invalid_requests_are_refused,
);

#[tokio::test]
async fn reopening_the_index_keeps_committed_events() {
    let dir = tempfile::tempdir().unwrap();
    let case = conformance::unique_case();
    {
        let store = TantivyStore::open(dir.path(), &TantivyOptions::default()).unwrap();
        use casescope_eventstore::EventStore;
        store.write(conformance::sample(&case)).await.unwrap();
        store.flush().await.unwrap();
    }
    let store = TantivyStore::open(dir.path(), &TantivyOptions::default()).unwrap();
    use casescope_eventstore::EventStore;
    assert_eq!(store.count_file(&case, "file-b").await.unwrap(), 3);
}

#[tokio::test]
async fn a_fieldless_wildcard_walk_is_bounded() {
    use casescope_eventstore::{EventQuery, EventStore, StoreError, parse_query};
    let options = TantivyOptions {
        fieldless_wildcard_steps: 200,
        ..TantivyOptions::default()
    };
    let store = TantivyStore::in_memory(&options).unwrap();
    let case = conformance::unique_case();
    store.write(conformance::sample(&case)).await.unwrap();
    store.flush().await.unwrap();
    let search = |text: &str| {
        let mut query = EventQuery::new(&case, parse_query(text).unwrap());
        query.page_size = 100;
        let store = store.clone();
        async move { store.search(&query).await }
    };
    match search("*certutil*").await {
        Err(StoreError::Invalid(why)) => {
            assert!(why.contains("name the field"), "{why}");
            assert!(why.contains("*certutil*"), "{why}");
        }
        other => panic!("a walk past its bound must be refused: {other:?}"),
    }
    // Named fields walk their own path only; `*` walks nothing.
    assert_eq!(search("Image:*certutil*").await.unwrap().total, 1);
    assert_eq!(search("*").await.unwrap().total, 6);
}

#[tokio::test]
async fn stored_fields_of_every_json_type_read_back_the_same() {
    use casescope_eventstore::EventStore;
    let (store, _dir) = store();
    let case = conformance::unique_case();
    let fields = serde_json::json!({
        "list": [1, "a", null, true, 1.5, [2, {"deep": "x"}]],
        "object": {"x": {"y": "z"}},
        "negative": -5,
        "big": u64::MAX,
        "float": 0.25,
        "flag": false,
        "nothing": null,
        "text": "C:\\Windows\\cmd.exe",
    });
    let event = conformance::event(&case, "file-t", 1, fields.clone());
    store.write(vec![event.clone()]).await.unwrap();
    store.flush().await.unwrap();
    let read = store.get(&case, &event.event_id).await.unwrap().unwrap();
    assert_eq!(serde_json::Value::Object(read.fields.clone()), fields);
    assert_eq!(read, event);
}
