//! `casescope serve` on embedded defaults: the README's first command.

use casescope_e2e::{Server, http_get, stderr, stdout};
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
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
fn health_readiness_and_unimplemented_rpcs() {
    let server = Server::start(&[], &[]);
    assert_eq!(http_get(server.port(), "/healthz").unwrap().0, 200);
    let (code, body) = http_get(server.port(), "/readyz").unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_eq!(http_get(server.port(), "/no/such/thing").unwrap().0, 404);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut detect = DetectServiceClient::connect(server.address.clone())
            .await
            .unwrap();
        let status = detect
            .list_rules(casescope_proto::detect::v1::ListRulesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status
                .message()
                .contains("casescope.detect.v1.DetectService/ListRules"),
            "{status:?}"
        );
        let mut health = tonic_health_client(server.address.clone()).await;
        let answer = health
            .check(casescope_proto_health_request(
                "casescope.cases.v1.CasesService",
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
