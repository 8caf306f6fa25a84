//! `casescope serve` on embedded defaults: the README's first command.

use casescope_e2e::{Server, http_get, metric, stderr, stdout};
use casescope_proto::integrations::v1::integrations_service_client::IntegrationsServiceClient;
use std::time::Duration;

#[test]
fn cases_are_created_and_listed_through_the_cli() {
    let mut server = Server::start(&[], &[]);
    let created = server.cli(&[
        "case",
        "create",
        "Ransomware at ACME",
        "--description",
        "from e2e",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    assert_eq!(id.len(), 36, "prints the new id: {id:?}");

    let listed = server.cli(&["case", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let json: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(json["cases"][0]["id"], id.as_str());
    assert_eq!(json["cases"][0]["name"], "Ransomware at ACME");

    let shown = server.cli(&["case", "show", &id, "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let json: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(json["description"], "from e2e");

    let archived = server.cli(&["case", "archive", &id]);
    assert!(archived.status.success(), "{}", stderr(&archived));
    let listed = server.cli(&["case", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(
        json["cases"].as_array().unwrap().len(),
        0,
        "archived cases are hidden"
    );

    // Errors: stderr, non-zero exit, and what was wrong.
    let too_many = server.cli(&["case", "list", "--limit", "1001"]);
    assert!(!too_many.status.success());
    assert!(
        stderr(&too_many).contains("maximum page size 1000"),
        "{}",
        stderr(&too_many)
    );
    assert!(stdout(&too_many).is_empty());
    let missing = server.cli(&["case", "show", "01a20545-ff79-73bd-be57-fc0fc36e8376"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    let empty = server.cli(&["case", "create", "  "]);
    assert!(!empty.status.success());
    assert!(stderr(&empty).contains("name"), "{}", stderr(&empty));

    assert_eq!(
        server.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        server.log_text()
    );
    assert!(server.log_text().contains("casescope stopped"));
}

#[test]
fn health_readiness_and_every_service_served() {
    let server = Server::start(&[], &[]);
    assert_eq!(http_get(server.port(), "/healthz").unwrap().0, 200);
    let (code, body) = http_get(server.port(), "/readyz").unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_eq!(http_get(server.port(), "/no/such/thing").unwrap().0, 404);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut integrations = IntegrationsServiceClient::new(server.grpc().await);
        let request = casescope_proto::integrations::v1::ListIntegrationsRequest::default();
        // Without credentials the gateway answers first: nothing is revealed.
        let mut anonymous = IntegrationsServiceClient::connect(server.address.clone())
            .await
            .unwrap();
        let status = anonymous
            .list_integrations(request.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let listed = integrations.list_integrations(request).await.unwrap();
        assert!(listed.into_inner().integrations.is_empty());
        // Every RPC of the contract is served: a request without an integration is
        // refused by the integrations service itself, naming the field.
        let case = stdout(&server.cli(&["case", "create", "indicators"]))
            .trim()
            .to_string();
        let status = integrations
            .import_open_cti_indicators(
                casescope_proto::integrations::v1::ImportOpenCtiIndicatorsRequest {
                    case_id: Some(casescope_proto::common::v1::CaseId { value: case }),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("id"), "{status:?}");
        let mut health = tonic_health_client(server.address.clone()).await;
        let answer = health
            .check(casescope_proto_health_request(
                "casescope.cases.v1.CasesService",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, 1, "SERVING");
        let answer = health
            .check(casescope_proto_health_request(
                "casescope.integrations.v1.IntegrationsService",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status, 1, "SERVING");
    });
}

async fn tonic_health_client(
    address: String,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
}

fn casescope_proto_health_request(service: &str) -> tonic_health::pb::HealthCheckRequest {
    tonic_health::pb::HealthCheckRequest {
        service: service.to_string(),
    }
}

#[test]
fn invalid_configuration_is_reported_whole_before_binding() {
    let output = std::process::Command::new(casescope_e2e::casescope_binary())
        .args([
            "serve",
            "--service",
            "cases",
            "--listen",
            "nowhere",
            "--log-format",
            "xml",
        ])
        .env_remove("CASESCOPE_DATABASE_URL")
        .env_remove("CASESCOPE_NATS_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = stderr(&output);
    for problem in ["listen", "log_format", "database_url", "nats_url"] {
        assert!(text.contains(problem), "{problem} not reported:\n{text}");
    }
}

#[test]
fn an_unreachable_opensearch_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Bound and released: nothing listens there.
    let closed_port = casescope_testkit::free_port();
    let listen_port = casescope_testkit::free_port();
    let opensearch_url = format!("http://127.0.0.1:{closed_port}");
    let mut child = std::process::Command::new(casescope_e2e::casescope_binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{listen_port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CASESCOPE_LOG", "info,evtx=warn")
        .env("CASESCOPE_EVENT_STORE", "opensearch")
        .env("CASESCOPE_OPENSEARCH_URL", &opensearch_url)
        .env("CASESCOPE_OPENSEARCH_USERNAME", "casescope")
        .env("CASESCOPE_OPENSEARCH_PASSWORD", "not-to-be-seen-7f3a")
        // No retries: a refused connection is the whole answer (keeps the test fast).
        .env("CASESCOPE_OPENSEARCH_MAX_RETRIES", "0")
        .env("CASESCOPE_OPENSEARCH_CONNECT_TIMEOUT_SECS", "2")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("casescope serve kept running with an unreachable OpenSearch");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "cannot open the OpenSearch event store at {opensearch_url}"
        )),
        "{text}"
    );
    assert!(text.contains("event store unavailable"), "{text}");
    assert!(
        !text.contains("not-to-be-seen-7f3a"),
        "the password leaked:\n{text}"
    );
    assert!(
        !text.contains("casescope is serving"),
        "it must fail before serving:\n{text}"
    );
}

/// `/metrics` serves every metric docs/operations.md lists, under the documented
/// Prometheus name, and counts a file's events exactly.
#[test]
fn every_documented_metric_is_served() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    // The table's second column: `casescope_...` Prometheus names.
    let documented: Vec<String> = docs
        .lines()
        .filter(|line| line.starts_with("| `casescope."))
        .filter_map(|line| line.split('|').nth(2))
        .map(|cell| cell.trim().trim_matches('`').to_string())
        .collect();
    assert!(documented.len() >= 12, "the metrics table: {documented:?}");

    let server = Server::start(&[], &[]);
    let work = tempfile::tempdir().unwrap();
    let evidence = work.path().join("small.evtx");
    casescope_e2e::synth_evtx(&evidence, 1_000, 7);
    let created = server.cli(&["case", "create", "metrics"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case = stdout(&created).trim().to_string();
    let upload = server.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]);
    assert!(upload.status.success(), "{}", stderr(&upload));
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let record = casescope_e2e::wait_until_processed(
        &server,
        &case,
        &file_id,
        Duration::from_secs(120),
        &server,
    );
    assert_eq!(record["events_indexed"], 1_000, "{record}");

    let (code, text) = http_get(server.port(), "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in &documented {
        let served = text.lines().any(|line| {
            line.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(['{', ' ']) || rest.starts_with("_bucket"))
        });
        assert!(served, "{name} is documented but not served:\n{text}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| metric(&server, name, labels);
    assert_eq!(
        value("casescope_ingest_events_total", &[("outcome", "indexed")]),
        Some(1_000.0)
    );
    assert_eq!(
        value("casescope_ingest_files_total", &[("outcome", "indexed")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            "casescope_eventstore_written_total",
            &[("backend", "tantivy")]
        ),
        Some(1_000.0)
    );
    assert_eq!(
        value("casescope_ingest_files_total", &[("outcome", "failed")]),
        Some(0.0)
    );
}
