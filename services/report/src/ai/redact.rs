//! Redaction of secret-looking values before evidence is sent to an LLM.
//!
//! Two rules: a field whose name says it holds a secret (`…Password`, `client_secret`,
//! `ApiKey`, …) has its whole value replaced; in any other value, known secret shapes
//! are replaced where they appear — `password=…` / `token: …` pairs, `--password …`
//! and `/p:…` switches, `Bearer …` credentials, JSON Web Tokens, AWS access key ids,
//! GitHub and Slack tokens, PEM private keys, and credentials in URLs. Hashes, SIDs,
//! user and host names are kept: they are what the summary is about. Each replacement
//! is counted, and the report says how many there were.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Endings of field names (letters and digits only, lower case) that hold secrets.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "apikey",
    "accesskey",
    "privatekey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "bearertoken",
    "sessiontoken",
    "idtoken",
    "credential",
    "credentials",
    "connectionstring",
];

static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: &[(&str, &str)] = &[
        // PEM private keys (to their end marker, or the end of the value).
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\z)",
            "[REDACTED PRIVATE KEY]",
        ),
        // key=value / key: value pairs naming a secret.
        (
            r#"(?i)\b((?:client[_-]?)?(?:password|passwd|pwd|pass|secret|token|api[_-]?key|apikey|access[_-]?key|auth)\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s;,&]+)"#,
            "${1}[REDACTED]",
        ),
        // Command-line switches: --password X, -Password X, /password:X, /p:X.
        (
            r"(?i)((?:^|\s)(?:--?(?:password|passwd|pass|pwd|secret|token|api-?key)\s+|/(?:password|pass|pwd|p):))(\S+)",
            "${1}[REDACTED]",
        ),
        // HTTP credentials.
        (
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
            "${1} [REDACTED]",
        ),
        // JSON Web Tokens.
        (
            r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
            "[REDACTED JWT]",
        ),
        // AWS access key ids.
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED AWS KEY]"),
        // GitHub and Slack tokens.
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,})",
            "[REDACTED TOKEN]",
        ),
        // user:password@ in URLs.
        (
            r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@",
            "${1}[REDACTED]@",
        ),
    ];
    rules
        .iter()
        .map(|(pattern, with)| {
            (
                Regex::new(pattern).unwrap_or_else(|e| panic!("redaction pattern {pattern}: {e}")),
                *with,
            )
        })
        .collect()
});

/// Whether a field named `name` holds a secret.
pub fn secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_NAMES.iter().any(|end| folded.ends_with(end))
}

/// `value` of the field `name` (empty for free text) with secrets replaced, and how
/// many replacements were made.
pub fn redact<'a>(name: &str, value: &'a str) -> (Cow<'a, str>, u64) {
    if value.is_empty() {
        return (Cow::Borrowed(value), 0);
    }
    if !name.is_empty() && secret_name(name) {
        return (Cow::Borrowed(REDACTED), 1);
    }
    let mut text = Cow::Borrowed(value);
    let mut count = 0u64;
    for (pattern, with) in PATTERNS.iter() {
        let found = pattern.find_iter(&text).count() as u64;
        if found > 0 {
            count += found;
            text = Cow::Owned(pattern.replace_all(&text, *with).into_owned());
        }
    }
    (text, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, value: &str) -> (String, u64) {
        let (text, count) = redact(name, value);
        (text.into_owned(), count)
    }

    #[test]
    fn secret_fields_are_replaced_whole() {
        assert_eq!(r("Password", "hunter2"), (REDACTED.into(), 1));
        assert_eq!(r("client_secret", "abc"), (REDACTED.into(), 1));
        assert_eq!(r("Data.ApiKey", "k-123"), (REDACTED.into(), 1));
        // Not secrets: the evidence the summary is about.
        assert_eq!(r("TargetUserName", "admin"), ("admin".into(), 0));
        assert_eq!(r("ElevatedToken", "%%1842"), ("%%1842".into(), 0));
        assert_eq!(r("KeyLength", "0"), ("0".into(), 0));
        assert_eq!(r("Password", ""), (String::new(), 0));
    }

    #[test]
    fn secret_shapes_are_replaced_in_values() {
        let (text, n) = r(
            "CommandLine",
            "net use \\\\dc01\\c$ /user:corp\\bob password=S3cret! && curl -H 'Authorization: Bearer abcdefghijkl.mnop' https://u:pw@example.com/x",
        );
        assert!(!text.contains("S3cret"), "{text}");
        assert!(!text.contains("abcdefghijkl"), "{text}");
        assert!(!text.contains("u:pw@"), "{text}");
        assert!(text.contains("/user:corp\\bob"), "{text}");
        assert!(text.contains("https://[REDACTED]@example.com/x"), "{text}");
        assert_eq!(n, 3, "{text}");

        let (text, n) = r(
            "",
            "psexec.exe -u admin -p Winter2024 --password Hunter22 cmd",
        );
        assert!(!text.contains("Hunter22"), "{text}");
        assert_eq!(n, 1, "{text}");

        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(r("", jwt).0, "[REDACTED JWT]");
        assert_eq!(
            r("", "key AKIAIOSFODNN7EXAMPLE used").0,
            "key [REDACTED AWS KEY] used"
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(r("", pem).0, "[REDACTED PRIVATE KEY]");
        // Hashes, SIDs and paths stay.
        let kept = "S-1-5-21-1 C:\\Windows\\system32\\cmd.exe 5f4dcc3b5aa765d61d8327deb882cf99";
        assert_eq!(r("", kept), (kept.into(), 0));
    }
}
