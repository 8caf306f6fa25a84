//! An integration's configuration: the checks of what an administrator gives (kind,
//! name, URL, secret, timeout, attempts, CA, the kind's settings) and the resolution of
//! its secret at call time.

use crate::IntegrationsSettings;
use crate::secrets::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casescope_proto::error::ApiError;
use casescope_proto::integrations::v1 as pb;
use prost::Message;
use std::time::Duration;

/// Longest integration name (characters).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest base URL (bytes).
const MAX_URL_BYTES: usize = 2048;
/// Largest secret and CA certificate (bytes).
const MAX_SECRET_BYTES: usize = 8 * 1024;
const MAX_CA_BYTES: usize = 64 * 1024;

fn invalid(reason: &'static str, field: &str, why: impl Into<String>) -> ApiError {
    ApiError::invalid_field(reason, field, why)
}

pub fn kind_word(kind: i32) -> &'static str {
    match pb::IntegrationKind::try_from(kind) {
        Ok(pb::IntegrationKind::DfirIris) => "DFIR-IRIS",
        Ok(pb::IntegrationKind::Opencti) => "OpenCTI",
        Ok(pb::IntegrationKind::Webhook) => "webhook",
        Ok(pb::IntegrationKind::NatsExport) => "NATS export",
        _ => "unknown",
    }
}

/// The kinds this version serves.
pub fn check_kind(kind: i32) -> Result<pb::IntegrationKind, ApiError> {
    match pb::IntegrationKind::try_from(kind) {
        Ok(
            k @ (pb::IntegrationKind::DfirIris
            | pb::IntegrationKind::Opencti
            | pb::IntegrationKind::Webhook),
        ) => Ok(k),
        Ok(pb::IntegrationKind::NatsExport) => Err(invalid(
            "KIND_NOT_SUPPORTED",
            "kind",
            "NATS export is not built in this version (SOC tooling can read the deployment's \
             own facts on NATS, docs/bus.md)",
        )),
        _ => Err(invalid(
            "KIND_INVALID",
            "kind",
            "one of DFIR_IRIS, OPENCTI, WEBHOOK",
        )),
    }
}

pub fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(invalid(
            "NAME_INVALID",
            "name",
            format!("1 to {MAX_NAME_CHARS} characters ({chars} given)"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "NAME_INVALID",
            "name",
            "control characters are not allowed",
        ));
    }
    Ok(name.to_string())
}

/// A base URL: http(s), a host, no credentials, query or fragment; an IP literal the
/// SSRF guard refuses is refused now rather than at the first call.
pub fn check_url(text: &str, settings: &IntegrationsSettings) -> Result<String, ApiError> {
    let text = text.trim().trim_end_matches('/');
    if text.len() > MAX_URL_BYTES {
        return Err(invalid(
            "URL_INVALID",
            "base_url",
            format!("longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let url = url::Url::parse(text)
        .map_err(|e| invalid("URL_INVALID", "base_url", format!("not a URL ({e})")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "URL_INVALID",
            "base_url",
            "a query or fragment is not allowed",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: it holds credentials.
        return Err(invalid(
            "URL_INVALID",
            "base_url",
            "credentials in the URL are refused: give them as the secret",
        ));
    }
    settings
        .guard
        .check_url(&url)
        .map_err(|why| invalid("URL_REFUSED", "base_url", why))?;
    Ok(text.to_string())
}

pub fn check_timeout(
    timeout: Option<&prost_types::Duration>,
    settings: &IntegrationsSettings,
) -> Result<Duration, ApiError> {
    let Some(timeout) = timeout else {
        return Ok(settings.default_timeout);
    };
    let wanted = Duration::try_from(*timeout)
        .ok()
        .filter(|d| *d >= Duration::from_secs(1) && *d <= settings.max_timeout);
    wanted.ok_or_else(|| {
        invalid(
            "TIMEOUT_INVALID",
            "timeout",
            format!("1 s to {} s", settings.max_timeout.as_secs()),
        )
    })
}

pub fn check_attempts(attempts: u32, settings: &IntegrationsSettings) -> Result<u32, ApiError> {
    match attempts {
        0 => Ok(settings.default_attempts),
        n if n <= settings.max_attempts => Ok(n),
        n => Err(invalid(
            "MAX_ATTEMPTS_INVALID",
            "max_attempts",
            format!("{n} is above {}", settings.max_attempts),
        )),
    }
}

pub fn check_ca(pem: &str) -> Result<String, ApiError> {
    if pem.trim().is_empty() {
        return Ok(String::new());
    }
    if pem.len() > MAX_CA_BYTES {
        return Err(invalid(
            "CA_INVALID",
            "ca_certificate_pem",
            format!("larger than {MAX_CA_BYTES} bytes"),
        ));
    }
    let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| invalid("CA_INVALID", "ca_certificate_pem", format!("not PEM ({e})")))?;
    if certificates.is_empty() {
        return Err(invalid(
            "CA_INVALID",
            "ca_certificate_pem",
            "no CERTIFICATE block",
        ));
    }
    Ok(pem.to_string())
}

/// The kind's settings, checked and defaulted, encoded for the row.
pub fn check_settings(
    kind: pb::IntegrationKind,
    settings: Option<&pb::IntegrationSettings>,
) -> Result<String, ApiError> {
    use pb::integration_settings::KindSettings;
    let given = settings.and_then(|s| s.kind_settings.clone());
    let checked = match (kind, given) {
        (pb::IntegrationKind::DfirIris, Some(KindSettings::Iris(iris))) => KindSettings::Iris(iris),
        (pb::IntegrationKind::DfirIris, None) => KindSettings::Iris(pb::IrisSettings::default()),
        (pb::IntegrationKind::Opencti, Some(KindSettings::Opencti(o))) => {
            if o.min_import_confidence > 100 {
                return Err(invalid(
                    "SETTINGS_INVALID",
                    "settings.opencti.min_import_confidence",
                    "0 to 100",
                ));
            }
            KindSettings::Opencti(o)
        }
        (pb::IntegrationKind::Opencti, None) => {
            KindSettings::Opencti(pb::OpenCtiSettings::default())
        }
        (pb::IntegrationKind::Webhook, Some(KindSettings::Webhook(mut w))) => {
            w.signature_header = w.signature_header.trim().to_string();
            if w.signature_header.is_empty() {
                w.signature_header = "X-CaseScope-Signature".into();
            }
            if !w
                .signature_header
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
                || w.signature_header.len() > 64
            {
                return Err(invalid(
                    "SETTINGS_INVALID",
                    "settings.webhook.signature_header",
                    "a header name of letters, digits and '-' (at most 64)",
                ));
            }
            if w.topics.is_empty() {
                return Err(invalid(
                    "SETTINGS_INVALID",
                    "settings.webhook.topics",
                    "at least one topic",
                ));
            }
            KindSettings::Webhook(w)
        }
        (pb::IntegrationKind::Webhook, None) => {
            return Err(invalid(
                "SETTINGS_INVALID",
                "settings.webhook",
                "a webhook needs its topics",
            ));
        }
        _ => {
            return Err(invalid(
                "SETTINGS_INVALID",
                "settings",
                format!(
                    "the settings are not those of a {} integration",
                    kind_word(kind as i32)
                ),
            ));
        }
    };
    let settings = pb::IntegrationSettings {
        kind_settings: Some(checked),
    };
    Ok(STANDARD.encode(settings.encode_to_vec()))
}

/// The stored settings.
pub fn decode_settings(text: &str) -> pb::IntegrationSettings {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| pb::IntegrationSettings::decode(bytes.as_slice()).ok())
        .unwrap_or_default()
}

/// A secret as given: `(sealed, reference)` for the row.
pub fn check_secret(
    owner: &str,
    secret: Option<&pb::SecretInput>,
    settings: &IntegrationsSettings,
) -> Result<(String, String), ApiError> {
    use pb::secret_input::Source;
    match secret.and_then(|s| s.source.as_ref()) {
        None => Ok((String::new(), String::new())),
        Some(Source::Value(value)) => {
            if value.is_empty()
                || value.len() > MAX_SECRET_BYTES
                || value.chars().any(char::is_control)
            {
                return Err(invalid(
                    "SECRET_INVALID",
                    "secret.value",
                    format!("1 to {MAX_SECRET_BYTES} bytes without control characters"),
                ));
            }
            let Some(sealer) = &settings.secrets else {
                return Err(ApiError::failed_precondition(
                    "SECRETS_KEY_MISSING",
                    "secrets cannot be stored: this deployment has no key to seal them with \
                     (set CASESCOPE_INTEGRATIONS_KEY, or give the secret as a reference)",
                ));
            };
            Ok((
                sealer.seal(owner, &Secret::new(value.clone())),
                String::new(),
            ))
        }
        Some(Source::Reference(reference)) => {
            check_reference(reference, settings)?;
            Ok((String::new(), reference.clone()))
        }
    }
}

fn reference_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_reference(reference: &str, settings: &IntegrationsSettings) -> Result<(), ApiError> {
    match reference.split_once(':') {
        Some(("env", name)) if name.starts_with("CASESCOPE_SECRET_") && reference_name_ok(name) => {
            Ok(())
        }
        Some(("file", name)) if reference_name_ok(name) => {
            if settings.secrets_dir.is_none() {
                return Err(ApiError::failed_precondition(
                    "SECRETS_DIR_MISSING",
                    "file: secret references need CASESCOPE_INTEGRATIONS_SECRETS_DIR",
                ));
            }
            Ok(())
        }
        _ => Err(invalid(
            "SECRET_INVALID",
            "secret.reference",
            "env:CASESCOPE_SECRET_<NAME> or file:<name> (a name in the secrets directory, \
             no path)",
        )),
    }
}

/// The secret of an integration at call time; the error never holds it.
pub fn resolve_secret(
    owner: &str,
    sealed: &str,
    reference: &str,
    settings: &IntegrationsSettings,
) -> Result<Option<Secret>, String> {
    if !sealed.is_empty() {
        let sealer = settings
            .secrets
            .as_ref()
            .ok_or("the stored secret cannot be opened: CASESCOPE_INTEGRATIONS_KEY is not set")?;
        return sealer.open(owner, sealed).map(Some);
    }
    match reference.split_once(':') {
        None if reference.is_empty() => Ok(None),
        Some(("env", name)) => std::env::var(name)
            .map(|v| Some(Secret::new(v.trim().to_string())))
            .map_err(|_| format!("the secret's variable {name} is not set")),
        Some(("file", name)) => {
            let dir = settings
                .secrets_dir
                .as_ref()
                .ok_or("CASESCOPE_INTEGRATIONS_SECRETS_DIR is not set")?;
            let path = dir.join(name);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("the secret file {name} cannot be read: {}", e.kind()))?;
            if bytes.len() > MAX_SECRET_BYTES {
                return Err(format!(
                    "the secret file {name} is larger than {MAX_SECRET_BYTES} bytes"
                ));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("the secret file {name} is not text"))?;
            Ok(Some(Secret::new(text.trim().to_string())))
        }
        _ => Err("the secret reference is not understood".into()),
    }
}

/// The outbound client of integration `row`, with its secret as the bearer (a
/// webhook's signs its bodies instead), and the secret.
pub fn connect(
    row: &crate::repo::IntegrationRow,
    settings: &IntegrationsSettings,
    breakers: &crate::outbound::breaker::Breakers,
) -> Result<(crate::outbound::Outbound, Option<String>), String> {
    let secret = resolve_secret(&row.id, &row.secret_sealed, &row.secret_reference, settings)?;
    let secret = secret.map(|s| s.expose().to_string());
    let bearer = match pb::IntegrationKind::try_from(row.kind) {
        Ok(pb::IntegrationKind::Webhook) => None,
        _ => secret.clone().map(crate::outbound::Auth::Bearer),
    };
    let outbound = crate::outbound::Outbound::new(
        settings.guard.clone(),
        settings.outbound.clone(),
        Duration::from_millis(row.timeout_ms as u64),
        Some(row.ca_pem.as_str()),
        bearer,
        breakers.of(&row.id),
    )?;
    Ok((outbound, secret))
}
