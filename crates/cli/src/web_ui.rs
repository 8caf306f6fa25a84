//! The web app, served by the process that runs the gateway at `/` (same origin as the
//! gRPC-web API it calls). Its files are embedded at build time (`crates/cli/build.rs`
//! from `web/dist`); pages carry a Content-Security-Policy that allows scripts, styles and
//! connections from this origin only — no inline script or style, no plugin, no framing —
//! so text an attacker put in evidence cannot run even if it reached the DOM as markup.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// The policy of the app's pages.
pub const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Whether this binary carries a built web app.
pub fn built() -> bool {
    !assets::FILES.is_empty()
}

fn file(name: &str) -> Option<(&'static str, &'static [u8])> {
    assets::FILES
        .iter()
        .find(|(path, _, _)| *path == name)
        .map(|(_, kind, bytes)| (*kind, *bytes))
}

async fn index() -> Response {
    let Some((kind, bytes)) = file("index.html") else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The web app was not built into this binary (Node.js was missing when it was \
             built): install Node.js 20+ and run `make web`, then rebuild. The API and the \
             CLI work without it.\n",
        )
            .into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, kind),
            // Always asked for again: it names the current hashed assets.
            (header::CACHE_CONTROL, "no-cache"),
            // The sign-in callback's address holds a one-time code: never sent on.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        bytes,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match file(&format!("assets/{name}")) {
        Some((kind, bytes)) => (
            [
                (header::CONTENT_TYPE, kind),
                // Names carry a content hash: a new build has new names.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no such asset: {name}\n")).into_response(),
    }
}

/// `/`, `/index.html` and `/assets/…` of the web app.
pub fn routes() -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        // Where an OpenID Connect provider sends the browser back (a path, as redirect
        // URIs cannot hold a fragment); the app finishes the sign-in there.
        .route("/oidc/callback", get(index))
        .route("/assets/{name}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_policy_allows_no_inline_code_and_no_other_origin() {
        for forbidden in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:"] {
            assert!(!PAGE_POLICY.contains(forbidden), "{forbidden}");
        }
        assert!(PAGE_POLICY.contains("frame-ancestors 'none'"));
        assert!(PAGE_POLICY.starts_with("default-src 'none'"));
    }
}
