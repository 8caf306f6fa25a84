//! Balancing across a Service's ready pods, against a local server that speaks the
//! Kubernetes API's wire format for EndpointSlices (`casescope_testkit::kubernetes`; no
//! API server can run here): list and watch, a watch the server drops, and a watch
//! answered with `410 Gone`, after which the client must list again. The pods are two real gRPC servers (gRPC health) on
//! 127.0.0.1 and 127.0.0.2, on the same port, telling apart by their answer.

use casescope_discovery::{Target, balanced_channel};
use casescope_testkit::kubernetes::{FakeKubernetes, endpoint_slice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const NAMESPACE: &str = "dfir";
const SERVICE: &str = "casescope-detect";

fn slice(pods: &[(&str, bool)], port: u16) -> serde_json::Value {
    endpoint_slice(NAMESPACE, SERVICE, "detect-1", pods, port)
}

/// A pod: a gRPC health server on `ip:port` answering SERVING (pod A) or NOT_SERVING
/// (pod B) for the service name "who", so that each answer says which pod gave it.
async fn start_pod(ip: &str, port: u16, serving: bool) -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("who", status).await;
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap()
    });
    address
}

/// Which pod answered each of `n` calls: "a" or "b".
async fn who(client: &mut HealthClient<tonic::transport::Channel>, n: usize) -> Vec<&'static str> {
    let mut answers = Vec::new();
    for _ in 0..n {
        let request = HealthCheckRequest {
            service: "who".into(),
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), client.check(request))
            .await
            .expect("a call answered within 5 s")
            .expect("a pod answered");
        answers.push(if answer.into_inner().status == 1 {
            "a"
        } else {
            "b"
        });
    }
    answers
}

/// Waits (bounded) until `n` calls in a row all go to the pods of `expected`, and each
/// of those pods answered at least one of them.
async fn wait_for_pods(
    client: &mut HealthClient<tonic::transport::Channel>,
    expected: &[&str],
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answers = who(client, 40).await;
        let only_expected = answers.iter().all(|pod| expected.contains(pod));
        let all_seen = expected.iter().all(|pod| answers.contains(pod));
        if only_expected && all_seen {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: calls still went to {answers:?}, expected only and all of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_follow_the_ready_pods_through_watch_drops_and_410_gone() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pod_a = start_pod("127.0.0.1", 0, true).await;
    let port = pod_a.port();
    let pod_b = start_pod("127.0.0.2", port, false).await;
    assert_eq!(pod_b.port(), port);

    let api = Arc::new(FakeKubernetes::default());
    api.put(
        slice(&[("127.0.0.1", true), ("127.0.0.2", false)], port),
        true,
    );
    let url = api.start().await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let target = Target {
        namespace: NAMESPACE.into(),
        service: SERVICE.into(),
        port_name: "grpc".into(),
    };
    let (channel, watcher) = balanced_channel(client, target, |url| {
        Ok(tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2)))
    });
    let mut health = HealthClient::new(channel);

    // 1. Only pod A is ready: every call goes to it.
    wait_for_pods(&mut health, &["a"], "one ready pod").await;
    assert_eq!(api.lists(), 1);

    // 2. Pod B becomes ready (a watch event): calls are spread over both.
    api.put(
        slice(&[("127.0.0.1", true), ("127.0.0.2", true)], port),
        true,
    );
    wait_for_pods(&mut health, &["a", "b"], "two ready pods").await;

    // 3. The watch connection drops; the client watches again from where it was (no new
    //    list), and sees pod A stop being ready.
    let watches = api.watches();
    api.drop_watches();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while api.watches() == watches {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new watch after a drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.put(
        slice(&[("127.0.0.1", false), ("127.0.0.2", true)], port),
        true,
    );
    wait_for_pods(&mut health, &["b"], "pod A not ready").await;
    assert_eq!(api.lists(), 1, "a dropped watch is resumed, not re-listed");

    // 4. While no watch is open, pod A comes back and pod B goes away; the next watch is
    //    answered 410 Gone: the client lists again and follows the list.
    api.answer_next_watch_gone();
    api.put(slice(&[("127.0.0.1", true)], port), false);
    api.drop_watches();
    wait_for_pods(&mut health, &["a"], "after 410 Gone and a new list").await;
    assert_eq!(api.lists(), 2, "410 Gone makes the client list again");

    watcher.abort();
}
