//! Deliveries through the service, against local servers that answer as DFIR-IRIS's
//! REST API and OpenCTI's GraphQL API document (casescope_testkit::{iris, opencti};
//! neither product can run here), on SQLite and a real PostgreSQL:
//! - IRIS pushes: push, push again, change a comment, push again — IRIS holds one copy of
//!   everything, updated; reference ids looked up from the instance; a 429 with
//!   Retry-After waited out; a worker killed mid-push resumed under its lease without a
//!   duplicate; redirects to internal addresses refused; the API key in no delivery,
//!   error or fact;
//! - OpenCTI enrichment: 5,000 IOCs in 10 requests, what OpenCTI knows written onto each
//!   IOC (found or not), nothing asked again unless forced, the token nowhere.

use async_trait::async_trait;
use casescope_bus::{Bus, Outbox};
use casescope_bus::{InProcessBus, InProcessLimits};
use casescope_db::{Database, DbOptions};
use casescope_integrations::outbound::guard::Guard;
use casescope_integrations::secrets::SecretBox;
use casescope_integrations::source::{
    CaseInfo, CaseSource, CommentItem, EventItem, Events, ImportCounts, IocItem, SourceError,
};
use casescope_integrations::{
    ALL_MIGRATIONS, IntegrationsApi, IntegrationsSettings, WorkerSettings,
};
use casescope_proto::common::v1::CaseId;
use casescope_proto::integrations::v1 as pb;
use casescope_proto::integrations::v1::integrations_service_server::IntegrationsService;
use casescope_proto::ioc::v1::{IocType, Tlp};
use casescope_runtime::config::IpNet;
use casescope_testkit::iris::{
    CUSTOMER_ID, FakeIris, UNSPECIFIED_CATEGORY, WINDOWS_COMPUTER_ASSET_TYPE,
};
use casescope_testkit::opencti::{FakeOpenCti, indicator};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::Request;

const KEY: &str = "q8d2yJ1m0wYxkqvR3o7nE5b9ZkQ1bXh2c0t6uVw8aYs=";
const IRIS_KEY: &str = "iris-canary-5d1e0b7a";
const CASE: &str = "0193a3c4-0000-7000-8000-00000000c0de";

/// A case held in memory (what the cases and IOC services answer in production).
struct Memory {
    iocs: Vec<IocItem>,
    hosts: Vec<String>,
    events: Mutex<Vec<EventItem>>,
    /// IOC id → enrichment JSON, as the IOC service stores it.
    enrichments: Mutex<HashMap<String, String>>,
    /// Patterns of the indicators imported, per bundle.
    imported: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl CaseSource for Memory {
    async fn case(&self, _: &str) -> Result<CaseInfo, SourceError> {
        Ok(CaseInfo {
            name: "Ransomware at ACME".into(),
            description: "Encrypted file servers, 2026-11".into(),
        })
    }
    async fn iocs(&self, _: &str, limit: usize) -> Result<(Vec<IocItem>, bool), SourceError> {
        Ok((
            self.iocs.iter().take(limit).cloned().collect(),
            self.iocs.len() > limit,
        ))
    }
    async fn hosts(&self, _: &str) -> Result<Vec<String>, SourceError> {
        Ok(self.hosts.clone())
    }
    async fn events(&self, _: &str, _: &[String], limit: usize) -> Result<Events, SourceError> {
        let events = self.events.lock().unwrap();
        Ok(Events {
            items: events.iter().take(limit).cloned().collect(),
            left_out: events.len().saturating_sub(limit) as u64,
        })
    }
    async fn import_stix(
        &self,
        _: &str,
        bundle: Vec<u8>,
        source: &str,
    ) -> Result<ImportCounts, SourceError> {
        assert_eq!(source, "opencti");
        let bundle: Value = serde_json::from_slice(&bundle).unwrap();
        assert_eq!(bundle["type"], "bundle");
        let patterns: Vec<String> = bundle["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(
                    (o["type"].as_str(), o["spec_version"].as_str()),
                    (Some("indicator"), Some("2.1"))
                );
                o["pattern"].as_str().unwrap().to_string()
            })
            .collect();
        let read = patterns.len() as u64;
        self.imported.lock().unwrap().push(patterns);
        Ok(ImportCounts {
            records_read: read,
            created: read,
            ..Default::default()
        })
    }
    async fn set_enrichments(
        &self,
        _: &str,
        enrichments: Vec<(String, String)>,
    ) -> Result<u64, SourceError> {
        let mut stored = self.enrichments.lock().unwrap();
        let known: HashSet<&str> = self.iocs.iter().map(|i| i.id.as_str()).collect();
        let mut updated = 0;
        for (id, json) in enrichments {
            if known.contains(id.as_str()) {
                stored.insert(id, json);
                updated += 1;
            }
        }
        Ok(updated)
    }
}

fn memory(events: usize) -> Arc<Memory> {
    let ioc = |id: &str, ioc_type: IocType, value: &str| IocItem {
        id: id.into(),
        ioc_type: ioc_type as i32,
        value: value.into(),
        description: format!("seen on {value}"),
        tlp: Tlp::Amber as i32,
        labels: vec!["c2".into()],
        enabled: true,
        enriched: false,
    };
    Arc::new(Memory {
        iocs: vec![
            ioc("ioc-1", IocType::Ip, "203.0.113.50"),
            ioc("ioc-2", IocType::Sha256, &"ab".repeat(32)),
            ioc(
                "ioc-3",
                IocType::CommandLine,
                "vssadmin delete shadows /all /quiet",
            ),
        ],
        hosts: vec!["WS01.corp.local".into(), "DC01.corp.local".into()],
        events: Mutex::new(
            (0..events)
                .map(|i| EventItem {
                    event_id: format!("ev{i:04}"),
                    datetime: format!("2026-11-02T10:{:02}:{:02}.250000Z", i / 60, i % 60),
                    computer: if i == events - 1 {
                        "SRV9.corp.local".into()
                    } else if i % 2 == 0 {
                        "WS01.corp.local".into()
                    } else {
                        "DC01.corp.local".into()
                    },
                    channel: "Security".into(),
                    provider: "Microsoft-Windows-Security-Auditing".into(),
                    event_code: Some(4624),
                    tags: vec!["lateral-movement".into()],
                    starred: i % 7 == 0,
                    comments: if i % 5 == 0 {
                        vec![CommentItem {
                            author: "alice".into(),
                            body: format!("logon {i} from the jump host"),
                            created_at: String::new(),
                        }]
                    } else {
                        Vec::new()
                    },
                    fields: serde_json::from_value(serde_json::json!({
                        "TargetUserName": "adm-backup", "LogonType": 3
                    }))
                    .unwrap(),
                })
                .collect(),
        ),
        enrichments: Mutex::new(HashMap::new()),
        imported: Mutex::new(Vec::new()),
    })
}

struct Rig {
    api: IntegrationsApi,
    db: Database,
    bus: Arc<dyn Bus>,
    source: Arc<Memory>,
    _dir: Option<tempfile::TempDir>,
}

fn settings() -> IntegrationsSettings {
    IntegrationsSettings {
        guard: Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]),
        secrets: Some(Arc::new(SecretBox::from_text(KEY).unwrap())),
        ..Default::default()
    }
}

fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        ..Default::default()
    }
}

async fn rig(postgres: bool, events: usize) -> Rig {
    rig_with(postgres, memory(events)).await
}

async fn rig_with(postgres: bool, source: Arc<Memory>) -> Rig {
    rig_on(postgres, source, settings()).await
}

async fn rig_on(postgres: bool, source: Arc<Memory>, settings: IntegrationsSettings) -> Rig {
    let (url, dir) = if postgres {
        (casescope_testkit::postgres_url().await, None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        (
            format!("sqlite://{}", dir.path().join("integrations.db").display()),
            Some(dir),
        )
    };
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    Rig {
        api: IntegrationsApi::new(db.clone(), settings),
        db,
        bus: Arc::new(InProcessBus::new(InProcessLimits::default())),
        source,
        _dir: dir,
    }
}

impl Rig {
    /// Starts a worker (its own holder); the returned token stops it.
    fn start_worker(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let outbox = Outbox::new(self.db.clone(), self.bus.clone());
        let token = CancellationToken::new();
        tokio::spawn(
            outbox
                .clone()
                .relay(Duration::from_millis(100), token.clone()),
        );
        let worker = self
            .api
            .worker(outbox, self.source.clone(), worker_settings());
        let handle = tokio::spawn(worker.run(token.clone()));
        (token, handle)
    }

    async fn integration(&self, url: &str) -> pb::Integration {
        self.api
            .create_integration(Request::new(pb::CreateIntegrationRequest {
                kind: pb::IntegrationKind::DfirIris as i32,
                name: "iris".into(),
                base_url: url.into(),
                secret: Some(pb::SecretInput {
                    source: Some(pb::secret_input::Source::Value(IRIS_KEY.into())),
                }),
                timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn push(&self, integration: &pb::Integration) -> pb::Delivery {
        self.api
            .push_case_to_iris(Request::new(pb::PushCaseToIrisRequest {
                case_id: Some(CaseId { value: CASE.into() }),
                integration_id: integration.id.clone(),
                include_iocs: true,
                include_tagged_timeline: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    async fn get(&self, delivery: &pb::Delivery) -> pb::Delivery {
        self.api
            .get_delivery(Request::new(pb::GetDeliveryRequest {
                id: delivery.id.clone(),
                case_id: Some(CaseId { value: CASE.into() }),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until `delivery` is finished.
    async fn finished(&self, delivery: &pb::Delivery) -> pb::Delivery {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.get(delivery).await;
            let status = pb::DeliveryStatus::try_from(now.status).unwrap();
            if matches!(
                status,
                pb::DeliveryStatus::Succeeded | pb::DeliveryStatus::Failed
            ) {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "delivery never finished: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status(delivery: &pb::Delivery) -> pb::DeliveryStatus {
    pb::DeliveryStatus::try_from(delivery.status).unwrap()
}

fn posts(iris: &FakeIris, since: usize, needle: &str) -> usize {
    iris.requests()[since..]
        .iter()
        .filter(|r| r.contains(needle))
        .count()
}

/// Our events in IRIS: each `casescope:<id>` tag, and how often it is there.
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

fn unique(tags: &[String]) -> bool {
    tags.iter().collect::<HashSet<_>>().len() == tags.len()
}

async fn push_twice_then_a_changed_comment(postgres: bool) {
    let rig = rig(postgres, 20).await;
    let iris = FakeIris::start(IRIS_KEY).await;
    let mut facts = rig
        .bus
        .subscribe("casescope.v1.integrations.>")
        .await
        .unwrap();
    let (stop, _worker) = rig.start_worker();
    let integration = rig.integration(&iris.url()).await;

    // First push: everything created.
    let first = rig.finished(&rig.push(&integration).await).await;
    assert_eq!(status(&first), pb::DeliveryStatus::Succeeded, "{first:?}");
    // The case, 3 IOCs, 3 hosts (two frequent ones and one only a pushed event has),
    // 20 events.
    assert_eq!(
        (first.items_total, first.items_succeeded, first.items_failed),
        (27, 27, 0)
    );
    let cases = iris.cases();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case_soc_id"], CASE);
    assert_eq!(cases[0]["case_customer"], CUSTOMER_ID);
    assert_eq!(first.remote_reference, cases[0]["case_id"].to_string());
    // Ids come from the instance's lists, not from IRIS's defaults.
    let types: HashSet<u64> = iris
        .iocs()
        .iter()
        .map(|i| i["ioc_type_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        types,
        HashSet::from([3076, 3113, 3096]),
        "ip-any, sha256, other"
    );
    assert!(iris.iocs().iter().all(|i| i["ioc_tlp_id"] == 302), "amber");
    assert_eq!(iris.assets().len(), 3);
    assert!(
        iris.assets()
            .iter()
            .all(|a| a["asset_type_id"] == WINDOWS_COMPUTER_ASSET_TYPE)
    );
    let events = iris.events();
    assert_eq!(events.len(), 20);
    assert!(
        events
            .iter()
            .all(|e| e["event_category_id"] == UNSPECIFIED_CATEGORY)
    );
    assert!(events.iter().all(|e| e["event_tz"] == "+00:00"));
    assert_eq!(events[0]["event_date"], "2026-11-02T10:00:00.250000");
    let srv9 = iris
        .assets()
        .iter()
        .find(|a| a["asset_name"] == "SRV9.corp.local")
        .unwrap()["asset_id"]
        .clone();
    assert_eq!(events[19]["event_assets"], serde_json::json!([srv9]));
    assert!(
        events[5]["event_content"]
            .as_str()
            .unwrap()
            .contains("alice: logon 5 from the jump host")
    );

    // Second push, nothing changed: nothing created, nothing updated.
    let before = iris.requests().len();
    let second = rig.finished(&rig.push(&integration).await).await;
    assert_eq!(status(&second), pb::DeliveryStatus::Succeeded, "{second:?}");
    assert_eq!((second.items_total, second.items_succeeded), (27, 27));
    assert_eq!(
        posts(&iris, before, "add"),
        0,
        "{:?}",
        &iris.requests()[before..]
    );
    assert_eq!(posts(&iris, before, "update"), 0);

    // A comment changes: that one event is updated in place.
    rig.source.events.lock().unwrap()[5].comments[0].body =
        "logon 5: the attacker's first hop".into();
    let before = iris.requests().len();
    let third = rig.finished(&rig.push(&integration).await).await;
    assert_eq!(status(&third), pb::DeliveryStatus::Succeeded, "{third:?}");
    assert_eq!(posts(&iris, before, "/case/timeline/events/update/"), 1);
    assert_eq!(posts(&iris, before, "add"), 0);
    let events = iris.events();
    assert_eq!(events.len(), 20, "one copy of every event");
    assert!(unique(&our_tags(&iris)));
    let updated = events
        .iter()
        .find(|e| {
            e["event_tags"]
                .as_str()
                .unwrap()
                .starts_with("casescope:ev0005,")
        })
        .unwrap();
    assert!(
        updated["event_content"]
            .as_str()
            .unwrap()
            .contains("the attacker's first hop")
    );
    assert!(
        !updated["event_content"]
            .as_str()
            .unwrap()
            .contains("from the jump host")
    );
    assert_eq!(
        (iris.cases().len(), iris.iocs().len(), iris.assets().len()),
        (1, 3, 3)
    );

    // Facts: one delivery.succeeded per push, without the key.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let fact = tokio::time::timeout(Duration::from_secs(10), facts.next())
            .await
            .expect("a fact")
            .unwrap();
        let text = String::from_utf8(fact.payload.to_vec()).unwrap();
        assert!(!text.contains(IRIS_KEY));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(fact.subject, format!("casescope.v1.integrations.{CASE}"));
        seen.push(value);
    }
    assert!(
        seen.iter()
            .all(|f| f["header"]["kind"] == "delivery.succeeded"
                && f["delivery_kind"] == "iris_push")
    );
    assert_eq!(seen[0]["items_total"], 27);

    // The log lists the three, newest first; no answer holds the key.
    let list = rig
        .api
        .list_deliveries(Request::new(pb::ListDeliveriesRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.deliveries.len(), 3);
    assert_eq!(list.deliveries[0].id, third.id);
    assert!(!format!("{list:?}{first:?}").contains(IRIS_KEY));
    stop.cancel();
}

#[tokio::test]
async fn a_second_push_updates_and_never_duplicates_on_sqlite() {
    push_twice_then_a_changed_comment(false).await;
}

#[tokio::test]
async fn a_second_push_updates_and_never_duplicates_on_postgres() {
    push_twice_then_a_changed_comment(true).await;
}

#[tokio::test]
async fn a_worker_killed_mid_push_is_resumed_under_its_lease_without_duplicates() {
    let rig = rig(false, 30).await;
    let iris = FakeIris::start(IRIS_KEY).await;
    let integration = rig.integration(&iris.url()).await;
    // The 9th event is stored by IRIS and never answered: the worker is killed while
    // it waits, so it never learns the event's id.
    iris.hang_after_events(8);
    let (_stop_first, first) = rig.start_worker();
    let delivery = rig.push(&integration).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while iris.events().len() < 9 {
        assert!(
            Instant::now() < deadline,
            "the push never reached the 9th event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;
    let midway = rig.get(&delivery).await;
    assert_eq!(status(&midway), pb::DeliveryStatus::InProgress);

    // Another worker takes the delivery once the dead one's lease expires.
    let (stop, _second) = rig.start_worker();
    let done = rig.finished(&delivery).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2);
    let tags = our_tags(&iris);
    assert_eq!(tags.len(), 30, "every event once");
    assert!(unique(&tags));
    assert_eq!(iris.cases().len(), 1);
    assert_eq!(iris.assets().len(), 3);
    // The resumed push looked for what the dead one had made, once.
    assert_eq!(posts(&iris, 0, "GET /case/timeline/events/list"), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_throttled_instance_is_waited_for_as_it_asks() {
    let rig = rig(false, 3).await;
    let iris = FakeIris::start(IRIS_KEY).await;
    let integration = rig.integration(&iris.url()).await;
    let (stop, _worker) = rig.start_worker();
    iris.throttle(2, 1);
    let started = Instant::now();
    let done = rig.finished(&rig.push(&integration).await).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 1, "retried within the attempt");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 honoured twice"
    );
    let throttled = iris.requests().len();
    assert!(throttled >= 2);
    stop.cancel();
}

#[tokio::test]
async fn a_wrong_key_fails_the_delivery_saying_so_without_the_key() {
    let rig = rig(false, 3).await;
    let iris = FakeIris::start("another-key").await;
    let integration = rig.integration(&iris.url()).await;
    let (stop, _worker) = rig.start_worker();
    let done = rig.finished(&rig.push(&integration).await).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Failed);
    assert_eq!(done.attempts, 1, "a 401 is not retried");
    assert_eq!(done.last_http_status, 401);
    assert!(
        done.last_error.contains("check the API key"),
        "{}",
        done.last_error
    );
    assert!(!format!("{done:?}").contains(IRIS_KEY));
    // Retried by hand: queued again, fails again the same way.
    let again = rig
        .api
        .retry_delivery(Request::new(pb::RetryDeliveryRequest {
            id: done.id.clone(),
            case_id: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&again), pb::DeliveryStatus::Queued);
    let done = rig.finished(&again).await;
    assert_eq!(status(&done), pb::DeliveryStatus::Failed);
    // Only a failed delivery is retried.
    let running = rig.push(&integration).await;
    let refused = rig
        .api
        .push_case_to_iris(Request::new(pb::PushCaseToIrisRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            integration_id: integration.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "one push of a case at a time"
    );
    rig.finished(&running).await;
    stop.cancel();
}

/// A server on an allowed address that redirects every request to `to`.
async fn redirector(to: &'static str) -> String {
    let app = axum::Router::new()
        .fallback(move || async move { (axum::http::StatusCode::FOUND, [("location", to)], "") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_redirect_to_an_internal_address_fails_the_push() {
    let rig = rig(false, 3).await;
    let (stop, _worker) = rig.start_worker();
    for (n, target) in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.2:9/",
    ]
    .into_iter()
    .enumerate()
    {
        let url = redirector(target).await;
        let integration = rig
            .api
            .create_integration(Request::new(pb::CreateIntegrationRequest {
                kind: pb::IntegrationKind::DfirIris as i32,
                name: format!("redirecting-{n}"),
                base_url: url,
                secret: Some(pb::SecretInput {
                    source: Some(pb::secret_input::Source::Value(IRIS_KEY.into())),
                }),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let done = rig.finished(&rig.push(&integration).await).await;
        assert_eq!(status(&done), pb::DeliveryStatus::Failed, "{done:?}");
        assert_eq!(done.attempts, 1, "a refusal is not retried");
        assert!(
            done.last_error.contains("refused: a redirect"),
            "{}",
            done.last_error
        );
        assert!(!done.last_error.contains(IRIS_KEY));
    }
    stop.cancel();
}

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
async fn hostile(mode: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                match mode {
                    // Headers and the start of the envelope, then silence.
                    "stall" => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{\"status\": \"succ")
                            .await;
                        std::future::pending::<()>().await;
                    }
                    // Reads the request, never answers.
                    "silent" => std::future::pending::<()>().await,
                    // A 1 GB answer, streamed without announcing its length.
                    _ => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = vec![b'x'; 1 << 20];
                        let head = format!("{:x}\r\n", chunk.len());
                        for _ in 0..1024 {
                            if socket.write_all(head.as_bytes()).await.is_err()
                                || socket.write_all(&chunk).await.is_err()
                                || socket.write_all(b"\r\n").await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn stalling_silent_and_huge_answers_fail_the_delivery_in_bounded_time() {
    let mut quick = settings();
    quick.outbound.retry.attempts = 2;
    quick.outbound.retry.base = Duration::from_millis(50);
    let rig = rig_on(false, memory(3), quick).await;
    let (stop, _worker) = rig.start_worker();
    for (n, (mode, expected, attempts)) in [
        ("stall", "within 1 s (timeout)", 2),
        ("silent", "within 1 s (timeout)", 2),
        ("huge", "larger than 16777216 bytes", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let integration = rig
            .api
            .create_integration(Request::new(pb::CreateIntegrationRequest {
                kind: pb::IntegrationKind::DfirIris as i32,
                name: format!("hostile-{n}"),
                base_url: hostile(mode).await,
                secret: Some(pb::SecretInput {
                    source: Some(pb::secret_input::Source::Value(IRIS_KEY.into())),
                }),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                max_attempts: 2,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let started = Instant::now();
        let done = rig.finished(&rig.push(&integration).await).await;
        let took = started.elapsed();
        assert_eq!(
            status(&done),
            pb::DeliveryStatus::Failed,
            "{mode}: {done:?}"
        );
        assert!(
            done.last_error.contains(expected),
            "{mode}: {}",
            done.last_error
        );
        assert_eq!(
            done.attempts, attempts,
            "{mode}: a refusal is final, a timeout retried"
        );
        // Two delivery attempts of two calls of at most 1 s, and the pauses between.
        assert!(took < Duration::from_secs(15), "{mode} took {took:?}");
        assert!(!done.last_error.contains(IRIS_KEY));
    }
    stop.cancel();
}

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

const HOOK_KEY: &str = "hook-canary-91b3";

/// A webhook receiver checking each request's signature; the first `fail` requests
/// are answered 503.
async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let got: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            let seen = seen.clone();
            async move {
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let signed = headers
                    .get("x-casescope-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if signed != casescope_integrations::webhook::signature(HOOK_KEY, &body) {
                    return StatusCode::UNAUTHORIZED;
                }
                if n < fail {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                store
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn facts_a_webhook_asked_for_are_delivered_signed_once_each() {
    use casescope_bus::{ConsumerConfig, OutboundMessage, run_consumer, subjects};
    use casescope_integrations::fanout;
    let rig = rig(false, 0).await;
    let (stop, _worker) = rig.start_worker();
    // Two 503s first: the delivery is retried within its attempt.
    let (url, got) = receiver(2).await;
    let webhook = rig
        .api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::Webhook as i32,
            name: "soc".into(),
            base_url: url,
            secret: Some(pb::SecretInput {
                source: Some(pb::secret_input::Source::Value(HOOK_KEY.into())),
            }),
            settings: Some(pb::IntegrationSettings {
                kind_settings: Some(pb::integration_settings::KindSettings::Webhook(
                    pb::WebhookSettings {
                        topics: vec![pb::ExportTopic::Detections as i32],
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    for (_, family) in fanout::TOPICS {
        let config = ConsumerConfig::new(fanout::consumer_name(family), fanout::filter(family));
        tokio::spawn(run_consumer(
            rig.bus.clone(),
            config,
            Arc::new(rig.api.fanout()),
            stop.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fact =
        serde_json::json!({"header": {"kind": "detections.found", "case_id": CASE}, "count": 3});
    // The same fact twice (a redelivery), and a fact of a topic the webhook did not ask for.
    for _ in 0..2 {
        rig.bus
            .publish(
                OutboundMessage::json(subjects::detection_facts(CASE), "fact-1", &fact).unwrap(),
            )
            .await
            .unwrap();
    }
    rig.bus
        .publish(OutboundMessage::json(subjects::case_facts(CASE), "fact-2", &fact).unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["topic"], "detections");
    assert_eq!(got[0]["case_id"], CASE);
    assert_eq!(got[0]["fact"], fact);
    let log = rig
        .api
        .list_deliveries(Request::new(pb::ListDeliveriesRequest {
            integration_id: webhook.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.deliveries.len(), 1);
    assert_eq!(status(&log.deliveries[0]), pb::DeliveryStatus::Succeeded);
    assert_eq!(log.deliveries[0].remote_reference, "HTTP 204");
    assert!(!format!("{log:?}{got:?}").contains(HOOK_KEY));
    stop.cancel();
}
