//! The event index of detections (`detection_events`) on SQLite and PostgreSQL: the
//! event-id filter finds detections through it, deletes keep it in step, and the
//! backfill rebuilds it for detections stored before it existed.

use crate::repo::{DetectRepo, DetectionRow};
use crate::{ALL_MIGRATIONS, DetectApi, DetectSettings, EventsClient};
use casescope_bus::{Bus, InProcessBus, Outbox};
use casescope_db::{Database, DbOptions};
use casescope_proto::common::v1::{CaseId, EventId};
use casescope_proto::detect::v1 as pb;
use casescope_proto::detect::v1::detect_service_server::DetectService;
use std::sync::Arc;
use tonic::Request;

const CASE: &str = "0194f6a8-3c1e-7d2a-9b4e-5f6a7b8c9d0e";

fn detection(id: &str, file: &str, rule: &str, events: &[&str]) -> DetectionRow {
    DetectionRow {
        id: id.into(),
        case_id: CASE.into(),
        file_id: file.into(),
        scope: "file".into(),
        rule_id: rule.into(),
        rule_content_sha256: String::new(),
        rule_title: rule.into(),
        level: 4,
        event_ts: 1_000,
        computer: String::new(),
        channel: String::new(),
        event_code: None,
        record_id: None,
        event_ids: serde_json::to_string(events).unwrap(),
        tactics: ",,".into(),
        techniques: ",,".into(),
        matched_fields: "[]".into(),
        is_correlation: false,
        correlated_event_count: 0,
        first_ts: 1_000,
        ruleset_version: 1,
        detected_at: 1,
    }
}

/// Ids of the detections that fired on any of `events`, through the API's filter.
async fn fired_on(api: &DetectApi, events: &[&str]) -> Vec<String> {
    let listed = api
        .list_detections(Request::new(pb::ListDetectionsRequest {
            case_id: Some(CaseId { value: CASE.into() }),
            filter: Some(pb::DetectionFilter {
                event_ids: events
                    .iter()
                    .map(|e| EventId { value: (*e).into() })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = listed
        .detections
        .into_iter()
        .filter_map(|d| d.id.map(|i| i.value))
        .collect();
    ids.sort();
    ids
}

async fn event_index(db: Database) {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let repo = DetectRepo::new(db.clone());
    let outbox = Outbox::new(
        db.clone(),
        Arc::new(InProcessBus::default()) as Arc<dyn Bus>,
    );
    let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:9");
    let events = EventsClient::new(
        casescope_proto::channel::from_transport(endpoint.connect_lazy()),
        |_| {},
    );
    let api = DetectApi::new(db.clone(), DetectSettings::default(), outbox, events);
    // A fresh database has nothing to backfill; the task is then gone.
    assert_eq!(repo.backfill_detection_events().await.unwrap(), 0);

    // More events than one insert statement takes.
    let many: Vec<String> = (0..700).map(|n| format!("bulk{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut tx = db.begin().await.unwrap();
    for row in [
        detection("d1", "f1", "r1", &["e1", "e2"]),
        detection("d2", "f1", "r2", &["e2"]),
        detection("d3", "f2", "r1", &["e3"]),
        detection("d4", "f2", "r3", &many),
    ] {
        repo.insert_detection(&mut tx, &row).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(fired_on(&api, &["e1"]).await, ["d1"]);
    assert_eq!(fired_on(&api, &["e2"]).await, ["d1", "d2"]);
    assert_eq!(fired_on(&api, &["e1", "e3"]).await, ["d1", "d3"]);
    assert_eq!(fired_on(&api, &["bulk699"]).await, ["d4"]);
    assert!(fired_on(&api, &["e9"]).await.is_empty());
    // An id that merely contains another is not it (the old LIKE matched on quotes).
    assert!(fired_on(&api, &["e"]).await.is_empty());

    // Replacing one rule's detections of a file drops exactly their event rows.
    let mut tx = db.begin().await.unwrap();
    repo.delete_file_rows(&mut tx, CASE, "f1", Some(&["r2".to_string()]), None)
        .await
        .unwrap();
    repo.delete_detection(&mut tx, CASE, "d3").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(fired_on(&api, &["e2"]).await, ["d1"]);
    assert!(fired_on(&api, &["e3"]).await.is_empty());
    let rows = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(
        rows("SELECT COUNT(*) FROM detection_events").await,
        2 + 700,
        "no orphan event rows"
    );

    // Detections stored before the index existed: the backfill rebuilds it, resuming
    // from its saved position across batches.
    sqlx::query("DELETE FROM detection_events")
        .execute(db.pool())
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    for n in 0..2_100 {
        let row = detection(&format!("old{n:05}"), "f3", "r9", &["old-event"]);
        sqlx::query(
            "INSERT INTO detections (id, case_id, file_id, scope, rule_id, rule_content_sha256, \
             rule_title, level, event_ts, computer, channel, event_ids, tactics, techniques, \
             matched_fields, is_correlation, correlated_event_count, first_ts, ruleset_version, \
             detected_at) VALUES ($1, $2, $3, 'file', $4, '', '', 4, 1, '', '', $5, ',,', ',,', \
             '[]', 0, 0, 1, 1, 1)",
        )
        .bind(&row.id)
        .bind(CASE)
        .bind(&row.file_id)
        .bind(&row.rule_id)
        .bind(&row.event_ids)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO detect_maintenance (task, cursor_case, cursor_id) \
         VALUES ('detection_events', '', '')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        fired_on(&api, &["e1"]).await.is_empty(),
        "the index is empty"
    );
    assert_eq!(repo.backfill_detection_events().await.unwrap(), 2_100 + 2);
    assert_eq!(fired_on(&api, &["e1", "e2"]).await, ["d1"]);
    assert_eq!(
        rows("SELECT COUNT(*) FROM detection_events WHERE event_id = 'old-event'").await,
        2_100
    );
    assert_eq!(
        rows("SELECT COUNT(*) FROM detect_maintenance").await,
        0,
        "the task is done"
    );
    assert_eq!(repo.backfill_detection_events().await.unwrap(), 0);
}

#[tokio::test]
async fn event_index_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("detect.db").display());
    event_index(
        Database::connect(&url, &DbOptions::default())
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn event_index_on_postgres() {
    let url = casescope_testkit::postgres_url().await;
    event_index(
        Database::connect(&url, &DbOptions::default())
            .await
            .unwrap(),
    )
    .await;
}
