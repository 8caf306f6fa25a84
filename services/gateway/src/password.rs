//! Passwords: argon2id hashes (PHC strings, salt per hash), verified on the blocking
//! pool (hashing is deliberately slow), and the password policy.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 12;
/// Longest password accepted (bounds the hashing work per request).
pub const MAX_LENGTH: usize = 1024;

/// argon2id, 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password is refused by the policy.
pub fn policy_violation(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!("a password has at least {MIN_LENGTH} characters"));
    }
    if password.len() > MAX_LENGTH {
        return Some(format!("a password has at most {MAX_LENGTH} bytes"));
    }
    if password.chars().any(char::is_control) {
        return Some("a password has no control characters".into());
    }
    None
}

/// The PHC string of `password` (blocking: call from the blocking pool).
pub fn hash_blocking(password: &str) -> Result<String, String> {
    let salt: [u8; 16] = rand::random();
    hasher()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `stored` (blocking).
pub fn verify_blocking(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// [`hash_blocking`] on the blocking pool.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// [`verify_blocking`] on the blocking pool. With no stored hash (unknown user) a dummy
/// hash is checked, so an unknown name takes as long as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match stored {
        // A user without a password takes as long to refuse as a wrong password.
        Some(stored) if stored == crate::users::NO_PASSWORD => {
            let _ = verify_blocking(&password, dummy_hash());
            false
        }
        Some(stored) => verify_blocking(&password, &stored),
        None => {
            let _ = verify_blocking(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("not a password of anyone").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_blocking("correct horse battery").unwrap();
        let b = hash_blocking("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a salt per hash");
        assert!(verify_blocking("correct horse battery", &a));
        assert!(!verify_blocking("correct horse batterz", &a));
        assert!(!verify_blocking("anything", "not a phc string"));
    }

    #[test]
    fn the_policy_names_what_is_wrong() {
        assert!(policy_violation("short").unwrap().contains("at least 12"));
        assert!(policy_violation("twelve chars").is_none());
        assert!(policy_violation("has a\ttab inside").is_some());
        assert!(
            policy_violation(&"x".repeat(2000))
                .unwrap()
                .contains("at most")
        );
    }
}
