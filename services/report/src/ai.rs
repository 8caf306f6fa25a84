//! The optional AI summary of a report (docs/reports.md, "AI summary").
//!
//! A deployment may name an LLM endpoint: the OpenAI-compatible chat API (which vLLM,
//! llama.cpp's server and Ollama's `/v1` also speak) or Ollama's native `/api/chat`.
//! The summary reads a bounded selection of the case — the top detections, the top IOC
//! matches and the most significant tagged or starred events — cut to a token budget
//! ([`prompt`]), with secret-looking values redacted ([`redact`]), and fenced as data
//! between markers carrying a random nonce. The answer is streamed ([`client`]) under
//! three timeouts (connect, first token, total) and a stall timeout between chunks,
//! cancelled when the report is deleted or its lease lost, and kept to a bounded size.
//! Every sentence of it is then checked ([`cite`]): citations of ids that were not
//! given are removed and listed, sentences without a citation are marked.
//!
//! A failed summary (the LLM unreachable, slow, or answering an error) never fails the
//! report: the report says why the summary is missing.

pub mod cite;
pub mod client;
pub mod prompt;
pub mod redact;

use std::time::Duration;

/// Which wire format the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmApi {
    /// `POST {url}/chat/completions`, server-sent events (`data: {…}` … `data: [DONE]`).
    OpenAi,
    /// `POST {url}/api/chat`, JSON lines (`{"message":{…},"done":false}` … `"done":true`).
    Ollama,
}

impl LlmApi {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "openai" | "openai-compatible" => Some(Self::OpenAi),
            "ollama" => Some(Self::Ollama),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Ollama => "ollama",
        }
    }
}

/// The LLM endpoint of a deployment.
#[derive(Clone)]
pub struct LlmEndpoint {
    pub api: LlmApi,
    /// Base URL: `http://host:8080/v1` (OpenAI-compatible), `http://host:11434` (Ollama).
    pub url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer …`; never logged, never shown.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for LlmEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEndpoint")
            .field("api", &self.api)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Timeouts of one summary call.
#[derive(Debug, Clone, Copy)]
pub struct LlmTimeouts {
    /// To open the connection (TCP and TLS).
    pub connect: Duration,
    /// From the request to the first token of the answer (prompt processing included).
    pub first_token: Duration,
    /// Between two chunks of the answer once it has begun (a stalled stream).
    pub stall: Duration,
    /// The whole call.
    pub total: Duration,
}

impl Default for LlmTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_token: Duration::from_secs(120),
            stall: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

/// The AI summary settings of a deployment.
#[derive(Debug, Clone)]
pub struct AiSettings {
    /// The deployment flag: `false` refuses AI summaries even with an endpoint.
    pub enabled: bool,
    /// `None`: no endpoint configured (AI summaries are refused, naming the setting).
    pub endpoint: Option<LlmEndpoint>,
    pub timeouts: LlmTimeouts,
    /// Prompt tokens at most (instructions and evidence), estimated at
    /// `bytes_per_token` bytes per token.
    pub prompt_tokens: usize,
    /// The conservative estimate of bytes per token used to keep to the budget.
    pub bytes_per_token: usize,
    /// Tokens of the answer at most (`max_tokens` / `num_predict`).
    pub answer_tokens: u32,
    /// Bytes of the answer kept at most (the stream is closed beyond).
    pub answer_bytes: usize,
    /// Tagged or starred events read as candidates at most (the most significant of
    /// them are given, as many as the budget allows).
    pub candidate_events: usize,
    /// Detection rules and IOCs given at most (the most frequent).
    pub top_items: usize,
    /// Redact secret-looking values before sending.
    pub redact: bool,
    pub temperature: f32,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: None,
            timeouts: LlmTimeouts::default(),
            prompt_tokens: 6_000,
            bytes_per_token: 3,
            answer_tokens: 1_024,
            answer_bytes: 32 * 1024,
            candidate_events: 2_000,
            top_items: 20,
            redact: true,
            temperature: 0.2,
        }
    }
}

impl AiSettings {
    /// Why an AI summary cannot be asked for, naming the setting; `None` when it can.
    pub fn refusal(&self) -> Option<String> {
        if !self.enabled {
            return Some(
                "AI summaries are turned off by this deployment (CASESCOPE_AI_ENABLED=false); \
                 create the report without the AI summary"
                    .into(),
            );
        }
        if self.endpoint.is_none() {
            return Some(
                "AI summaries need an LLM endpoint, and none is configured: set \
                 CASESCOPE_LLM_URL and CASESCOPE_LLM_MODEL (docs/configuration.md), or create \
                 the report without the AI summary"
                    .into(),
            );
        }
        None
    }
}
