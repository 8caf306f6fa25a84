//! OpenCTI deliveries against a local server that answers as OpenCTI's GraphQL API
//! documents (casescope_testkit::opencti; OpenCTI cannot run here): enrichment of 5,000
//! IOCs in 10 requests, what OpenCTI knows written onto each IOC (found or not),
//! nothing asked again unless forced; indicators imported in pages, filtered by label,
//! bounded; the token nowhere.

mod common;

use casescope_testkit::opencti::{FakeOpenCti, indicator};
use common::*;

const CTI_TOKEN: &str = "6b2a41f0-canary-cti-token";

/// 5,000 IOCs of the types OpenCTI looks up, and 10 command lines it cannot.
fn many_iocs() -> Arc<Memory> {
    let mut iocs: Vec<IocItem> = (0..5_000)
        .map(|i| {
            let (ioc_type, value) = match i % 4 {
                0 => (IocType::Sha256, format!("{:064x}", i)),
                1 => (IocType::Domain, format!("host{i}.evil.example")),
                2 => (IocType::Url, format!("http://host{i}.evil.example/p")),
                _ => (IocType::Ip, format!("203.0.{}.{}", i / 256, i % 256)),
            };
            IocItem {
                id: format!("ioc-{i}"),
                ioc_type: ioc_type as i32,
                value,
                enabled: true,
                ..Default::default()
            }
        })
        .collect();
    iocs.extend((0..10).map(|i| IocItem {
        id: format!("cmd-{i}"),
        ioc_type: IocType::CommandLine as i32,
        value: format!("powershell -enc {i}"),
        enabled: true,
        ..Default::default()
    }));
    Arc::new(Memory {
        iocs,
        hosts: Vec::new(),
        events: Mutex::new(Vec::new()),
        enrichments: Mutex::new(HashMap::new()),
        imported: Mutex::new(Vec::new()),
    })
}

#[tokio::test]
async fn five_thousand_iocs_are_enriched_in_ten_requests() {
    let source = many_iocs();
    // One value in three is known to OpenCTI.
    let known: HashMap<String, (String, i64)> = source
        .iocs
        .iter()
        .enumerate()
        .filter(|(i, ioc)| i % 3 == 0 && ioc.ioc_type != IocType::CommandLine as i32)
        .map(|(i, ioc)| {
            (
                ioc.value.clone(),
                ("Domain-Name".to_string(), (i % 100) as i64),
            )
        })
        .collect();
    let expected_found = known.len();
    let cti = FakeOpenCti::start(CTI_TOKEN, known).await;
    let rig = rig_with(false, source.clone()).await;
    let (stop, _worker) = rig.start_worker();
    let integration = rig
        .api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: "opencti".into(),
            base_url: cti.url(),
            secret: Some(pb::SecretInput {
                source: Some(pb::secret_input::Source::Value(CTI_TOKEN.into())),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let enrich = |force: bool| pb::EnrichIocsRequest {
        case_id: Some(CaseId { value: CASE.into() }),
        integration_id: integration.id.clone(),
        ioc_ids: Vec::new(),
        force,
    };
    let queued = rig
        .api
        .enrich_iocs(Request::new(enrich(false)))
        .await
        .unwrap()
        .into_inner();
    let done = rig.finished(&queued).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Succeeded, "{done:?}");
    assert_eq!(
        (done.items_total, done.items_succeeded, done.items_failed),
        (5_000, 5_000, 0)
    );
    assert_eq!(cti.requests(), 10, "5,000 values, 500 per query");
    assert!(
        done.last_error
            .contains("10 IOCs are of types OpenCTI has no observable for"),
        "{}",
        done.last_error
    );
    let stored = source.enrichments.lock().unwrap().clone();
    assert_eq!(stored.len(), 5_000);
    let found: Vec<Value> = stored
        .values()
        .map(|j| serde_json::from_str::<Value>(j).unwrap())
        .filter(|v| v["found"] == true)
        .collect();
    assert_eq!(found.len(), expected_found);
    let first: Value = serde_json::from_str(&stored["ioc-0"]).unwrap();
    assert_eq!(first["found"], true);
    assert_eq!(first["labels"], serde_json::json!(["malicious", "c2"]));
    assert_eq!(
        first["related"],
        serde_json::json!(["related-to Malware Emotet"])
    );
    assert_eq!(first["indicators"][0]["revoked"], false);
    let second: Value = serde_json::from_str(&stored["ioc-1"]).unwrap();
    assert_eq!(second["found"], false);
    assert!(!stored.contains_key("cmd-0"));
    assert!(stored.values().all(|j| !j.contains(CTI_TOKEN)));
    assert!(!format!("{done:?}").contains(CTI_TOKEN));

    // An IOC list (of another source) that says they were enriched: nothing asked again...
    let enriched = Arc::new(Memory {
        iocs: source
            .iocs
            .iter()
            .cloned()
            .map(|mut i| {
                i.enriched = true;
                i
            })
            .collect(),
        hosts: Vec::new(),
        events: Mutex::new(Vec::new()),
        enrichments: Mutex::new(HashMap::new()),
        imported: Mutex::new(Vec::new()),
    });
    let rig = rig_with(false, enriched.clone()).await;
    let (stop_again, _again) = rig.start_worker();
    let integration = rig
        .api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: "opencti".into(),
            base_url: cti.url(),
            secret: Some(pb::SecretInput {
                source: Some(pb::secret_input::Source::Value(CTI_TOKEN.into())),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let again = |force: bool| pb::EnrichIocsRequest {
        case_id: Some(CaseId { value: CASE.into() }),
        integration_id: integration.id.clone(),
        ioc_ids: Vec::new(),
        force,
    };
    let before = cti.requests();
    let done = rig
        .finished(
            &rig.api
                .enrich_iocs(Request::new(again(false)))
                .await
                .unwrap()
                .into_inner(),
        )
        .await;
    assert_eq!(status(&done), pb::DeliveryStatus::Succeeded);
    assert_eq!((done.items_total, cti.requests() - before), (0, 0));
    // ...unless forced.
    let done = rig
        .finished(
            &rig.api
                .enrich_iocs(Request::new(again(true)))
                .await
                .unwrap()
                .into_inner(),
        )
        .await;
    assert_eq!(done.items_succeeded, 5_000);
    assert_eq!(cti.requests() - before, 10);
    // An enrichment needs an OpenCTI integration.
    let iris = rig.integration("http://127.0.0.1:9").await;
    let refused = rig
        .api
        .enrich_iocs(Request::new(pb::EnrichIocsRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            integration_id: iris.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    stop.cancel();
    stop_again.cancel();
}

/// A server that misbehaves in one way, on loopback.
#[tokio::test]
async fn indicators_are_read_in_pages_and_only_those_with_the_labels_imported() {
    let indicators: Vec<Value> = (0..1_000)
        .map(|n| {
            let label = if n % 2 == 0 { "apt" } else { "commodity" };
            indicator(
                n,
                &format!("[domain-name:value = 'i{n}.example']"),
                "Domain-Name",
                70,
                &[label],
            )
        })
        .collect();
    let cti = FakeOpenCti::with_indicators(CTI_TOKEN, HashMap::new(), indicators).await;
    let rig = rig(false, 0).await;
    let (stop, _worker) = rig.start_worker();
    let integration = rig
        .api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Opencti as i32,
            name: "cti".into(),
            base_url: cti.url(),
            secret: Some(pb::SecretInput {
                source: Some(pb::secret_input::Source::Value(CTI_TOKEN.into())),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let queued = rig
        .api
        .import_open_cti_indicators(Request::new(pb::ImportOpenCtiIndicatorsRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            integration_id: integration.id.clone(),
            labels: vec!["APT".into()],
            max_indicators: 900,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let done = rig.finished(&queued).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Succeeded, "{done:?}");
    // 900 fetched in pages of at most 200 (the server's cap): 5 requests; half have the label.
    assert_eq!(cti.requests(), 5);
    assert_eq!((done.items_total, done.items_succeeded), (450, 450));
    let imported = rig.source.imported.lock().unwrap().concat();
    assert_eq!(imported.len(), 450);
    assert!(
        imported
            .iter()
            .all(|p| p.starts_with("[domain-name:value = 'i"))
    );
    assert!(
        done.last_error.contains("450 indicators were not imported"),
        "{}",
        done.last_error
    );
    assert!(
        done.last_error
            .contains("more indicators matched than the 900"),
        "{}",
        done.last_error
    );
    // Over the bound: refused, naming it.
    let refused = rig
        .api
        .import_open_cti_indicators(Request::new(pb::ImportOpenCtiIndicatorsRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            integration_id: integration.id.clone(),
            max_indicators: 1_000_000,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("100000"), "{refused:?}");
    stop.cancel();
}
