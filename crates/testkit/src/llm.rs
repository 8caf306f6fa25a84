//! A scripted LLM server for tests: it speaks HTTP/1.1 on loopback and answers each
//! request from a script — an OpenAI-compatible event stream, Ollama JSON lines, an
//! HTTP error, a stream that stalls, or no answer at all — recording every request and
//! whether the client closed the connection before the script ended. The real
//! OpenAI-compatible server of the suite is llama.cpp's (tests/llm/); this one makes
//! the answers a real model cannot be made to give on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Script {
    /// 200 with `content_type`, then each chunk after its delay; with `stall`, the
    /// stream is then left open and silent.
    Stream {
        content_type: &'static str,
        chunks: Vec<(Duration, String)>,
        stall: bool,
    },
    /// An HTTP error with a body.
    Status(u16, String),
    /// Reads the request and never answers.
    Silent,
}

impl Script {
    /// An OpenAI-compatible stream of `pieces` (one `delta.content` each), a finish
    /// reason, a usage chunk and `[DONE]`.
    pub fn openai(pieces: &[&str]) -> Self {
        Self::openai_paced(pieces, Duration::ZERO)
    }

    /// Like [`Script::openai`], each piece after `pace`.
    pub fn openai_paced(pieces: &[&str], pace: Duration) -> Self {
        let mut chunks: Vec<(Duration, String)> = pieces
            .iter()
            .map(|piece| {
                let event = serde_json::json!({
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
                });
                (pace, format!("data: {event}\n\n"))
            })
            .collect();
        chunks.push((
            Duration::ZERO,
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                .into(),
        ));
        chunks.push((
            Duration::ZERO,
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n"
                .into(),
        ));
        Self::Stream {
            content_type: "text/event-stream",
            chunks,
            stall: false,
        }
    }

    /// An OpenAI-compatible stream that sends `pieces` and then stalls.
    pub fn openai_stalling(pieces: &[&str]) -> Self {
        match Self::openai(pieces) {
            Self::Stream {
                content_type,
                mut chunks,
                ..
            } => {
                chunks.truncate(pieces.len());
                Self::Stream {
                    content_type,
                    chunks,
                    stall: true,
                }
            }
            other => other,
        }
    }

    /// Ollama's `/api/chat` JSON lines of `pieces`, then the final line.
    pub fn ollama(pieces: &[&str]) -> Self {
        let mut chunks: Vec<(Duration, String)> = pieces
            .iter()
            .map(|piece| {
                let line = serde_json::json!({
                    "model": "scripted", "message": {"role": "assistant", "content": piece},
                    "done": false,
                });
                (Duration::ZERO, format!("{line}\n"))
            })
            .collect();
        chunks.push((
            Duration::ZERO,
            "{\"model\":\"scripted\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":90,\"eval_count\":12}\n".into(),
        ));
        Self::Stream {
            content_type: "application/x-ndjson",
            chunks,
            stall: false,
        }
    }
}

/// One request the server read.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header lines as sent (`Name: value`).
    pub headers: Vec<String>,
    pub body: serde_json::Value,
}

struct State {
    /// What the next requests get.
    script: Script,
    requests: Vec<Request>,
    /// Connections the client closed before the script ended.
    closed_early: u64,
}

/// The running server (stopped when dropped).
pub struct ScriptedLlm {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedLlm {
    /// Serves `script` to every request.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            script,
            requests: Vec::new(),
            closed_early: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move { serve(socket, state).await });
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `script` to the requests from now on.
    pub fn set(&self, script: Script) {
        self.state.lock().expect("state").script = script;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("state").requests.clone()
    }

    /// Connections the client closed before the script ended.
    pub fn closed_early(&self) -> u64 {
        self.state.lock().expect("state").closed_early
    }

    /// Waits until the client closed a connection early (up to `within`).
    pub async fn wait_closed_early(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.closed_early() > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next()?.to_string();
    let headers: Vec<String> = lines.map(str::to_string).collect();
    let length: usize = headers
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let mut words = first.split(' ');
    Some(Request {
        method: words.next().unwrap_or("").to_string(),
        path: words.next().unwrap_or("").to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}

/// Waits until the peer closes the connection.
async fn until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let script = {
        let mut state = state.lock().expect("state");
        state.requests.push(request);
        state.script.clone()
    };
    let early = |state: &Arc<Mutex<State>>| state.lock().expect("state").closed_early += 1;
    match script {
        Script::Silent => {
            until_closed(&mut socket).await;
            early(&state);
        }
        Script::Status(code, body) => {
            let answer = format!(
                "HTTP/1.1 {code} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
        Script::Stream {
            content_type,
            chunks,
            stall,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                early(&state);
                return;
            }
            for (delay, chunk) in chunks {
                if !delay.is_zero() {
                    // A client that gives up while we wait has closed the socket.
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = until_closed(&mut socket) => { early(&state); return; }
                    }
                }
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if socket.write_all(framed.as_bytes()).await.is_err() {
                    early(&state);
                    return;
                }
            }
            if stall {
                until_closed(&mut socket).await;
                early(&state);
                return;
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
            let _ = socket.flush().await;
        }
    }
}
