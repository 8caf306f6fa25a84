//! The web app in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from web/node_modules; no browser download) against an all-in-one
//! server whose gateway serves the app embedded in the binary, with single sign-on
//! through a real OpenID Connect provider. `web/e2e/run.mjs` signs in (a refused
//! password shows the server's words), creates cases with hostile names (no dialog, no
//! script, shown as text), creates a case and uploads evidence into it from the browser
//! (hashed in a worker, sent in parts; a file chosen again shown as already there),
//! follows it to `ready` with exact counts, makes a user a viewer of the case, works the
//! timeline (search, paging, a hostile event shown as text, tags, star, comments, saved
//! searches, export), detections, rules and IOCs, reports, integrations (an IRIS
//! integration added and tested, the case pushed twice to a local IRIS stand-in, which
//! then holds each event once), administration (users, tokens, the audit log) and a
//! case's archive and restore; the viewer is refused a tag; it signs in
//! through the provider, runs axe-core on each screen, works from the keyboard, keeps
//! the session over a reload and signs out.
//!
//! Needs `make web` (the app built into the binary, and web/node_modules) and Chromium;
//! without them it skips, saying so — unless `CASESCOPE_TEST_REQUIRE_BROWSER=1` (CI),
//! which makes a missing part a failure.

use casescope_e2e::oidc_provider::Provider;
use casescope_e2e::{Server, TEST_ADMIN_PASSWORD, stderr};
use casescope_testkit::iris::FakeIris;
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

/// Samples the browser uploads.
const UPLOADED_SAMPLES: [&str; 2] = [
    "LM_WMI_4624_4688_TargetHost.evtx",
    "DE_renamed_psexec_service_sysmon_17_18.evtx",
];

fn find(root: &std::path::Path, name: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                return path;
            }
        }
    }
    panic!("{name} is not in {}", root.display())
}

/// A file name and field values that would run script if rendered as HTML.
const HOSTILE_FILE: &str = "<img src=x onerror=window.__pwned=1>\u{202e}lnosj.jsonl";
const VIEWER: &str = "viewer";
const VIEWER_PASSWORD: &str = "viewer-password-long-enough-1";

fn hostile_record() -> String {
    let record = serde_json::json!({
        "timestamp": "2001-01-01T00:00:00Z",
        "Message": "<script>window.__pwned = 1</script>",
        "Image": "<img src=x onerror=\"window.__pwned = 1\">",
        "Link": "javascript:window.__pwned=1",
        "DestinationIp": "203.0.113.66",
        "User": "\u{202e}gpj.exe\u{200b}\u{200d}\u{2066} RTL",
        // A long right-to-left string broken by zero-width characters.
        "Note": "\u{5e9}\u{5dc}\u{5d5}\u{5dd}\u{200b}\u{627}\u{644}\u{633}\u{644}\u{627}\u{645}\u{200d} ".repeat(600),
    });
    format!("{record}\n")
}

/// The key of the DFIR-IRIS stand-in, and the deployment's sealing key.
const IRIS_KEY: &str = "iris-web-canary-5521";
const SEALING_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=";

/// Events of the synthetic evidence file.
const EVIDENCE_EVENTS: u64 = 2000;

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
    if !web
        .join("../scripts/oidc-provider/node_modules/oidc-provider")
        .is_dir()
    {
        return missing("the test OpenID Connect provider is not installed");
    }
    // Single sign-on through a real OpenID Connect provider, as well as passwords.
    let provider = Provider::start();
    let issuer = provider.issuer();
    // A local DFIR-IRIS stand-in the browser's push goes to (IRIS cannot run here).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let iris = runtime.block_on(FakeIris::start(IRIS_KEY));
    let server = Server::start(
        &[],
        &[
            ("CASESCOPE_OIDC_ISSUER", issuer.as_str()),
            ("CASESCOPE_OIDC_CLIENT_ID", "casescope-cli"),
            ("CASESCOPE_OIDC_ROLE_MAP", "dfir=analyst,dfir-admins=admin"),
            ("CASESCOPE_INTEGRATIONS_KEY", SEALING_KEY),
            ("CASESCOPE_INTEGRATIONS_ALLOW_NETS", "127.0.0.1/32"),
        ],
    );
    let base = server.address.clone();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let (code, body) = casescope_e2e::http_get(port, "/").expect("GET /");
    if code == 404 {
        return missing("the binary carries no web app (web/dist was not built before it)");
    }
    assert_eq!(code, 200, "GET /: {body}");
    // The evidence the browser uploads into a case it creates: a synthetic EVTX file,
    // a file an attacker wrote (a hostile name and field values; its event is the case's
    // oldest, the timeline's first row) and two EVTX-ATTACK-SAMPLES files (when
    // ../shared is here).
    let work = tempfile::tempdir().unwrap();
    let evtx = work.path().join("Security.evtx");
    casescope_e2e::synth_evtx(&evtx, EVIDENCE_EVENTS, 3);
    let hostile = work.path().join(HOSTILE_FILE);
    std::fs::write(&hostile, hostile_record()).unwrap();
    let mut uploads = vec![evtx.display().to_string(), hostile.display().to_string()];
    match casescope_testkit::shared_data_dir().map(|d| d.join("evtx-attack-samples")) {
        Some(corpus) if corpus.is_dir() => {
            for name in UPLOADED_SAMPLES {
                uploads.push(find(&corpus, name).display().to_string());
            }
        }
        _ => eprintln!("../shared/data is absent: the browser uploads only the synthetic files"),
    }
    // A user the browser makes a viewer of the case: reads it, cannot annotate it.
    let created = server.cli_with(
        &[("CASESCOPE_TOKEN", server.token())],
        &[
            "user",
            "create",
            VIEWER,
            "--role",
            "viewer",
            "--password-stdin",
        ],
        &format!("{VIEWER_PASSWORD}\n"),
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let shots = std::env::var("CASESCOPE_SCREENSHOTS").ok();
    let mut command = Command::new("node");
    command
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("CASESCOPE_URL", &base)
        .env("CASESCOPE_USER", "admin")
        .env("CASESCOPE_PASSWORD", TEST_ADMIN_PASSWORD)
        .env("CHROMIUM", &chromium)
        .env("CASESCOPE_EVIDENCE_EVENTS", EVIDENCE_EVENTS.to_string())
        .env("CASESCOPE_UPLOAD_FILES", uploads.join("\n"))
        .env("CASESCOPE_HOSTILE_FILE", HOSTILE_FILE)
        .env("CASESCOPE_VIEWER_USER", VIEWER)
        .env("CASESCOPE_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("CASESCOPE_OIDC_USER", "carol")
        .env("CASESCOPE_OIDC_PASSWORD", "carol-idp-password")
        .env("CASESCOPE_OIDC_NAME", "Carol Analyst")
        .env("CASESCOPE_OIDC_REFUSED_USER", "mallory")
        .env("CASESCOPE_OIDC_REFUSED_PASSWORD", "mallory-idp-password")
        .env("CASESCOPE_IRIS_URL", iris.url())
        .env("CASESCOPE_IRIS_KEY", IRIS_KEY);
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
    // The browser pushed the evidence case twice: IRIS holds one case, and each of its
    // tagged or starred events once.
    assert_eq!(iris.cases().len(), 1, "{:?}", iris.cases());
    let tags: Vec<String> = iris
        .events()
        .iter()
        .filter_map(|e| e["event_tags"].as_str().map(str::to_string))
        .collect();
    assert!(!tags.is_empty(), "the timeline's tagged events were pushed");
    assert_eq!(
        tags.iter().collect::<std::collections::HashSet<_>>().len(),
        tags.len(),
        "no event twice"
    );
    assert!(!server.log_text().contains(IRIS_KEY));
}
