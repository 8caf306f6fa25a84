//! Archiving a case frees the hot stores and keeps the evidence; restoring it verifies
//! every SHA-256 and gives back exactly what was there, in both modes:
//! - all-in-one (`casescope serve`: SQLite, tantivy, in-process bus);
//! - multi-process (cases, ingest and detect as separate processes over a real
//!   nats-server, PostgreSQL and OpenSearch).
//!
//! A case gets synthetic evidence and a rule that fires on it. Archived: its events are
//! gone from search (and from the OpenSearch index), its detections from the detect
//! service, its blobs from storage, and one archive holds the evidence; uploads,
//! re-index, re-runs and tagging answer FAILED_PRECONDITION naming the state.
//! Restored: the same event ids, the same detection ids, the same per-file counts as
//! before. Archived again with one byte of the archive changed: the restore is refused
//! naming the damaged file, and the case is archived again with that reason.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::{json, opensearch_count, search_total, stderr, stdout};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, EventId, FileId, PageRequest};
use casescope_proto::detect::v1 as detect_pb;
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_proto::ingest::v1 as ingest_pb;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FAST: [(&str, &str); 2] = [
    ("CASESCOPE_RECONCILE_PERIOD_SECS", "1"),
    ("CASESCOPE_LEASE_TTL_SECS", "3"),
];

/// Everything an analyst could compare before archiving and after restoring.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// Every event id of the case.
    events: BTreeSet<String>,
    /// Every detection id of the case.
    detections: BTreeSet<String>,
    /// Per file: (status, read, indexed, rejected, duplicates skipped).
    files: BTreeMap<String, (String, u64, u64, u64, u64)>,
}

fn case_id(case: &str) -> Option<CaseId> {
    Some(CaseId {
        value: case.to_string(),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn snapshot(deployment: &Deployment, case: &str) -> Snapshot {
    runtime().block_on(async {
        let mut ingest = IngestServiceClient::new(deployment.ingest().grpc().await);
        let mut detect = DetectServiceClient::new(deployment.detect().grpc().await);
        let mut events = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let page = ingest
                .search_events(ingest_pb::SearchEventsRequest {
                    case_id: case_id(case),
                    query: Some(ingest_pb::EventQuery::default()),
                    page: Some(PageRequest {
                        page_size: 1000,
                        cursor: cursor.clone(),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            events.extend(
                page.events
                    .iter()
                    .map(|e| e.event_id.as_ref().unwrap().value.clone()),
            );
            cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                break;
            }
        }
        let mut detections = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let page = detect
                .list_detections(detect_pb::ListDetectionsRequest {
                    case_id: case_id(case),
                    page: Some(PageRequest {
                        page_size: 1000,
                        cursor: cursor.clone(),
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            detections.extend(
                page.detections
                    .iter()
                    .map(|d| d.id.as_ref().unwrap().value.clone()),
            );
            cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                break;
            }
        }
        let listed = json(deployment.cases.cli(&["files", case, "--json"]));
        let files = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let n = |key: &str| f[key].as_u64().unwrap_or(0);
                (
                    f["file_id"].as_str().unwrap().to_string(),
                    (
                        // Past ingest is "indexed", whatever the later stages' progress.
                        if casescope_e2e::past_ingest(&f["status"]) {
                            "indexed".to_string()
                        } else {
                            f["status"].as_str().unwrap().to_string()
                        },
                        n("records_read"),
                        n("events_indexed"),
                        n("records_rejected"),
                        n("duplicates_skipped"),
                    ),
                )
            })
            .collect();
        Snapshot {
            events,
            detections,
            files,
        }
    })
}

/// The case as `case show --json` prints it.
fn show(deployment: &Deployment, case: &str) -> serde_json::Value {
    json(deployment.cases.cli(&["case", "show", case, "--json"]))
}

/// Waits (bounded) until `ready(snapshot, case)` holds; the last snapshot.
fn wait_for(
    deployment: &Deployment,
    case: &str,
    what: &str,
    ready: impl Fn(&Snapshot, &serde_json::Value) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = snapshot(deployment, case);
        let shown = show(deployment, case);
        if ready(&now, &shown) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in time.\ncase: {shown}\nevents: {}, detections: {}, files: {:?}\n{}",
            now.events.len(),
            now.detections.len(),
            now.files,
            deployment.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A gRPC refusal must be FAILED_PRECONDITION naming the case's state.
fn assert_refused(outcome: Result<(), tonic::Status>, what: &str, state: &str) {
    let status = outcome.expect_err(what);
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "{what}: {status:?}"
    );
    assert!(
        status.message().contains(state),
        "{what} names the state {state}: {}",
        status.message()
    );
}

/// Changes one byte inside the first evidence file stored in the archive at `path`;
/// the file id of that entry.
fn damage_first_entry(path: &Path) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..4],
        b"PK\x03\x04",
        "a ZIP starts with a local header"
    );
    let name_len = u16::from_le_bytes([bytes[26], bytes[27]]) as usize;
    let extra_len = u16::from_le_bytes([bytes[28], bytes[29]]) as usize;
    let name = String::from_utf8(bytes[30..30 + name_len].to_vec()).unwrap();
    let file_id = name
        .strip_prefix("evidence/")
        .unwrap_or_else(|| panic!("first entry {name}"))
        .to_string();
    let data = 30 + name_len + extra_len;
    bytes[data + 4096] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
    file_id
}

fn scenario(deployment: &Deployment, work: &Path) {
    let rule = work.join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("0b7c4e2a-5d1f-4a8e-9c3b-7e6f1a2d4c5b"),
    )
    .unwrap();
    let imported =
        json(
            deployment
                .detect()
                .cli(&["rules", "import", rule.to_str().unwrap(), "--json"]),
        );
    assert_eq!(imported["loaded"], 1, "{imported}");
    let case = stdout(&deployment.cases.cli(&["case", "create", "to archive"]))
        .trim()
        .to_string();
    let files: Vec<PathBuf> = [(11, 3000), (12, 2000)]
        .iter()
        .map(|(seed, events)| {
            let path = work.join(format!("synthetic-{seed}.evtx"));
            casescope_e2e::synth_evtx(&path, *events, *seed);
            path
        })
        .collect();
    let uploaded = deployment.ingest().cli(&[
        "upload",
        &case,
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    let detected =
        casescope_e2e::wait_until_detected(&deployment.cases, deployment.detect(), &case, 2);
    let before = snapshot(deployment, &case);
    assert_eq!(before.events.len(), 5000, "every synthetic record indexed");
    assert_eq!(before.detections.len() as u64, detected);
    assert!(detected > 0, "the rule fires on the evidence");
    assert!(
        before.files.values().all(|f| f.0 == "indexed"),
        "{:?}",
        before.files
    );
    let first_file = before.files.keys().next().unwrap().clone();

    // Archive: events, detections and blobs leave; the archive keeps the evidence.
    let archived = deployment.cases.cli(&["case", "archive", &case]);
    assert!(archived.status.success(), "{}", stderr(&archived));
    let during = wait_for(deployment, &case, "archive", |now, shown| {
        shown["state"] == "archived"
            && now.files.values().all(|f| f.0 == "archived")
            && now.events.is_empty()
            && now.detections.is_empty()
    });
    assert_eq!(search_total(deployment.ingest(), &case), 0);
    assert!(!deployment.evidence_dir(&case).exists(), "blobs removed");
    assert!(
        deployment.archive_path(&case).is_file(),
        "the archive is kept"
    );
    // The counts stay with the archived files.
    let counts = |s: &Snapshot| -> Vec<(u64, u64, u64, u64)> {
        s.files.values().map(|f| (f.1, f.2, f.3, f.4)).collect()
    };
    assert_eq!(counts(&during), counts(&before));
    if let Some((url, index)) = &deployment.opensearch {
        assert_eq!(opensearch_count(url, index, &case), 0);
    }

    // Changes to an archived case are refused, naming the state.
    let upload = deployment
        .ingest()
        .cli(&["upload", &case, files[0].to_str().unwrap()]);
    assert!(!upload.status.success(), "upload into an archived case");
    assert!(stderr(&upload).contains("archived"), "{}", stderr(&upload));
    let rt = runtime();
    let (ingest_server, detect_server) = (deployment.ingest(), deployment.detect());
    let reindex = |file: &str| -> Result<(), tonic::Status> {
        rt.block_on(async {
            let mut client = IngestServiceClient::new(ingest_server.grpc().await);
            client
                .reindex_file(ingest_pb::ReindexFileRequest {
                    case_id: case_id(&case),
                    file_id: Some(FileId {
                        value: file.to_string(),
                    }),
                })
                .await
                .map(|_| ())
        })
    };
    let rerun = || -> Result<(), tonic::Status> {
        rt.block_on(async {
            let mut client = DetectServiceClient::new(detect_server.grpc().await);
            client
                .rerun_detection(detect_pb::RerunDetectionRequest {
                    case_id: case_id(&case),
                    scope: Some(detect_pb::rerun_detection_request::Scope::WholeCase(true)),
                })
                .await
                .map(|_| ())
        })
    };
    let tag = || -> Result<(), tonic::Status> {
        rt.block_on(async {
            let mut client = CasesServiceClient::new(deployment.cases.grpc().await);
            client
                .tag_events(cases_pb::TagEventsRequest {
                    matching: None,
                    case_id: case_id(&case),
                    event_ids: vec![EventId {
                        value: before.events.iter().next().unwrap().clone(),
                    }],
                    tag: "suspicious".into(),
                })
                .await
                .map(|_| ())
        })
    };
    assert_refused(reindex(&first_file), "re-index", "archived");
    assert_refused(rerun(), "re-run", "archived");
    assert_refused(tag(), "tagging", "archived");

    // Restore: every sum verified, the same events, detections and counts.
    let restored = deployment.cases.cli(&["case", "restore", &case]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let after = wait_for(deployment, &case, "restore", |now, shown| {
        shown["state"] == "open" && *now == before
    });
    assert_eq!(after, before);
    assert!(deployment.evidence_dir(&case).is_dir(), "blobs back");
    assert!(
        !deployment.archive_path(&case).exists(),
        "the archive is removed once its evidence is back"
    );
    if let Some((url, index)) = &deployment.opensearch {
        assert_eq!(opensearch_count(url, index, &case), 5000);
    }
    // Open again: a re-index is accepted.
    reindex(&first_file).expect("re-index of a restored case");

    // A damaged archive is refused, naming the file; the case stays archived.
    let after_reindex = wait_for(deployment, &case, "re-index", |now, _| *now == before);
    assert_eq!(after_reindex, before);
    let archived = deployment.cases.cli(&["case", "archive", &case]);
    assert!(archived.status.success(), "{}", stderr(&archived));
    wait_for(deployment, &case, "second archive", |now, shown| {
        shown["state"] == "archived"
            && now.files.values().all(|f| f.0 == "archived")
            && now.events.is_empty()
            && now.detections.is_empty()
    });
    let damaged = damage_first_entry(&deployment.archive_path(&case));
    assert!(before.files.contains_key(&damaged), "{damaged}");
    let restored = deployment.cases.cli(&["case", "restore", &case]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let refused = wait_for(deployment, &case, "refused restore", |_, shown| {
        shown["state"] == "archived" && shown["restore_error"].is_string()
    });
    let shown = show(deployment, &case);
    let reason = shown["restore_error"].as_str().unwrap();
    assert!(
        reason.contains(&damaged),
        "names the damaged file: {reason}"
    );
    assert!(refused.events.is_empty() && refused.detections.is_empty());
    assert!(refused.files.values().all(|f| f.0 == "archived"));
    assert!(!deployment.evidence_dir(&case).exists(), "nothing restored");
    let text = stdout(&deployment.cases.cli(&["case", "show", &case]));
    assert!(
        text.contains("restore_error") && text.contains(&damaged),
        "{text}"
    );
    assert_refused(tag(), "tagging after a refused restore", "archived");
}

#[test]
fn archiving_and_restoring_a_case_all_in_one() {
    let work = tempfile::tempdir().unwrap();
    let deployment = Deployment::all_in_one(work.path(), &FAST);
    scenario(&deployment, work.path());
}

#[test]
fn archiving_and_restoring_a_case_multi_process() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &FAST, "arc") else {
        return;
    };
    scenario(&deployment, work.path());
}
