//! Every forged or unusable access token is refused: `alg: none`, an HS256 token signed
//! with the public key as its secret, an unknown `kid`, expired, not yet valid, a wrong
//! issuer or audience, a tampered payload, and a token signed by another deployment's
//! key (with its own `kid`, or claiming ours).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use casescope_gateway::tokens::{KeySet, TokenError, generate_private_pem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::Duration;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const TTL: Duration = Duration::from_secs(600);

fn claims(keys: &KeySet) -> serde_json::Value {
    let (token, _) = keys.issue("user-1", "session-1", now(), TTL).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn part(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn forged_and_unusable_tokens_are_refused() {
    let private = generate_private_pem();
    let keys = KeySet::new("casescope", "casescope", &private, &[]).unwrap();
    let kid = keys.active_kid().to_string();
    let (good, _) = keys.issue("user-1", "session-1", now(), TTL).unwrap();
    assert!(keys.verify(&good).is_ok(), "the control token verifies");
    let body = claims(&keys);

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        part(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
        part(&body)
    );
    assert!(
        matches!(keys.verify(&none), Err(TokenError::Algorithm(_))),
        "{:?}",
        keys.verify(&none)
    );

    // HS256 with the public key as the HMAC secret (the classic confusion attack).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &body,
        &EncodingKey::from_secret(keys.active_public_pem().as_bytes()),
    )
    .unwrap();
    assert!(matches!(keys.verify(&hs256), Err(TokenError::Algorithm(_))));

    // No kid, and an unknown kid.
    let foreign = generate_private_pem();
    let foreign_key = EncodingKey::from_ed_pem(foreign.as_bytes()).unwrap();
    let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &body, &foreign_key).unwrap();
    assert_eq!(keys.verify(&no_kid), Err(TokenError::NoKeyId));
    let other_deployment = KeySet::new("casescope", "casescope", &foreign, &[]).unwrap();
    let (theirs, _) = other_deployment
        .issue("user-1", "session-1", now(), TTL)
        .unwrap();
    assert!(matches!(
        keys.verify(&theirs),
        Err(TokenError::UnknownKey(_))
    ));
    // Another deployment's key claiming our kid: the signature does not verify.
    let mut claiming_ours = Header::new(Algorithm::EdDSA);
    claiming_ours.kid = Some(kid.clone());
    let impostor = jsonwebtoken::encode(&claiming_ours, &body, &foreign_key).unwrap();
    assert!(matches!(
        keys.verify(&impostor),
        Err(TokenError::Invalid(_))
    ));

    // Expired, and not yet valid (beyond the clock-skew allowance).
    let (expired, _) = keys
        .issue("user-1", "session-1", now() - 3600, TTL)
        .unwrap();
    assert!(matches!(keys.verify(&expired), Err(TokenError::Invalid(m)) if m.contains("xpired")));
    let (early, _) = keys
        .issue("user-1", "session-1", now() + 3600, TTL)
        .unwrap();
    assert!(matches!(keys.verify(&early), Err(TokenError::Invalid(_))));

    // Same key, wrong issuer; wrong audience.
    for (issuer, audience) in [("someone-else", "casescope"), ("casescope", "other-app")] {
        let wrong = KeySet::new(issuer, audience, &private, &[]).unwrap();
        let (token, _) = wrong.issue("user-1", "session-1", now(), TTL).unwrap();
        assert!(
            matches!(keys.verify(&token), Err(TokenError::Invalid(_))),
            "{issuer}/{audience}"
        );
    }

    // A tampered payload (another user) under the original signature.
    let pieces: Vec<&str> = good.split('.').collect();
    let mut tampered_body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(pieces[1]).unwrap()).unwrap();
    tampered_body["sub"] = "admin".into();
    let tampered = format!("{}.{}.{}", pieces[0], part(&tampered_body), pieces[2]);
    assert!(matches!(
        keys.verify(&tampered),
        Err(TokenError::Invalid(_))
    ));

    // Garbage.
    assert_eq!(keys.verify("not-a-token"), Err(TokenError::Malformed));
}
