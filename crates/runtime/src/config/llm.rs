//! The optional LLM endpoint of AI report summaries, and the deployment flag that turns
//! them off. No URL: AI summaries are refused (naming `CASESCOPE_LLM_URL`).

use super::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// The resolved AI settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AiConfig {
    /// `false`: AI summaries are refused even with an endpoint (`CASESCOPE_AI_ENABLED`).
    pub enabled: bool,
    pub endpoint: Option<LlmEndpointConfig>,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub stall_timeout: Duration,
    pub total_timeout: Duration,
    pub prompt_tokens: usize,
    pub answer_tokens: u32,
    pub redact: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmEndpointConfig {
    /// "openai" or "ollama".
    pub api: String,
    pub url: String,
    pub model: String,
    pub api_key: Option<Secret>,
}

/// The unresolved settings (see `Settings`).
#[derive(Default)]
pub(super) struct LlmSettings {
    pub ai_enabled: Option<String>,
    pub url: Option<String>,
    pub api: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub connect_timeout_secs: Option<String>,
    pub first_token_timeout_secs: Option<String>,
    pub stall_timeout_secs: Option<String>,
    pub total_timeout_secs: Option<String>,
    pub prompt_tokens: Option<String>,
    pub answer_tokens: Option<String>,
    pub redact: Option<String>,
}

fn flag(setting: &str, value: Option<&str>, default: bool, errors: &mut Vec<String>) -> bool {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => default,
        Some("true" | "1" | "on" | "yes") => true,
        Some("false" | "0" | "off" | "no") => false,
        Some(other) => {
            errors.push(format!("{setting}: {other:?} is not true or false"));
            default
        }
    }
}

/// Seconds (fractions allowed) in `min..=max`.
fn seconds(
    setting: &str,
    value: Option<&str>,
    default: f64,
    max: f64,
    errors: &mut Vec<String>,
) -> Duration {
    match value.map(str::trim) {
        None | Some("") => Duration::from_secs_f64(default),
        Some(text) => match text.parse::<f64>() {
            Ok(n) if n.is_finite() && (0.05..=max).contains(&n) => Duration::from_secs_f64(n),
            _ => {
                errors.push(format!(
                    "{setting}: {text:?} is not a number of seconds from 0.05 to {max}"
                ));
                Duration::from_secs_f64(default)
            }
        },
    }
}

fn count<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    setting: &str,
    value: Option<&str>,
    default: T,
    (min, max): (T, T),
    errors: &mut Vec<String>,
) -> T {
    match value.map(str::trim) {
        None | Some("") => default,
        Some(text) => match text.parse::<T>() {
            Ok(n) if n >= min && n <= max => n,
            _ => {
                errors.push(format!(
                    "{setting}: {text:?} is not a number from {min} to {max}"
                ));
                default
            }
        },
    }
}

impl LlmSettings {
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> AiConfig {
        let enabled = flag("ai_enabled", self.ai_enabled.as_deref(), true, errors);
        let api_key =
            super::gateway::one_of("llm_api_key", self.api_key, self.api_key_file, errors);
        let url = self
            .url
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty());
        let endpoint = match url {
            None => {
                if self.model.is_some() || api_key.is_some() {
                    errors.push("llm_url: required when llm_model or llm_api_key is set".into());
                }
                None
            }
            Some(url) => {
                let valid = url.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains(['@', ' ', '#', '?'])
                });
                if !valid {
                    // Not echoed: it may carry credentials.
                    errors.push(
                        "llm_url: not an http(s) URL without credentials (put a key in \
                         CASESCOPE_LLM_API_KEY)"
                            .into(),
                    );
                }
                let api = self
                    .api
                    .map(|a| a.trim().to_ascii_lowercase())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "openai".into());
                if !matches!(api.as_str(), "openai" | "ollama") {
                    errors.push(format!("llm_api: {api:?} is not openai or ollama"));
                }
                let model = self.model.unwrap_or_default().trim().to_string();
                if model.is_empty() {
                    errors.push("llm_model: required with llm_url".into());
                }
                Some(LlmEndpointConfig {
                    api,
                    url,
                    model,
                    api_key,
                })
            }
        };
        AiConfig {
            enabled,
            endpoint,
            connect_timeout: seconds(
                "llm_connect_timeout_secs",
                self.connect_timeout_secs.as_deref(),
                5.0,
                300.0,
                errors,
            ),
            first_token_timeout: seconds(
                "llm_first_token_timeout_secs",
                self.first_token_timeout_secs.as_deref(),
                120.0,
                3600.0,
                errors,
            ),
            stall_timeout: seconds(
                "llm_stall_timeout_secs",
                self.stall_timeout_secs.as_deref(),
                30.0,
                3600.0,
                errors,
            ),
            total_timeout: seconds(
                "llm_total_timeout_secs",
                self.total_timeout_secs.as_deref(),
                600.0,
                7200.0,
                errors,
            ),
            prompt_tokens: count(
                "llm_prompt_tokens",
                self.prompt_tokens.as_deref(),
                6_000,
                (500, 1_000_000),
                errors,
            ),
            answer_tokens: count(
                "llm_answer_tokens",
                self.answer_tokens.as_deref(),
                1_024,
                (16, 32_768),
                errors,
            ),
            redact: flag("llm_redact", self.redact.as_deref(), true, errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_a_url_and_every_problem_named() {
        let mut errors = Vec::new();
        let config = LlmSettings::default().resolve(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(config.enabled && config.endpoint.is_none() && config.redact);
        assert_eq!(config.first_token_timeout, Duration::from_secs(120));

        let config = LlmSettings {
            url: Some("http://127.0.0.1:8080/v1/".into()),
            model: Some("qwen2.5".into()),
            api_key: Some(Secret::new("sk-1")),
            first_token_timeout_secs: Some("0.5".into()),
            ai_enabled: Some("false".into()),
            ..Default::default()
        }
        .resolve(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!config.enabled);
        let endpoint = config.endpoint.unwrap();
        assert_eq!(
            (endpoint.api.as_str(), endpoint.url.as_str()),
            ("openai", "http://127.0.0.1:8080/v1")
        );
        assert_eq!(config.first_token_timeout, Duration::from_millis(500));

        LlmSettings {
            url: Some("http://user:pw@llm:8080".into()),
            api: Some("bard".into()),
            total_timeout_secs: Some("0".into()),
            answer_tokens: Some("many".into()),
            redact: Some("maybe".into()),
            ..Default::default()
        }
        .resolve(&mut errors);
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("pw@")), "{errors:?}");
    }
}
