//! Webhook messages: JSON, signed with HMAC-SHA256 of the exact body bytes under the
//! integration's secret, sent in the configured header as `sha256=<hex>` (the receiver
//! recomputes it over the body it got and compares in constant time).

use crate::outbound::OutRequest;
use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::Sha256;

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A POST of `body` to `url`, signed when there is a key.
pub fn signed_request(
    url: Url,
    body: &serde_json::Value,
    key: Option<&str>,
    header: &str,
) -> OutRequest {
    let mut request = OutRequest::post_json(url, body);
    if let (Some(key), Some(bytes)) = (key, request.json.as_ref()) {
        let value = signature(key, bytes);
        request.headers.push((header.to_string(), value));
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let request = signed_request(
            Url::parse("https://soc.example.org/hook").unwrap(),
            &serde_json::json!({"a": 1}),
            Some("k"),
            "X-CaseScope-Signature",
        );
        let body = request.json.clone().unwrap();
        assert_eq!(request.headers[0].0, "X-CaseScope-Signature");
        assert_eq!(request.headers[0].1, signature("k", &body));
        let unsigned = signed_request(
            Url::parse("https://x.example").unwrap(),
            &serde_json::json!({}),
            None,
            "X",
        );
        assert!(unsigned.headers.is_empty());
    }
}
