//! The cases service as its own OS process (`--service cases`) over a real nats-server
//! and PostgreSQL: the CLI creates and lists cases through it, and a bus subscriber sees
//! the `casescope.v1.cases.*` facts as JSON.

use casescope_bus::{Bus, JetStreamBus, JetStreamOptions};
use casescope_e2e::{Server, http_get, stderr, stdout};
use futures::StreamExt;
use std::time::Duration;

#[test]
fn cases_service_alone_over_nats_and_postgres() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats_url = casescope_testkit::nats_url();
    let database_url = runtime.block_on(casescope_testkit::postgres_url());
    let namespace = format!("e2e{}", uuid::Uuid::new_v4().simple());

    let mut server = Server::start(
        &[
            "--service",
            "cases",
            "--nats-url",
            &nats_url,
            "--database-url",
            &database_url,
            "--nats-namespace",
            &namespace,
        ],
        &[],
    );
    let (code, body) = http_get(server.port(), "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");

    // A SOC-style subscriber on the facts subject, as any NATS client would.
    let subscriber = runtime.block_on(async {
        let mut options = JetStreamOptions::new(nats_url.clone());
        options.namespace = Some(namespace.clone());
        let bus = JetStreamBus::connect(&options).await.unwrap();
        let live = bus.subscribe("casescope.v1.cases.>").await.unwrap();
        (bus, live)
    });
    let (bus, mut live) = subscriber;

    let mut ids = Vec::new();
    for name in ["Lateral movement", "Exfiltration"] {
        let created = server.cli(&["case", "create", name]);
        assert!(created.status.success(), "{}", stderr(&created));
        ids.push(stdout(&created).trim().to_string());
    }
    let listed = server.cli(&["case", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let json: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let listed_ids: Vec<&str> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_ids,
        [ids[1].as_str(), ids[0].as_str()],
        "newest first"
    );

    runtime.block_on(async {
        for expected in &ids {
            let message = tokio::time::timeout(Duration::from_secs(15), live.next())
                .await
                .expect("a case fact arrives")
                .expect("subscription open");
            assert_eq!(message.subject, format!("casescope.v1.cases.{expected}"));
            let fact: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("facts are JSON");
            assert_eq!(fact["header"]["kind"], "case.created");
            assert_eq!(fact["header"]["case_id"], expected.as_str());
            assert_eq!(fact["header"]["producer"], "cases");
            assert_eq!(fact["case_snapshot"]["state"], "open");
            assert_eq!(
                message.message_id,
                fact["header"]["fact_id"].as_str().unwrap()
            );
        }
        // The facts are also retained in the FACTS stream for replays.
        let retained = bus.recent("casescope.v1.cases.>", 10).await.unwrap();
        assert_eq!(retained.len(), 2);
    });

    assert_eq!(
        server.terminate(Duration::from_secs(20)),
        Some(0),
        "{}",
        server.log_text()
    );
}
