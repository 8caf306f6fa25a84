//! Who is calling, as the gateway tells the services: an [`Identity`] in the
//! `casescope-identity` request header, signed (HMAC-SHA-256) with the deployment's
//! internal key, bound to one RPC and valid for [`TTL_SECS`].
//!
//! The gateway authenticates the caller, authorises the call and mints the header; every
//! service wraps its servers in [`Guarded`], which answers UNAUTHENTICATED to a call
//! without a valid identity — so a service reached directly, around the gateway, serves
//! nothing. Services calling each other mint a service identity per call
//! ([`with_service_identity`]). The key is shared by the gateway and the services only
//! (a Kubernetes Secret in cluster mode; a random key per process in all-in-one mode):
//! whoever holds it can act as anyone, which is why nothing else gets it.

use crate::channel::GrpcChannel;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The request header that carries the identity.
pub const HEADER: &str = "casescope-identity";

/// How long a minted identity is valid (seconds): one call, with room for clock skew.
pub const TTL_SECS: u64 = 60;

/// Shortest internal key accepted from configuration (characters).
pub const MIN_KEY_LEN: usize = 32;

/// The deployment's internal key. Never printed.
#[derive(Clone)]
pub struct InternalKey(Arc<[u8; 32]>);

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalKey(redacted)")
    }
}

/// Why an identity header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the call carries no identity from the gateway")]
    Missing,
    #[error("the identity from the gateway is malformed")]
    Malformed,
    #[error("the identity's signature does not verify (another deployment's key?)")]
    BadSignature,
    #[error("the identity from the gateway has expired")]
    Expired,
    #[error("the identity was issued for another RPC")]
    WrongMethod,
}

impl InternalKey {
    /// A random key (all-in-one mode: the gateway and the services share a process).
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(Arc::new(key))
    }

    /// The key from a configured secret of at least [`MIN_KEY_LEN`] characters.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_KEY_LEN {
            return Err(format!(
                "the internal key must have at least {MIN_KEY_LEN} characters \
                 (e.g. `openssl rand -base64 48`)"
            ));
        }
        Ok(Self(Arc::new(Sha256::digest(secret.as_bytes()).into())))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.as_slice()).expect("HMAC takes any key length")
    }

    /// The header value carrying `identity`.
    pub fn mint(&self, identity: &Identity) -> http::HeaderValue {
        let payload = serde_json::to_vec(identity).expect("an identity serialises");
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        http::HeaderValue::from_str(&format!("v1.{payload}.{signature}"))
            .expect("base64url is a valid header value")
    }

    /// The identity in `value`, if it is signed with this key, unexpired at `now`
    /// (seconds since the epoch) and issued for `method`.
    pub fn verify(
        &self,
        value: Option<&http::HeaderValue>,
        method: &str,
        now: u64,
    ) -> Result<Identity, IdentityError> {
        let value = value.ok_or(IdentityError::Missing)?;
        let text = value.to_str().map_err(|_| IdentityError::Malformed)?;
        let mut parts = text.split('.');
        let (Some("v1"), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| IdentityError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| IdentityError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| IdentityError::Malformed)?;
        let identity: Identity =
            serde_json::from_slice(&payload).map_err(|_| IdentityError::Malformed)?;
        if identity.expires < now {
            return Err(IdentityError::Expired);
        }
        if identity.method != method {
            return Err(IdentityError::WrongMethod);
        }
        Ok(identity)
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What kind of caller an identity stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    /// A user, signed in or through an API token, authorised by the gateway.
    User,
    /// One CaseScope service calling another.
    Service,
}

/// The caller of one RPC, as the gateway established it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub kind: CallerKind,
    /// The user's id, or the calling service's name.
    pub user_id: String,
    pub username: String,
    /// The user's global role (`admin`, `analyst`, `auditor`, `viewer`; empty for services).
    pub role: String,
    /// The cases the caller may see where a list is answered (`None`: every case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cases: Option<Vec<String>>,
    /// The RPC this identity was issued for (`/package.Service/Method`).
    pub method: String,
    /// Seconds since the epoch after which the identity is refused.
    pub expires: u64,
}

impl Identity {
    /// A service's identity for one call of `method`.
    pub fn service(service: &str, method: &str) -> Self {
        Identity {
            kind: CallerKind::Service,
            user_id: service.to_string(),
            username: service.to_string(),
            role: String::new(),
            cases: None,
            method: method.to_string(),
            expires: now_secs() + TTL_SECS,
        }
    }

    /// The identity the guard put on `request` (absent only where no guard runs, e.g. in
    /// a service's own unit tests).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Identity> {
        request.extensions().get::<Identity>()
    }

    /// Whether lists may show the caller case `id`.
    pub fn sees_case(&self, id: &str) -> bool {
        self.cases
            .as_ref()
            .is_none_or(|cases| cases.iter().any(|c| c == id))
    }

    /// The user id to record as the author of a change (`None` for a service).
    pub fn author(&self) -> Option<&str> {
        (self.kind == CallerKind::User).then_some(self.user_id.as_str())
    }
}

/// A server that answers only calls carrying a valid identity (see the module docs);
/// `internal(method)` names the RPCs only services may call.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    key: InternalKey,
    internal: fn(&str) -> bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, key: InternalKey, internal: fn(&str) -> bool) -> Self {
        Self {
            inner,
            key,
            internal,
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Guarded<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().to_string();
        let verified = self
            .key
            .verify(request.headers().get(HEADER), &method, now_secs());
        let refusal = match verified {
            Ok(identity) if identity.kind != CallerKind::Service && (self.internal)(&method) => {
                Some(tonic::Status::permission_denied(format!(
                    "{method} is internal: only CaseScope's services call it"
                )))
            }
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                None
            }
            Err(error) => Some(tonic::Status::unauthenticated(format!(
                "{error}: CaseScope's services answer only calls that come through its \
                 gateway (sign in there: casescope login)"
            ))),
        };
        match refusal {
            Some(status) => Box::pin(async move { Ok(status.into_http()) }),
            None => {
                // The clone is ready only after its own poll_ready; swap so that the
                // service polled ready is the one called.
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Box::pin(ready.call(request))
            }
        }
    }
}

/// `channel` with a fresh identity of `service` on every call (service-to-service calls).
pub fn with_service_identity(
    channel: GrpcChannel,
    key: InternalKey,
    service: &'static str,
) -> GrpcChannel {
    BoxCloneSyncService::new(
        channel.map_request(move |mut request: http::Request<Body>| {
            let identity = Identity::service(service, request.uri().path());
            request.headers_mut().insert(HEADER, key.mint(&identity));
            request
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(method: &str, expires: u64) -> Identity {
        Identity {
            kind: CallerKind::User,
            user_id: "u1".into(),
            username: "alice".into(),
            role: "analyst".into(),
            cases: Some(vec!["c1".into()]),
            method: method.into(),
            expires,
        }
    }

    #[test]
    fn minted_identities_verify_and_nothing_else_does() {
        let key = InternalKey::generate();
        let now = now_secs();
        let identity = user("/a.B/C", now + 10);
        let value = key.mint(&identity);
        assert_eq!(key.verify(Some(&value), "/a.B/C", now), Ok(identity));
        assert_eq!(
            key.verify(Some(&value), "/a.B/D", now),
            Err(IdentityError::WrongMethod)
        );
        assert_eq!(
            key.verify(Some(&value), "/a.B/C", now + 11),
            Err(IdentityError::Expired)
        );
        assert_eq!(
            InternalKey::generate().verify(Some(&value), "/a.B/C", now),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(key.verify(None, "/a.B/C", now), Err(IdentityError::Missing));
        // A payload changed after signing (another role) is refused.
        let text = value.to_str().unwrap();
        let (head, signature) = text.rsplit_once('.').unwrap();
        let mut forged = user("/a.B/C", now + 10);
        forged.role = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_ne!(head, format!("v1.{forged_payload}"));
        let forged =
            http::HeaderValue::from_str(&format!("v1.{forged_payload}.{signature}")).unwrap();
        assert_eq!(
            key.verify(Some(&forged), "/a.B/C", now),
            Err(IdentityError::BadSignature)
        );
        for junk in ["", "v1", "v1.a.b.c", "v2.a.b", "v1.!!.!!"] {
            let junk = http::HeaderValue::from_str(junk).unwrap();
            assert!(key.verify(Some(&junk), "/a.B/C", now).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn configured_keys_are_long_and_derived_deterministically() {
        assert!(InternalKey::from_secret("short").is_err());
        let a = InternalKey::from_secret(&"x".repeat(40)).unwrap();
        let b = InternalKey::from_secret(&"x".repeat(40)).unwrap();
        let identity = user("/a.B/C", now_secs() + 10);
        assert!(
            b.verify(Some(&a.mint(&identity)), "/a.B/C", now_secs())
                .is_ok()
        );
        assert_eq!(format!("{a:?}"), "InternalKey(redacted)");
    }
}
