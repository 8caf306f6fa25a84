//! The case timeline end to end, through the CLI, on both event-store backends
//! (all-in-one: tantivy and SQLite; multi-process: OpenSearch and PostgreSQL):
//! - tag, star and comment clauses combine with field clauses and each other, and the
//!   answers are exactly what the events and annotations say;
//! - paging through the merged timeline forwards and then backwards visits every event
//!   once, in order, both ways;
//! - re-indexing a file keeps its events' tags, stars and comments (event ids are
//!   deterministic);
//! - a clause naming annotations is refused by plain search, with the way to ask.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::{Server, json, stderr, stdout};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, FileId};
use casescope_proto::ingest::v1 as ingest_pb;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use std::collections::BTreeSet;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

const FAST: [(&str, &str); 1] = [("CASESCOPE_RECONCILE_PERIOD_SECS", "2")];
const EVENTS: u64 = 1_500;

/// (event id, event code) of every event the query selects, paging forwards by 500.
fn select(api: &Server, case: &str, query: &str, extra: &[&str]) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut args = vec!["timeline", case, query, "--limit", "500", "--json"];
        if !cursor.is_empty() {
            args.extend(["--cursor", cursor.as_str()]);
        }
        args.extend_from_slice(extra);
        let page = json(api.cli(&args));
        for event in page["events"].as_array().unwrap() {
            found.push((
                event["event_id"].as_str().unwrap().to_string(),
                event["event_code"].as_u64().unwrap(),
            ));
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            return found;
        }
    }
}

fn ids(selection: &[(String, u64)]) -> BTreeSet<String> {
    selection.iter().map(|(id, _)| id.clone()).collect()
}

fn scenario(deployment: &Deployment, work: &std::path::Path) {
    let api = deployment.api();
    let rule = work.join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("5d0c7a1e-2f4b-4c8d-9e6a-1b3f5a7c9d20"),
    )
    .unwrap();
    let imported = json(api.cli(&["rules", "import", rule.to_str().unwrap(), "--json"]));
    assert_eq!(imported["loaded"], 1, "{imported}");
    let evidence = work.join("timeline.evtx");
    casescope_e2e::synth_evtx(&evidence, EVENTS, 11);
    let case = stdout(&api.cli(&["case", "create", "timeline"]))
        .trim()
        .to_string();
    let uploaded = json(api.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]));
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let record = casescope_e2e::wait_until_processed(
        api,
        &case,
        &file_id,
        Duration::from_secs(180),
        deployment.ingest(),
    );
    assert_eq!(record["events_indexed"], EVENTS, "{record}");

    casescope_e2e::wait_until_detected(api, deployment.detect(), &case, 1);
    let all = select(api, &case, "", &[]);
    assert_eq!(all.len() as u64, EVENTS);
    assert_eq!(select(api, &case, "*", &[]), all, "`*` is the empty query");

    // Tag every third event of the first 900, star ten, comment on one.
    let tagged: Vec<&(String, u64)> = all[..900].iter().step_by(3).collect();
    let mut tag_args = vec!["tag", case.as_str(), "Lateral-Movement"];
    for (id, _) in &tagged {
        tag_args.extend(["--event", id.as_str()]);
    }
    let tagging = api.cli(&tag_args);
    assert!(tagging.status.success(), "{}", stderr(&tagging));
    assert!(
        stderr(&tagging).contains("tagged 300 of 300"),
        "{}",
        stderr(&tagging)
    );
    let starred: Vec<&(String, u64)> = all.iter().skip(5).step_by(150).collect();
    let mut star_args = vec!["star", case.as_str()];
    for (id, _) in &starred {
        star_args.extend(["--event", id.as_str()]);
    }
    assert!(api.cli(&star_args).status.success());
    let commented = &all[3].0;
    let note = api.cli(&["comment", &case, commented, "<b>first</b> seen here\u{7}"]);
    assert!(note.status.success(), "{}", stderr(&note));

    let tagged_ids: BTreeSet<String> = tagged.iter().map(|(id, _)| id.clone()).collect();
    let starred_ids: BTreeSet<String> = starred.iter().map(|(id, _)| id.clone()).collect();
    let code_4624: BTreeSet<String> = all
        .iter()
        .filter(|(_, code)| *code == 4624)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!code_4624.is_empty(), "the synthetic log has logons");
    let every: BTreeSet<String> = ids(&all);
    let check = |query: &str, extra: &[&str], expected: BTreeSet<String>| {
        let found = select(api, &case, query, extra);
        assert_eq!(
            found.len(),
            expected.len(),
            "{query} {extra:?}: each event once"
        );
        assert_eq!(ids(&found), expected, "{query} {extra:?}");
        let mut sorted = found.clone();
        sorted.sort_by_key(|(id, _)| all.iter().position(|(a, _)| a == id));
        assert_eq!(found, sorted, "{query}: in time order");
    };
    check("tag:lateral-movement", &[], tagged_ids.clone());
    check(
        "tag:lateral-movement AND EventID:4624",
        &[],
        tagged_ids.intersection(&code_4624).cloned().collect(),
    );
    check(
        "EventID:4624 -tag:lateral-movement",
        &[],
        code_4624.difference(&tagged_ids).cloned().collect(),
    );
    check("tag:lat*", &[], tagged_ids.clone());
    check(
        "starred:true OR tag:lateral-movement",
        &[],
        tagged_ids.union(&starred_ids).cloned().collect(),
    );
    check(
        "",
        &["--tag", "LATERAL-movement", "--starred"],
        tagged_ids.intersection(&starred_ids).cloned().collect(),
    );
    check("commented:true", &[], BTreeSet::from([commented.clone()]));
    check(
        "starred:false",
        &[],
        every.difference(&starred_ids).cloned().collect(),
    );

    // Detection filters: the events detections fired on, by level.
    let mut detected = BTreeSet::new();
    let mut low = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let mut args = vec!["timeline", case.as_str(), "", "--limit", "1000", "--json"];
        if !cursor.is_empty() {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let page = json(api.cli(&args));
        for event in page["events"].as_array().unwrap() {
            let id = event["event_id"].as_str().unwrap().to_string();
            let detections = event["detections"].as_array().unwrap();
            if event["detection_count"].as_u64().unwrap() > 0 {
                detected.insert(id.clone());
            }
            if detections.iter().any(|d| d["level"] == "low") {
                low.insert(id);
            }
        }
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert!(
        code_4624.is_subset(&low),
        "the logon rule fired on every logon"
    );
    check("", &["--detected"], detected.clone());
    check("", &["--level", "low"], low.clone());
    check(
        "NOT EventID:4624",
        &["--level", "low"],
        low.difference(&code_4624).cloned().collect(),
    );
    check(
        "tag:lateral-movement",
        &["--detected"],
        tagged_ids.intersection(&detected).cloned().collect(),
    );

    // What one event carries, and the comment kept as written.
    let page = json(api.cli(&["timeline", &case, "commented:true", "--json"]));
    let event = &page["events"][0];
    assert_eq!(event["comment_count"], 1);
    assert_eq!(event["tags"], serde_json::json!(["lateral-movement"]));
    let comments = json(api.cli(&["comments", &case, "--event", commented, "--json"]));
    assert_eq!(comments[0]["body"], "<b>first</b> seen here\u{7}");

    // Paging both ways through a selection: forwards, then backwards from the end.
    let query = "tag:lateral-movement OR starred:true";
    let mut forwards = Vec::new();
    let mut cursor = String::new();
    let last_previous = loop {
        let mut args = vec!["timeline", case.as_str(), query, "--limit", "70", "--json"];
        if !cursor.is_empty() {
            args.extend(["--cursor", cursor.as_str()]);
        }
        let page = json(api.cli(&args));
        let events = page["events"].as_array().unwrap();
        forwards.push(
            events
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
        cursor = page["next_cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break page["previous_cursor"].as_str().unwrap().to_string();
        }
    };
    assert!(forwards.len() > 3, "several pages");
    let mut backwards = vec![forwards.last().unwrap().clone()];
    let mut cursor = last_previous;
    while !cursor.is_empty() {
        let page = json(api.cli(&[
            "timeline",
            &case,
            query,
            "--limit",
            "70",
            "--json",
            "--cursor",
            &cursor,
            "--backward",
        ]));
        backwards.push(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect(),
        );
        cursor = page["previous_cursor"].as_str().unwrap().to_string();
    }
    backwards.reverse();
    let flat_forwards: Vec<String> = forwards.concat();
    assert_eq!(
        backwards.concat(),
        flat_forwards,
        "backwards visits the same events in the same order"
    );
    assert_eq!(
        flat_forwards.iter().collect::<BTreeSet<_>>().len(),
        flat_forwards.len(),
        "no repeats"
    );
    assert_eq!(
        flat_forwards.iter().cloned().collect::<BTreeSet<_>>(),
        tagged_ids.union(&starred_ids).cloned().collect(),
        "no gaps"
    );

    // Context: the events around one, by count and by host.
    let middle = &all[700].0;
    let around = json(api.cli(&["context", &case, middle, "--events", "5", "--json"]));
    let ids_of = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let expected_before: Vec<String> = all[695..700].iter().map(|(id, _)| id.clone()).collect();
    let expected_after: Vec<String> = all[701..706].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids_of(&around["before"]), expected_before);
    assert_eq!(ids_of(&around["after"]), expected_after);
    assert_eq!(around["event"]["event_id"], middle.as_str());
    assert_eq!(around["more_before"], true);
    let host = around["event"]["computer"].as_str().unwrap().to_string();
    let same_host = json(api.cli(&[
        "context",
        &case,
        middle,
        "--seconds",
        "3600",
        "--same-host",
        "--json",
    ]));
    for side in ["before", "after"] {
        for event in same_host[side].as_array().unwrap() {
            assert_eq!(event["computer"], host.as_str(), "{side}: {event}");
        }
    }

    // Tagging every event of a query runs as a job; the CLI waits for it.
    let logons: BTreeSet<String> = tagged_ids.intersection(&code_4624).cloned().collect();
    let by_query = api.cli(&[
        "tag",
        &case,
        "logon-review",
        "--query",
        "tag:lateral-movement AND EventID:4624",
    ]);
    assert!(by_query.status.success(), "{}", stderr(&by_query));
    assert!(
        stderr(&by_query).contains(&format!("tagged {0} of {0}", logons.len())),
        "{}",
        stderr(&by_query)
    );
    check("tag:logon-review", &[], logons.clone());
    let bad_job = api.cli(&["tag", &case, "x", "--query", "EventID:(4624"]);
    assert!(!bad_job.status.success());
    assert!(
        stderr(&bad_job).contains("matching.query"),
        "{}",
        stderr(&bad_job)
    );

    // Facets over a selection count what the timeline lists.
    let facets = json(api.cli(&[
        "facets",
        &case,
        "EventID",
        "Computer",
        "--query",
        "tag:lateral-movement",
        "--json",
    ]));
    assert_eq!(facets["selected"], 300);
    let by_code = &facets["facets"][0]["values"];
    let tagged_4624 = tagged_ids.intersection(&code_4624).count() as u64;
    let listed_4624 = by_code
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == "4624")
        .map_or(0, |v| v["count"].as_u64().unwrap());
    assert_eq!(listed_4624, tagged_4624, "{facets}");
    let counted: u64 = by_code
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .sum::<u64>()
        + facets["facets"][0]["other"].as_u64().unwrap();
    assert_eq!(counted, 300, "every selected event has one EventID");

    // The histogram of a selection counts what the timeline lists.
    let histogram = runtime().block_on(async {
        let mut client = CasesServiceClient::new(api.grpc().await);
        client
            .timeline_histogram(api.authorized(cases_pb::TimelineHistogramRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                query: Some(cases_pb::TimelineQuery {
                    query: "tag:lateral-movement".into(),
                    ..Default::default()
                }),
                interval: None,
                max_buckets: 50,
            }))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(histogram.total_count, 300);
    assert_eq!(histogram.buckets.iter().map(|b| b.count).sum::<u64>(), 300);
    assert!(histogram.buckets.len() <= 50);

    // Exports: every format, annotations as columns.
    let jsonl = api.cli(&[
        "export",
        &case,
        "--query",
        "tag:lateral-movement",
        "--format",
        "jsonl",
    ]);
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let rows: Vec<serde_json::Value> = stdout(&jsonl)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| {
        r["tags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("lateral-movement"))
    }));
    let csv_path = work.join("all.csv");
    let exported = api.cli(&[
        "export",
        &case,
        "--format",
        "csv",
        "--output",
        csv_path.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "datetime");
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len() as u64, EVENTS);
    let with_comment = records
        .iter()
        .find(|r| &r[column("event_id")] == commented.as_str())
        .unwrap();
    assert!(with_comment[column("comments")].contains("<b>first</b> seen here\u{7}"));
    let timesketch = api.cli(&[
        "export",
        &case,
        "--query",
        "starred:true",
        "--format",
        "timesketch",
    ]);
    for line in stdout(&timesketch).lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["message", "datetime", "timestamp_desc"] {
            assert!(row[key].is_string(), "{key} in {row}");
        }
        assert_eq!(row["starred"], true);
    }
    assert_eq!(stdout(&timesketch).lines().count(), starred_ids.len());
    let annotations = json(api.cli(&["export-annotations", &case]));
    assert_eq!(
        annotations["tags"][0]["events"].as_array().unwrap().len(),
        300
    );
    assert_eq!(
        annotations["stars"].as_array().unwrap().len(),
        starred_ids.len()
    );
    assert_eq!(
        annotations["comments"][0]["body"],
        "<b>first</b> seen here\u{7}"
    );

    // Plain search does not know annotations, and says where to ask.
    let plain = api.cli(&["search", &case, "tag:lateral-movement"]);
    assert!(!plain.status.success());
    assert!(stderr(&plain).contains("timeline"), "{}", stderr(&plain));

    // Re-indexing the file keeps every annotation: same event ids.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = IngestServiceClient::new(api.grpc().await);
        client
            .reindex_file(api.authorized(ingest_pb::ReindexFileRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                file_id: Some(FileId {
                    value: file_id.clone(),
                }),
            }))
            .await
            .unwrap();
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let files = json(api.cli(&["files", &case, "--json"]));
        let status = files[0]["status"].as_str().unwrap_or_default().to_string();
        if select(api, &case, "", &[]).len() as u64 == EVENTS
            && !matches!(status.as_str(), "uploaded" | "parsing")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "re-index: {files}");
        std::thread::sleep(Duration::from_millis(500));
    }
    check("tag:lateral-movement", &[], tagged_ids);
    check("commented:true", &[], BTreeSet::from([commented.clone()]));

    // The searches above are in the history, newest first, repeats folded.
    let history = json(api.cli(&["history", &case, "--json"]));
    let entries = history.as_array().unwrap();
    assert_eq!(entries[0]["query"], "commented:true", "{history}");
    assert_eq!(entries[0]["hit_count"], 1);
    let paged = entries
        .iter()
        .find(|e| e["query"] == query)
        .expect("the paged query");
    assert!(paged["repeats"].as_u64().unwrap() > 3, "{paged}");

    // Saved searches and notes.
    let saved = api.cli(&[
        "searches",
        "save",
        &case,
        "logons",
        "EventID:4624",
        "--shared",
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let listed = json(api.cli(&["searches", "list", &case, "--json"]));
    assert_eq!(listed[0]["query"], "EventID:4624");
    let notes = "# Findings\n\n* lateral movement from WS01\n";
    let token = &[("CASESCOPE_TOKEN", api.token())];
    let edit = api.cli_with(token, &["notes", "edit", &case, "--version", "0"], notes);
    assert!(edit.status.success(), "{}", stderr(&edit));
    let shown = api.cli(&["notes", "show", &case]);
    assert_eq!(stdout(&shown).trim_end(), notes.trim_end());
    let stale = api.cli_with(token, &["notes", "edit", &case, "--version", "0"], "lost");
    assert!(!stale.status.success());
    assert!(stderr(&stale).contains("version 1"), "{}", stderr(&stale));
}

#[test]
fn the_timeline_all_in_one() {
    let work = tempfile::tempdir().unwrap();
    let deployment = Deployment::all_in_one(work.path(), &FAST);
    scenario(&deployment, work.path());
}

#[test]
fn the_timeline_multi_process() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &FAST, "tl") else {
        return;
    };
    scenario(&deployment, work.path());
}
