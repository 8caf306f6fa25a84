//! How the tantivy backend keeps an event: the record once (fields derived from it on
//! read) for events whose parser says the fields come from the record; the fields as
//! given for any other; an index written before that change (fields stored beside the
//! record) read and written as it is; an index of a layout it does not know refused
//! with the steps to take.

use casescope_eventstore::{EventQuery, EventStore, TantivyOptions, TantivyStore, parse_query};
use casescope_evidence::{Context, Event, Format, Limits, Outcome, parse_file};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The shared EVTX sample the fixture index holds, if `../shared` is here.
fn shared_evtx() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/data/evtx-attack-samples/Persistence/\
         Network_Service_Guest_added_to_admins_4732.evtx",
    );
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping the EVTX part: {} is absent (the shared EVTX-ATTACK-SAMPLES)",
            path.display()
        );
        None
    }
}

/// The events of one evidence file, as ingest makes them.
fn parse(path: &Path, format: Format, case_id: &str, file_id: &str, sha256: &str) -> Vec<Event> {
    let context = Context {
        case_id: case_id.into(),
        file_id: file_id.into(),
        evidence_sha256: sha256.into(),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits::default(),
    };
    let mut events = Vec::new();
    parse_file(path, format, &context, &mut |outcome| {
        match outcome {
            Outcome::Event(event) => events.push(*event),
            Outcome::Rejected(reject) => panic!("{}: {reject:?}", path.display()),
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    events
}

/// Every event of `case`, in time order.
async fn all_events(store: &dyn EventStore, case: &str) -> Vec<Event> {
    let mut request = EventQuery::new(case, parse_query("").unwrap());
    request.page_size = 1000;
    let page = store.search(&request).await.unwrap();
    assert!(page.next.is_none());
    page.events
}

async fn count(store: &dyn EventStore, case: &str, query: &str) -> u64 {
    store
        .count(&EventQuery::new(case, parse_query(query).unwrap()))
        .await
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "store"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

fn options() -> TantivyOptions {
    TantivyOptions {
        writer_memory_bytes: 64 * 1024 * 1024,
        writer_threads: 1,
        ..TantivyOptions::default()
    }
}

/// The fixture index: written on 2026-12-07 by `casescope serve` (commit 0f60f8c) from
/// `records.jsonl`, `rows.csv` and the shared `Network_Service_Guest_added_to_admins_4732.evtx`,
/// uploaded to one case.
const OLD_CASE: &str = "01a25348-a7ab-72b9-8652-7715565261cb";
/// Each file's id in that case, and its SHA-256 (which its event ids are made from).
const OLD_FILES: [(&str, Format, &str, &str); 3] = [
    (
        "records.jsonl",
        Format::Jsonl,
        "01a25348-a7d8-732f-9913-52725586a9be",
        "f678299a8460fbe946983566955c9fbe8611856c14e0ef5bdcf294037aaea656",
    ),
    (
        "rows.csv",
        Format::Csv,
        "01a25348-a7ed-7652-9fe3-af9aa168d292",
        "2c80a9ab03661613679914ab8ba5bc701e10b38576feef3ab09de9a53ec8d266",
    ),
    (
        "guest_4732.evtx",
        Format::Evtx,
        "01a25348-a7d6-7547-b7d0-21c0a344c65a",
        "9619b9d9d7bb8a277080167ff639fd9162e3d88d61d674cf1606beadce17ea5a",
    ),
];

#[tokio::test]
async fn an_index_written_before_the_record_was_kept_once_is_read_and_written_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("index-2026-12-07"), dir.path());
    let store = TantivyStore::open(dir.path(), &options()).unwrap();
    let stored = all_events(&store, OLD_CASE).await;
    assert_eq!(
        stored.len(),
        8,
        "4 JSON records, 2 CSV rows, 2 EVTX records"
    );

    // Each event is what parsing its file today makes, every part of it.
    let mut compared = 0;
    for (name, format, file_id, sha256) in OLD_FILES {
        let path = match format {
            Format::Evtx => match shared_evtx() {
                Some(path) => path,
                None => continue,
            },
            _ => fixtures().join(name),
        };
        for event in parse(&path, format, OLD_CASE, file_id, sha256) {
            let found = stored
                .iter()
                .find(|s| s.event_id == event.event_id)
                .unwrap_or_else(|| panic!("{name} {}: not in the index", event.locator));
            assert_eq!(found, &event, "{name} {}", event.locator);
            compared += 1;
        }
    }
    assert!(compared >= 6, "{compared} events compared");

    // Its terms answer as before.
    assert_eq!(count(&store, OLD_CASE, "TargetUserName:adm-bob").await, 1);
    assert_eq!(count(&store, OLD_CASE, "\"net user\"").await, 1);
    assert_eq!(count(&store, OLD_CASE, "EventID:4732").await, 2);
    assert_eq!(count(&store, OLD_CASE, "Message:powershell").await, 1);

    // New events go into it in its own layout and come back whole, after a reopen too.
    let case = "case-written-later";
    let events = parse(
        &fixtures().join("records.jsonl"),
        Format::Jsonl,
        case,
        "file-later",
        &"cd".repeat(32),
    );
    store.write(events.clone()).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    let store = TantivyStore::open(dir.path(), &options()).unwrap();
    assert_eq!(all_events(&store, case).await, events);
    assert_eq!(all_events(&store, OLD_CASE).await.len(), 8);
}

#[tokio::test]
async fn a_parsed_event_keeps_its_record_once_and_any_other_its_fields_as_given() {
    let case = "case-layout";
    let mut events = parse(
        &fixtures().join("records.jsonl"),
        Format::Jsonl,
        case,
        "file-json",
        &"ab".repeat(32),
    );
    events.extend(parse(
        &fixtures().join("rows.csv"),
        Format::Csv,
        case,
        "file-csv",
        &"ef".repeat(32),
    ));
    if let Some(path) = shared_evtx() {
        events.extend(parse(
            &path,
            Format::Evtx,
            case,
            "file-evtx",
            &"12".repeat(32),
        ));
    }
    assert!(events.iter().all(|e| e.fields_from_raw));
    // The same events, as if built by hand: their fields are kept as given.
    let as_given: Vec<Event> = events
        .iter()
        .cloned()
        .map(|mut e| {
            e.fields_from_raw = false;
            e
        })
        .collect();

    let mut bytes = Vec::new();
    for batch in [events.clone(), as_given] {
        let dir = tempfile::tempdir().unwrap();
        let store = TantivyStore::open(dir.path(), &options()).unwrap();
        store.write(batch).await.unwrap();
        store.flush().await.unwrap();
        let mut read = all_events(&store, case).await;
        read.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        let mut expected = events.clone();
        expected.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        assert_eq!(read, expected, "every part of every event survives storage");
        // Fields and header values answer queries either way.
        assert_eq!(count(&store, case, "TargetUserName:adm-bob").await, 1);
        assert_eq!(count(&store, case, "process.pid:4120").await, 1);
        assert_eq!(
            count(&store, case, "Message:\"powershell.exe -enc\"").await,
            1
        );
        // A page without raw records still has every field.
        let mut lean = EventQuery::new(case, parse_query("user:alice").unwrap());
        lean.skip_raw = true;
        let page = store.search(&lean).await.unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].raw.get(), "null");
        assert_eq!(
            page.events[0].fields["process.command_line"],
            "cmd.exe /c whoami"
        );
        bytes.push(store_bytes(dir.path()));
    }
    assert!(
        bytes[0] < bytes[1],
        "the record kept once takes less room than record and fields: {bytes:?}"
    );
}

#[test]
fn an_index_of_an_unknown_layout_is_refused_with_the_steps_to_take() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut schema = tantivy::schema::Schema::builder();
        schema.add_text_field("fields", tantivy::schema::STORED);
        schema.add_text_field("stored_fields", tantivy::schema::STORED);
        let directory = tantivy::directory::MmapDirectory::open(dir.path()).unwrap();
        tantivy::Index::create(directory, schema.build(), Default::default()).unwrap();
    }
    let error = TantivyStore::open(dir.path(), &options())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("written by another CaseScope version")
            && error.contains("move the index directory")
            && error.contains("upload the case's files again"),
        "{error}"
    );
}
