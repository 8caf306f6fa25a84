//! Ingest rides out outages of every server it depends on: cases and ingest as separate
//! processes over a nats-server, a PostgreSQL and an OpenSearch node of this test's own,
//! which it stops (as a crash would) and starts again, one after the other, while a
//! large synthetic EVTX is being ingested:
//! - while a server is down, the ingest process is not ready and `/readyz` names it;
//! - once all are back, the file is indexed with exactly as many events as it has
//!   records, every one searchable and in the OpenSearch index once;
//! - the facts stream holds each status change of the file once (by fact id), ending
//!   with `indexed` and the exact counts.
//!
//! Size: CASESCOPE_TEST_OUTAGE_EVENTS (default 150,000; progress is logged every 50,000).

use casescope_bus::{Bus, JetStreamBus, JetStreamOptions};
use casescope_e2e::{
    Server, http_get, ingest_progress, opensearch_count, search_total, stderr, stdout,
    wait_until_processed,
};
use casescope_testkit::outage::StoppableServer;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(5);

/// Waits (bounded) until `server`'s `/readyz` answers `code` with a body containing
/// `says`; returns the body.
fn wait_for_readiness(server: &Server, code: u16, says: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        let answer = http_get(server.port(), "/readyz");
        if let Some((got, body)) = &answer
            && *got == code
            && body.contains(says)
        {
            return body.clone();
        }
        last = answer;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/readyz did not answer {code} saying {says:?} within 60 s (last: {last:?}):\n{}",
        server.log_text()
    );
}

/// Stops `server`, checks that every process says so in its readiness, waits, starts
/// it again, and waits until every process is ready.
fn outage(what: &str, server: &StoppableServer, processes: &[(&Server, &str)]) {
    let started = Instant::now();
    server.stop();
    for (process, says) in processes {
        let body = wait_for_readiness(process, 503, says);
        eprintln!("{what} stopped: /readyz says {}", body.trim());
    }
    std::thread::sleep(OUTAGE.saturating_sub(started.elapsed()));
    server
        .start()
        .unwrap_or_else(|error| panic!("cannot start {what} again: {error}"));
    for (process, _) in processes {
        wait_for_readiness(process, 200, "ready");
    }
    eprintln!("{what} back after {:?}", started.elapsed());
}

#[test]
fn ingest_completes_exactly_through_opensearch_nats_and_postgres_outages() {
    let events: u64 = std::env::var("CASESCOPE_TEST_OUTAGE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let Some(opensearch) = StoppableServer::opensearch() else {
        assert!(
            std::env::var("CASESCOPE_TEST_REQUIRE_OPENSEARCH").as_deref() != Ok("1"),
            "CASESCOPE_TEST_REQUIRE_OPENSEARCH=1 but no OpenSearch test node is installed"
        );
        eprintln!("skipped: no OpenSearch (run scripts/install-opensearch.sh)");
        return;
    };
    let opensearch = opensearch.expect("start a private OpenSearch node");
    let nats = StoppableServer::nats().expect("start a private nats-server");
    let postgres = StoppableServer::postgres().expect("start a private PostgreSQL");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let [cases_db, ingest_db] =
        [(); 2].map(|_| runtime.block_on(casescope_testkit::create_database(&postgres.url)));
    let (namespace, index) = casescope_e2e::fresh_names("out");
    let env = casescope_e2e::opensearch_env(&opensearch.url, &index);
    let env = casescope_e2e::env_refs(&env);
    let cases = casescope_e2e::start_cases_service(&nats.url, &cases_db, &namespace, &env);
    let cases_addr = format!("cases={}", cases.address);
    let ingest = casescope_e2e::start_service(
        "ingest",
        &nats.url,
        &ingest_db,
        &namespace,
        &["--service-addr", &cases_addr],
        &env,
    );
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("big.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 3);
    let created = cases.cli(&["case", "create", "outages"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case = stdout(&created).trim().to_string();
    let upload = ingest.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]);
    assert!(upload.status.success(), "{}", stderr(&upload));
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();

    // The outages start once parsing is under way.
    let deadline = Instant::now() + Duration::from_secs(600);
    while ingest_progress(&ingest) == 0 {
        assert!(
            Instant::now() < deadline,
            "no progress:\n{}",
            ingest.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    outage("OpenSearch", &opensearch, &[(&ingest, "event store: ")]);
    outage(
        "nats-server",
        &nats,
        &[(&ingest, "bus: "), (&cases, "bus: ")],
    );
    outage(
        "PostgreSQL",
        &postgres,
        &[(&ingest, "ingest database: "), (&cases, "cases database: ")],
    );
    let finished_before_the_last_outage = ingest.log_text().contains("ingest run finished");

    let record = wait_until_processed(&cases, &case, &file_id, Duration::from_secs(900), &ingest);
    assert_eq!(record["status"], "indexed", "{record}");
    assert_eq!(record["records_read"], events, "{record}");
    assert_eq!(record["events_indexed"], events, "{record}");
    assert_eq!(record["records_rejected"], 0, "{record}");
    assert_eq!(
        search_total(&ingest, &case),
        events,
        "every event searchable, once"
    );
    assert_eq!(
        opensearch_count(&opensearch.url, &index, &case),
        events,
        "the OpenSearch index holds exactly one document per record"
    );

    // The facts stream: each status change of the file once, the last one `indexed`.
    let facts = runtime.block_on(async {
        let mut options = JetStreamOptions::new(nats.url.clone());
        options.namespace = Some(namespace.clone());
        let bus = JetStreamBus::connect(&options)
            .await
            .expect("connect to nats");
        bus.recent(&casescope_bus::subjects::file_facts(&case), 10_000)
            .await
            .expect("read the facts stream")
    });
    let mut ids = HashSet::new();
    let mut statuses = Vec::new();
    for fact in &facts {
        assert!(
            ids.insert(fact.message_id.clone()),
            "fact {} is in the stream twice",
            fact.message_id
        );
        let body: serde_json::Value = serde_json::from_slice(&fact.payload).unwrap();
        assert_eq!(
            body["header"]["fact_id"],
            fact.message_id.as_str(),
            "{body}"
        );
        assert_eq!(body["file_id"], file_id.as_str(), "{body}");
        statuses.push(body["status"].as_str().unwrap_or_default().to_string());
        if body["status"] == "indexed" {
            assert_eq!(body["events_indexed"], events, "{body}");
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "indexed").count(),
        1,
        "one `indexed` fact: {statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("indexed"),
        "{statuses:?}"
    );
    eprintln!(
        "{events} events indexed exactly through three outages (parsing had {}finished \
         before the last one); facts: {statuses:?}",
        if finished_before_the_last_outage {
            ""
        } else {
            "not "
        }
    );
    drop(runtime);
}
