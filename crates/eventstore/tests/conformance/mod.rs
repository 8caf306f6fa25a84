//! The conformance suite every EventStore backend must pass (tantivy always; OpenSearch
//! on the node the testkit starts, or the cluster CASESCOPE_TEST_OPENSEARCH_URL names). Each test uses its own case id, so
//! backends may share an index between tests.

use casescope_eventstore::{
    Cursor, Event, EventQuery, EventStore, SortOrder, StoreError, parse_query,
};
use serde_json::json;

pub fn unique_case() -> String {
    format!(
        "case-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

const BASE: i64 = 1_700_000_000_000_000;

pub fn event(case_id: &str, file_id: &str, n: u64, fields: serde_json::Value) -> Event {
    let locator = format!("record:{n}");
    let fields = fields.as_object().cloned().unwrap_or_default();
    Event {
        event_id: casescope_evidence_event_id(case_id, file_id, &locator),
        case_id: case_id.to_string(),
        file_id: file_id.to_string(),
        source: "evtx",
        timestamp_micros: BASE + (n as i64) * 1_000_000,
        locator,
        record_id: Some(n),
        line: None,
        event_code: fields
            .get("EventID")
            .and_then(|v| v.as_u64())
            .map(|v| v as u32),
        channel: fields
            .get("Channel")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        provider: None,
        computer: fields
            .get("Computer")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        level: Some(4),
        raw: casescope_evidence::RawJson::from_value(
            &json!({"Event": {"System": {"EventRecordID": n}}, "original": fields.clone()}),
        ),
        fields,
        // Made up beside its record: kept as given.
        fields_from_raw: false,
    }
}

fn casescope_evidence_event_id(case_id: &str, file_id: &str, locator: &str) -> String {
    casescope_evidence::event_id(case_id, file_id, locator)
}

/// A small, realistic case: logons, process creations, a network connection, in two files.
pub fn sample(case_id: &str) -> Vec<Event> {
    vec![
        event(
            case_id,
            "file-a",
            1,
            json!({"EventID": 4624, "Channel": "Security", "Computer": "WS01", "TargetUserName": "Administrator", "LogonType": 3, "IpAddress": "10.0.0.5"}),
        ),
        event(
            case_id,
            "file-a",
            2,
            json!({"EventID": 4625, "Channel": "Security", "Computer": "WS01", "TargetUserName": "admin", "LogonType": 10, "IpAddress": "203.0.113.9"}),
        ),
        event(
            case_id,
            "file-a",
            3,
            json!({"EventID": 4624, "Channel": "Security", "Computer": "DC01", "TargetUserName": "svc_backup", "LogonType": 5, "TargetUserSid": "S-1-5-21-1004336348-1177238915-682003330-512"}),
        ),
        event(
            case_id,
            "file-b",
            4,
            json!({"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "WS01", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell.exe -nop -w hidden -enc SQBFAFgA", "User": "ACME\\José"}),
        ),
        event(
            case_id,
            "file-b",
            5,
            json!({"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "WS02", "Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd.exe /c whoami /all", "ParentImage": "C:\\Windows\\explorer.exe", "ProcessGuid": "{6F1A2B3C-9B67-65EE-F555-00000000101A}"}),
        ),
        event(
            case_id,
            "file-b",
            6,
            json!({"EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "WS02", "Image": "C:\\Windows\\System32\\certutil.exe", "DestinationIp": "198.51.100.7", "DestinationPort": 443, "user.name": "bob"}),
        ),
    ]
}

async fn load(store: &dyn EventStore, events: Vec<Event>) {
    let count = events.len() as u64;
    let report = store.write(events).await.unwrap();
    assert_eq!(report.written, count, "{report:?}");
    store.flush().await.unwrap();
}

async fn ids(store: &dyn EventStore, case_id: &str, query: &str) -> Vec<u64> {
    let mut request = EventQuery::new(case_id, parse_query(query).unwrap());
    request.page_size = 1000;
    let page = store
        .search(&request)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(page.total as usize, page.events.len(), "{query}");
    page.events.iter().map(|e| e.record_id.unwrap()).collect()
}

pub async fn round_trip_and_counts(store: &dyn EventStore) {
    let case = unique_case();
    let events = sample(&case);
    let original = events[3].clone();
    load(store, events).await;
    assert_eq!(store.count_file(&case, "file-a").await.unwrap(), 3);
    assert_eq!(store.count_file(&case, "file-b").await.unwrap(), 3);
    let fetched = store
        .get(&case, &original.event_id)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(
        fetched, original,
        "every part of the event survives storage"
    );
    assert!(
        store
            .get(&case, "0".repeat(32).as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get("other-case", &original.event_id)
            .await
            .unwrap()
            .is_none(),
        "ids are per case"
    );
    // A page that shows no raw record can leave it out; everything else is the same.
    let mut request = EventQuery::new(&case, parse_query("").unwrap());
    request.page_size = 10;
    let full = store.search(&request).await.unwrap();
    request.skip_raw = true;
    let lean = store.search(&request).await.unwrap();
    assert_eq!(lean.events.len(), 6);
    assert_eq!(lean.total, full.total);
    for (lean, full) in lean.events.iter().zip(&full.events) {
        assert_eq!(lean.raw.get(), "null", "raw left out");
        assert_ne!(full.raw.get(), "null");
        let mut without_raw = full.clone();
        without_raw.raw = lean.raw.clone();
        assert_eq!(lean, &without_raw);
    }
}

pub async fn the_query_language(store: &dyn EventStore) {
    let case = unique_case();
    load(store, sample(&case)).await;
    let other = unique_case() + "-other";
    load(store, sample(&other)).await;
    let mut failures = Vec::new();
    for (query, expected) in [
        ("", vec![1, 2, 3, 4, 5, 6]),
        // `*` alone is everything, like the empty query.
        ("*", vec![1, 2, 3, 4, 5, 6]),
        ("* AND EventID:1", vec![4, 5]),
        ("EventID:4624 AND TargetUserName:admin*", vec![1]),
        ("TargetUserName:admin*", vec![1, 2]),
        ("TargetUserName:ADMIN", vec![2]),
        ("whoami", vec![5]),
        ("CommandLine:whoami", vec![5]),
        ("CommandLine:\"whoami /all\"", vec![5]),
        ("CommandLine:\"all whoami\"", vec![]),
        (r"Image:*\\powershell.exe", vec![4]),
        ("Image:*cmd.exe OR Image:*certutil*", vec![5, 6]),
        ("EventID:1 -Computer:WS01", vec![5]),
        ("EventID:1 NOT Computer:WS01", vec![5]),
        ("NOT EventID:1", vec![1, 2, 3, 6]),
        ("EventID:[4624 TO 4625]", vec![1, 2, 3]),
        ("LogonType:{3 TO *]", vec![2, 3]),
        ("DestinationPort:443", vec![6]),
        ("ParentImage:*", vec![5]),
        ("IpAddress:10.0.0.5", vec![1]),
        ("User:*josé", vec![4]),
        ("user.name:bob", vec![6]),
        ("Channel:(Security) AND LogonType:(3 OR 10)", vec![1, 2]),
        ("sekurlsa", vec![]),
        // Field-less: a phrase, a wildcard over whole values, a number, a dotted name's value.
        ("\"whoami /all\"", vec![5]),
        ("\"all whoami\"", vec![]),
        ("*certutil.exe", vec![6]),
        ("4624", vec![1, 3]),
        ("bob", vec![6]),
        ("josé", vec![4]),
        ("event_id:0000", vec![]),
        // Structured values (times, GUIDs, addresses) are indexed whole, not by pieces.
        ("IpAddress:203.0.113.9", vec![2]),
        ("IpAddress:203.0.*", vec![2]),
        ("\"198.51.100.7\"", vec![6]),
        ("IpAddress:113", vec![]),
        (
            r#"ProcessGuid:"{6f1a2b3c-9b67-65ee-f555-00000000101a}""#,
            vec![5],
        ),
        ("ProcessGuid:*65ee*", vec![5]),
        ("ProcessGuid:65ee", vec![]),
        (
            "TargetUserSid:S-1-5-21-1004336348-1177238915-682003330-512",
            vec![3],
        ),
        ("TargetUserSid:s-1-5-21-*", vec![3]),
        ("TargetUserSid:512", vec![]),
        (
            r#"timestamp:["2023-11-14T22:13:22Z" TO "2023-11-14T22:13:24Z"]"#,
            vec![2, 3, 4],
        ),
    ] {
        let found = ids(store, &case, query).await;
        if found != expected {
            failures.push(format!("{query:?}: found {found:?}, expected {expected:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "queries that answered wrongly:\n{}",
        failures.join("\n")
    );
}

/// Annotation clauses (`tag:x`, `starred:true`, `commented:true`) name sets of events the
/// caller gives with the query; they combine with every other clause.
pub async fn annotation_sets(store: &dyn EventStore) {
    use casescope_eventstore::{EventSet, tiebreak_of};
    use std::sync::Arc;
    let case = unique_case();
    let events = sample(&case);
    let other = unique_case() + "-other";
    let other_events = sample(&other);
    let tiebreak = |n: u64| tiebreak_of(&events[n as usize - 1].event_id);
    load(store, events.clone()).await;
    load(store, other_events.clone()).await;
    let set = |members: Vec<u64>| Arc::new(EventSet::new(members));
    let with_sets = |query: &str| {
        let mut request = EventQuery::new(&case, parse_query(query).unwrap());
        request.page_size = 1000;
        // The other case's event 1 is in the set too: sets never reach across cases.
        request.sets.insert(
            "tag:lateral-movement".into(),
            set(vec![
                tiebreak(1),
                tiebreak(5),
                tiebreak_of(&other_events[0].event_id),
            ]),
        );
        request
            .sets
            .insert("tag~lat*".into(), set(vec![tiebreak(1), tiebreak(5)]));
        request
            .sets
            .insert("starred".into(), set(vec![tiebreak(2)]));
        request.sets.insert("commented".into(), set(Vec::new()));
        request
    };
    let mut failures = Vec::new();
    for (query, expected) in [
        ("tag:lateral-movement", vec![1, 5]),
        ("tag:Lateral-Movement AND EventID:1", vec![5]),
        ("tag:lat*", vec![1, 5]),
        ("-tag:lateral-movement", vec![2, 3, 4, 6]),
        ("EventID:4624 -tag:lateral-movement", vec![3]),
        ("starred:true OR tag:lateral-movement", vec![1, 2, 5]),
        ("starred:false", vec![1, 3, 4, 5, 6]),
        ("commented:true", vec![]),
        (
            "(whoami OR TargetUserName:admin*) AND NOT starred:true",
            vec![1, 5],
        ),
    ] {
        let request = with_sets(query);
        let page = store
            .search(&request)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let found: Vec<u64> = page.events.iter().map(|e| e.record_id.unwrap()).collect();
        if found != expected || page.total as usize != expected.len() {
            failures.push(format!("{query:?}: found {found:?}, expected {expected:?}"));
        }
        let count = store.count(&request).await.unwrap();
        if count as usize != expected.len() {
            failures.push(format!("{query:?}: counted {count}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let mut required = with_sets("EventID:4625 OR EventID:1");
    required.required_sets = vec!["tag:lateral-movement".into()];
    let page = store.search(&required).await.unwrap();
    let found: Vec<u64> = page.events.iter().map(|e| e.record_id.unwrap()).collect();
    assert_eq!(found, vec![5], "required sets filter like any clause");

    let missing = with_sets("tag:unknown");
    match store.search(&missing).await {
        Err(StoreError::Invalid(why)) => assert!(why.contains("timeline"), "{why}"),
        other => panic!("a clause without its set must be refused: {other:?}"),
    }
}

/// Facets: the top whole values of a field over a selection, exact, on every backend.
pub async fn facets(store: &dyn EventStore) {
    use casescope_eventstore::{EventSet, FacetValue, tiebreak_of};
    use std::sync::Arc;
    let case = unique_case();
    let events = sample(&case);
    load(store, events.clone()).await;
    load(store, sample(&(unique_case() + "-other"))).await;
    let facet = |query: &str, field: &str, top: usize| {
        let request = EventQuery::new(&case, parse_query(query).unwrap());
        let field = field.to_string();
        async move { store.facet(&request, &field, top).await.unwrap() }
    };
    let pairs = |facet: &casescope_eventstore::Facet| -> Vec<(String, u64)> {
        facet
            .values
            .iter()
            .map(|FacetValue { value, count }| (value.clone(), *count))
            .collect()
    };
    let computers = facet("", "Computer", 10).await;
    assert_eq!(
        pairs(&computers),
        vec![("ws01".into(), 3), ("ws02".into(), 2), ("dc01".into(), 1)]
    );
    assert_eq!((computers.other, computers.selected), (0, 6));
    let codes = facet("", "EventID", 2).await;
    assert_eq!(pairs(&codes), vec![("1".into(), 2), ("4624".into(), 2)]);
    assert_eq!(codes.other, 2, "4625 and 3 are outside the top 2");
    // Whole values only: the words of a value are not values of the field.
    let users = facet("", "User", 10).await;
    assert_eq!(pairs(&users), vec![("acme\\josé".into(), 1)]);
    let lines = facet("EventID:1", "CommandLine", 10).await;
    assert_eq!(
        pairs(&lines),
        vec![
            ("cmd.exe /c whoami /all".into(), 1),
            ("powershell.exe -nop -w hidden -enc sqbfafga".into(), 1)
        ]
    );
    assert_eq!(lines.selected, 2);
    let files = facet("", "file_id", 10).await;
    assert_eq!(
        pairs(&files),
        vec![("file-a".into(), 3), ("file-b".into(), 3)]
    );
    // Annotation sets narrow a facet like any clause.
    let mut tagged = EventQuery::new(&case, parse_query("tag:x").unwrap());
    tagged.sets.insert(
        "tag:x".into(),
        Arc::new(EventSet::new(vec![
            tiebreak_of(&events[0].event_id),
            tiebreak_of(&events[4].event_id),
        ])),
    );
    let narrowed = store.facet(&tagged, "Computer", 10).await.unwrap();
    assert_eq!(
        pairs(&narrowed),
        vec![("ws01".into(), 1), ("ws02".into(), 1)]
    );
    for (field, top) in [
        ("Computer", 0),
        ("Computer", 101),
        ("event_id", 10),
        ("", 10),
    ] {
        let request = EventQuery::new(&case, parse_query("").unwrap());
        assert!(
            matches!(
                store.facet(&request, field, top).await,
                Err(StoreError::Invalid(_))
            ),
            "{field} top {top}"
        );
    }
}

pub async fn filters_and_time_range(store: &dyn EventStore) {
    let case = unique_case();
    load(store, sample(&case)).await;
    let mut request = EventQuery::new(&case, parse_query("").unwrap());
    request.channels = vec!["security".into()];
    request.computers = vec!["ws01".into()];
    assert_eq!(store.count(&request).await.unwrap(), 2);
    request.event_codes = vec![4625];
    assert_eq!(store.count(&request).await.unwrap(), 1);
    let mut request = EventQuery::new(&case, parse_query("").unwrap());
    request.file_ids = vec!["file-b".into()];
    request.start_micros = Some(BASE + 5_000_000);
    request.end_micros = Some(BASE + 6_000_000);
    let page = store.search(&request).await.unwrap();
    assert_eq!(
        page.events
            .iter()
            .map(|e| e.record_id.unwrap())
            .collect::<Vec<_>>(),
        [5]
    );
}

pub async fn paging_visits_every_event_once_in_order(store: &dyn EventStore) {
    let case = unique_case();
    // 250 events, many sharing a timestamp, so the tie-breaker matters.
    let events: Vec<Event> = (0..250)
        .map(|n| {
            let mut e = event(&case, "file-p", n, json!({"EventID": 4688, "n": n}));
            e.timestamp_micros = BASE + (n as i64 / 7) * 1000;
            e
        })
        .collect();
    load(store, events).await;
    for sort in [SortOrder::Ascending, SortOrder::Descending] {
        let mut request = EventQuery::new(&case, parse_query("EventID:4688").unwrap());
        request.page_size = 40;
        request.sort = sort;
        let mut seen: Vec<(i64, u64)> = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.search(&request).await.unwrap();
            assert_eq!(page.total, 250);
            pages += 1;
            seen.extend(page.events.iter().map(|e| {
                (
                    e.timestamp_micros,
                    casescope_eventstore::tiebreak_of(&e.event_id),
                )
            }));
            match page.next {
                Some(cursor) => request.after = Some(Cursor::decode(&cursor.encode()).unwrap()),
                None => break,
            }
        }
        assert_eq!(pages, 7, "{sort:?}");
        assert_eq!(seen.len(), 250, "{sort:?}: each event exactly once");
        let mut sorted = seen.clone();
        sorted.sort();
        if sort == SortOrder::Descending {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "{sort:?}: in order");
        sorted.dedup();
        assert_eq!(sorted.len(), 250);
    }
}

/// Pages of a selection whose events are unevenly spread in time (a burst, a sparse
/// tail, another case's events in between) and rare, with and without a time range:
/// every event once, in order, whatever the page size and direction.
pub async fn paging_over_uneven_time(store: &dyn EventStore) {
    let case = unique_case();
    let other = unique_case();
    let mut events = Vec::new();
    let mut expected: Vec<(i64, u64, bool)> = Vec::new();
    for n in 0..900u64 {
        let code = if n % 13 == 0 { 4625 } else { 4624 };
        let mut e = event(&case, "file-u", n, json!({"EventID": code, "n": n}));
        e.timestamp_micros = if n < 600 {
            // A burst: 600 events within a few milliseconds, some sharing a time.
            BASE + (n as i64 / 3)
        } else {
            // A sparse tail over a year.
            BASE + (n as i64 - 599) * 100_000_000_000
        };
        expected.push((
            e.timestamp_micros,
            casescope_eventstore::tiebreak_of(&e.event_id),
            code == 4625,
        ));
        events.push(e);
    }
    // Another case, dense where this one is sparse.
    for n in 0..2_000u64 {
        let mut e = event(&other, "file-o", n, json!({"EventID": 4625}));
        e.timestamp_micros = BASE + 1_000_000_000 + n as i64 * 1_000;
        events.push(e);
    }
    load(store, events).await;
    let window = (BASE + 100, BASE + 150 * 100_000_000_000);
    for (text, range) in [
        ("", None),
        ("EventID:4625", None),
        ("", Some(window)),
        ("EventID:4625", Some(window)),
    ] {
        let mut want: Vec<(i64, u64)> = expected
            .iter()
            .filter(|(ts, _, rare)| {
                (text.is_empty() || *rare)
                    && range.is_none_or(|(start, end)| *ts >= start && *ts < end)
            })
            .map(|(ts, tb, _)| (*ts, *tb))
            .collect();
        want.sort();
        for sort in [SortOrder::Ascending, SortOrder::Descending] {
            // Streams skip the count (a backend may then page differently).
            for (page_size, skip_total) in [(1usize, false), (9, false), (100, false), (9, true)] {
                if page_size == 1 && want.len() > 100 {
                    continue;
                }
                let mut request = EventQuery::new(&case, parse_query(text).unwrap());
                request.page_size = page_size;
                request.sort = sort;
                request.skip_total = skip_total;
                if let Some((start, end)) = range {
                    request.start_micros = Some(start);
                    request.end_micros = Some(end);
                }
                let mut seen: Vec<(i64, u64)> = Vec::new();
                loop {
                    let page = store.search(&request).await.unwrap();
                    if !skip_total {
                        assert_eq!(page.total as usize, want.len(), "{text:?} {range:?}");
                    }
                    seen.extend(page.events.iter().map(|e| {
                        (
                            e.timestamp_micros,
                            casescope_eventstore::tiebreak_of(&e.event_id),
                        )
                    }));
                    match page.next {
                        Some(cursor) => request.after = Some(cursor),
                        None => break,
                    }
                }
                let mut wanted = want.clone();
                if sort == SortOrder::Descending {
                    wanted.reverse();
                }
                assert_eq!(
                    seen, wanted,
                    "{text:?} {range:?} {sort:?} pages of {page_size}, skip_total {skip_total}"
                );
            }
        }
    }
}

pub async fn deleting_a_file_touches_nothing_else(store: &dyn EventStore) {
    let case = unique_case();
    load(store, sample(&case)).await;
    let other = unique_case() + "-keep";
    load(store, sample(&other)).await;
    store.delete_file(&case, "file-a").await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.count_file(&case, "file-a").await.unwrap(), 0);
    assert_eq!(store.count_file(&case, "file-b").await.unwrap(), 3);
    assert_eq!(
        store.count_file(&other, "file-a").await.unwrap(),
        3,
        "same file id, other case: untouched"
    );
    // Re-adding the same events (a retry) restores exactly them.
    let again: Vec<Event> = sample(&case)
        .into_iter()
        .filter(|e| e.file_id == "file-a")
        .collect();
    load(store, again).await;
    assert_eq!(store.count_file(&case, "file-a").await.unwrap(), 3);
}

pub async fn deleting_a_case_touches_nothing_else(store: &dyn EventStore) {
    let case = unique_case();
    load(store, sample(&case)).await;
    let other = unique_case() + "-keep";
    load(store, sample(&other)).await;
    store.delete_case(&case).await.unwrap();
    store.flush().await.unwrap();
    let everything = |case: &str| EventQuery::new(case, parse_query("").unwrap());
    assert_eq!(store.count(&everything(&case)).await.unwrap(), 0);
    assert_eq!(store.count_file(&case, "file-a").await.unwrap(), 0);
    assert_eq!(store.count_file(&case, "file-b").await.unwrap(), 0);
    assert_eq!(
        store.count(&everything(&other)).await.unwrap(),
        6,
        "the other case: untouched"
    );
    // Deleting again (a redelivered deletion) is a no-op.
    store.delete_case(&case).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.count(&everything(&other)).await.unwrap(), 6);
}

/// Pages through one file while other files are written and committed (new segments,
/// merges, reader reloads): every page holds exactly the file's next events, in order.
pub async fn paging_is_exact_while_other_files_are_written(store: &dyn EventStore) {
    let case = unique_case();
    let steady: Vec<Event> = (0..5000)
        .map(|n| {
            let mut event = event(
                &case,
                "steady",
                n,
                serde_json::json!({"EventID": 4624, "n": n}),
            );
            // Many events share a time: the order falls back on the tie-breaker.
            event.timestamp_micros = BASE + (n as i64 / 7) * 1000;
            event
        })
        .collect();
    let mut expected: Vec<(i64, u64, String)> = steady
        .iter()
        .map(|e| {
            (
                e.timestamp_micros,
                casescope_eventstore::tiebreak_of(&e.event_id),
                e.event_id.clone(),
            )
        })
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();
    load(store, steady).await;

    let other = unique_case() + "-busy";
    let writer = async {
        for round in 0..60u64 {
            let batch: Vec<Event> = (0..300)
                .map(|n| {
                    event(
                        &other,
                        &format!("busy-{round}"),
                        n,
                        serde_json::json!({"EventID": 4688, "round": round}),
                    )
                })
                .collect();
            store.write(batch).await.unwrap();
            store.flush().await.unwrap();
        }
    };
    let reader = async {
        for _ in 0..20 {
            let mut request = EventQuery::new(&case, parse_query("").unwrap());
            request.file_ids = vec!["steady".into()];
            request.sort = SortOrder::Ascending;
            request.page_size = casescope_eventstore::MAX_PAGE_SIZE;
            let mut seen = Vec::with_capacity(expected.len());
            loop {
                let page = store.search(&request).await.unwrap();
                for event in &page.events {
                    assert_eq!(
                        event.file_id, "steady",
                        "an event of another file in the page"
                    );
                    seen.push(event.event_id.clone());
                }
                match page.next {
                    Some(next) => request.after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "every event once, in order");
        }
    };
    tokio::join!(writer, reader);
}

pub async fn histograms(store: &dyn EventStore) {
    let case = unique_case();
    load(store, sample(&case)).await;
    let request = EventQuery::new(&case, parse_query("").unwrap());
    let buckets = store.histogram(&request, 2_000_000).await.unwrap();
    let counts: Vec<u64> = buckets.iter().map(|b| b.count).collect();
    assert_eq!(counts.iter().sum::<u64>(), 6);
    assert_eq!(buckets[0].start_micros % 2_000_000, 0);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[1].start_micros - w[0].start_micros == 2_000_000)
    );
    assert!(
        matches!(
            store.histogram(&request, 1).await,
            Err(StoreError::Invalid(_))
        ),
        "too many buckets"
    );
    let empty = EventQuery::new(unique_case(), parse_query("").unwrap());
    assert!(store.histogram(&empty, 1_000_000).await.unwrap().is_empty());

    // Exact counts per bucket, for a case written together with another case's events
    // far away in time (one segment spanning far more buckets than the grid holds).
    let case = unique_case();
    let other = unique_case();
    let mut events = Vec::new();
    let mut times = Vec::new();
    for n in 0..500u64 {
        let mut e = event(&case, "file-h", n, json!({"EventID": 4624 + n % 3}));
        e.timestamp_micros = BASE + (n as i64 * 7_919) % 3_600_000_000;
        if n % 3 == 0 {
            times.push(e.timestamp_micros);
        }
        events.push(e);
        let mut far = event(&other, "file-f", n, json!({"EventID": 4624}));
        far.timestamp_micros = BASE + 1_000_000_000_000 + n as i64;
        events.push(far);
    }
    load(store, events).await;
    let interval = 60_000_000;
    let request = EventQuery::new(&case, parse_query("EventID:4624").unwrap());
    let buckets = store.histogram(&request, interval).await.unwrap();
    let first = times.iter().min().unwrap().div_euclid(interval);
    let last = times.iter().max().unwrap().div_euclid(interval);
    assert_eq!(buckets.len() as i64, last - first + 1);
    for bucket in &buckets {
        let want = times
            .iter()
            .filter(|t| t.div_euclid(interval) * interval == bucket.start_micros)
            .count() as u64;
        assert_eq!(bucket.count, want, "bucket at {}", bucket.start_micros);
    }
    assert_eq!(
        buckets.iter().map(|b| b.count).sum::<u64>(),
        times.len() as u64
    );
}

pub async fn invalid_requests_are_refused(store: &dyn EventStore) {
    let mut request = EventQuery::new(unique_case(), parse_query("").unwrap());
    request.page_size = 0;
    assert!(matches!(
        store.search(&request).await,
        Err(StoreError::Invalid(_))
    ));
    request.page_size = casescope_eventstore::MAX_STREAM_BATCH + 1;
    assert!(matches!(
        store.search(&request).await,
        Err(StoreError::Invalid(_))
    ));
    request.page_size = 10;
    request.start_micros = Some(10);
    request.end_micros = Some(5);
    assert!(matches!(
        store.search(&request).await,
        Err(StoreError::Invalid(_))
    ));
}
