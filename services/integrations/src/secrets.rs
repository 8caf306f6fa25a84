//! Integration secrets (API keys, tokens, webhook signing keys) sealed at rest with
//! AES-256-GCM under a key of the deployment (`CASESCOPE_INTEGRATIONS_KEY` /
//! `_FILE`, e.g. a mounted Kubernetes Secret). Each sealed value is bound to its
//! integration (the id is the additional authenticated data), so a sealed value copied
//! onto another integration's row does not open. Stored as `v1:` + base64 of the
//! 12-byte random nonce and the ciphertext with its tag. A secret is opened only to be
//! put in a request header; it is never logged, returned or put in an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const PREFIX: &str = "v1:";

pub use casescope_runtime::config::Secret;

/// The sealing key.
pub struct SecretBox {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// The key from its text: 32 bytes as base64 (44 characters) or hex (64).
    pub fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "the integrations key is not hex".to_string())?
        } else {
            STANDARD.decode(text).map_err(|_| {
                "the integrations key is neither 64 hex digits nor base64 of 32 bytes \
                 (make one with `openssl rand -base64 32`)"
                    .to_string()
            })?
        };
        if bytes.len() != 32 {
            return Err(format!(
                "the integrations key holds {} bytes; it must hold 32 (`openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| "the integrations key was refused by AES-256-GCM".to_string())?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `secret` for the integration `owner`.
    pub fn seal(&self, owner: &str, secret: &Secret) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = secret.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(owner.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM seals any input under 64 GiB");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Opens a sealed value of `owner`; the error never holds the secret.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<Secret, String> {
        let encoded = sealed
            .strip_prefix(PREFIX)
            .ok_or("the stored secret is not in a known format")?;
        let mut data = STANDARD
            .decode(encoded)
            .map_err(|_| "the stored secret is damaged (not base64)")?;
        if data.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err("the stored secret is damaged (too short)".into());
        }
        let nonce: [u8; NONCE_LEN] = data[..NONCE_LEN].try_into().expect("length checked");
        let opened = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut data[NONCE_LEN..],
            )
            .map_err(|_| {
                "the stored secret does not open with this key (was CASESCOPE_INTEGRATIONS_KEY \
                 changed?): set the secret again"
                    .to_string()
            })?;
        let text = String::from_utf8(opened.to_vec())
            .map_err(|_| "the stored secret is not text".to_string())?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "q8d2yJ1m0wYxkqvR3o7nE5b9ZkQ1bXh2c0t6uVw8aYs=";

    #[test]
    fn sealed_secrets_open_only_for_their_integration_and_key() {
        let sealer = SecretBox::from_text(KEY).unwrap();
        let secret = Secret::new("iris-api-key-canary");
        let sealed = sealer.seal("integration-1", &secret);
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("canary"));
        assert_ne!(
            sealed,
            sealer.seal("integration-1", &secret),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open("integration-1", &sealed).unwrap(), secret);
        let moved = sealer.open("integration-2", &sealed).unwrap_err();
        assert!(moved.contains("does not open"), "{moved}");
        let other = SecretBox::from_text(&"ab".repeat(32)).unwrap();
        assert!(other.open("integration-1", &sealed).is_err());
        assert!(sealer.open("integration-1", "v1:AAAA").is_err());
        assert!(sealer.open("integration-1", "plain").is_err());
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(SecretBox::from_text("short").is_err());
        assert!(
            SecretBox::from_text(&STANDARD.encode([7u8; 16]))
                .unwrap_err()
                .contains("16 bytes")
        );
        assert!(SecretBox::from_text(&"0f".repeat(32)).is_ok());
    }
}
