//! Lease and inbox suite, run against SQLite and a real PostgreSQL.

use casescope_db::{CORE_MIGRATIONS, Database, DbOptions, Inbox, LeaseError, LeaseKey, LeaseStore};
use std::time::Duration;

async fn sqlite() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&[CORE_MIGRATIONS]).await.unwrap();
    (db, dir)
}

async fn postgres() -> (Database, ()) {
    let url = casescope_testkit::postgres_url().await;
    let options = DbOptions {
        max_connections: 20,
        ..DbOptions::default()
    };
    let db = Database::connect(&url, &options).await.unwrap();
    db.migrate(&[CORE_MIGRATIONS]).await.unwrap();
    (db, ())
}

async fn exactly_one_of_many_concurrent_acquirers_wins(db: Database) {
    let store = LeaseStore::new(db);
    for round in 0..100 {
        let key = LeaseKey::new(format!("file-{round}"), "ingest");
        let attempts = (0..8).map(|worker| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                store
                    .acquire(&key, &format!("worker-{worker}"), Duration::from_secs(30))
                    .await
            })
        });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<_> = results
            .into_iter()
            .filter_map(|joined| joined.unwrap().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(winners[0].epoch, 1, "round {round}");
    }
}

async fn expiry_hands_over_with_a_higher_epoch_and_fences_the_old_holder(db: Database) {
    sqlx::raw_sql("CREATE TABLE work (id TEXT PRIMARY KEY, value BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO work (id, value) VALUES ('w', 0)")
        .execute(db.pool())
        .await
        .unwrap();
    let store = LeaseStore::new(db.clone());
    let key = LeaseKey::new("file-a", "detect");
    let old = store
        .acquire(&key, "old", Duration::from_millis(200))
        .await
        .unwrap()
        .expect("free lease is acquired");
    assert!(
        store
            .acquire(&key, "new", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "a held lease cannot be taken"
    );
    // The old holder writes while it holds the lease: one row.
    let mut tx = store.fenced(&old).await.unwrap();
    let written = sqlx::query("UPDATE work SET value = 1 WHERE id = 'w'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(written.rows_affected(), 1);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.expired("detect", 10).await.unwrap(),
        vec![key.clone()],
        "the reconciler sees the expired lease"
    );
    let new = store
        .acquire(&key, "new", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert!(new.epoch > old.epoch, "epoch {} > {}", new.epoch, old.epoch);
    assert!(store.expired("detect", 10).await.unwrap().is_empty());

    // Every write by the old holder now affects zero rows.
    assert!(matches!(
        store.fenced(&old).await,
        Err(LeaseError::Fenced { .. })
    ));
    assert!(matches!(
        store.renew(&old, Duration::from_secs(30)).await,
        Err(LeaseError::Fenced { .. })
    ));
    let inline = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE work SET value = 2 WHERE id = 'w' AND EXISTS ({})",
        LeaseStore::FENCE_PREDICATE
    )))
    .bind(&old.key.resource)
    .bind(&old.key.stage)
    .bind(&old.holder)
    .bind(old.epoch)
    .bind(casescope_db::now_micros())
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(inline.rows_affected(), 0);
    assert!(
        !store.release(&old).await.unwrap(),
        "a stale release is a no-op"
    );
    let value: i64 = sqlx::query_scalar("SELECT value FROM work WHERE id = 'w'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(value, 1, "only the valid holder's write landed");

    // The new holder can write, renew and release.
    let new = store.renew(&new, Duration::from_secs(30)).await.unwrap();
    let mut tx = store.fenced(&new).await.unwrap();
    sqlx::query("UPDATE work SET value = 3 WHERE id = 'w'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store.release(&new).await.unwrap());
    let again = store
        .acquire(&key, "third", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(again.epoch, new.epoch + 1);
}

async fn inbox_claims_each_message_once(db: Database) {
    let inbox = Inbox::new(db.clone(), "test-consumer");
    let mut tx = db.begin().await.unwrap();
    assert!(inbox.claim(&mut tx, "m-1").await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert!(!inbox.claim(&mut tx, "m-1").await.unwrap());
    assert!(inbox.claim(&mut tx, "m-2").await.unwrap());
    tx.rollback().await.unwrap();
    // The rolled-back claim of m-2 is not recorded.
    let mut tx = db.begin().await.unwrap();
    assert!(inbox.claim(&mut tx, "m-2").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(inbox.prune(Duration::ZERO).await.unwrap(), 2);
}

async fn migrations_are_idempotent(db: Database) {
    db.migrate(&[CORE_MIGRATIONS]).await.unwrap();
    db.migrate(&[CORE_MIGRATIONS]).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE service = 'core'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(applied, CORE_MIGRATIONS.steps.len() as i64);
    db.ping().await.unwrap();
}

async fn keep_alive_renews_until_dropped_and_reports_a_takeover(db: Database) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = LeaseStore::new(db.clone());
    let ttl = Duration::from_millis(300);
    let key = LeaseKey::new("file-k", "ingest");
    let lease = store.acquire(&key, "a", ttl).await.unwrap().unwrap();
    let told = Arc::new(AtomicBool::new(false));
    let guard = {
        let told = told.clone();
        store.keep_alive(&lease, ttl, move || told.store(true, Ordering::SeqCst))
    };
    // Well past the TTL, the lease is still held: the guard renewed it.
    tokio::time::sleep(ttl * 3).await;
    assert!(store.acquire(&key, "b", ttl).await.unwrap().is_none());
    assert!(!guard.is_lost() && !told.load(Ordering::SeqCst));
    // Taken over behind its back: the next renewal finds it and says so, once.
    sqlx::query("UPDATE leases SET holder = 'thief', epoch = epoch + 1 WHERE resource = 'file-k'")
        .execute(db.pool())
        .await
        .unwrap();
    tokio::time::sleep(ttl).await;
    assert!(guard.is_lost() && told.load(Ordering::SeqCst));
    drop(guard);

    // Dropping the guard stops the renewals: the lease lapses and can be taken.
    let key = LeaseKey::new("file-d", "ingest");
    let lease = store.acquire(&key, "a", ttl).await.unwrap().unwrap();
    drop(store.keep_alive(&lease, ttl, || {}));
    tokio::time::sleep(ttl * 2).await;
    let next = store.acquire(&key, "b", ttl).await.unwrap();
    assert_eq!(next.map(|l| l.epoch), Some(lease.epoch + 1));
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (db, _guard) = super::sqlite().await;
                super::$name(db).await;
            })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (db, _guard) = super::postgres().await;
                super::$name(db).await;
            })*
        }
    };
}

on_both_backends!(
    exactly_one_of_many_concurrent_acquirers_wins,
    expiry_hands_over_with_a_higher_epoch_and_fences_the_old_holder,
    inbox_claims_each_message_once,
    migrations_are_idempotent,
    keep_alive_renews_until_dropped_and_reports_a_takeover,
);
