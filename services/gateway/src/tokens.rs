//! Access tokens (JWT, EdDSA/Ed25519, `kid` in the header) and opaque secrets (refresh
//! tokens, API tokens).
//!
//! Signing keys: one active key signs; any number of older keys still verify until the
//! tokens they signed have expired (rotation: add the new key as active, keep the old
//! one as a verifier for one access-token lifetime, then drop it). A key's `kid` is
//! derived from its public key, so two deployments never share one by accident.
//!
//! Verification accepts only EdDSA with a known `kid`, checks the signature, `exp` and
//! `nbf` (no leeway beyond [`CLOCK_SKEW_SECS`]), `iss` and `aud`, and requires `sub`,
//! `sid`, `exp`, `nbf`, `iat`: `alg: none`, HMAC tokens (e.g. signed with the public key
//! as a secret), unknown keys, tampered payloads and foreign issuers all fail the same
//! way for the caller (UNAUTHENTICATED), with the reason kept for the logs.
//!
//! Opaque secrets are 32 random bytes, base64url, with a type prefix (`csr_` refresh,
//! `cst_` API token) so a leaked one is recognisable; only their SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// The longest an access token may live.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    BadPrivateKey(String),
    #[error("not an Ed25519 public key in SPKI PEM: {0}")]
    BadPublicKey(String),
    #[error("access tokens may live at most 15 minutes")]
    TtlTooLong,
}

/// Why a token was refused (for logs; the caller only learns UNAUTHENTICATED).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key id")]
    NoKeyId,
    #[error("unknown key id {0}")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session (refresh-token family) it was issued for.
    pub sid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
}

/// A signing key: its `kid` and both halves.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
    raw: ed25519_dalek::SigningKey,
}

/// The keys of one deployment: the active signer and every key that still verifies.
pub struct KeySet {
    issuer: String,
    audience: String,
    active: SigningKey,
    verifiers: HashMap<String, DecodingKey>,
    raw_verifiers: HashMap<String, ed25519_dalek::VerifyingKey>,
}

fn kid_of(public_der: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_der)[..8])
}

/// A new Ed25519 private key, PKCS#8 PEM (first run, tests).
pub fn generate_private_pem() -> String {
    let seed: [u8; 32] = rand::random();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|pem| pem.to_string())
        .unwrap_or_default()
}

/// The `kid` and public-key PEM of a private key PEM.
pub fn public_of(private_pem: &str) -> Result<(String, String), KeyError> {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(private_pem)
        .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
    let public = key.verifying_key();
    let der = public
        .to_public_key_der()
        .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
    let pem = public
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
    Ok((kid_of(der.as_bytes()), pem))
}

fn public_kid(public_pem: &str) -> Result<String, KeyError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
    let der = key
        .to_public_key_der()
        .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
    Ok(kid_of(der.as_bytes()))
}

impl KeySet {
    /// `active_private_pem` signs; `older_public_pems` still verify (rotation).
    pub fn new(
        issuer: &str,
        audience: &str,
        active_private_pem: &str,
        older_public_pems: &[String],
    ) -> Result<Self, KeyError> {
        let (kid, public_pem) = public_of(active_private_pem)?;
        let encoding = EncodingKey::from_ed_pem(active_private_pem.as_bytes())
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        let raw = ed25519_dalek::SigningKey::from_pkcs8_pem(active_private_pem)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        let mut verifiers = HashMap::new();
        let mut raw_verifiers = HashMap::new();
        for pem in older_public_pems.iter().chain(std::iter::once(&public_pem)) {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            let kid = public_kid(pem)?;
            let key = DecodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
            let raw_key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
            verifiers.insert(kid.clone(), key);
            raw_verifiers.insert(kid, raw_key);
        }
        Ok(Self {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            active: SigningKey {
                kid,
                encoding,
                public_pem,
                raw,
            },
            verifiers,
            raw_verifiers,
        })
    }

    /// The `kid` of the active key.
    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    /// The active key's public half (to hand to the next rotation's verifiers).
    pub fn active_public_pem(&self) -> &str {
        &self.active.public_pem
    }

    /// A detached Ed25519 signature of `message` with the active key: (kid, base64url).
    pub fn sign(&self, message: &[u8]) -> (String, String) {
        use ed25519_dalek::Signer;
        let signature = self.active.raw.sign(message);
        (
            self.active.kid.clone(),
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        )
    }

    /// Whether `signature` (from [`Self::sign`]) is `kid`'s signature of `message`.
    pub fn verify_signature(&self, kid: &str, message: &[u8], signature: &str) -> bool {
        use ed25519_dalek::Verifier;
        let Some(key) = self.raw_verifiers.get(kid) else {
            return false;
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(message, &signature).is_ok()
    }

    /// Signs an access token for `user_id` in session `session_id`, valid from `now`
    /// (seconds since the epoch) for `ttl` (at most [`MAX_ACCESS_TTL`]).
    pub fn issue(
        &self,
        user_id: &str,
        session_id: &str,
        now: u64,
        ttl: Duration,
    ) -> Result<(String, AccessClaims), KeyError> {
        if ttl > MAX_ACCESS_TTL {
            return Err(KeyError::TtlTooLong);
        }
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.active.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.active.encoding)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies an access token (see the module docs for what is checked).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // An unknown algorithm name (e.g. "none") fails to parse the header.
            let text = e.to_string();
            if text.to_ascii_lowercase().contains("variant") {
                TokenError::Algorithm(text)
            } else {
                TokenError::Malformed
            }
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let key = self
            .verifiers
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect();
        jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

/// A new opaque secret with `prefix` (`csr_` refresh token, `cst_` API token).
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a secret: its SHA-256, hex.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySet {
        KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_token_verifies_and_carries_its_claims() {
        let keys = keys();
        let (token, claims) = keys
            .issue("u1", "s1", now(), Duration::from_secs(600))
            .unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims);
        assert_eq!(claims.exp - claims.iat, 600);
        assert!(
            keys.issue("u1", "s1", now(), Duration::from_secs(16 * 60))
                .is_err(),
            "at most 15 minutes"
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_the_old_key_is_dropped() {
        let old = generate_private_pem();
        let old_keys = KeySet::new("casescope", "casescope", &old, &[]).unwrap();
        let (token, _) = old_keys
            .issue("u1", "s1", now(), Duration::from_secs(600))
            .unwrap();
        let (_, old_public) = public_of(&old).unwrap();
        let rotated = KeySet::new(
            "casescope",
            "casescope",
            &generate_private_pem(),
            &[old_public],
        )
        .unwrap();
        assert_ne!(rotated.active_kid(), old_keys.active_kid());
        assert!(rotated.verify(&token).is_ok(), "old kid still verifies");
        let dropped = KeySet::new("casescope", "casescope", &generate_private_pem(), &[]).unwrap();
        assert_eq!(
            dropped.verify(&token),
            Err(TokenError::UnknownKey(old_keys.active_kid().to_string()))
        );
    }

    #[test]
    fn secrets_are_random_prefixed_and_stored_hashed() {
        let a = new_secret("csr_");
        let b = new_secret("csr_");
        assert_ne!(a, b);
        assert!(a.starts_with("csr_") && a.len() > 40);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
