//! What the cases-service suites share: a harness on SQLite or a real PostgreSQL.
#![allow(dead_code)]

use casescope_bus::{Bus, InProcessBus, Outbox};
use casescope_cases::{ALL_MIGRATIONS, CasesApi};
use casescope_db::{Database, DbOptions};
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_server::CasesService;
use casescope_proto::common::v1::{CaseId, PageRequest};
use casescope_proto::error::error_detail;
use std::sync::Arc;
use tonic::{Code, Request};

pub struct Harness {
    pub api: CasesApi,
    pub outbox: Outbox,
    pub bus: Arc<InProcessBus>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn harness_on(db: Database, dir: Option<tempfile::TempDir>) -> Harness {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let bus = Arc::new(InProcessBus::default());
    let outbox = Outbox::new(db.clone(), bus.clone() as Arc<dyn Bus>);
    Harness {
        api: CasesApi::new(db, outbox.clone()),
        outbox,
        bus,
        _dir: dir,
    }
}

pub async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cases.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, Some(dir)).await
}

pub async fn postgres() -> Harness {
    let url = casescope_testkit::postgres_url().await;
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, None).await
}

pub fn id(value: &str) -> Option<CaseId> {
    Some(CaseId {
        value: value.to_string(),
    })
}

pub async fn create(api: &CasesApi, name: &str) -> pb::Case {
    api.create_case(Request::new(pb::CreateCaseRequest {
        name: name.to_string(),
        description: format!("about {name}"),
        settings: None,
    }))
    .await
    .unwrap()
    .into_inner()
}

pub fn page(size: u32, cursor: &str) -> Option<PageRequest> {
    Some(PageRequest {
        page_size: size,
        cursor: cursor.to_string(),
    })
}

pub fn assert_invalid(status: tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let detail = error_detail(&status).expect("error detail attached");
    assert_eq!(detail.violations[0].field, field, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
}

#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test]
            async fn $name() { super::$name($crate::common::sqlite().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test]
            async fn $name() { super::$name($crate::common::postgres().await).await; })*
        }
    };
}
