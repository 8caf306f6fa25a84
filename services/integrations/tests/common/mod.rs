//! What the delivery suites share: a case held in memory (what the cases and IOC
//! services answer in production), the service on SQLite or a real PostgreSQL with an
//! in-process bus, workers, and waiting for a delivery to finish.
#![allow(dead_code, unused_imports)]

pub use async_trait::async_trait;
pub use casescope_bus::{Bus, Outbox};
pub use casescope_bus::{InProcessBus, InProcessLimits};
pub use casescope_db::{Database, DbOptions};
pub use casescope_integrations::outbound::guard::Guard;
pub use casescope_integrations::secrets::SecretBox;
pub use casescope_integrations::source::{
    CaseInfo, CaseSource, CommentItem, EventItem, Events, ImportCounts, IocItem, SourceError,
};
pub use casescope_integrations::{
    ALL_MIGRATIONS, IntegrationsApi, IntegrationsSettings, WorkerSettings,
};
pub use casescope_proto::common::v1::CaseId;
pub use casescope_proto::integrations::v1 as pb;
pub use casescope_proto::integrations::v1::integrations_service_server::IntegrationsService;
pub use casescope_proto::ioc::v1::{IocType, Tlp};
pub use casescope_runtime::config::IpNet;
pub use casescope_testkit::iris::FakeIris;
pub use futures::StreamExt;
pub use serde_json::Value;
pub use std::collections::{HashMap, HashSet};
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};
pub use tokio_util::sync::CancellationToken;
pub use tonic::Request;

pub const KEY: &str = "q8d2yJ1m0wYxkqvR3o7nE5b9ZkQ1bXh2c0t6uVw8aYs=";
pub const IRIS_KEY: &str = "iris-canary-5d1e0b7a";
pub const CASE: &str = "0193a3c4-0000-7000-8000-00000000c0de";

/// A case held in memory (what the cases and IOC services answer in production).
pub struct Memory {
    pub iocs: Vec<IocItem>,
    pub hosts: Vec<String>,
    pub events: Mutex<Vec<EventItem>>,
    /// IOC id → enrichment JSON, as the IOC service stores it.
    pub enrichments: Mutex<HashMap<String, String>>,
    /// Patterns of the indicators imported, per bundle.
    pub imported: Mutex<Vec<Vec<String>>>,
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

pub fn memory(events: usize) -> Arc<Memory> {
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

pub struct Rig {
    pub api: IntegrationsApi,
    pub db: Database,
    pub bus: Arc<dyn Bus>,
    pub source: Arc<Memory>,
    pub _dir: Option<tempfile::TempDir>,
}

pub fn settings() -> IntegrationsSettings {
    IntegrationsSettings {
        guard: Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()]),
        secrets: Some(Arc::new(SecretBox::from_text(KEY).unwrap())),
        ..Default::default()
    }
}

pub fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        ..Default::default()
    }
}

pub async fn rig(postgres: bool, events: usize) -> Rig {
    rig_with(postgres, memory(events)).await
}

pub async fn rig_with(postgres: bool, source: Arc<Memory>) -> Rig {
    rig_on(postgres, source, settings()).await
}

pub async fn rig_on(postgres: bool, source: Arc<Memory>, settings: IntegrationsSettings) -> Rig {
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
    pub fn start_worker(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
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

    pub async fn integration(&self, url: &str) -> pb::Integration {
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

    pub async fn push(&self, integration: &pb::Integration) -> pb::Delivery {
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

    pub async fn get(&self, delivery: &pb::Delivery) -> pb::Delivery {
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
    pub async fn finished(&self, delivery: &pb::Delivery) -> pb::Delivery {
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

pub fn status(delivery: &pb::Delivery) -> pb::DeliveryStatus {
    pb::DeliveryStatus::try_from(delivery.status).unwrap()
}

pub fn posts(iris: &FakeIris, since: usize, needle: &str) -> usize {
    iris.requests()[since..]
        .iter()
        .filter(|r| r.contains(needle))
        .count()
}

/// Our events in IRIS: each `casescope:<id>` tag, and how often it is there.
pub fn our_tags(iris: &FakeIris) -> Vec<String> {
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

pub fn unique(tags: &[String]) -> bool {
    tags.iter().collect::<HashSet<_>>().len() == tags.len()
}
