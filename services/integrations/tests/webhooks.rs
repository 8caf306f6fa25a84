//! Webhooks: the facts a webhook asked for delivered signed (HMAC-SHA256), retried
//! after 503s, once each however often the bus hands them over; the key nowhere.

mod common;

use common::*;

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
