//! Ingest scaled out on a real OpenSearch node: cases and two ingest replicas as
//! separate processes over a real nats-server and PostgreSQL, the replicas sharing one
//! evidence directory (as pods share a ReadWriteMany volume) and one OpenSearch index.
//! The replica parsing a large synthetic EVTX is killed with SIGKILL midway; the other
//! replica takes the file over once the lease expires and finishes it with exactly as
//! many events as the file has records: no duplicate, no loss, nothing stuck.
//!
//! Size: CASESCOPE_TEST_SCALE_OUT_EVENTS (default 150,000; progress is logged every 50,000 events).

use casescope_e2e::{
    Server, ingest_progress, opensearch_count, opensearch_or_skip, search_total, stderr, stdout,
    wait_for_log, wait_until_processed,
};
use std::time::{Duration, Instant};

const LEASE_TTL_SECS: u64 = 4;
const RECONCILE_SECS: u64 = 2;

#[test]
fn a_second_ingest_replica_finishes_the_file_of_a_killed_one() {
    let Some(opensearch) = opensearch_or_skip() else {
        return;
    };
    let events: u64 = std::env::var("CASESCOPE_TEST_SCALE_OUT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let cases_db = runtime.block_on(casescope_testkit::postgres_url());
    let ingest_db = runtime.block_on(casescope_testkit::postgres_url());
    drop(runtime);
    let namespace = format!("scale{}", uuid::Uuid::new_v4().simple());
    let index = format!("casescope-e2e-{}", uuid::Uuid::new_v4().simple());
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("big.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 1);

    let env = [
        ("CASESCOPE_LEASE_TTL_SECS", LEASE_TTL_SECS.to_string()),
        (
            "CASESCOPE_RECONCILE_PERIOD_SECS",
            RECONCILE_SECS.to_string(),
        ),
        ("CASESCOPE_EVENT_STORE", "opensearch".to_string()),
        ("CASESCOPE_OPENSEARCH_URL", opensearch.clone()),
        ("CASESCOPE_OPENSEARCH_INDEX", index.clone()),
        ("CASESCOPE_OPENSEARCH_SHARDS", "1".to_string()),
        ("CASESCOPE_OPENSEARCH_REPLICAS", "0".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    // Both replicas use one data directory: the shared evidence volume.
    let shared = work.path().join("shared-evidence");
    let args = [
        "--service",
        "ingest",
        "--nats-url",
        &nats,
        "--database-url",
        &ingest_db,
        "--nats-namespace",
        &namespace,
        "--service-addr",
        &format!("cases={}", cases.address),
        "--data-dir",
        shared.to_str().unwrap(),
    ];
    let mut replicas = vec![Server::start(&args, &env), Server::start(&args, &env)];

    let created = cases.cli(&["case", "create", "scale out"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case = stdout(&created).trim().to_string();
    // Uploaded through the first replica; either may parse it.
    let upload = replicas[0].cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]);
    assert!(upload.status.success(), "{}", stderr(&upload));
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();

    // Kill whichever replica is parsing, at its first progress line (a third).
    let deadline = Instant::now() + Duration::from_secs(600);
    let parsing = loop {
        if let Some(at) = replicas
            .iter()
            .position(|replica| ingest_progress(replica) >= events / 3)
        {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}\n{}",
            replicas[0].log_text(),
            replicas[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut killed = replicas.remove(parsing);
    let at_kill = ingest_progress(&killed);
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();
    assert!(
        at_kill < events,
        "killed before the end ({at_kill} of {events})"
    );
    let survivor = &replicas[0];
    assert_eq!(
        ingest_progress(survivor),
        0,
        "the other replica was not parsing the same file at the same time"
    );
    let bound = Duration::from_secs(LEASE_TTL_SECS + RECONCILE_SECS + 15);
    assert!(
        wait_for_log(survivor, "ingest run started", 1, bound),
        "the surviving replica did not take the file over within lease TTL + reconcile \
         period (+15 s slack):\n{}",
        survivor.log_text()
    );

    let record = wait_until_processed(&cases, &case, &file_id, Duration::from_secs(900), survivor);
    assert_eq!(record["status"], "indexed", "{record}");
    assert_eq!(record["records_read"], events);
    assert_eq!(record["events_indexed"], events);
    assert_eq!(record["records_rejected"], 0);

    assert_eq!(
        search_total(survivor, &case),
        events,
        "exactly one copy of every event"
    );
    assert_eq!(
        opensearch_count(&opensearch, &index, &case),
        events,
        "the OpenSearch index holds exactly one document per record"
    );
}
