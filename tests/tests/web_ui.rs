//! The web app in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from web/node_modules; no browser download) against an all-in-one
//! server whose gateway serves the app embedded in the binary: `web/e2e/run.mjs` signs in
//! (a refused password shows the server's words), creates cases with hostile names (no
//! dialog, no script, shown as text), runs axe-core on each screen, works from the
//! keyboard, keeps the session over a reload and signs out.
//!
//! Needs `make web` (the app built into the binary, and web/node_modules) and Chromium;
//! without them it skips, saying so — unless `CASESCOPE_TEST_REQUIRE_BROWSER=1` (CI),
//! which makes a missing part a failure.

use casescope_e2e::{Server, TEST_ADMIN_PASSWORD};
use std::path::PathBuf;
use std::process::Command;

fn required() -> bool {
    std::env::var("CASESCOPE_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn missing(what: &str) {
    assert!(
        !required(),
        "CASESCOPE_TEST_REQUIRE_BROWSER=1 but {what} (scripts/install-test-deps.sh, make web)"
    );
    eprintln!("skipped: {what} (run scripts/install-test-deps.sh and make web)");
}

#[test]
fn the_web_app_signs_in_lists_cases_safely_and_signs_out() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return missing(&format!("no Chromium at {chromium}"));
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        return missing("web/node_modules is not installed");
    }
    let server = Server::start(&[], &[]);
    let base = server.address.clone();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let (code, body) = casescope_e2e::http_get(port, "/").expect("GET /");
    if code == 404 {
        return missing("the binary carries no web app (web/dist was not built before it)");
    }
    assert_eq!(code, 200, "GET /: {body}");
    let shots = std::env::var("CASESCOPE_SCREENSHOTS").ok();
    let mut command = Command::new("node");
    command
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("CASESCOPE_URL", &base)
        .env("CASESCOPE_USER", "admin")
        .env("CASESCOPE_PASSWORD", TEST_ADMIN_PASSWORD)
        .env("CHROMIUM", &chromium);
    if let Some(dir) = shots {
        command.env("CASESCOPE_SCREENSHOTS", dir);
    }
    let output = command.output().expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser run failed:\n{text}\nserver log:\n{}",
        server.log_text()
    );
    assert!(text.contains("web e2e: ok"), "{text}");
}
