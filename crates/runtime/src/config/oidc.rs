//! Sign-in through an external OpenID Connect provider (authorization code with PKCE):
//! the provider, this client's registration, where the provider may send users back,
//! and how the provider's groups become CaseScope's global roles. Unset issuer: off.

use super::Secret;
use std::time::Duration;

/// The global roles a group may map to (the gateway's `GlobalRole`).
const ROLES: [&str; 4] = ["admin", "analyst", "auditor", "viewer"];

#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is under it).
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE alone); else sent as HTTP Basic.
    pub client_secret: Option<Secret>,
    /// Exact redirect URIs a sign-in may ask the provider to return to.
    pub redirect_uris: Vec<String>,
    /// Also `http://127.0.0.1:<any port>/…` and `http://[::1]:<port>/…` (the CLI's
    /// loopback listener, RFC 8252 §7.3); the provider must allow them too.
    pub loopback_redirects: bool,
    pub scopes: Vec<String>,
    /// The ID-token claim naming the user (falls back to `email`, then `sub`).
    pub username_claim: String,
    /// The ID-token claim listing the user's groups.
    pub groups_claim: String,
    /// Group → global role; a user in several mapped groups gets the strongest.
    pub role_map: Vec<(String, String)>,
    /// The role of a user in no mapped group; `None`: such a user is refused.
    pub default_role: Option<String>,
    /// Bound on every call to the provider.
    pub request_timeout: Duration,
}

/// The unresolved settings (see `Settings`).
#[derive(Default)]
pub(super) struct OidcSettings {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<std::path::PathBuf>,
    pub redirect_uris: Option<String>,
    pub loopback_redirects: Option<String>,
    pub scopes: Option<String>,
    pub username_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub role_map: Option<String>,
    pub default_role: Option<String>,
}

fn is_http_url(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.starts_with('/')
        && !rest.contains(['@', ' ', '#'])
}

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

impl OidcSettings {
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> Option<OidcConfig> {
        let issuer = self
            .issuer
            .map(|i| i.trim().trim_end_matches('/').to_string());
        let Some(issuer) = issuer.filter(|i| !i.is_empty()) else {
            if self.client_id.is_some() || self.role_map.is_some() {
                errors.push("oidc_issuer: required when any other oidc_ setting is set".into());
            }
            return None;
        };
        if !is_http_url(&issuer) {
            // Not echoed: it may carry credentials.
            errors.push("oidc_issuer: not an http(s) URL without credentials".into());
        }
        let client_id = self.client_id.unwrap_or_default().trim().to_string();
        if client_id.is_empty() {
            errors.push("oidc_client_id: required with oidc_issuer".into());
        }
        let redirect_uris = list(self.redirect_uris.as_deref());
        for uri in &redirect_uris {
            if !is_http_url(uri) {
                errors.push(format!("oidc_redirect_uris: {uri:?} is not an http(s) URL"));
            }
        }
        let loopback_redirects = match self.loopback_redirects.as_deref().map(str::trim) {
            None | Some("") | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => {
                errors.push(format!(
                    "oidc_loopback_redirects: {other:?} is not true or false"
                ));
                true
            }
        };
        if redirect_uris.is_empty() && !loopback_redirects {
            errors.push(
                "oidc_redirect_uris: none, and loopback redirects are off: no sign-in could \
                 come back"
                    .into(),
            );
        }
        let mut scopes = list(self.scopes.as_deref());
        if scopes.is_empty() {
            scopes = ["openid", "profile", "email", "groups"]
                .map(String::from)
                .to_vec();
        }
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let mut role_map = Vec::new();
        for entry in list(self.role_map.as_deref()) {
            match entry.rsplit_once('=') {
                Some((group, role)) if !group.trim().is_empty() && ROLES.contains(&role.trim()) => {
                    role_map.push((group.trim().to_string(), role.trim().to_string()));
                }
                _ => errors.push(format!(
                    "oidc_role_map: {entry:?} is not GROUP=ROLE with ROLE one of {}",
                    ROLES.join(", ")
                )),
            }
        }
        let default_role = self
            .default_role
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if let Some(role) = &default_role
            && !ROLES.contains(&role.as_str())
        {
            errors.push(format!(
                "oidc_default_role: {role:?} is not one of {}",
                ROLES.join(", ")
            ));
        }
        if role_map.is_empty() && default_role.is_none() {
            errors
                .push("oidc_role_map: empty and no oidc_default_role: nobody could sign in".into());
        }
        let claim = |value: Option<String>, default: &str| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let client_secret = super::gateway::one_of(
            "oidc_client_secret",
            self.client_secret,
            self.client_secret_file,
            errors,
        );
        Some(OidcConfig {
            issuer,
            client_id,
            client_secret,
            redirect_uris,
            loopback_redirects,
            scopes,
            username_claim: claim(self.username_claim, "preferred_username"),
            groups_claim: claim(self.groups_claim, "groups"),
            role_map,
            default_role,
            request_timeout: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_every_problem_named() {
        let mut errors = Vec::new();
        assert_eq!(OidcSettings::default().resolve(&mut errors), None);
        assert!(errors.is_empty());

        let config = OidcSettings {
            issuer: Some("https://idp.example.org/".into()),
            client_id: Some("casescope".into()),
            role_map: Some("dfir-admins=admin, dfir=analyst".into()),
            ..OidcSettings::default()
        }
        .resolve(&mut errors)
        .unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config.issuer, "https://idp.example.org");
        assert!(config.loopback_redirects);
        assert_eq!(config.scopes[0], "openid");
        assert_eq!(config.role_map[1], ("dfir".into(), "analyst".into()));
        assert_eq!(config.username_claim, "preferred_username");

        OidcSettings {
            issuer: Some("https://user:pw@idp.example.org".into()),
            redirect_uris: Some("not a url".into()),
            loopback_redirects: Some("maybe".into()),
            role_map: Some("dfir=root".into()),
            default_role: Some("god".into()),
            ..OidcSettings::default()
        }
        .resolve(&mut errors);
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("pw@")), "{errors:?}");
    }
}
