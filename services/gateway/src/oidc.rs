//! Sign-in through an external OpenID Connect provider: the authorization code flow with
//! PKCE (S256), `state` and `nonce`, the ID token verified against the keys the provider
//! publishes (its discovery document and JWKS, cached, refetched for an unknown `kid`),
//! and the provider's groups mapped to a global role on every sign-in.
//!
//! A sign-in begins with [`Oidc::begin`] (a pending row: the hashed state, nonce, code
//! verifier and redirect URI, ten minutes, at most [`MAX_PENDING`]) and completes with
//! [`Oidc::complete`], which spends the row, exchanges the code, verifies the ID token and
//! starts a session. A provider identity (issuer, subject) is linked to one CaseScope
//! user, created on first sign-in; it is never linked to an existing local account by
//! name (that would let whoever controls a provider account take it over).

use crate::policy::GlobalRole;
use crate::sessions::{AuthError, Issued, Sessions};
use crate::tokens::{new_secret, secret_hash};
use crate::users::{UserError, UserRow, Users};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use casescope_db::{Database, DbError, now_micros};
use casescope_runtime::config::OidcConfig;
use casescope_runtime::percent::form_encode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a begun sign-in may take.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-ins begun and not finished, at most (anyone may begin one).
pub const MAX_PENDING: i64 = 10_000;
/// Largest answer read from the provider.
const MAX_RESPONSE: usize = 1024 * 1024;
/// How long the discovery document is trusted.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Least time between two fetches of the provider's keys for an unknown `kid`.
const JWKS_REFETCH: Duration = Duration::from_secs(60);
/// Signature algorithms accepted on ID tokens (asymmetric only).
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("sign-in through an identity provider is not configured (CASESCOPE_OIDC_ISSUER)")]
    NotConfigured,
    /// The request is wrong (INVALID_ARGUMENT).
    #[error("{0}")]
    BadRequest(String),
    /// The sign-in is refused (UNAUTHENTICATED).
    #[error("{0}")]
    Refused(String),
    /// Signed in at the provider, but no role here (PERMISSION_DENIED).
    #[error("{0}")]
    NoRole(String),
    /// Too many sign-ins under way.
    #[error("{0}")]
    Busy(String),
    /// The provider cannot be reached or answers nonsense (UNAVAILABLE).
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DbError> for OidcError {
    fn from(error: DbError) -> Self {
        OidcError::Internal(error.to_string())
    }
}

/// A begun sign-in.
pub struct Begun {
    pub authorization_url: String,
    pub state: String,
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

/// A finished sign-in.
pub struct SignedIn {
    pub issued: Issued,
    pub user: UserRow,
    /// Whether the user was created by this sign-in.
    pub created: bool,
}

struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    jwks: JwkSet,
    discovered: Instant,
    keys_fetched: Instant,
}

/// What the verified ID token says about the user.
#[derive(Debug, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub groups: Vec<String>,
}

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    db: Database,
    users: Users,
    sessions: Sessions,
    provider: Mutex<Option<Provider>>,
}

fn random_token() -> String {
    new_secret("")
}

impl Oidc {
    /// The provider's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn new(config: OidcConfig, sessions: Sessions) -> Result<Self, OidcError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("casescope-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OidcError::Internal(format!("HTTP client: {e}")))?;
        let users = sessions.users().clone();
        Ok(Self {
            config,
            http,
            db: users.db().clone(),
            users,
            sessions,
            provider: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether the provider may send a browser back to `uri`.
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        if self
            .config
            .redirect_uris
            .iter()
            .any(|allowed| allowed == uri)
        {
            return true;
        }
        if !self.config.loopback_redirects {
            return false;
        }
        let Ok(url) = reqwest::Url::parse(uri) else {
            return false;
        };
        url.scheme() == "http"
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none()
            && url.port().is_some()
            && url
                .host_str()
                .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|host| host.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback())
    }

    /// Starts a sign-in that returns to `redirect_uri`.
    pub async fn begin(&self, redirect_uri: &str) -> Result<Begun, OidcError> {
        let redirect_uri = redirect_uri.trim();
        if !self.redirect_allowed(redirect_uri) {
            return Err(OidcError::BadRequest(format!(
                "redirect_uri {redirect_uri:?} is not allowed: use one of CASESCOPE_OIDC_REDIRECT_URIS{}",
                if self.config.loopback_redirects {
                    " or http://127.0.0.1:<port>/…"
                } else {
                    ""
                }
            )));
        }
        let now = now_micros();
        sqlx::query("DELETE FROM gateway_oidc_pending WHERE expires_at < $1")
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(DbError::from)?;
        let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM gateway_oidc_pending")
            .fetch_one(self.db.pool())
            .await
            .map_err(DbError::from)?
            .try_get("n")
            .map_err(DbError::from)?;
        if pending >= MAX_PENDING {
            return Err(OidcError::Busy(format!(
                "{MAX_PENDING} sign-ins are under way; retry in a minute"
            )));
        }
        let endpoint = self.provider_info(false).await?.0;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&endpoint).map_err(|e| {
            OidcError::Provider(format!("the provider's authorization endpoint: {e}"))
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let expires_at = now + i64::try_from(PENDING_TTL.as_micros()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO gateway_oidc_pending (state_hash, nonce, code_verifier, redirect_uri, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(secret_hash(&state))
        .bind(&nonce)
        .bind(&verifier)
        .bind(redirect_uri)
        .bind(now)
        .bind(expires_at)
        .execute(self.db.pool())
        .await
        .map_err(DbError::from)?;
        Ok(Begun {
            authorization_url: url.to_string(),
            state,
            expires_at,
        })
    }

    /// Finishes the sign-in of `state` with the provider's `code`.
    pub async fn complete(&self, state: &str, code: &str) -> Result<SignedIn, OidcError> {
        let (state, code) = (state.trim(), code.trim());
        if state.is_empty() || code.is_empty() || state.len() > 512 || code.len() > 4096 {
            return Err(OidcError::BadRequest(
                "state and code are required, as the provider sent them".into(),
            ));
        }
        let pending = self.spend(state).await?;
        let (_, token_endpoint) = self.provider_info(false).await?;
        let id_token = self
            .exchange(
                &token_endpoint,
                code,
                &pending.redirect_uri,
                &pending.verifier,
            )
            .await?;
        let claims = self.verify(&id_token, &pending.nonce).await?;
        let identity = self.identity(&claims)?;
        let role = self.role_of(&identity.groups).ok_or_else(|| {
            OidcError::NoRole(format!(
                "signed in at the identity provider as {}, but none of your groups grants a \
                 CaseScope role; ask an administrator",
                identity.username
            ))
        })?;
        let (user, created) = self.user_for(&identity, role).await?;
        if user.disabled {
            return Err(OidcError::Refused(
                "this CaseScope account is disabled".into(),
            ));
        }
        let issued = self.sessions.start(&user).await.map_err(|e| match e {
            AuthError::Internal(message) => OidcError::Internal(message),
            other => OidcError::Refused(other.to_string()),
        })?;
        Ok(SignedIn {
            issued,
            user,
            created,
        })
    }

    /// Spends the pending sign-in of `state` (once).
    async fn spend(&self, state: &str) -> Result<Pending, OidcError> {
        let hash = secret_hash(state);
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT nonce, code_verifier, redirect_uri, expires_at FROM gateway_oidc_pending \
             WHERE state_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DbError::from)?;
        let deleted = sqlx::query("DELETE FROM gateway_oidc_pending WHERE state_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
        tx.commit().await.map_err(DbError::from)?;
        let refused = || {
            OidcError::Refused(
                "this sign-in is unknown, expired or already used; start again".into(),
            )
        };
        let row = row.ok_or_else(refused)?;
        if deleted.rows_affected() != 1
            || row.try_get::<i64, _>("expires_at").unwrap_or(0) < now_micros()
        {
            return Err(refused());
        }
        let get = |column: &str| row.try_get::<String, _>(column).map_err(DbError::from);
        Ok(Pending {
            nonce: get("nonce")?,
            verifier: get("code_verifier")?,
            redirect_uri: get("redirect_uri")?,
        })
    }

    /// Forgets sign-ins begun and never finished; how many.
    pub async fn sweep(&self) -> Result<u64, DbError> {
        Ok(
            sqlx::query("DELETE FROM gateway_oidc_pending WHERE expires_at < $1")
                .bind(now_micros())
                .execute(self.db.pool())
                .await
                .map_err(DbError::from)?
                .rows_affected(),
        )
    }

    /// The authorization and token endpoints (discovered, cached); with `refetch_keys`,
    /// the provider's keys are fetched again if they were not just now.
    async fn provider_info(&self, refetch_keys: bool) -> Result<(String, String), OidcError> {
        let mut cached = self.provider.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|p| p.discovered.elapsed() < DISCOVERY_TTL);
        if !fresh {
            *cached = Some(self.discover().await?);
        } else if refetch_keys
            && let Some(provider) = cached.as_mut()
            && provider.keys_fetched.elapsed() >= JWKS_REFETCH
        {
            provider.jwks = self.fetch_keys(&provider.jwks_uri).await?;
            provider.keys_fetched = Instant::now();
        }
        let provider = cached.as_ref().expect("set above");
        Ok((
            provider.authorization_endpoint.clone(),
            provider.token_endpoint.clone(),
        ))
    }

    async fn discover(&self) -> Result<Provider, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let (status, document) = self.fetch_json(self.http.get(&url), "discovery").await?;
        if status != 200 {
            return Err(OidcError::Provider(format!(
                "the provider's discovery document answered HTTP {status}"
            )));
        }
        let field = |name: &str| -> Result<String, OidcError> {
            document[name].as_str().map(str::to_string).ok_or_else(|| {
                OidcError::Provider(format!("the provider's discovery document has no {name}"))
            })
        };
        let issuer = field("issuer")?;
        if issuer.trim_end_matches('/') != self.config.issuer {
            return Err(OidcError::Provider(format!(
                "the provider calls itself {issuer:?}, not the configured issuer {:?}",
                self.config.issuer
            )));
        }
        if let Some(methods) = document["code_challenge_methods_supported"].as_array()
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(OidcError::Provider(
                "the provider does not support PKCE with S256".into(),
            ));
        }
        let jwks_uri = field("jwks_uri")?;
        let jwks = self.fetch_keys(&jwks_uri).await?;
        Ok(Provider {
            issuer,
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri,
            jwks,
            discovered: Instant::now(),
            keys_fetched: Instant::now(),
        })
    }

    async fn fetch_keys(&self, uri: &str) -> Result<JwkSet, OidcError> {
        let (status, keys) = self.fetch_json(self.http.get(uri), "keys").await?;
        if status != 200 {
            return Err(OidcError::Provider(format!(
                "the provider's keys (jwks_uri) answered HTTP {status}"
            )));
        }
        serde_json::from_value(keys)
            .map_err(|e| OidcError::Provider(format!("the provider's keys are not a JWK set: {e}")))
    }

    /// Sends `request`; the status and the JSON answer (at most [`MAX_RESPONSE`] bytes).
    async fn fetch_json(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(u16, serde_json::Value), OidcError> {
        let provider =
            |message: String| OidcError::Provider(format!("identity provider ({what}): {message}"));
        let mut response = request
            .send()
            .await
            .map_err(|e| provider(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| provider(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(provider(format!("the answer is over {MAX_RESPONSE} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&body)
            .map_err(|_| provider(format!("HTTP {status}, not JSON")))?;
        Ok((status, value))
    }

    /// Exchanges `code` for the ID token.
    async fn exchange(
        &self,
        token_endpoint: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(token_endpoint);
        match &self.config.client_secret {
            Some(secret) => {
                request = request.basic_auth(
                    form_encode(&self.config.client_id),
                    Some(form_encode(secret.expose())),
                );
            }
            None => form.push(("client_id", &self.config.client_id)),
        }
        let (status, answer) = self.fetch_json(request.form(&form), "token").await?;
        if status != 200 {
            // The provider's error code only: its description may quote the request.
            let error = answer["error"].as_str().unwrap_or("unknown error");
            return Err(OidcError::Refused(format!(
                "the identity provider refused the sign-in ({error}); start again"
            )));
        }
        answer["id_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OidcError::Provider("the provider's answer has no id_token".into()))
    }

    /// The claims of `id_token` once its signature, issuer, audience, times and nonce check.
    async fn verify(&self, id_token: &str, nonce: &str) -> Result<serde_json::Value, OidcError> {
        let refused = |why: &str| OidcError::Refused(format!("the ID token is not valid: {why}"));
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| refused("malformed"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(refused(&format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut key = self.key(header.kid.as_deref()).await;
        if key.is_none() {
            // A rotation at the provider: its new key is not cached yet.
            self.provider_info(true).await?;
            key = self.key(header.kid.as_deref()).await;
        }
        let key = key.ok_or_else(|| refused("signed with a key the provider does not publish"))?;
        let key =
            DecodingKey::from_jwk(&key).map_err(|_| refused("the provider's key is unusable"))?;
        let issuer = self
            .provider
            .lock()
            .await
            .as_ref()
            .map(|p| p.issuer.clone())
            .unwrap_or_else(|| self.config.issuer.clone());
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<serde_json::Value>(id_token, &key, &validation)
            .map_err(|e| refused(&e.to_string()))?
            .claims;
        if claims["nonce"].as_str() != Some(nonce) {
            return Err(refused("its nonce is not this sign-in's"));
        }
        if let Some(audiences) = claims["aud"].as_array()
            && audiences.len() > 1
            && claims["azp"].as_str() != Some(self.config.client_id.as_str())
        {
            return Err(refused("issued to another party (azp)"));
        }
        Ok(claims)
    }

    /// The cached key `kid` (the only key, when the token names none).
    async fn key(&self, kid: Option<&str>) -> Option<Jwk> {
        let cached = self.provider.lock().await;
        let provider = cached.as_ref()?;
        match kid {
            Some(kid) => provider.jwks.find(kid).cloned(),
            None if provider.jwks.keys.len() == 1 => provider.jwks.keys.first().cloned(),
            None => None,
        }
    }

    /// Who the verified claims say the user is.
    pub fn identity(&self, claims: &serde_json::Value) -> Result<Identity, OidcError> {
        let text = |name: &str| {
            claims[name]
                .as_str()
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let subject = text("sub")
            .ok_or_else(|| OidcError::Refused("the ID token names no subject".into()))?
            .to_string();
        let name = text(&self.config.username_claim)
            .or_else(|| text("email"))
            .unwrap_or(&subject);
        let groups = match &claims[self.config.groups_claim.as_str()] {
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            serde_json::Value::String(group) => vec![group.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            username: username_from(name),
            display_name: text("name").unwrap_or(name).chars().take(200).collect(),
            email: text("email")
                .unwrap_or_default()
                .chars()
                .take(320)
                .collect(),
            subject,
            groups,
        })
    }

    /// The strongest role the mapped groups give (admin, analyst, auditor, viewer), or
    /// the default role.
    pub fn role_of(&self, groups: &[String]) -> Option<GlobalRole> {
        let rank = |role: GlobalRole| match role {
            GlobalRole::Admin => 0,
            GlobalRole::Analyst => 1,
            GlobalRole::Auditor => 2,
            GlobalRole::Viewer => 3,
        };
        self.config
            .role_map
            .iter()
            .filter(|(group, _)| groups.iter().any(|g| g == group))
            .filter_map(|(_, role)| GlobalRole::parse(role))
            .min_by_key(|role| rank(*role))
            .or_else(|| {
                self.config
                    .default_role
                    .as_deref()
                    .and_then(GlobalRole::parse)
            })
    }

    /// The user linked to `identity` (created on first sign-in), with `role`.
    async fn user_for(
        &self,
        identity: &Identity,
        role: GlobalRole,
    ) -> Result<(UserRow, bool), OidcError> {
        let linked = sqlx::query(
            "SELECT user_id FROM gateway_oidc_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(&self.config.issuer)
        .bind(&identity.subject)
        .fetch_optional(self.db.pool())
        .await
        .map_err(DbError::from)?;
        if let Some(row) = linked {
            let id: String = row.try_get("user_id").map_err(DbError::from)?;
            if let Some(mut user) = self.users.by_id(&id).await? {
                if user.role != role || user.email != identity.email {
                    let version = user.version;
                    user.role = role;
                    user.is_admin = role == GlobalRole::Admin;
                    user.email = identity.email.clone();
                    if self.users.update(&user, version, false).await? {
                        user.version += 1;
                    }
                }
                return Ok((user, false));
            }
            // The user was deleted: the identity starts afresh.
            sqlx::query("DELETE FROM gateway_oidc_identities WHERE issuer = $1 AND subject = $2")
                .bind(&self.config.issuer)
                .bind(&identity.subject)
                .execute(self.db.pool())
                .await
                .map_err(DbError::from)?;
        }
        // A new user; a name already taken gets a suffix derived from the subject.
        let digest = hex::encode(Sha256::digest(
            format!("{}\n{}", self.config.issuer, identity.subject).as_bytes(),
        ));
        let candidates = [
            identity.username.clone(),
            format!(
                "{}-{}",
                identity.username.chars().take(55).collect::<String>(),
                &digest[..8]
            ),
        ];
        for name in candidates {
            match self
                .users
                .create_external(&name, &identity.display_name, &identity.email, role)
                .await
            {
                Ok(user) => {
                    let linked = sqlx::query(
                        "INSERT INTO gateway_oidc_identities (issuer, subject, user_id, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO NOTHING",
                    )
                    .bind(&self.config.issuer)
                    .bind(&identity.subject)
                    .bind(&user.id)
                    .bind(now_micros())
                    .execute(self.db.pool())
                    .await
                    .map_err(DbError::from)?;
                    if linked.rows_affected() == 0 {
                        // A concurrent first sign-in of the same identity won.
                        self.users.delete(&user.id).await?;
                        return Err(OidcError::Refused(
                            "a sign-in of the same account finished at the same time; sign in again"
                                .into(),
                        ));
                    }
                    return Ok((user, true));
                }
                Err(UserError::Exists(_)) => continue,
                Err(other) => return Err(OidcError::Internal(other.to_string())),
            }
        }
        Err(OidcError::Refused(format!(
            "no free CaseScope username for {}; ask an administrator",
            identity.username
        )))
    }
}

struct Pending {
    nonce: String,
    verifier: String,
    redirect_uri: String,
}

/// A valid CaseScope username from a provider's name: `[A-Za-z0-9._-]`, others `_`, at
/// most 64 characters.
pub fn username_from(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "user".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::username_from;

    #[test]
    fn usernames_from_provider_names() {
        assert_eq!(username_from("alice"), "alice");
        assert_eq!(username_from("alice@example.org"), "alice_example.org");
        assert_eq!(username_from("Zoë Müller"), "Zo__M_ller");
        assert_eq!(username_from(&"x".repeat(100)).len(), 64);
        assert_eq!(username_from(""), "user");
    }
}
