//! Every call the integrations service makes to the outside goes through [`Outbound`]:
//! - connect and total timeouts on every attempt (a server that stalls mid-answer or
//!   never answers costs one timeout, not a hung worker);
//! - retries of connection errors, timeouts, 408/425/429/5xx with exponential backoff
//!   and full jitter, honouring `Retry-After` (capped);
//! - a circuit breaker per integration ([`breaker`]);
//! - answers read to a bounded size (a 1 GB answer is refused after the limit, not
//!   buffered);
//! - TLS verified against the system roots, plus an integration's own CA when given;
//! - the SSRF guard ([`guard`]) on every resolved address and every redirect (at most
//!   5 redirects);
//! - error messages without URLs' queries or credentials: the secret goes only in a
//!   header, and no error, log or delivery record shows a header.

pub mod breaker;
pub mod guard;
pub mod retry;

use breaker::{Breaker, Open};
use guard::{Guard, Refusal};
use reqwest::{Method, Url};
use retry::{RetryPolicy, retry_after, retryable_status};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// Settings shared by the outbound clients of a deployment.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    pub connect_timeout: Duration,
    /// Bytes of one answer at most.
    pub max_answer_bytes: usize,
    pub retry: RetryPolicy,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            max_answer_bytes: 16 * 1024 * 1024,
            retry: RetryPolicy::default(),
        }
    }
}

/// How a target authenticates calls (the value is a secret: never shown).
#[derive(Clone)]
pub enum Auth {
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<redacted>)")
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub method: Method,
    pub url: Url,
    /// A JSON body.
    pub json: Option<Vec<u8>>,
    /// Extra headers (not secrets: those come from [`Auth`]).
    pub headers: Vec<(String, String)>,
    /// Whether sending it twice does no harm. A request that is not (a creation the
    /// target does not de-duplicate) is sent again only after answers that say it was
    /// not processed (429, 503) — never after a timeout, a broken connection or another
    /// server error, which leave its outcome unknown.
    pub idempotent: bool,
}

impl OutRequest {
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            json: None,
            headers: Vec::new(),
            idempotent: true,
        }
    }

    pub fn post_json(url: Url, body: &serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            url,
            json: Some(body.to_string().into_bytes()),
            headers: Vec::new(),
            idempotent: true,
        }
    }
}

/// An answer that is not worth retrying (2xx, and 4xx other than 408/425/429).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Attempts it took.
    pub attempts: u32,
}

/// Why a call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// The SSRF guard or the URL itself refused it (no retry helps).
    Refused(String),
    /// The circuit is open; the target had failed too often just before.
    CircuitOpen(Duration),
    /// An attempt ran out of time (connecting, or the answer stalled).
    Timeout(Duration),
    /// The connection failed (refused, reset, DNS, TLS).
    Connect(String),
    /// The target kept answering a retryable status.
    Status { status: u16, excerpt: String },
    /// The answer was larger than allowed.
    TooLarge(usize),
}

impl OutboundError {
    /// Whether a later delivery attempt may succeed.
    pub fn transient(&self) -> bool {
        !matches!(self, Self::Refused(_) | Self::TooLarge(_))
    }
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::CircuitOpen(left) => write!(
                f,
                "the target failed repeatedly; calls resume in {} s (circuit open)",
                left.as_secs().max(1)
            ),
            Self::Timeout(after) => write!(
                f,
                "no complete answer within {} s (timeout)",
                after.as_secs_f64()
            ),
            Self::Connect(why) => write!(f, "connection failed: {why}"),
            Self::Status { status, excerpt } if excerpt.is_empty() => write!(f, "HTTP {status}"),
            Self::Status { status, excerpt } => write!(f, "HTTP {status}: {excerpt}"),
            Self::TooLarge(limit) => write!(f, "the answer is larger than {limit} bytes: refused"),
        }
    }
}

/// A short, printable excerpt of an answer body (no control characters).
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max * 4)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_string()
}

/// The outbound client of one integration.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    guard: Guard,
    settings: OutboundSettings,
    timeout: Duration,
    auth: Option<Auth>,
    breaker: Arc<Breaker>,
}

impl Outbound {
    /// A client for one integration: `timeout` per attempt, its own CA when given.
    pub fn new(
        guard: Guard,
        settings: OutboundSettings,
        timeout: Duration,
        ca_pem: Option<&str>,
        auth: Option<Auth>,
        breaker: Arc<Breaker>,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirect_guard = guard.clone();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(timeout)
            .dns_resolver(guard.resolver())
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(Refusal(format!("more than {MAX_REDIRECTS} redirects")));
                }
                match redirect_guard.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(Refusal(format!("a redirect: {why}"))),
                }
            }))
            .user_agent(concat!(
                "casescope-integrations/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
            let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
            if certificates.is_empty() {
                return Err("the CA certificate holds no certificate".into());
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            guard,
            settings,
            timeout,
            auth,
            breaker,
        })
    }

    /// Sends `request`, retrying what may succeed if sent again.
    pub async fn send(&self, request: &OutRequest) -> Result<Answer, OutboundError> {
        self.guard
            .check_url(&request.url)
            .map_err(OutboundError::Refused)?;
        let policy = self.settings.retry;
        let mut last = OutboundError::Connect("no attempt was made".into());
        for attempt in 1..=policy.attempts.max(1) {
            if let Err(Open(left)) = self.breaker.admit() {
                return Err(OutboundError::CircuitOpen(left));
            }
            let asked = match self.once(request).await {
                Ok((answer, asked)) if retryable_status(answer.status) => {
                    self.breaker.failure();
                    last = OutboundError::Status {
                        status: answer.status,
                        excerpt: excerpt(&answer.body, 200),
                    };
                    if !request.idempotent && !matches!(answer.status, 429 | 503) {
                        return Err(last);
                    }
                    asked
                }
                Ok((mut answer, _)) => {
                    self.breaker.success();
                    answer.attempts = attempt;
                    return Ok(answer);
                }
                Err(error) if error.transient() => {
                    self.breaker.failure();
                    if !request.idempotent {
                        // It may have been received before the connection failed.
                        return Err(error);
                    }
                    last = error;
                    None
                }
                Err(error) => return Err(error),
            };
            if attempt < policy.attempts {
                let pause = policy.pause(attempt, asked);
                tracing::debug!(attempt, pause_ms = pause.as_millis() as u64, error = %last, "outbound call retried");
                tokio::time::sleep(pause).await;
            }
        }
        Err(last)
    }

    /// One attempt: the answer (any status) and the pause the server asked for.
    async fn once(
        &self,
        request: &OutRequest,
    ) -> Result<(Answer, Option<Duration>), OutboundError> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(json) = &request.json {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.clone());
        }
        if let Some(Auth::Bearer(token)) = &self.auth {
            builder = builder.bearer_auth(token);
        }
        let mut response = builder.send().await.map_err(|e| self.error(e))?;
        let status = response.status().as_u16();
        let asked = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let limit = self.settings.max_answer_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(OutboundError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.error(e))? {
            if body.len() + chunk.len() > limit {
                return Err(OutboundError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((
            Answer {
                status,
                body,
                attempts: 1,
            },
            asked,
        ))
    }

    /// What a reqwest error means here, without the URL.
    fn error(&self, error: reqwest::Error) -> OutboundError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(inner) = source {
            if let Some(refused) = inner.downcast_ref::<Refusal>() {
                return OutboundError::Refused(refused.0.clone());
            }
            source = inner.source();
        }
        if error.is_timeout() {
            return OutboundError::Timeout(self.timeout);
        }
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            let part = inner.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = inner.source();
        }
        OutboundError::Connect(excerpt(text.as_bytes(), 300))
    }
}

#[cfg(test)]
mod tests;
