//! Deleting a case deletes its data in every store, in both modes, and nothing else:
//! - all-in-one (`casescope serve`: SQLite, tantivy, in-process bus);
//! - multi-process (cases, ingest and detect as separate processes over a real
//!   nats-server, PostgreSQL and OpenSearch).
//!
//! Two cases get synthetic evidence and a rule that fires on it; one is deleted. Then
//! its events are gone from search (and, in cluster mode, from the OpenSearch index),
//! its blobs from the evidence directory, its rows from the ingest and detect databases
//! (files, uploads, fingerprints, detections, detect state), while the other case keeps
//! exactly what it had.

use casescope_e2e::deployment::{Deployment, rows};
use casescope_e2e::{json, opensearch_count, search_total, stderr, stdout, wait_until_detected};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const INGEST_TABLES: [&str; 3] = [
    "evidence_files WHERE",
    "uploads WHERE",
    "event_fingerprints WHERE",
];
const DETECT_TABLES: [&str; 4] = [
    "detections WHERE",
    "detect_files WHERE",
    "detect_cases WHERE",
    "detect_correlation_inputs WHERE",
];
const IOC_TABLES: [&str; 5] = [
    "iocs WHERE",
    "ioc_matches WHERE",
    "ioc_files WHERE",
    "ioc_changes WHERE",
    "ioc_case_versions WHERE",
];

/// What the kept case must still have, exactly (its correlation pass may still be
/// running when the snapshot is taken, so correlation rows are left out).
const KEPT_DETECT_TABLES: [&str; 2] = ["detections WHERE scope = 'file' AND", "detect_files WHERE"];

fn synth(dir: &Path, seed: u64, events: u64) -> PathBuf {
    let path = dir.join(format!("synthetic-{seed}.evtx"));
    casescope_e2e::synth_evtx(&path, events, seed);
    path
}

fn scenario(deployment: &Deployment, work: &Path) {
    let rule = work.join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("6a4f2c1e-93b7-4d0a-8f5e-2b1c7d9e0a11"),
    )
    .unwrap();
    let imported =
        json(
            deployment
                .detect()
                .cli(&["rules", "import", rule.to_str().unwrap(), "--json"]),
        );
    assert_eq!(imported["loaded"], 1, "{imported}");

    let doomed = stdout(&deployment.cases.cli(&["case", "create", "to delete"]))
        .trim()
        .to_string();
    let kept = stdout(&deployment.cases.cli(&["case", "create", "to keep"]))
        .trim()
        .to_string();
    let files = [synth(work, 1, 3000), synth(work, 2, 2000)];
    for case in [&doomed, &kept] {
        let uploaded = deployment.ingest().cli(&[
            "upload",
            case,
            files[0].to_str().unwrap(),
            files[1].to_str().unwrap(),
        ]);
        assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    }
    // IOCs in both cases, hunted in both.
    let list = work.join("iocs.csv");
    std::fs::write(
        &list,
        "type,value\ncidr,10.0.0.0/8\nprocess_name,svchost.exe\n",
    )
    .unwrap();
    for case in [&doomed, &kept] {
        let imported =
            json(
                deployment
                    .ioc()
                    .cli(&["ioc", "import", case, list.to_str().unwrap(), "--json"]),
            );
        assert_eq!(imported["created"], 2, "{imported}");
    }
    let doomed_detections = wait_until_detected(&deployment.cases, deployment.detect(), &doomed, 2);
    let kept_detections = wait_until_detected(&deployment.cases, deployment.detect(), &kept, 2);
    assert!(doomed_detections > 0, "the rule fires on the evidence");
    assert_eq!(
        doomed_detections, kept_detections,
        "same evidence, same findings"
    );
    let kept_events = search_total(deployment.ingest(), &kept);
    assert_eq!(search_total(deployment.ingest(), &doomed), kept_events);
    assert!(deployment.evidence_dir(&doomed).is_dir());
    let kept_ingest_rows = rows(&deployment.ingest_db, &INGEST_TABLES, &kept);
    let kept_detect_rows = rows(&deployment.detect_db, &KEPT_DETECT_TABLES, &kept);
    let kept_ioc_rows = wait_until_hunted(deployment, &kept, 2);
    let doomed_ioc_rows = wait_until_hunted(deployment, &doomed, 2);
    assert_eq!(
        doomed_ioc_rows, kept_ioc_rows,
        "the same evidence, the same matches"
    );
    assert!(kept_ioc_rows[1].1 > 0, "the IOCs match: {kept_ioc_rows:?}");
    assert!(kept_detect_rows[0].1 > 0, "{kept_detect_rows:?}");

    let unconfirmed = deployment.cases.cli(&["case", "delete", &doomed]);
    assert!(!unconfirmed.status.success(), "deletion needs --yes");
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    let deleted = deployment.cases.cli(&["case", "delete", &doomed, "--yes"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));

    // Everything of the deleted case goes, within a few reconciler periods.
    let deadline = Instant::now() + Duration::from_secs(120);
    let zero = |tables: &[&str]| -> Vec<(String, i64)> {
        tables.iter().map(|t| (t.to_string(), 0)).collect()
    };
    loop {
        let ingest_rows = rows(&deployment.ingest_db, &INGEST_TABLES, &doomed);
        let detect_rows = rows(&deployment.detect_db, &DETECT_TABLES, &doomed);
        let ioc_rows = rows(&deployment.ioc_db, &IOC_TABLES, &doomed);
        let events = search_total(deployment.ingest(), &doomed);
        let blobs = deployment.evidence_dir(&doomed).exists();
        if ingest_rows == zero(&INGEST_TABLES)
            && detect_rows == zero(&DETECT_TABLES)
            && ioc_rows == zero(&IOC_TABLES)
            && events == 0
            && !blobs
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted case still has data: ingest {ingest_rows:?}, detect {detect_rows:?}, \
             ioc {ioc_rows:?}, {events} events, blobs on disk: {blobs}\n{}",
            deployment.ingest().log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    if let Some((url, index)) = &deployment.opensearch {
        assert_eq!(opensearch_count(url, index, &doomed), 0);
        assert_eq!(opensearch_count(url, index, &kept), kept_events);
    }
    let uploads_left: Vec<_> = std::fs::read_dir(deployment.ingest_data.join("ingest/uploads"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        uploads_left.is_empty(),
        "upload parts left: {uploads_left:?}"
    );
    let shown = deployment.cases.cli(&["case", "show", &doomed]);
    assert!(!shown.status.success(), "the case itself is gone");

    // The other case: exactly what it had.
    assert_eq!(search_total(deployment.ingest(), &kept), kept_events);
    assert_eq!(
        rows(&deployment.ingest_db, &INGEST_TABLES, &kept),
        kept_ingest_rows
    );
    assert_eq!(
        rows(&deployment.detect_db, &KEPT_DETECT_TABLES, &kept),
        kept_detect_rows
    );
    assert_eq!(rows(&deployment.ioc_db, &IOC_TABLES, &kept), kept_ioc_rows);
    assert!(deployment.evidence_dir(&kept).is_dir());
    assert_eq!(
        wait_until_detected(&deployment.cases, deployment.detect(), &kept, 2),
        kept_detections
    );
}

const FAST: [(&str, &str); 2] = [
    ("CASESCOPE_RECONCILE_PERIOD_SECS", "1"),
    ("CASESCOPE_LEASE_TTL_SECS", "3"),
];

#[test]
fn deleting_a_case_deletes_its_data_all_in_one() {
    let work = tempfile::tempdir().unwrap();
    let deployment = Deployment::all_in_one(work.path(), &FAST);
    scenario(&deployment, work.path());
}

#[test]
fn deleting_a_case_deletes_its_data_multi_process() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &FAST, "del") else {
        return;
    };
    scenario(&deployment, work.path());
}

/// Waits until the case's `files` files are hunted at its IOC version; its IOC rows.
fn wait_until_hunted(deployment: &Deployment, case: &str, files: usize) -> Vec<(String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let states = json(deployment.ioc().cli(&["ioc", "states", case, "--json"]));
        let hunted = states["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter(|f| {
                        f["status"] == "done" && f["hunted_version"] == states["case_version"]
                    })
                    .count()
            })
            .unwrap_or(0);
        if hunted == files {
            return rows(&deployment.ioc_db, &IOC_TABLES, case);
        }
        assert!(
            Instant::now() < deadline,
            "not hunted: {states}\n{}",
            deployment.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
