//! Ingest scaled out on a real OpenSearch node: cases and two ingest replicas as
//! separate processes over a real nats-server and PostgreSQL, the replicas sharing one
//! evidence directory (as pods share a ReadWriteMany volume) and one OpenSearch index.
//! - The replica parsing a large synthetic EVTX is killed with SIGKILL midway; the other
//!   replica takes the file over once the lease expires and finishes it with exactly as
//!   many events as the file has records: no duplicate, no loss, nothing stuck.
//! - An upload begun on one replica and interrupted is resumed on the other, from the
//!   offset the first one holds durably, and ingested exactly.
//!
//! Size: CASESCOPE_TEST_SCALE_OUT_EVENTS (default 150,000; progress is logged every
//! 50,000 events).

use casescope_e2e::{
    Server, ingest_progress, metric, opensearch_count, opensearch_or_skip, search_total, stderr,
    stdout, wait_for_log, wait_until_processed,
};
use casescope_proto::common::v1::{CaseId, UploadId};
use casescope_proto::ingest::v1 as pb;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use std::time::{Duration, Instant};

const RECONCILE_SECS: u64 = 2;

/// The lease TTL: short, so that the take-over is quick (CASESCOPE_TEST_SCALE_OUT_LEASE_TTL_SECS,
/// default 4 s; `make test-large` uses 15 s, since on a small machine a renewal can come
/// late during a long run, and each lease lost counts as one of the file's attempts).
fn lease_ttl_secs() -> u64 {
    std::env::var("CASESCOPE_TEST_SCALE_OUT_LEASE_TTL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// cases and two ingest replicas sharing one evidence directory, on OpenSearch.
struct Cluster {
    cases: Server,
    replicas: Vec<Server>,
    opensearch: String,
    index: String,
    work: tempfile::TempDir,
}

impl Cluster {
    /// `None` (the test says it is skipped) when no OpenSearch can run here.
    fn start() -> Option<Cluster> {
        let opensearch = opensearch_or_skip()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let nats = casescope_testkit::nats_url();
        let cases_db = runtime.block_on(casescope_testkit::postgres_url());
        let ingest_db = runtime.block_on(casescope_testkit::postgres_url());
        drop(runtime);
        let (namespace, index) = casescope_e2e::fresh_names("scale");
        let work = tempfile::tempdir().unwrap();
        let mut env = casescope_e2e::opensearch_env(&opensearch, &index);
        env.retain(|(key, _)| *key != "CASESCOPE_RECONCILE_PERIOD_SECS");
        env.push(("CASESCOPE_LEASE_TTL_SECS", lease_ttl_secs().to_string()));
        env.push((
            "CASESCOPE_RECONCILE_PERIOD_SECS",
            RECONCILE_SECS.to_string(),
        ));
        let env = casescope_e2e::env_refs(&env);
        let cases = casescope_e2e::start_cases_service(&nats, &cases_db, &namespace, &env);
        // Both replicas use one data directory: the shared evidence volume.
        let shared = work.path().join("shared-evidence");
        let cases_addr = format!("cases={}", cases.address);
        let extra = [
            "--service-addr",
            &cases_addr,
            "--data-dir",
            shared.to_str().unwrap(),
        ];
        let replicas = (0..2)
            .map(|_| {
                casescope_e2e::start_service("ingest", &nats, &ingest_db, &namespace, &extra, &env)
            })
            .collect();
        Some(Cluster {
            cases,
            replicas,
            opensearch,
            index,
            work,
        })
    }

    fn create_case(&self, name: &str) -> String {
        let created = self.cases.cli(&["case", "create", name]);
        assert!(created.status.success(), "{}", stderr(&created));
        stdout(&created).trim().to_string()
    }

    /// The file is indexed with exactly `events` events, once each, in search and in
    /// the OpenSearch index.
    fn assert_exactly_indexed(&self, case: &str, file_id: &str, events: u64, log_of: &Server) {
        let record =
            wait_until_processed(&self.cases, case, file_id, Duration::from_secs(900), log_of);
        assert_eq!(record["status"], "indexed", "{record}");
        assert_eq!(record["records_read"], events);
        assert_eq!(record["events_indexed"], events);
        assert_eq!(record["records_rejected"], 0);
        assert_eq!(
            search_total(log_of, case),
            events,
            "exactly one copy of every event"
        );
        assert_eq!(
            opensearch_count(&self.opensearch, &self.index, case),
            events,
            "the OpenSearch index holds exactly one document per record"
        );
    }
}

#[test]
fn a_second_ingest_replica_finishes_the_file_of_a_killed_one() {
    let events: u64 = std::env::var("CASESCOPE_TEST_SCALE_OUT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000);
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let evidence = cluster.work.path().join("big.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 1);
    let case = cluster.create_case("scale out");
    let replicas = &mut cluster.replicas;
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
    let survivor = &cluster.replicas[0];
    assert_eq!(
        ingest_progress(survivor),
        0,
        "the other replica was not parsing the same file at the same time"
    );
    let bound = Duration::from_secs(lease_ttl_secs() + RECONCILE_SECS + 15);
    assert!(
        wait_for_log(survivor, "ingest run started", 1, bound),
        "the surviving replica did not take the file over within lease TTL + reconcile \
         period (+15 s slack):\n{}",
        survivor.log_text()
    );

    cluster.assert_exactly_indexed(&case, &file_id, events, survivor);

    // What the survivor's /metrics says of it, exactly.
    let survivor = &cluster.replicas[0];
    let value = |name: &str, labels: &[(&str, &str)]| metric(survivor, name, labels);
    // At least the killed replica's lease; with the 4 s TTL of this test, a renewal of
    // the survivor's own lease that comes late on a loaded machine is an expiry too.
    assert!(
        value("casescope_leases_expired_total", &[("stage", "ingest")])
            .is_some_and(|expired| expired >= 1.0),
        "the lease taken over from the killed replica is counted"
    );
    assert_eq!(
        value("casescope_ingest_files_total", &[("outcome", "indexed")]),
        Some(1.0)
    );
    assert_eq!(
        value("casescope_ingest_files_total", &[("outcome", "failed")]),
        Some(0.0),
        "the series exists from start-up, at zero"
    );
    assert_eq!(
        value("casescope_ingest_events_total", &[("outcome", "indexed")]),
        Some(events as f64)
    );
    assert!(
        value(
            "casescope_eventstore_written_total",
            &[("backend", "opensearch")]
        )
        .is_some_and(|written| written >= events as f64),
        "the survivor wrote the whole file again (idempotent by event id)"
    );
    assert!(
        value(
            "casescope_eventstore_bulk_duration_seconds_count",
            &[("backend", "opensearch")]
        )
        .is_some_and(|requests| requests >= 1.0)
    );
    assert_eq!(
        value(
            "casescope_bus_dead_letters_total",
            &[("consumer", "ingest-workers")]
        ),
        Some(0.0),
        "nothing was given up on"
    );
    assert!(
        value(
            "casescope_bus_consumer_pending",
            &[("consumer", "ingest-workers")]
        )
        .is_some(),
        "the ingest consumer's lag is sampled"
    );
}

#[test]
fn an_upload_begun_on_one_replica_is_finished_on_another() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let events = 20_000;
    let evidence = cluster.work.path().join("resumed.evtx");
    casescope_e2e::synth_evtx(&evidence, events, 3);
    let bytes = std::fs::read(&evidence).unwrap();
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let case = cluster.create_case("resumed upload");
    let header = |resume: Option<UploadId>| pb::UploadChunk {
        payload: Some(pb::upload_chunk::Payload::Header(pb::UploadHeader {
            case_id: Some(CaseId {
                value: case.clone(),
            }),
            file_name: "resumed.evtx".into(),
            declared_size_bytes: bytes.len() as u64,
            declared_sha256: sha256.clone(),
            timestamp_field: None,
            resume_upload_id: resume,
        })),
    };
    let data = |from: usize, to: usize| -> Vec<pb::UploadChunk> {
        (from..to)
            .step_by(64 * 1024)
            .map(|offset| pb::UploadChunk {
                payload: Some(pb::upload_chunk::Payload::Data(pb::UploadData {
                    offset: offset as u64,
                    data: bytes[offset..(offset + 64 * 1024).min(to)].to_vec(),
                })),
            })
            .collect()
    };
    let half = bytes.len() / 2;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let result = runtime.block_on(async {
        // Replica 0 gets the header and half of the file, then the stream ends.
        let mut first = IngestServiceClient::new(cluster.replicas[0].grpc().await);
        let mut messages = vec![header(None)];
        messages.extend(data(0, half));
        let cut = first.upload(futures::stream::iter(messages)).await;
        assert!(cut.is_err(), "an incomplete upload is not a file: {cut:?}");

        // Replica 1 knows where it stands (by the declared SHA-256) and takes the rest.
        let mut second = IngestServiceClient::new(cluster.replicas[1].grpc().await);
        let status = second
            .get_upload_status(pb::GetUploadStatusRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                lookup: Some(pb::get_upload_status_request::Lookup::DeclaredSha256(
                    sha256.clone(),
                )),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.state,
            pb::UploadState::Receiving as i32,
            "{status:?}"
        );
        let next = status.next_offset as usize;
        assert!(next > 0 && next <= half, "resume from {next} of {half}");
        let mut messages = vec![header(status.upload_id.clone())];
        messages.extend(data(next, bytes.len()));
        second
            .upload(futures::stream::iter(messages))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(result.sha256, sha256);
    assert!(!result.already_present);
    let file_id = result.file_id.unwrap().value;
    cluster.assert_exactly_indexed(&case, &file_id, events, &cluster.replicas[1]);
}
