//! kill -9 of the ingest worker midway through a large synthetic EVTX, in multi-process
//! mode (cases and ingest as separate processes over real NATS and PostgreSQL): after a
//! restart the file ends indexed with exactly as many events as the file has records,
//! and the re-run starts within lease TTL + reconciler period.
//!
//! Size: CASESCOPE_TEST_KILL_EVENTS (default 100,000 — the 1,000,000 runs with
//! `make test-large`, in release mode).

use casescope_e2e::{
    Server, ingest_progress as progress, search_total, stderr, stdout, wait_for_log,
    wait_until_processed,
};
use std::time::{Duration, Instant};

const LEASE_TTL_SECS: u64 = 4;
const RECONCILE_SECS: u64 = 2;

#[test]
fn a_worker_killed_mid_file_leaves_exactly_every_event_indexed() {
    let events: u64 = std::env::var("CASESCOPE_TEST_KILL_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = casescope_testkit::nats_url();
    let cases_db = runtime.block_on(casescope_testkit::postgres_url());
    let ingest_db = runtime.block_on(casescope_testkit::postgres_url());
    let namespace = format!("kill{}", uuid::Uuid::new_v4().simple());
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("big.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 1);

    let common_env = [
        ("CASESCOPE_LEASE_TTL_SECS", LEASE_TTL_SECS.to_string()),
        (
            "CASESCOPE_RECONCILE_PERIOD_SECS",
            RECONCILE_SECS.to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = common_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
    let ingest_data = work.path().join("ingest-data");
    let ingest_args = |data: &str| {
        vec![
            "--service".to_string(),
            "ingest".into(),
            "--nats-url".into(),
            nats.clone(),
            "--database-url".into(),
            ingest_db.clone(),
            "--nats-namespace".into(),
            namespace.clone(),
            "--service-addr".into(),
            format!("cases={}", cases.address),
            "--data-dir".into(),
            data.to_string(),
        ]
    };
    let args = ingest_args(ingest_data.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Our --data-dir: a restart finds the same index and evidence.
    let mut ingest = Server::start(&args, &env);

    let created = cases.cli(&["case", "create", "kill -9"]);
    let case = stdout(&created).trim().to_string();
    let upload = ingest.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]);
    assert!(upload.status.success(), "{}", stderr(&upload));
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();

    // Kill at about half.
    let deadline = Instant::now() + Duration::from_secs(600);
    while progress(&ingest) < events / 2 {
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}",
            ingest.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_kill = progress(&ingest);
    ingest.child.kill().unwrap(); // SIGKILL
    ingest.child.wait().unwrap();
    assert!(
        at_kill < events,
        "killed before the end ({at_kill} of {events})"
    );

    let restarted_at = Instant::now();
    let restarted = Server::start(&args, &env);
    let bound = Duration::from_secs(LEASE_TTL_SECS + RECONCILE_SECS + 10);
    assert!(
        wait_for_log(&restarted, "ingest run started", 1, bound),
        "the file was not picked up again within lease TTL + reconcile period (+10 s start-up slack):\n{}",
        restarted.log_text()
    );
    eprintln!(
        "re-run started {:.1?} after the restart",
        restarted_at.elapsed()
    );

    let record = wait_until_processed(
        &cases,
        &case,
        &file_id,
        Duration::from_secs(900),
        &restarted,
    );
    assert_eq!(record["status"], "indexed", "{record}");
    assert_eq!(record["records_read"], events);
    assert_eq!(record["events_indexed"], events);
    assert_eq!(record["records_rejected"], 0);

    assert_eq!(
        search_total(&restarted, &case),
        events,
        "exactly one copy of every event"
    );
    drop(ingest);
}
