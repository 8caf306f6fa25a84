//! DFIR-IRIS pushes as deliveries, against a local server that answers as IRIS's REST
//! API documents (casescope_testkit::iris; IRIS cannot run here), on SQLite and a real
//! PostgreSQL: push, push again, change a comment, push again — IRIS holds one copy of
//! everything, updated; reference ids looked up from the instance; a 429 with
//! Retry-After waited out; a worker killed mid-push resumed under its lease without a
//! duplicate; redirects to internal addresses refused; stalling, silent and 1 GB
//! answers failing in bounded time; the API key in no delivery, error or fact.

mod common;

use casescope_testkit::iris::{CUSTOMER_ID, UNSPECIFIED_CATEGORY, WINDOWS_COMPUTER_ASSET_TYPE};
use common::*;

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
async fn redirector(on: &str, to: &'static str) -> String {
    let app = axum::Router::new()
        .fallback(move || async move { (axum::http::StatusCode::FOUND, [("location", to)], "") });
    let listener = tokio::net::TcpListener::bind(format!("{on}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_redirect_to_an_internal_address_fails_the_push() {
    // The deployment allows only the redirecting server's address (127.0.0.2): a
    // redirect to 127.0.0.1 or to the metadata endpoint is refused after it.
    let mut allowed = settings();
    allowed.guard = Guard::new(vec![IpNet::parse("127.0.0.2/32").unwrap()]);
    let rig = rig_on(false, memory(3), allowed).await;
    let (stop, _worker) = rig.start_worker();
    for (n, target) in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/",
        "http://[::1]:9/",
    ]
    .into_iter()
    .enumerate()
    {
        let url = redirector("127.0.0.2", target).await;
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
        assert_eq!(
            status(&done),
            pb::DeliveryStatus::Failed,
            "{target}: {done:?}"
        );
        assert_eq!(done.attempts, 1, "a refusal is not retried");
        assert!(
            done.last_error.contains("refused: a redirect"),
            "{target}: {}",
            done.last_error
        );
        assert!(!done.last_error.contains(IRIS_KEY));
    }
    // Called directly, 127.0.0.1 is refused before any connection.
    let direct = rig
        .api
        .create_integration(Request::new(pb::CreateIntegrationRequest {
            kind: pb::IntegrationKind::DfirIris as i32,
            name: "loopback".into(),
            base_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(direct.code(), tonic::Code::InvalidArgument, "{direct:?}");
    stop.cancel();
}

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
