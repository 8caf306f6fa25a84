//! HTTP to OpenSearch: every request has a timeout (connect and whole request), bodies
//! read back are capped, overload and transient failures (429, 502–504, connection
//! errors, timeouts) are retried with exponential backoff a bounded number of times,
//! and error answers become [`StoreError`]s carrying OpenSearch's error type and reason
//! (never credentials: they are sent as a header and are refused inside the URL).

use crate::StoreError;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// Answers at least this large are parsed off the async runtime.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// How the transport retries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub max_retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The pause before retry number `attempt` (0-based): doubling, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

pub struct Transport {
    client: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
    pub backoff: Backoff,
    max_response_bytes: usize,
}

/// A request body.
pub enum Body {
    Empty,
    Json(Vec<u8>),
    NdJson(Vec<u8>),
}

/// A complete answer (any status).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<Value, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            StoreError::Internal(format!(
                "OpenSearch answered {} with a body that is not JSON ({e}): {}",
                self.status,
                excerpt(&self.body)
            ))
        })
    }
}

/// The start of a body, printable, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > MAX {
        clean.push('…');
    }
    clean
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars).collect();
    out.push('…');
    out
}

/// `type: reason` of an OpenSearch error object, with the first root cause and the
/// innermost `caused_by` when they say more.
pub fn describe_error_object(error: &Value) -> String {
    if let Some(text) = error.as_str() {
        return cut(text, 500);
    }
    let one = |e: &Value| {
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
        match e.get("reason").and_then(Value::as_str) {
            Some(reason) => format!("{kind}: {}", cut(reason, 500)),
            None => kind.to_string(),
        }
    };
    let mut text = one(error);
    if let Some(root) = error
        .get("root_cause")
        .and_then(Value::as_array)
        .and_then(|causes| causes.first())
    {
        let root = one(root);
        if root != text {
            text.push_str(&format!(" (root cause: {root})"));
        }
    }
    let mut innermost = None;
    let mut cause = error.get("caused_by");
    while let Some(next) = cause {
        innermost = Some(next);
        cause = next.get("caused_by");
    }
    if let Some(inner) = innermost {
        text.push_str(&format!(" (caused by: {})", one(inner)));
    }
    text
}

/// What an error answer says, whatever its shape.
pub fn describe_error_body(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(json) => match json.get("error") {
            Some(error) => describe_error_object(error),
            None => excerpt(body),
        },
        Err(_) if body.is_empty() => "no body".into(),
        Err(_) => excerpt(body),
    }
}

/// The error type of an error answer (`resource_already_exists_exception`, …).
pub fn error_type(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    json.pointer("/error/type")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A non-success answer as a store error.
pub fn status_error(what: &str, reply: &Reply) -> StoreError {
    let detail = describe_error_body(&reply.body);
    let status = reply.status;
    let message = format!("{what}: OpenSearch answered {status}: {detail}");
    match status.as_u16() {
        400 => StoreError::Invalid(message),
        413 => StoreError::Invalid(format!("{message} (lower the bulk byte limit)")),
        401 | 403 => StoreError::Unavailable(format!(
            "{what}: OpenSearch refused the credentials or permissions ({status}): {detail}"
        )),
        404 | 408 | 429 => StoreError::Unavailable(message),
        500..=599 => StoreError::Unavailable(message),
        _ => StoreError::Internal(message),
    }
}

/// Statuses worth another try of the same request.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

impl Transport {
    pub fn new(
        client: reqwest::Client,
        base: Url,
        credentials: Option<(String, String)>,
        backoff: Backoff,
        max_response_bytes: usize,
    ) -> Self {
        Self {
            client,
            base,
            credentials,
            backoff,
            max_response_bytes,
        }
    }

    /// The URL of `segments` (each percent-encoded) below the base, with `query` pairs.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, StoreError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| StoreError::Invalid("the OpenSearch URL cannot have a path".into()))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: &Body,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.client.request(method.clone(), url.clone());
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        request = match body {
            Body::Empty => request,
            Body::Json(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::NdJson(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(bytes.clone()),
        };
        let mut response = request.send().await?;
        let status = response.status();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > self.max_response_bytes {
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if truncated {
            // Reported as a body that is not JSON; the cap keeps memory bounded.
            body.truncate(0);
            body.extend_from_slice(
                format!(
                    "(answer larger than {} bytes, not read)",
                    self.max_response_bytes
                )
                .as_bytes(),
            );
        }
        Ok(Reply { status, body })
    }

    /// One request, no retry: `Ok` on a 2xx answer, else what went wrong (readiness).
    pub async fn probe(&self, what: &str, url: Url) -> Result<(), StoreError> {
        match self.send_once(&Method::GET, &url, &Body::Empty).await {
            Ok(reply) if reply.status.is_success() => Ok(()),
            Ok(reply) => Err(status_error(what, &reply)),
            Err(error) => Err(StoreError::Unavailable(format!(
                "{what}: {}",
                error_chain(&error)
            ))),
        }
    }

    /// Sends a request, retrying overload and transient failures with backoff. Any
    /// other answer (success or not) is returned for the caller to interpret.
    pub async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Body,
    ) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        loop {
            let failure = match self.send_once(&method, &url, &body).await {
                Ok(reply) if !retryable_status(reply.status) => return Ok(reply),
                Ok(reply) => {
                    let failure = format!(
                        "OpenSearch answered {}: {}",
                        reply.status,
                        describe_error_body(&reply.body)
                    );
                    if attempt >= self.backoff.max_retries {
                        return Err(status_error(what, &reply));
                    }
                    failure
                }
                Err(error) => {
                    let failure = if error.is_timeout() {
                        format!("no answer in time: {}", error_chain(&error))
                    } else {
                        format!("request failed: {}", error_chain(&error))
                    };
                    if attempt >= self.backoff.max_retries {
                        return Err(StoreError::Unavailable(format!(
                            "{what}: {failure} (after {attempt} retries)"
                        )));
                    }
                    failure
                }
            };
            let delay = self.backoff.delay(attempt);
            tracing::warn!(
                operation = what,
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                "OpenSearch request will be retried: {failure}"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends a request and requires a 2xx JSON answer.
    pub async fn json(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Body,
    ) -> Result<Value, StoreError> {
        let reply = self.send(what, method, url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(what, &reply));
        }
        if reply.body.len() < PARSE_INLINE_BYTES {
            return reply.json();
        }
        // Large answers (pages of events) are parsed on the blocking pool.
        tokio::task::spawn_blocking(move || reply.json())
            .await
            .map_err(|e| StoreError::Internal(format!("parsing task failed: {e}")))?
    }
}

pub fn json_body(value: &Value) -> Result<Body, StoreError> {
    serde_json::to_vec(value)
        .map(Body::Json)
        .map_err(|e| StoreError::Internal(format!("request as JSON: {e}")))
}

/// An error and its causes ("error sending request …: connection refused"): reqwest's
/// own message leaves out why the connection failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_become_clear_messages() {
        let body = json!({
            "error": {
                "root_cause": [{
                    "type": "query_shard_exception",
                    "reason": "failed to create query: maxClauseCount is set to 1024",
                    "index": "casescope-events"
                }],
                "type": "search_phase_execution_exception",
                "reason": "all shards failed",
                "phase": "query",
                "grouped": true,
                "failed_shards": [],
                "caused_by": {
                    "type": "too_many_clauses",
                    "reason": "maxClauseCount is set to 1024"
                }
            },
            "status": 400
        });
        let reply = Reply {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::to_vec(&body).unwrap(),
        };
        let error = status_error("search", &reply);
        let StoreError::Invalid(message) = error else {
            panic!("400 is an invalid request: {error:?}");
        };
        assert_eq!(
            message,
            "search: OpenSearch answered 400 Bad Request: search_phase_execution_exception: \
             all shards failed (root cause: query_shard_exception: failed to create query: \
             maxClauseCount is set to 1024) (caused by: too_many_clauses: maxClauseCount is set to 1024)"
        );
        let exists = json!({"error": {"root_cause": [{"type": "resource_already_exists_exception", "reason": "index [casescope-events/abc] already exists", "index": "casescope-events"}], "type": "resource_already_exists_exception", "reason": "index [casescope-events/abc] already exists", "index": "casescope-events"}, "status": 400});
        assert_eq!(
            error_type(&serde_json::to_vec(&exists).unwrap()).as_deref(),
            Some("resource_already_exists_exception")
        );
    }

    #[test]
    fn odd_error_bodies_are_described_too() {
        assert_eq!(
            describe_error_body(br#"{"error":"Incorrect HTTP method for uri [/x/_bulk] and method [GET], allowed: [POST, PUT]","status":405}"#),
            "Incorrect HTTP method for uri [/x/_bulk] and method [GET], allowed: [POST, PUT]"
        );
        assert_eq!(
            describe_error_body(b"<html>\n<body>502 Bad Gateway</body></html>"),
            "<html> <body>502 Bad Gateway</body></html>"
        );
        assert_eq!(describe_error_body(b""), "no body");
        let unauthorized = Reply {
            status: StatusCode::UNAUTHORIZED,
            body: b"Unauthorized".to_vec(),
        };
        assert!(matches!(
            status_error("search", &unauthorized),
            StoreError::Unavailable(m) if m.contains("credentials")
        ));
        let not_json = Reply {
            status: StatusCode::OK,
            body: b"not json".to_vec(),
        };
        assert!(matches!(not_json.json(), Err(StoreError::Internal(m)) if m.contains("not JSON")));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            max_retries: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(1000), Duration::from_secs(1));
    }
}
