//! The audit log detects tampering and survives retention, on SQLite and PostgreSQL:
//! an edited record and a deleted one are found (the first named), deleting the newest
//! records is found, retention drops old records behind a signed checkpoint and the
//! chain still verifies, and a forged checkpoint is refused.

use casescope_db::{Database, DbOptions};
use casescope_gateway::audit::AuditFilter;
use casescope_gateway::tokens::{KeySet, generate_private_pem};
use casescope_gateway::{ALL_MIGRATIONS, AuditLog, AuditRecord, ChainBreak};
use std::sync::Arc;
use std::time::Duration;

async fn log_on(url: &str) -> (AuditLog, Database) {
    let db = Database::connect(url, &DbOptions::default()).await.unwrap();
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let keys = KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap();
    (AuditLog::new(db.clone(), Arc::new(keys)), db)
}

fn record(n: i64, at: i64) -> AuditRecord {
    AuditRecord {
        at,
        actor_user_id: format!("user-{}", n % 3),
        actor_username: format!("analyst{}", n % 3),
        auth_method: "session".into(),
        method: "/casescope.cases.v1.CasesService/GetCase".into(),
        case_id: "01a20545-ff79-73bd-be57-fc0fc36e8375".into(),
        outcome: if n % 5 == 0 { "denied" } else { "succeeded" }.into(),
        status_code: if n % 5 == 0 { 7 } else { 0 },
        client_address: "10.0.0.7".into(),
        ..Default::default()
    }
}

async fn fill(log: &AuditLog, count: i64, old: i64) {
    let now = casescope_db::now_micros();
    let day = 24 * 3600 * 1_000_000i64;
    for n in 1..=count {
        let at = if n <= old { now - 40 * day } else { now };
        assert_eq!(log.append(&record(n, at)).await.unwrap(), n);
    }
}

async fn exec(db: &Database, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(db.pool())
        .await
        .unwrap();
}

async fn scenario(url: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>>) {
    // Intact, then one record edited and a later one deleted: the first is named.
    let (log, db) = log_on(&url().await).await;
    fill(&log, 30, 0).await;
    assert_eq!(log.verify().await, Ok(30));
    let newest = log.list(&AuditFilter::default(), 0, 5).await.unwrap();
    assert_eq!(
        newest.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [30, 29, 28, 27, 26]
    );
    let denied = log
        .list(
            &AuditFilter {
                outcomes: vec!["denied".into()],
                ..AuditFilter::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(denied.len(), 6, "records 5, 10, …, 30");
    assert!(denied.iter().all(|e| e.record.outcome == "denied"));
    let by_user = log
        .list(
            &AuditFilter {
                actor_user_id: "user-1".into(),
                ..AuditFilter::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    assert_eq!(by_user.len(), 10);
    exec(
        &db,
        "UPDATE gateway_audit SET outcome = 'succeeded', status_code = 0 WHERE sequence = 10",
    )
    .await;
    exec(&db, "DELETE FROM gateway_audit WHERE sequence = 20").await;
    assert_eq!(log.verify().await, Err(ChainBreak::Edited { sequence: 10 }));

    // Only a deletion.
    let (log, db) = log_on(&url().await).await;
    fill(&log, 30, 0).await;
    exec(&db, "DELETE FROM gateway_audit WHERE sequence = 20").await;
    assert_eq!(
        log.verify().await,
        Err(ChainBreak::Missing {
            expected: 20,
            found: 21
        })
    );

    // The newest records deleted.
    let (log, db) = log_on(&url().await).await;
    fill(&log, 30, 0).await;
    exec(&db, "DELETE FROM gateway_audit WHERE sequence >= 29").await;
    assert_eq!(
        log.verify().await,
        Err(ChainBreak::TailMissing { last: 28, head: 30 })
    );

    // Retention: 12 old records dropped behind a checkpoint; the rest still verifies,
    // new records chain on; a tampered checkpoint is refused.
    let (log, db) = log_on(&url().await).await;
    fill(&log, 30, 12).await;
    assert_eq!(
        log.apply_retention(Duration::from_secs(30 * 24 * 3600))
            .await
            .unwrap(),
        12
    );
    assert_eq!(log.verify().await, Ok(18));
    log.append(&record(31, casescope_db::now_micros()))
        .await
        .unwrap();
    assert_eq!(log.verify().await, Ok(19));
    assert_eq!(
        log.apply_retention(Duration::from_secs(30 * 24 * 3600))
            .await
            .unwrap(),
        0
    );
    exec(&db, "UPDATE gateway_audit_checkpoints SET hash = 'forged'").await;
    assert_eq!(
        log.verify().await,
        Err(ChainBreak::BadCheckpoint { sequence: 12 })
    );
}

#[tokio::test]
async fn audit_chain_sqlite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    scenario(move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("audit-{n}.db")).display()
        );
        Box::pin(async move { url })
    })
    .await;
}

#[tokio::test]
async fn audit_chain_postgres() {
    scenario(|| Box::pin(casescope_testkit::postgres_url())).await;
}

#[tokio::test]
async fn concurrent_appends_keep_one_gapless_chain_postgres() {
    let (log, _db) = log_on(&casescope_testkit::postgres_url().await).await;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                log.append(&record(task * 100 + n, casescope_db::now_micros()))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.verify().await, Ok(200));
}
