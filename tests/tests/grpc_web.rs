//! gRPC-web over plain HTTP/1.1 (what a browser speaks), on `casescope serve`: unary
//! RPCs (GetCase; CreateCase, whose answer the gateway reads and replays) and a server-streaming one (ScanFileEvents, many messages) answer
//! through the same port as gRPC, with their status in the gRPC-web trailer frame.

use casescope_e2e::{Server, json, stderr, stdout};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::common::v1::{CaseId, FileId};
use casescope_proto::ingest::v1 as ingest_pb;
use prost::Message;
use std::io::{Read, Write};
use std::time::Duration;

/// One gRPC-web call over a fresh HTTP/1.1 connection: the data frames' payloads and
/// the status lines (`grpc-status:…`, `grpc-message:…`) of the trailer frame, or of the
/// headers for a trailers-only answer (an error before any message).
fn grpc_web_call(server: &Server, path: &str, request: &impl Message) -> (Vec<Vec<u8>>, String) {
    let port = server.port();
    let message = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nAccept: application/grpc-web+proto\r\nContent-Length: {}\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        body.len(),
        server.token()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/grpc-web"),
        "{head}"
    );
    let mut payload = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let mut frames = Vec::new();
    let mut trailer = String::new();
    let mut at = 0;
    while at + 5 <= payload.len() {
        let flag = payload[at];
        let len = u32::from_be_bytes(payload[at + 1..at + 5].try_into().unwrap()) as usize;
        let data = payload[at + 5..at + 5 + len].to_vec();
        if flag & 0x80 != 0 {
            trailer = String::from_utf8_lossy(&data).to_string();
        } else {
            frames.push(data);
        }
        at += 5 + len;
    }
    if trailer.is_empty() {
        trailer = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("grpc-"))
            .map(|l| l.to_ascii_lowercase().replace(": ", ":"))
            .collect::<Vec<_>>()
            .join("\r\n");
    }
    (frames, trailer)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[test]
fn unary_and_server_streaming_rpcs_answer_over_grpc_web_http1() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::start(&["--data-dir", data.to_str().unwrap()], &[]);
    let case = stdout(&server.cli(&["case", "create", "web"]))
        .trim()
        .to_string();
    let evidence = work.path().join("web.evtx");
    casescope_e2e::synth_evtx(&evidence, 1500, 5);
    let uploaded = server.cli(&["upload", &case, evidence.to_str().unwrap()]);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    let file_id = loop {
        let files = json(server.cli(&["files", &case, "--json"]));
        let file = &files.as_array().unwrap()[0];
        if casescope_e2e::past_ingest(&file["status"]) {
            break file["file_id"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let (frames, trailer) = grpc_web_call(
        &server,
        "/casescope.cases.v1.CasesService/GetCase",
        &cases_pb::GetCaseRequest {
            id: Some(CaseId {
                value: case.clone(),
            }),
        },
    );
    assert_eq!(frames.len(), 1);
    let fetched = cases_pb::Case::decode(frames[0].as_slice()).unwrap();
    assert_eq!(fetched.name, "web");
    assert!(trailer.contains("grpc-status:0"), "{trailer:?}");

    // CreateCase's answer is read by the gateway (it makes the creator the case's
    // admin) and replayed: its trailer frame must survive that over HTTP/1.1.
    let (frames, trailer) = grpc_web_call(
        &server,
        "/casescope.cases.v1.CasesService/CreateCase",
        &cases_pb::CreateCaseRequest {
            name: "made in a browser".into(),
            ..Default::default()
        },
    );
    assert_eq!(frames.len(), 1);
    let created = cases_pb::Case::decode(frames[0].as_slice()).unwrap();
    assert_eq!(created.name, "made in a browser");
    assert!(trailer.contains("grpc-status:0"), "{trailer:?}");

    let (frames, trailer) = grpc_web_call(
        &server,
        "/casescope.ingest.v1.IngestService/ScanFileEvents",
        &ingest_pb::ScanFileEventsRequest {
            case_id: Some(CaseId {
                value: case.clone(),
            }),
            file_id: Some(FileId { value: file_id }),
            batch_size: 200,
            ..Default::default()
        },
    );
    let events: usize = frames
        .iter()
        .map(|frame| {
            ingest_pb::ScanFileEventsResponse::decode(frame.as_slice())
                .unwrap()
                .events
                .len()
        })
        .sum();
    assert!(frames.len() >= 8, "streamed in batches: {}", frames.len());
    assert_eq!(events, 1500);
    assert!(trailer.contains("grpc-status:0"), "{trailer:?}");

    // An error travels in the trailer too.
    let (frames, trailer) = grpc_web_call(
        &server,
        "/casescope.cases.v1.CasesService/GetCase",
        &cases_pb::GetCaseRequest {
            id: Some(CaseId {
                value: "01a20545-ff79-73bd-be57-fc0fc36e8375".into(),
            }),
        },
    );
    assert!(frames.is_empty());
    assert!(trailer.contains("grpc-status:5"), "{trailer:?}");
}

/// The response head of a raw HTTP/1.1 request.
fn head_of(port: u16, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn preflight(port: u16, origin: &str) -> String {
    head_of(
        port,
        &format!(
            "OPTIONS /casescope.cases.v1.CasesService/GetCase HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
             Connection: close\r\n\r\n"
        ),
    )
}

#[test]
fn cross_origin_grants_only_to_listed_origins_and_security_headers_everywhere() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let allowed = "https://app.example.org";
    let server = Server::start(
        &["--data-dir", data.to_str().unwrap()],
        &[("CASESCOPE_CORS_ALLOWED_ORIGINS", allowed)],
    );
    let granted = preflight(server.port(), allowed);
    assert!(
        granted.contains(&format!("access-control-allow-origin: {allowed}")),
        "{granted}"
    );
    assert!(
        granted.contains("access-control-allow-headers"),
        "{granted}"
    );
    assert!(
        !granted.contains("access-control-allow-credentials"),
        "{granted}"
    );
    for origin in [
        "https://evil.example",
        "https://app.example.org.evil.example",
        "null",
    ] {
        let refused = preflight(server.port(), origin);
        assert!(
            !refused.contains("access-control-allow-origin"),
            "{origin}: {refused}"
        );
    }
    // An actual gRPC-web call from a disallowed origin gets no grant either.
    let call = head_of(
        server.port(),
        "POST /casescope.cases.v1.CasesService/ListCases HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Origin: https://evil.example\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0",
    );
    assert!(call.starts_with("http/1.1 200"), "{call}");
    assert!(!call.contains("access-control-allow-origin"), "{call}");

    let health = head_of(
        server.port(),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    for header in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
        "content-security-policy: default-src 'none'",
    ] {
        assert!(health.contains(header), "{header}: {health}");
    }

    // Without the setting, no origin gets a grant.
    let plain = Server::start(
        &["--data-dir", work.path().join("plain").to_str().unwrap()],
        &[],
    );
    let none = preflight(plain.port(), allowed);
    assert!(!none.contains("access-control-allow-origin"), "{none}");
    // A wildcard stops the start with the reason.
    let refused = std::process::Command::new(casescope_e2e::casescope_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(work.path().join("bad"))
        .env("CASESCOPE_CORS_ALLOWED_ORIGINS", "*")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("wildcards are refused"),
        "{}",
        stderr(&refused)
    );
}
