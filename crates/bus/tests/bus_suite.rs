//! One bus suite, run against the in-process bus and a real nats-server with JetStream.

use async_trait::async_trait;
use casescope_bus::{
    Bus, ConsumerConfig, Handler, HandlerError, InProcessBus, JetStreamBus, JetStreamOptions,
    OutboundMessage, ReceivedMessage, run_consumer,
};
use casescope_db::{CORE_MIGRATIONS, Database, DbOptions, Inbox};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SUBJECT: &str = "casescope.v1.jobs.test";

// Metrics are set up before any test records one: instruments created earlier would
// stay no-ops.
async fn in_process() -> Arc<dyn Bus> {
    casescope_runtime::telemetry::init_metrics_only();
    Arc::new(InProcessBus::default())
}

async fn jetstream() -> Arc<dyn Bus> {
    casescope_runtime::telemetry::init_metrics_only();
    let mut options = JetStreamOptions::new(casescope_testkit::nats_url());
    options.namespace = Some(format!("t{}", uuid::Uuid::new_v4().simple()));
    Arc::new(
        JetStreamBus::connect(&options)
            .await
            .expect("connect to nats"),
    )
}

fn job(id: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        subject: SUBJECT.to_string(),
        payload: body.as_bytes().to_vec().into(),
        message_id: id.to_string(),
        headers: Vec::new(),
    }
}

fn config(name: &str) -> ConsumerConfig {
    ConsumerConfig {
        ack_wait: Duration::from_secs(1),
        max_deliver: 3,
        ..ConsumerConfig::new(name, SUBJECT)
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn publishes_are_deduplicated_by_message_id(bus: Arc<dyn Bus>) {
    let first = bus.publish(job("dup-1", "a")).await.unwrap();
    let second = bus.publish(job("dup-1", "a")).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    let consumer = bus.consumer(&config("dedupe")).await.unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(batch.len(), 1);
    batch[0].acker.ack().await.unwrap();
    let empty = consumer
        .fetch(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(empty.is_empty(), "an acked message is not redelivered");
}

/// Commits its effect with the inbox claim, then fails the first delivery *after*
/// committing — as if the worker died between commit and ack.
struct CommitThenCrashOnce {
    db: Database,
    inbox: Inbox,
    calls: AtomicU64,
}

#[async_trait]
impl Handler for CommitThenCrashOnce {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut tx = self.db.begin().await.map_err(HandlerError::transient)?;
        if self
            .inbox
            .claim(&mut tx, &message.message_id)
            .await
            .map_err(HandlerError::transient)?
        {
            sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
                .bind(&message.message_id)
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::transient)?;
        }
        tx.commit().await.map_err(HandlerError::transient)?;
        if call == 0 {
            return Err(HandlerError::Transient {
                error: "simulated crash after commit".into(),
                retry_after: Duration::from_millis(10),
            });
        }
        Ok(())
    }
}

async fn a_message_delivered_twice_commits_its_effect_once(bus: Arc<dyn Bus>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    db.migrate(&[CORE_MIGRATIONS]).await.unwrap();
    sqlx::raw_sql("CREATE TABLE effects (message_id TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let handler = Arc::new(CommitThenCrashOnce {
        db: db.clone(),
        inbox: Inbox::new(db.clone(), "twice"),
        calls: AtomicU64::new(0),
    });
    bus.publish(job("effect-1", "x")).await.unwrap();
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run_consumer(
        bus.clone(),
        config("twice"),
        handler.clone(),
        shutdown.clone(),
    ));
    wait_until("the message was delivered twice", async || {
        handler.calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    shutdown.cancel();
    runner.await.unwrap().unwrap();
    let effects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(effects, 1, "two deliveries, one committed effect");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}

struct Hang;

#[async_trait]
impl Handler for Hang {
    async fn handle(&self, _message: &ReceivedMessage) -> Result<(), HandlerError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[derive(Default)]
struct Record {
    completed: std::sync::Mutex<Vec<(String, u64)>>,
}

#[async_trait]
impl Handler for Record {
    async fn handle(&self, message: &ReceivedMessage) -> Result<(), HandlerError> {
        self.completed
            .lock()
            .unwrap()
            .push((message.message_id.clone(), message.delivered));
        Ok(())
    }
}

async fn a_consumer_killed_mid_handler_has_its_message_completed_by_another(bus: Arc<dyn Bus>) {
    bus.publish(job("killed-1", "x")).await.unwrap();
    let first_worker = tokio::spawn(run_consumer(
        bus.clone(),
        config("killed"),
        Arc::new(Hang),
        CancellationToken::new(),
    ));
    // Let the first worker take the message and keep it alive with progress acks
    // for longer than ack_wait: no one else gets it meanwhile.
    let second = Arc::new(Record::default());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let shutdown = CancellationToken::new();
    let second_worker = tokio::spawn(run_consumer(
        bus.clone(),
        config("killed"),
        second.clone(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        second.completed.lock().unwrap().is_empty(),
        "a message in progress is not handed to a second worker"
    );
    first_worker.abort(); // the first worker dies mid-handler: no ack, no nak
    wait_until("the second worker completed the message", async || {
        !second.completed.lock().unwrap().is_empty()
    })
    .await;
    shutdown.cancel();
    second_worker.await.unwrap().unwrap();
    let completed = second.completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0].0, "killed-1");
    assert!(completed[0].1 >= 2, "it was a redelivery: {completed:?}");
}

struct AlwaysFails {
    calls: AtomicU64,
}

#[async_trait]
impl Handler for AlwaysFails {
    async fn handle(&self, _message: &ReceivedMessage) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(HandlerError::Transient {
            error: "downstream refused".into(),
            retry_after: Duration::from_millis(20),
        })
    }
}

fn dead_letters_counted(consumer: &str) -> Option<f64> {
    casescope_testkit::metric_value(
        &casescope_runtime::telemetry::prometheus_text()?,
        "casescope_bus_dead_letters_total",
        &[("consumer", consumer)],
    )
}

async fn a_message_that_always_fails_becomes_a_dead_letter(bus: Arc<dyn Bus>) {
    // Its own consumer name: the suite runs on both buses at once in one process.
    let name = format!("poison{}", uuid::Uuid::new_v4().simple());
    let subject = format!("casescope.v1.deadletter.{name}");
    assert_eq!(dead_letters_counted(&name), None);
    let mut dead_letters = bus.subscribe("casescope.v1.deadletter.>").await.unwrap();
    bus.publish(job("poison-1", "{\"bad\":true}"))
        .await
        .unwrap();
    let handler = Arc::new(AlwaysFails {
        calls: AtomicU64::new(0),
    });
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run_consumer(
        bus.clone(),
        config(&name),
        handler.clone(),
        shutdown.clone(),
    ));
    let live = tokio::time::timeout(Duration::from_secs(20), dead_letters.next())
        .await
        .expect("a dead letter is published")
        .expect("subscription open");
    assert_eq!(live.subject, subject);
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    runner.await.unwrap().unwrap();
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        3,
        "tried max_deliver times, then stopped"
    );
    let recorded = bus.recent(&subject, 10).await.unwrap();
    assert_eq!(recorded.len(), 1);
    let record: serde_json::Value = serde_json::from_slice(&recorded[0].payload).unwrap();
    assert_eq!(record["consumer"], name.as_str());
    assert_eq!(record["message_id"], "poison-1");
    assert_eq!(record["deliveries"], 3);
    assert_eq!(record["payload"], "{\"bad\":true}");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("downstream refused")
    );
    assert_eq!(dead_letters_counted(&name), Some(1.0), "counted once");
}

/// A consumer's lag is the number of its messages not yet handed out.
async fn a_consumer_reports_its_lag(bus: Arc<dyn Bus>) {
    let name = format!("lag{}", uuid::Uuid::new_v4().simple());
    let subject = format!("casescope.v1.jobs.{name}");
    let consumer = bus
        .consumer(&ConsumerConfig::new(&name, &subject))
        .await
        .unwrap();
    assert_eq!(consumer.pending().await.unwrap(), 0);
    for n in 0..3 {
        bus.publish(job(&format!("{name}-{n}"), "x").with_subject(&subject))
            .await
            .unwrap();
    }
    wait_until("three messages wait", async || {
        consumer.pending().await.unwrap() == 3
    })
    .await;
    let taken = consumer.fetch(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(consumer.pending().await.unwrap(), 2, "one handed out");
    taken[0].acker.ack().await.unwrap();
    assert_eq!(
        consumer.pending().await.unwrap(),
        2,
        "acking changes nothing"
    );
}

async fn facts_reach_live_subscribers_and_are_retained(bus: Arc<dyn Bus>) {
    let mut live = bus.subscribe("casescope.v1.cases.>").await.unwrap();
    for n in 0..3 {
        let fact = serde_json::json!({"n": n});
        bus.publish(
            OutboundMessage::json(format!("casescope.v1.cases.c{n}"), format!("f{n}"), &fact)
                .unwrap(),
        )
        .await
        .unwrap();
    }
    for n in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.subject, format!("casescope.v1.cases.c{n}"));
    }
    let last_two = bus.recent("casescope.v1.cases.>", 2).await.unwrap();
    let ids: Vec<_> = last_two.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["f1", "f2"]);
    assert!(matches!(
        bus.publish(job("x", "y").with_subject("nowhere.v1.x"))
            .await,
        Err(casescope_bus::BusError::UnknownSubject(_))
    ));
    bus.ready().await.unwrap();
}

/// Every durable facts consumer gets its own copy of every matching fact — those
/// retained before it was created too — and the jobs consumers see none of them.
async fn facts_consumers_each_get_every_matching_fact(bus: Arc<dyn Bus>) {
    let fact = |n: u32| {
        OutboundMessage::json(
            format!("casescope.v1.cases.c{n}"),
            format!("fact-{n}"),
            &serde_json::json!({"n": n}),
        )
        .unwrap()
    };
    bus.publish(fact(0)).await.unwrap(); // before any consumer exists
    let facts_config = |name: &str| ConsumerConfig {
        ack_wait: Duration::from_secs(5),
        ..ConsumerConfig::new(name, "casescope.v1.cases.>")
    };
    let ingest = bus.consumer(&facts_config("ingest-cases")).await.unwrap();
    let detect = bus.consumer(&facts_config("detect-cases")).await.unwrap();
    let jobs = bus.consumer(&config("jobs-only")).await.unwrap();
    bus.publish(fact(1)).await.unwrap();
    bus.publish(fact(2)).await.unwrap();
    bus.publish(job("not-a-fact", "x")).await.unwrap();
    bus.publish(fact(2)).await.unwrap(); // a duplicate: dropped by the dedupe window

    for consumer in [&ingest, &detect] {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.len() < 3 && tokio::time::Instant::now() < deadline {
            for delivery in consumer
                .fetch(10, Duration::from_millis(500))
                .await
                .unwrap()
            {
                seen.push(delivery.message.message_id.clone());
                delivery.acker.ack().await.unwrap();
            }
        }
        assert_eq!(seen, ["fact-0", "fact-1", "fact-2"]);
        // Acked: nothing comes again.
        assert!(
            consumer
                .fetch(10, Duration::from_millis(300))
                .await
                .unwrap()
                .is_empty()
        );
    }
    let job_ids: Vec<String> = jobs
        .fetch(10, Duration::from_millis(500))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message.message_id)
        .collect();
    assert_eq!(job_ids, ["not-a-fact"]);
    // A second handle on a durable name shares its position.
    let again = bus.consumer(&facts_config("ingest-cases")).await.unwrap();
    assert!(
        again
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

trait WithSubject {
    fn with_subject(self, subject: &str) -> Self;
}

impl WithSubject for OutboundMessage {
    fn with_subject(mut self, subject: &str) -> Self {
        self.subject = subject.to_string();
        self
    }
}

macro_rules! on_both_buses {
    ($($name:ident),* $(,)?) => {
        mod in_process_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::in_process().await).await; })*
        }
        mod jetstream_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::jetstream().await).await; })*
        }
    };
}

on_both_buses!(
    publishes_are_deduplicated_by_message_id,
    a_message_delivered_twice_commits_its_effect_once,
    a_consumer_killed_mid_handler_has_its_message_completed_by_another,
    a_message_that_always_fails_becomes_a_dead_letter,
    a_consumer_reports_its_lag,
    facts_reach_live_subscribers_and_are_retained,
    facts_consumers_each_get_every_matching_fact,
);
