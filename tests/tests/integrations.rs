//! Integrations end to end (all-in-one, the CLI against a real server), against local
//! servers answering as DFIR-IRIS's REST API and OpenCTI's GraphQL API document
//! (casescope_testkit::{iris, opencti}; neither product can run here):
//! - `integration add iris --api-key-stdin`, `integration test`, `iris push --wait` of a
//!   case with tagged and commented events and an IOC; a second push changes nothing; an
//!   edited comment updates its one IRIS event in place; the delivery log lists the
//!   three; the API key is in no log line, CLI output or answer;
//! - `opencti enrich --wait`: what OpenCTI knows lands on the case's IOCs (the IOC
//!   service's records, `ioc list`), found or not; `opencti import --wait`: 1,200
//!   indicators in pages (revoked and low-confidence ones filtered by OpenCTI, an
//!   existing value counted as a duplicate, a compound AND pattern refused by the IOC
//!   import) become IOCs that are hunted over the case's events; the token nowhere.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::reports::{annotate_first, case_with_events};
use casescope_e2e::{json, stderr, stdout};
use casescope_proto::cases::v1 as cases;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, CommentId};
use casescope_testkit::iris::FakeIris;
use casescope_testkit::opencti::{FakeOpenCti, indicator};
use std::collections::HashMap;
use std::time::Duration;

const KEY: &str = "iris-e2e-canary-0c7d41";
/// base64 of 32 bytes (the deployment's sealing key).
const SEALING_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=";

fn posts(iris: &FakeIris, since: usize, needle: &str) -> usize {
    iris.requests()[since..]
        .iter()
        .filter(|r| r.contains(needle))
        .count()
}

#[test]
fn iris_push_twice_then_an_edited_comment() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let iris = runtime.block_on(FakeIris::start(KEY));
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("CASESCOPE_RECONCILE_PERIOD_SECS", "2"),
        ("CASESCOPE_INTEGRATIONS_KEY", SEALING_KEY),
        ("CASESCOPE_INTEGRATIONS_ALLOW_NETS", "127.0.0.1/32"),
    ];
    let deployment = Deployment::all_in_one(work.path(), &env);
    let api = deployment.api();
    let case = case_with_events(&deployment, work.path(), "Pushed to IRIS", 300, 11);
    let tagged = annotate_first(api, &case, 12, &["tag", &case, "lateral-movement"]);
    let comment = api.cli(&[
        "comment",
        &case,
        &tagged[0],
        "first logon from the jump host",
    ]);
    assert!(comment.status.success(), "{}", stderr(&comment));
    let comment_id = stdout(&comment).trim().to_string();
    let ioc = api.cli(&["ioc", "add", &case, "ip", "203.0.113.9"]);
    assert!(ioc.status.success(), "{}", stderr(&ioc));

    let token = api.token();
    let added = api.cli_with(
        &[("CASESCOPE_TOKEN", token)],
        &[
            "integration",
            "add",
            "iris",
            "--name",
            "iris",
            "--url",
            &iris.url(),
            "--api-key-stdin",
        ],
        &format!("{KEY}\n"),
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let tested = api.cli(&["integration", "test", "iris"]);
    assert!(tested.status.success(), "{}", stderr(&tested));
    assert!(
        stdout(&tested).contains("version v2.4.20"),
        "{}",
        stdout(&tested)
    );

    let mut outputs = Vec::new();
    let push = |outputs: &mut Vec<String>| {
        let pushed = api.cli(&["iris", "push", &case, "--wait"]);
        outputs.push(format!("{}{}", stdout(&pushed), stderr(&pushed)));
        assert!(pushed.status.success(), "{}", stderr(&pushed));
        stdout(&pushed)
    };
    let first = push(&mut outputs);
    assert!(first.contains("status   succeeded"), "{first}");
    let cases_in_iris = iris.cases();
    assert_eq!(cases_in_iris.len(), 1);
    assert_eq!(cases_in_iris[0]["case_soc_id"], case.as_str());
    assert_eq!(
        cases_in_iris[0]["case_name"],
        format!("#{} - Pushed to IRIS", cases_in_iris[0]["case_id"])
    );
    assert_eq!(iris.iocs().len(), 1);
    assert_eq!(iris.iocs()[0]["ioc_value"], "203.0.113.9");
    assert!(!iris.assets().is_empty(), "the case's hosts as assets");
    let events = iris.events();
    assert_eq!(events.len(), 12, "the tagged events");
    for id in &tagged {
        let ours = format!("casescope:{id}");
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event_tags"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .any(|t| t == ours))
                .count(),
            1,
            "{id} once"
        );
    }
    assert!(
        events
            .iter()
            .all(|e| !e["event_assets"].as_array().unwrap().is_empty())
    );

    // Nothing changed: nothing sent but the reads.
    let before = iris.requests().len();
    push(&mut outputs);
    assert_eq!(
        posts(&iris, before, "add"),
        0,
        "{:?}",
        &iris.requests()[before..]
    );
    assert_eq!(posts(&iris, before, "update"), 0);

    // An edited comment: its event is updated, nothing else.
    runtime.block_on(async {
        let mut client = CasesServiceClient::new(api.grpc().await);
        client
            .edit_comment(cases::EditCommentRequest {
                case_id: Some(CaseId {
                    value: case.clone(),
                }),
                id: Some(CommentId {
                    value: comment_id.clone(),
                }),
                body: "first logon: the attacker's way in".into(),
                expected_revision: 0,
            })
            .await
            .unwrap();
    });
    let before = iris.requests().len();
    push(&mut outputs);
    assert_eq!(posts(&iris, before, "/case/timeline/events/update/"), 1);
    assert_eq!(posts(&iris, before, "add"), 0);
    let events = iris.events();
    assert_eq!(events.len(), 12, "one copy of every event");
    let edited = events
        .iter()
        .find(|e| {
            e["event_tags"]
                .as_str()
                .unwrap()
                .split(',')
                .any(|t| t == format!("casescope:{}", tagged[0]))
        })
        .unwrap();
    let content = edited["event_content"].as_str().unwrap();
    assert!(content.contains("the attacker's way in"), "{content}");
    assert!(!content.contains("jump host"), "{content}");
    assert_eq!((iris.cases().len(), iris.iocs().len()), (1, 1));

    let log = json(api.cli(&["deliveries", "list", "--case", &case, "--json"]));
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|d| d["status"] == "succeeded" && d["kind"] == "iris-push"),
        "{log:?}"
    );
    let listed = api.cli(&["integration", "list", "--json"]);
    outputs.push(stdout(&listed));
    assert!(stdout(&listed).contains("\"secret_set\": true"));

    // The canary: the key went only in IRIS's Authorization header.
    std::thread::sleep(Duration::from_millis(200));
    for text in outputs.iter().chain([&api.log_text(), &format!("{log:?}")]) {
        assert!(!text.contains(KEY), "the API key leaked: {text}");
    }
    assert!(!api.log_text().contains(SEALING_KEY));
}

#[test]
fn opencti_enrichment_lands_on_the_case_iocs() {
    const TOKEN: &str = "a3c1e5d7-e2e-canary-cti";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let known = HashMap::from([(
        "evil-c2.example".to_string(),
        ("Domain-Name".to_string(), 85),
    )]);
    // 1,200 indicators: 1,190 domains, one revoked, five of confidence 10, a compound
    // AND pattern, an IP the case's events hold, and the domain the case already has.
    let mut indicators: Vec<serde_json::Value> = (0..1_190)
        .map(|n| {
            indicator(
                n,
                &format!("[domain-name:value = 'feed{n}.bad.example']"),
                "Domain-Name",
                80,
                &["feed"],
            )
        })
        .collect();
    let mut revoked = indicator(
        2_000,
        "[domain-name:value = 'revoked.bad.example']",
        "Domain-Name",
        80,
        &[],
    );
    revoked["revoked"] = serde_json::json!(true);
    indicators.push(revoked);
    for n in 0..5 {
        indicators.push(indicator(
            2_100 + n,
            &format!("[domain-name:value = 'weak{n}.example']"),
            "Domain-Name",
            10,
            &[],
        ));
    }
    indicators.push(indicator(
        2_200,
        "[ipv4-addr:value = '10.0.1.21' AND network-traffic:dst_port = 445]",
        "IPv4-Addr",
        90,
        &[],
    ));
    indicators.push(indicator(
        2_300,
        "[ipv4-addr:value = '10.0.1.21']",
        "IPv4-Addr",
        90,
        &["apt"],
    ));
    indicators.push(indicator(
        2_400,
        "[domain-name:value = 'evil-c2.example']",
        "Domain-Name",
        90,
        &[],
    ));
    let cti = runtime.block_on(FakeOpenCti::with_indicators(TOKEN, known, indicators));
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("CASESCOPE_INTEGRATIONS_KEY", SEALING_KEY),
        ("CASESCOPE_INTEGRATIONS_ALLOW_NETS", "127.0.0.1/32"),
        ("CASESCOPE_RECONCILE_PERIOD_SECS", "2"),
    ];
    let deployment = Deployment::all_in_one(work.path(), &env);
    let api = deployment.api();
    let case = case_with_events(&deployment, work.path(), "Enriched", 300, 5);
    for (kind, value) in [
        ("domain", "evil-c2.example"),
        ("ip", "198.51.100.7"),
        ("command_line", "whoami /all"),
    ] {
        let added = api.cli(&["ioc", "add", &case, kind, value]);
        assert!(added.status.success(), "{}", stderr(&added));
    }
    let added = api.cli_with(
        &[("CASESCOPE_TOKEN", api.token())],
        &[
            "integration",
            "add",
            "opencti",
            "--name",
            "cti",
            "--url",
            &cti.url(),
            "--api-key-stdin",
        ],
        &format!("{TOKEN}\n"),
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let tested = api.cli(&["integration", "test", "cti"]);
    assert!(
        stdout(&tested).contains("version 6.4.2"),
        "{}",
        stdout(&tested)
    );

    let enriched = api.cli(&["opencti", "enrich", &case, "--wait"]);
    assert!(enriched.status.success(), "{}", stderr(&enriched));
    let text = stdout(&enriched);
    assert!(text.contains("status   succeeded"), "{text}");
    assert!(text.contains("items    2 (2 done, 0 refused)"), "{text}");
    assert_eq!(cti.requests(), 2, "one test, one lookup of both values");

    let iocs = json(api.cli(&["ioc", "list", &case, "--json"]));
    let by_value = |value: &str| {
        iocs.as_array()
            .unwrap()
            .iter()
            .find(|i| i["value"] == value)
            .unwrap()["enrichment"]
            .clone()
    };
    let c2 = by_value("evil-c2.example");
    assert_eq!(c2["found"], true, "{c2}");
    assert_eq!(c2["score"], 85);
    assert_eq!(c2["labels"], serde_json::json!(["malicious", "c2"]));
    assert_eq!(by_value("198.51.100.7")["found"], false);
    assert!(by_value("whoami /all").is_null(), "not looked up");

    // Indicators: OpenCTI filters revoked and weak ones; the IOC import reads the rest.
    let before = cti.requests();
    let imported = api.cli(&[
        "opencti",
        "import",
        &case,
        "--min-confidence",
        "50",
        "--wait",
    ]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let report = stdout(&imported);
    assert!(report.contains("status   succeeded"), "{report}");
    // 1,193 read: 1,191 new IOCs, 1 duplicate (done), 1 refused (AND).
    assert!(
        report.contains("items    1193 (1192 done, 1 refused)"),
        "{report}"
    );
    assert_eq!(
        cti.requests() - before,
        6,
        "1,193 indicators in pages of 200"
    );
    let all = json(api.cli(&["ioc", "list", &case, "--limit", "0", "--json"]));
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3 + 1_191);
    assert!(
        all.iter()
            .all(|i| i["value"] != "revoked.bad.example" && i["value"] != "weak0.example")
    );
    let ip = all
        .iter()
        .find(|i| i["value"] == "10.0.1.21")
        .expect("the IP indicator");
    assert_eq!(ip["source"], "opencti");
    // The new IOCs are hunted over the case's events by themselves.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let listed = json(api.cli(&["ioc", "list", &case, "--contains", "10.0.1.21", "--json"]));
        if listed[0]["match_count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never hunted: {listed}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let outputs = format!("{iocs}{text}{report}{}", api.log_text());
    assert!(!outputs.contains(TOKEN));
}

/// Our events in IRIS: each `casescope:<id>` tag.
fn our_tags(iris: &FakeIris) -> Vec<String> {
    iris.events()
        .iter()
        .filter_map(|e| {
            e["event_tags"]
                .as_str()
                .and_then(|t| t.split(',').find(|t| t.starts_with("casescope:")))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_push_survives_its_integrations_process_killed_in_a_cluster() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let iris = runtime.block_on(FakeIris::start(KEY));
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("CASESCOPE_RECONCILE_PERIOD_SECS", "2"),
        ("CASESCOPE_LEASE_TTL_SECS", "5"),
        ("CASESCOPE_INTEGRATIONS_KEY", SEALING_KEY),
        ("CASESCOPE_INTEGRATIONS_ALLOW_NETS", "127.0.0.1/32"),
    ];
    let Some(mut deployment) = Deployment::multi_process(work.path(), &env, "iri") else {
        return;
    };
    let case = case_with_events(&deployment, work.path(), "Pushed from a cluster", 300, 17);
    let api = deployment.api();
    let tagged = annotate_first(api, &case, 40, &["tag", &case, "exfiltration"]);
    let added = api.cli_with(
        &[("CASESCOPE_TOKEN", api.token())],
        &[
            "integration",
            "add",
            "iris",
            "--name",
            "iris",
            "--url",
            &iris.url(),
            "--api-key-stdin",
        ],
        &format!("{KEY}\n"),
    );
    assert!(added.status.success(), "{}", stderr(&added));
    // The 11th event is stored by IRIS and never answered; the process is killed then.
    iris.hang_after_events(10);
    let queued = api.cli(&["iris", "push", &case]);
    assert!(queued.status.success(), "{}", stderr(&queued));
    let delivery = stdout(&queued)
        .split('\t')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while iris.events().len() < 11 {
        assert!(
            std::time::Instant::now() < deadline,
            "the push never got to the 11th event\n{}",
            deployment.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    deployment.restart_integrations_after_kill();
    let api = deployment.api();
    let done = loop {
        let got = json(api.cli(&["deliveries", "get", &delivery, "--case", &case, "--json"]));
        if got["status"] == "succeeded" || got["status"] == "failed" {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not finished: {got}\n{}",
            deployment.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    let tags = our_tags(&iris);
    assert_eq!(tags.len(), tagged.len(), "every tagged event once");
    assert_eq!(
        tags.iter().collect::<std::collections::HashSet<_>>().len(),
        tags.len()
    );
    assert_eq!(iris.cases().len(), 1);
    assert!(!deployment.logs().contains(KEY));
}
