//! Evidence on S3, with two ingest replicas that share nothing on disk: cases, detect
//! and two ingest processes (each with a data directory of its own) over a real
//! nats-server, PostgreSQL, OpenSearch and S3-compatible server (SeaweedFS).
//!
//! - Evidence uploaded through replica A lands in the bucket (A keeps no copy);
//! - with A stopped, replica B re-indexes every file from the bucket: the same counts,
//!   the same events, the same detections;
//! - archiving puts the case's archive in the bucket and takes the blobs out; restoring
//!   (on B) verifies it, puts the blobs back and re-ingests to the same state;
//! - deleting the case leaves no object of it in the bucket.

use casescope_e2e::{
    Server, env_refs, json, metric, opensearch_env, opensearch_or_skip, search_total,
    start_service, stderr, stdout, wait_until_detected,
};
use object_store::ObjectStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every object key in `bucket` (listed with the test server's identity).
fn objects(server: &casescope_testkit::s3::S3Server, bucket: &str) -> Vec<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id(server.access_key_id)
        .with_secret_access_key(server.secret_access_key)
        .build()
        .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use futures::TryStreamExt;
        let mut keys: Vec<String> = store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap_or_default();
        keys.sort();
        keys
    })
}

/// Per file: (status, read, indexed, rejected, duplicates).
fn file_counts(cases: &Server, case: &str) -> BTreeMap<String, (String, u64, u64, u64, u64)> {
    json(cases.cli(&["files", case, "--json"]))
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
        .collect()
}

fn wait(what: &str, logs: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not in time\n{}", logs());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn detections(detect: &Server, case: &str) -> u64 {
    json(detect.cli(&["detect", "status", case, "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["detections"].as_u64().unwrap_or(0))
        .sum()
}

fn files_in(dir: &Path) -> usize {
    walk(dir)
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn two_ingest_replicas_share_evidence_through_s3() {
    let Some(opensearch) = opensearch_or_skip() else {
        return;
    };
    let Some(s3) =
        casescope_testkit::s3::s3_or_skip("two_ingest_replicas_share_evidence_through_s3")
    else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let [cases_db, ingest_db, detect_db] =
        [(); 3].map(|_| runtime.block_on(casescope_testkit::postgres_url()));
    drop(runtime);
    let (namespace, index) = casescope_e2e::fresh_names("s3e");
    let bucket = format!("evidence-{}", uuid::Uuid::new_v4().simple());
    let mut env = opensearch_env(&opensearch, &index);
    env.push(("CASESCOPE_RECONCILE_PERIOD_SECS", "1".into()));
    env.push(("CASESCOPE_LEASE_TTL_SECS", "3".into()));
    env.extend(s3.env(&bucket));
    let env = env_refs(&env);
    let work = tempfile::tempdir().unwrap();
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    let cases_addr = format!("cases={}", cases.address);
    let ingest = |name: &str| {
        let data = work.path().join(name);
        let server = start_service(
            "ingest",
            &nats,
            &ingest_db,
            &namespace,
            &[
                "--service-addr",
                &cases_addr,
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &env,
        );
        (server, data)
    };
    let (mut replica_a, data_a) = ingest("ingest-a");
    let (replica_b, data_b) = ingest("ingest-b");
    let detect = start_service(
        "detect",
        &nats,
        &detect_db,
        &namespace,
        &["--service-addr", &format!("ingest={}", replica_b.address)],
        &env,
    );
    let logs = || {
        [&cases, &replica_b, &detect]
            .iter()
            .map(|s| s.log_text())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    let rule = work.path().join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("3d9a1f6e-2b4c-4e8d-a7f0-5c1b9e2d8a64"),
    )
    .unwrap();
    let imported = json(detect.cli(&["rules", "import", rule.to_str().unwrap(), "--json"]));
    assert_eq!(imported["loaded"], 1, "{imported}");
    let case = stdout(&cases.cli(&["case", "create", "evidence on s3"]))
        .trim()
        .to_string();
    let files: Vec<_> = [(21, 3000), (22, 2000)]
        .iter()
        .map(|(seed, events)| {
            let path = work.path().join(format!("synthetic-{seed}.evtx"));
            casescope_e2e::synth_evtx(&path, *events, *seed);
            path
        })
        .collect();
    let uploaded = replica_a.cli(&[
        "upload",
        &case,
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    let found = wait_until_detected(&cases, &detect, &case, 2);
    assert!(found > 0);
    let before = file_counts(&cases, &case);
    assert_eq!(search_total(&replica_b, &case), 5000);
    let evidence: Vec<String> = objects(&s3, &bucket)
        .into_iter()
        .filter(|k| k.starts_with(&format!("evidence/{case}/")))
        .collect();
    assert_eq!(evidence.len(), 2, "both blobs in the bucket: {evidence:?}");
    assert_eq!(
        files_in(&data_a.join("ingest/evidence")),
        0,
        "replica A keeps no copy of a placed blob"
    );

    // Replica A goes; B re-indexes every file from the bucket alone.
    replica_a.terminate(Duration::from_secs(20));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use casescope_proto::common::v1::{CaseId, FileId};
        use casescope_proto::ingest::v1 as pb;
        let mut client =
            pb::ingest_service_client::IngestServiceClient::new(replica_b.grpc().await);
        for file_id in before.keys() {
            client
                .reindex_file(pb::ReindexFileRequest {
                    case_id: Some(CaseId {
                        value: case.clone(),
                    }),
                    file_id: Some(FileId {
                        value: file_id.clone(),
                    }),
                })
                .await
                .unwrap();
        }
    });
    wait("re-index on B", logs, || {
        metric(
            &replica_b,
            "casescope_ingest_files_total",
            &[("outcome", "indexed")],
        )
        .unwrap_or(0.0)
            >= 2.0
            && file_counts(&cases, &case) == before
    });
    assert_eq!(search_total(&replica_b, &case), 5000);
    assert_eq!(wait_until_detected(&cases, &detect, &case, 2), found);

    // Archive: the archive in the bucket, the blobs out of it.
    let archived = cases.cli(&["case", "archive", &case]);
    assert!(archived.status.success(), "{}", stderr(&archived));
    let archive_key = format!("archives/{case}.zip");
    wait("archive", logs, || {
        let keys = objects(&s3, &bucket);
        file_counts(&cases, &case)
            .values()
            .all(|f| f.0 == "archived")
            && keys.contains(&archive_key)
            && !keys.iter().any(|k| k.starts_with("evidence/"))
            && detections(&detect, &case) == 0
    });
    assert_eq!(search_total(&replica_b, &case), 0);

    // Restore on B: verified, back in the bucket, re-ingested to the same state.
    let restored = cases.cli(&["case", "restore", &case]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    wait("restore", logs, || {
        json(cases.cli(&["case", "show", &case, "--json"]))["state"] == "open"
            && file_counts(&cases, &case) == before
            && detections(&detect, &case) == found
    });
    assert_eq!(search_total(&replica_b, &case), 5000);
    let keys = objects(&s3, &bucket);
    assert!(!keys.contains(&archive_key), "{keys:?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with(&format!("evidence/{case}/")))
            .count(),
        2,
        "{keys:?}"
    );
    assert_eq!(files_in(&data_b.join("ingest/evidence")), 0);
    assert_eq!(
        files_in(&data_b.join("ingest/scratch")),
        0,
        "scratch emptied"
    );

    // Delete: nothing of the case is left in the bucket.
    let deleted = cases.cli(&["case", "delete", &case, "--yes"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    wait("delete", logs, || objects(&s3, &bucket).is_empty());
}
