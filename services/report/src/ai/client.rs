//! The streaming LLM client: one chat request, its answer read chunk by chunk under
//! the connect, first-token, stall and total timeouts, cancellable, kept to a bounded
//! size. Two wire formats: OpenAI-compatible server-sent events and Ollama's JSON
//! lines.

use super::{LlmApi, LlmEndpoint, LlmTimeouts};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes of one line of the stream at most (an event, a JSON line).
const MAX_LINE_BYTES: usize = 256 * 1024;
/// Bytes of an error answer's body read at most (shown, cut to 300 characters).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmError {
    /// The endpoint could not be reached.
    Connect(String),
    /// It answered with an HTTP error.
    Status(u16, String),
    /// A timeout ran out: which one, and its length.
    Timeout(&'static str, Duration),
    /// The stream was not in the expected format, or reported an error.
    Stream(String),
    /// The report was deleted, or its job taken over.
    Cancelled,
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmError::Connect(why) => write!(f, "the LLM endpoint could not be reached: {why}"),
            LlmError::Status(code, body) if body.is_empty() => {
                write!(f, "the LLM endpoint answered HTTP {code}")
            }
            LlmError::Status(code, body) => {
                write!(f, "the LLM endpoint answered HTTP {code}: {body}")
            }
            LlmError::Timeout(what, after) => write!(
                f,
                "the LLM endpoint {what} within {} (timeout)",
                human(*after)
            ),
            LlmError::Stream(why) => write!(f, "the LLM endpoint's answer was unusable: {why}"),
            LlmError::Cancelled => f.write_str("the summary was cancelled"),
        }
    }
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64().round() as u64)
    }
}

/// A streamed answer.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    pub text: String,
    /// The answer was cut at the byte limit (the stream was closed there).
    pub truncated: bool,
    /// Why generation stopped, as the server said ("stop", "length", …).
    pub finish_reason: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// What one parsed line of the stream said.
#[derive(Debug, PartialEq)]
enum Line {
    Nothing,
    Content(String),
    Done,
}

/// A client of one endpoint.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: LlmEndpoint,
    timeouts: LlmTimeouts,
}

/// Cuts `text` to `max` characters for a message.
fn short(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

impl LlmClient {
    pub fn new(endpoint: LlmEndpoint, timeouts: LlmTimeouts) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("casescope-report/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("LLM HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint,
            timeouts,
        })
    }

    pub fn endpoint(&self) -> &LlmEndpoint {
        &self.endpoint
    }

    fn request(
        &self,
        system: &str,
        user: &str,
        max_tokens: u32,
        temperature: f32,
    ) -> (String, Value) {
        let base = self.endpoint.url.trim_end_matches('/');
        let messages = json!([
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]);
        match self.endpoint.api {
            LlmApi::OpenAi => (
                format!("{base}/chat/completions"),
                json!({
                    "model": self.endpoint.model,
                    "messages": messages,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                }),
            ),
            LlmApi::Ollama => (
                format!("{base}/api/chat"),
                json!({
                    "model": self.endpoint.model,
                    "messages": messages,
                    "stream": true,
                    "options": {
                        "num_predict": max_tokens,
                        "temperature": temperature,
                        // Ollama cuts a prompt longer than its context silently: make the
                        // context hold the prompt and the answer.
                        "num_ctx": (system.len() + user.len()) / 2 + max_tokens as usize + 256,
                    },
                }),
            ),
        }
    }

    /// Sends one chat request and reads its streamed answer (at most `max_bytes`).
    pub async fn chat(
        &self,
        system: &str,
        user: &str,
        max_tokens: u32,
        temperature: f32,
        max_bytes: usize,
        cancel: &CancellationToken,
    ) -> Result<Answer, LlmError> {
        let started = Instant::now();
        let total_deadline = started + self.timeouts.total;
        let first_deadline = (started + self.timeouts.first_token).min(total_deadline);
        let (url, body) = self.request(system, user, max_tokens, temperature);
        let mut request = self.http.post(&url).json(&body);
        if let Some(key) = &self.endpoint.api_key {
            request = request.bearer_auth(key);
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            sent = tokio::time::timeout_at(first_deadline, request.send()) => sent,
        };
        let mut response = match sent {
            Err(_) => {
                return Err(self.timeout_error(started, first_deadline, total_deadline, false));
            }
            Ok(Err(error)) if error.is_connect() => {
                return Err(LlmError::Connect(connect_reason(
                    &error,
                    self.timeouts.connect,
                )));
            }
            Ok(Err(error)) => return Err(LlmError::Connect(short(&without_url(&error), 300))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            let body = read_error_body(&mut response, first_deadline, cancel).await;
            return Err(LlmError::Status(status.as_u16(), short(&body, 300)));
        }
        let mut answer = Answer::default();
        let mut line = Vec::new();
        let mut begun = false;
        let mut last_chunk = Instant::now();
        loop {
            let deadline = if begun {
                (last_chunk + self.timeouts.stall).min(total_deadline)
            } else {
                first_deadline
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => return Err(LlmError::Cancelled),
                next = tokio::time::timeout_at(deadline, response.chunk()) => next,
            };
            let chunk = match next {
                Err(_) => return Err(self.timeout_error(started, deadline, total_deadline, begun)),
                Ok(Err(error)) => {
                    return Err(LlmError::Stream(format!(
                        "the connection broke: {}",
                        short(&without_url(&error), 200)
                    )));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            last_chunk = Instant::now();
            let mut rest: &[u8] = &chunk;
            while let Some(at) = rest.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&rest[..at]);
                rest = &rest[at + 1..];
                let parsed = self.line(&line, &mut answer)?;
                line.clear();
                match parsed {
                    Line::Done => return Ok(answer),
                    Line::Content(text) => {
                        begun = true;
                        if append(&mut answer, &text, max_bytes) {
                            // Dropping the response closes the connection: the server
                            // stops generating.
                            return Ok(answer);
                        }
                    }
                    Line::Nothing => {}
                }
            }
            line.extend_from_slice(rest);
            if line.len() > MAX_LINE_BYTES {
                return Err(LlmError::Stream(format!(
                    "it sent a line longer than {} KiB",
                    MAX_LINE_BYTES / 1024
                )));
            }
        }
        if !line.is_empty()
            && let Line::Content(text) = self.line(&line, &mut answer)?
        {
            append(&mut answer, &text, max_bytes);
        }
        if answer.text.is_empty() && answer.finish_reason.is_empty() {
            return Err(LlmError::Stream(
                "the stream ended before any answer".into(),
            ));
        }
        Ok(answer)
    }

    fn timeout_error(
        &self,
        started: Instant,
        deadline: Instant,
        total_deadline: Instant,
        begun: bool,
    ) -> LlmError {
        if deadline >= total_deadline {
            LlmError::Timeout("did not finish its answer", self.timeouts.total)
        } else if begun {
            LlmError::Timeout(
                "stopped sending its answer (stalled stream)",
                self.timeouts.stall,
            )
        } else {
            let _ = started;
            LlmError::Timeout("sent no answer", self.timeouts.first_token)
        }
    }

    /// Parses one line of the stream into `answer`.
    fn line(&self, raw: &[u8], answer: &mut Answer) -> Result<Line, LlmError> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| LlmError::Stream("it sent a line that is not UTF-8".into()))?
            .trim_end_matches('\r');
        match self.endpoint.api {
            LlmApi::OpenAi => sse_line(text, answer),
            LlmApi::Ollama => ndjson_line(text, answer),
        }
    }
}

/// Appends `text`, keeping at most `max` bytes; true when the limit was reached.
fn append(answer: &mut Answer, text: &str, max: usize) -> bool {
    let room = max.saturating_sub(answer.text.len());
    if text.len() <= room {
        answer.text.push_str(text);
        return answer.text.len() >= max;
    }
    let mut cut = room;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    answer.text.push_str(&text[..cut]);
    answer.truncated = true;
    true
}

fn error_message(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    let message = match error {
        Value::String(text) => text.clone(),
        Value::Object(map) => map
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string()),
        Value::Null => return None,
        other => other.to_string(),
    };
    Some(short(&message, 300))
}

/// One line of an OpenAI-compatible event stream.
fn sse_line(text: &str, answer: &mut Answer) -> Result<Line, LlmError> {
    let Some(data) = text.strip_prefix("data:") else {
        // Blank lines end events; `event:`, `id:`, `retry:` and `:` comments carry
        // nothing here.
        return Ok(Line::Nothing);
    };
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Line::Done);
    }
    if data.is_empty() {
        return Ok(Line::Nothing);
    }
    let value: Value = serde_json::from_str(data).map_err(|e| {
        LlmError::Stream(format!(
            "an event's data is not JSON ({e}): {}",
            short(data, 120)
        ))
    })?;
    if let Some(message) = error_message(&value) {
        return Err(LlmError::Stream(format!("it reported an error: {message}")));
    }
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        answer.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
        answer.completion_tokens = usage.get("completion_tokens").and_then(Value::as_u64);
    }
    let Some(choice) = value.get("choices").and_then(|c| c.get(0)) else {
        return Ok(Line::Nothing);
    };
    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
        answer.finish_reason = reason.to_string();
    }
    let content = choice
        .get("delta")
        .or_else(|| choice.get("message"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(if content.is_empty() {
        Line::Nothing
    } else {
        Line::Content(content.to_string())
    })
}

/// One line of Ollama's JSON lines stream.
fn ndjson_line(text: &str, answer: &mut Answer) -> Result<Line, LlmError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Line::Nothing);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| LlmError::Stream(format!("a line is not JSON ({e}): {}", short(text, 120))))?;
    if let Some(message) = error_message(&value) {
        return Err(LlmError::Stream(format!("it reported an error: {message}")));
    }
    let content = value
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if value.get("done").and_then(Value::as_bool) == Some(true) {
        answer.finish_reason = value
            .get("done_reason")
            .and_then(Value::as_str)
            .unwrap_or("stop")
            .to_string();
        answer.prompt_tokens = value.get("prompt_eval_count").and_then(Value::as_u64);
        answer.completion_tokens = value.get("eval_count").and_then(Value::as_u64);
        if !content.is_empty() {
            answer.text.push_str(&content);
        }
        return Ok(Line::Done);
    }
    Ok(if content.is_empty() {
        Line::Nothing
    } else {
        Line::Content(content)
    })
}

/// The body of an error answer, bounded in size and time.
async fn read_error_body(
    response: &mut reqwest::Response,
    deadline: Instant,
    cancel: &CancellationToken,
) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            next = tokio::time::timeout_at(deadline, response.chunk()) => next,
        };
        match next {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body).into_owned();
    // An OpenAI-style {"error": {"message": …}} says it best.
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or(text)
}

/// A reqwest error without the URL (which may carry credentials in its user info).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the endpoint");
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn connect_reason(error: &reqwest::Error, connect: Duration) -> String {
    if error.is_timeout() {
        format!("no connection within {} (timeout)", human(connect))
    } else {
        short(&without_url(error), 300)
    }
}

#[cfg(test)]
mod tests;
