//! The outbound layer against local servers that misbehave on purpose.

use super::*;
use casescope_runtime::config::IpNet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "canary-token-5b1e";

/// What the server does with one connection.
#[derive(Clone)]
enum Reply {
    /// Raw bytes, then close.
    Raw(String),
    /// Headers and part of a body, then silence.
    Stall(String),
    /// Reads the request, never answers.
    Silent,
    /// A chunked body of `n` bytes, streamed until the client closes.
    Endless,
}

struct Server {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn http(status: &str, headers: &[&str], body: &str) -> Reply {
    let mut text = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    Reply::Raw(text)
}

async fn read_head(socket: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !data.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// Serves `replies` in order (the last one repeats).
async fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (h, r) = (hits.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = h.fetch_add(1, Ordering::SeqCst);
            let reply = replies[n.min(replies.len() - 1)].clone();
            let r = r.clone();
            tokio::spawn(async move {
                let head = read_head(&mut socket).await;
                r.lock().unwrap().push(head);
                let mut sink = [0u8; 1024];
                match reply {
                    Reply::Raw(text) => {
                        let _ = socket.write_all(text.as_bytes()).await;
                    }
                    Reply::Stall(text) => {
                        let _ = socket.write_all(text.as_bytes()).await;
                        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                    }
                    Reply::Silent => while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {},
                    Reply::Endless => {
                        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                }
            });
        }
    });
    Server {
        addr,
        hits,
        requests,
    }
}

fn loopback_only() -> Guard {
    Guard::new(vec![IpNet::parse("127.0.0.1/32").unwrap()])
}

fn client(guard: Guard, timeout_ms: u64) -> Outbound {
    let settings = OutboundSettings {
        connect_timeout: Duration::from_secs(2),
        max_answer_bytes: 1024 * 1024,
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(50),
            max_pause: Duration::from_secs(2),
        },
    };
    Outbound::new(
        guard,
        settings,
        Duration::from_millis(timeout_ms),
        None,
        Some(Auth::Bearer(TOKEN.into())),
        Arc::new(Breaker::new(3, Duration::from_secs(60))),
    )
    .unwrap()
}

fn url(server: &Server, path: &str) -> Url {
    Url::parse(&format!("http://{}{path}", server.addr)).unwrap()
}

fn no_secret(error: &OutboundError) {
    assert!(!error.to_string().contains(TOKEN), "{error}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_for_then_succeeds() {
    let server = serve(vec![
        http("429 Too Many Requests", &["retry-after: 1"], "slow down"),
        http(
            "200 OK",
            &["content-type: application/json"],
            r#"{"ok":true}"#,
        ),
    ])
    .await;
    let started = std::time::Instant::now();
    let answer = client(loopback_only(), 2000)
        .send(&OutRequest::get(url(&server, "/api/ping?x=1")))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.attempts), (200, 2));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
    let requests = server.requests.lock().unwrap().clone();
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {TOKEN}"))
    );
}

#[tokio::test]
async fn retryable_statuses_give_up_after_the_attempts_and_open_the_circuit() {
    let server = serve(vec![http("503 Service Unavailable", &[], "maintenance")]).await;
    let outbound = client(loopback_only(), 2000);
    let error = outbound
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        OutboundError::Status {
            status: 503,
            excerpt: "maintenance".into()
        }
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    // Three failures in a row: the next call is refused without a connection.
    let error = outbound
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap_err();
    assert!(matches!(error, OutboundError::CircuitOpen(_)), "{error:?}");
    assert!(error.to_string().contains("circuit open"));
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_client_error_is_an_answer_not_a_retry() {
    let server = serve(vec![http(
        "401 Unauthorized",
        &[],
        r#"{"status":"error","message":"bad key"}"#,
    )])
    .await;
    let answer = client(loopback_only(), 2000)
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.attempts), (401, 1));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_stalls_mid_answer_times_out() {
    let server = serve(vec![Reply::Stall(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"data\": [".into(),
    )])
    .await;
    let started = std::time::Instant::now();
    let error = client(loopback_only(), 300)
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap_err();
    assert_eq!(error, OutboundError::Timeout(Duration::from_millis(300)));
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        3,
        "each attempt timed out"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    no_secret(&error);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = serve(vec![Reply::Silent]).await;
    let error = client(loopback_only(), 300)
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap_err();
    assert_eq!(error, OutboundError::Timeout(Duration::from_millis(300)));
}

#[tokio::test]
async fn a_huge_answer_is_refused_at_the_limit() {
    // Announced: refused before reading.
    let announced = serve(vec![Reply::Stall(
        "HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\nxxxx".into(),
    )])
    .await;
    let error = client(loopback_only(), 5000)
        .send(&OutRequest::get(url(&announced, "/")))
        .await
        .unwrap_err();
    assert_eq!(error, OutboundError::TooLarge(1024 * 1024));
    assert_eq!(announced.hits.load(Ordering::SeqCst), 1, "not retried");
    // Streamed without a length: cut at the limit.
    let streamed = serve(vec![Reply::Endless]).await;
    let error = client(loopback_only(), 5000)
        .send(&OutRequest::get(url(&streamed, "/")))
        .await
        .unwrap_err();
    assert_eq!(error, OutboundError::TooLarge(1024 * 1024));
}

#[tokio::test]
async fn redirects_to_private_or_metadata_addresses_are_refused() {
    for target in [
        "http://127.0.0.2:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
    ] {
        let server = serve(vec![http(
            "302 Found",
            &[&format!("location: {target}")],
            "",
        )])
        .await;
        let error = client(loopback_only(), 2000)
            .send(&OutRequest::get(url(&server, "/start")))
            .await
            .unwrap_err();
        let OutboundError::Refused(why) = &error else {
            panic!("{target}: {error:?}");
        };
        assert!(why.starts_with("a redirect:"), "{why}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "not retried");
    }
    // A redirect to an allowed address is followed.
    let end = serve(vec![http("200 OK", &[], "here")]).await;
    let start = serve(vec![http(
        "307 Temporary Redirect",
        &[&format!("location: {}", url(&end, "/end"))],
        "",
    )])
    .await;
    let answer = client(loopback_only(), 2000)
        .send(&OutRequest::get(url(&start, "/")))
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"here"[..]));
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let server = serve(vec![http("200 OK", &[], "ok")]).await;
    let error = client(Guard::default(), 2000)
        .send(&OutRequest::get(url(&server, "/")))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OutboundError::Refused(why) if why.contains("loopback")),
        "{error:?}"
    );
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "no connection was made"
    );
    // By name: checked after resolution.
    let by_name = Url::parse(&format!("http://localhost:{}/", server.addr.port())).unwrap();
    let error = client(Guard::default(), 2000)
        .send(&OutRequest::get(by_name.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OutboundError::Refused(why) if why.contains("localhost resolves to")),
        "{error:?}"
    );
    assert!(!error.transient());
    let answer = client(loopback_only(), 2000)
        .send(&OutRequest::get(by_name))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error_without_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = client(loopback_only(), 2000)
        .send(&OutRequest::get(
            Url::parse(&format!("http://127.0.0.1:{port}/api?key=secret-in-query")).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, OutboundError::Connect(_)), "{error:?}");
    assert!(!error.to_string().contains("secret-in-query"), "{error}");
}
