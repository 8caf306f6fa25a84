//! Secrets never leak: a cluster deployment (gateway, cases, ingest, detect as separate
//! processes over a nats-server that requires a password, PostgreSQL and OpenSearch
//! given a password) runs at log level `trace` with canary secrets — the first
//! administrator's password, a user's password, a wrong password tried at login, API
//! tokens, access and refresh tokens, the NATS and OpenSearch passwords, the internal
//! key, and credentials in the URLs of servers that fail to start. Then every log line of
//! every process (span fields included: traces are built from the same spans), every
//! message on the bus, every error the CLI printed and every audit record is searched
//! for each canary. None may appear.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::{Server, TEST_INTERNAL_KEY, casescope_binary, stderr, stdout};
use casescope_testkit::outage::StoppableServer;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the run printed, logged or published, with where it came from.
#[derive(Default)]
struct Transcript {
    texts: Vec<(String, String)>,
}

impl Transcript {
    fn add(&mut self, source: impl Into<String>, text: impl Into<String>) {
        self.texts.push((source.into(), text.into()));
    }

    fn output(&mut self, what: &str, output: &Output) {
        self.add(format!("{what} (stdout)"), stdout(output));
        self.add(format!("{what} (stderr)"), stderr(output));
    }
}

/// `casescope <args>` against `api` with `env`, `input` on stdin.
fn run(api: &Server, env: &[(&str, &str)], args: &[&str], input: &str) -> Output {
    api.cli_with(env, args, input)
}

/// `casescope serve` with `args` that must fail; its output (killed after 60 s).
fn failing_serve(args: &[&str]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let child = Command::new(casescope_binary())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .env("CASESCOPE_INTERNAL_KEY", TEST_INTERNAL_KEY)
        .env("CASESCOPE_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start casescope serve");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !waiter.is_finished() {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    waiter.join().unwrap()
}

fn servers(deployment: &Deployment) -> Vec<(String, &Server)> {
    let mut all = Vec::new();
    for (name, server) in [
        ("cases", Some(&deployment.cases)),
        ("ingest", deployment.ingest.as_ref()),
        ("detect", deployment.detect.as_ref()),
        ("gateway", deployment.gateway.as_ref()),
    ] {
        let Some(server) = server else { continue };
        all.push((name.to_string(), server));
        if let Some(sidecar) = &server.gateway {
            all.push((format!("{name}'s gateway"), sidecar.as_ref()));
        }
    }
    all
}

#[test]
fn canary_secrets_appear_in_no_log_fact_error_or_audit_record() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let admin_password = format!("canary-admin-{tag}");
    let user_password = format!("canary-user-{tag}");
    let wrong_password = format!("canary-wrong-{tag}");
    let nats_password = format!("canary-nats-{tag}");
    let opensearch_password = format!("canary-opensearch-{tag}");
    let database_password = format!("canary-database-{tag}");

    let nats = StoppableServer::nats_with_password("casescope", &nats_password)
        .expect("start a nats-server with a password");
    // Every message on the bus, from before the first service connects.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bus: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let bus = bus.clone();
        let client = runtime
            .block_on(
                async_nats::ConnectOptions::with_user_and_password(
                    "casescope".into(),
                    nats_password.clone(),
                )
                .connect(nats.url.rsplit('@').next().unwrap()),
            )
            .expect("connect to NATS");
        for subjects in [">", "$JS.>", "$KV.>"] {
            let mut subscription = runtime
                .block_on(client.subscribe(subjects.to_string()))
                .unwrap();
            let bus = bus.clone();
            runtime.spawn(async move {
                use futures::StreamExt;
                while let Some(message) = subscription.next().await {
                    let headers = message
                        .headers
                        .as_ref()
                        .map(|h| format!("{h:?}"))
                        .unwrap_or_default();
                    bus.lock().unwrap().push(format!(
                        "{} {headers} {}",
                        message.subject,
                        String::from_utf8_lossy(&message.payload)
                    ));
                }
            });
        }
        // Keeps the client alive with the runtime.
        runtime.spawn(async move {
            let _client = client;
            std::future::pending::<()>().await
        });
    }

    let work = tempfile::tempdir().unwrap();
    let env = [
        ("CASESCOPE_ADMIN_PASSWORD", admin_password.as_str()),
        ("CASESCOPE_OPENSEARCH_USERNAME", "casescope"),
        (
            "CASESCOPE_OPENSEARCH_PASSWORD",
            opensearch_password.as_str(),
        ),
        ("CASESCOPE_LOG", "trace"),
    ];
    let Some(deployment) = Deployment::multi_process_on(work.path(), &env, "canary", &nats.url)
    else {
        return;
    };
    let api = deployment.api();
    let mut transcript = Transcript::default();
    let mut canaries = vec![
        ("the administrator's password", admin_password.clone()),
        ("a user's password", user_password.clone()),
        ("a wrong password", wrong_password.clone()),
        ("the NATS password", nats_password.clone()),
        ("the OpenSearch password", opensearch_password.clone()),
        ("a database password", database_password.clone()),
        ("the internal key", TEST_INTERNAL_KEY.to_string()),
    ];
    for (_, server) in servers(&deployment) {
        if let Some(token) = server.own_token() {
            canaries.push(("an API token of the harness", token.to_string()));
        }
    }

    // The administrator signs in, makes a user, a case and an API token.
    let admin = work.path().join("admin");
    let admin_config = admin.to_str().unwrap();
    let as_admin = [("XDG_CONFIG_HOME", admin_config)];
    let login = run(
        api,
        &as_admin,
        &["login", "--user", "admin", "--password-stdin"],
        &format!("{admin_password}\n"),
    );
    assert!(login.status.success(), "{}", stderr(&login));
    transcript.output("admin login", &login);
    let made = run(
        api,
        &as_admin,
        &[
            "user",
            "create",
            "canary-analyst",
            "--role",
            "analyst",
            "--password-stdin",
        ],
        &format!("{user_password}\n"),
    );
    assert!(made.status.success(), "{}", stderr(&made));
    transcript.output("user create", &made);
    let created = run(api, &as_admin, &["case", "create", "canary case"], "");
    assert!(created.status.success(), "{}", stderr(&created));
    transcript.output("case create", &created);
    let case = stdout(&created).trim().to_string();
    let added = run(
        api,
        &as_admin,
        &[
            "case",
            "members",
            "add",
            &case,
            "canary-analyst",
            "--role",
            "analyst",
        ],
        "",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    transcript.output("members add", &added);
    let token_made = run(
        api,
        &as_admin,
        &["token", "create", "canary automation", "--days", "1"],
        "",
    );
    assert!(token_made.status.success(), "{}", stderr(&token_made));
    // Its stdout is the token, shown once: the one place it may appear.
    transcript.add("token create (stderr)", stderr(&token_made));
    let api_token = stdout(&token_made).trim().to_string();
    assert!(api_token.starts_with("cst_"), "{api_token}");
    canaries.push(("an API token", api_token.clone()));

    // Automation uploads evidence with the API token; it is parsed and indexed.
    let evidence = work.path().join("canary.evtx");
    casescope_e2e::synth_evtx(&evidence, 300, 11);
    let with_token = [
        ("CASESCOPE_TOKEN", api_token.as_str()),
        ("XDG_CONFIG_HOME", admin_config),
    ];
    let upload = run(
        api,
        &with_token,
        &["upload", &case, evidence.to_str().unwrap(), "--json"],
        "",
    );
    assert!(upload.status.success(), "{}", stderr(&upload));
    transcript.output("upload", &upload);
    let uploaded: serde_json::Value = serde_json::from_str(&stdout(&upload)).unwrap();
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let record = casescope_e2e::wait_until_processed(
        api,
        &case,
        &file_id,
        Duration::from_secs(180),
        deployment.ingest(),
    );
    assert_eq!(record["events_indexed"], 300, "{record}");
    let search = run(
        api,
        &with_token,
        &["search", &case, "", "--limit", "5", "--json"],
        "",
    );
    assert!(search.status.success(), "{}", stderr(&search));
    transcript.output("search", &search);

    // The analyst: a wrong password, then the right one, a session, then logout.
    let analyst = work.path().join("analyst");
    let as_analyst = [("XDG_CONFIG_HOME", analyst.to_str().unwrap())];
    let wrong = run(
        api,
        &as_analyst,
        &["login", "--user", "canary-analyst", "--password-stdin"],
        &format!("{wrong_password}\n"),
    );
    assert!(!wrong.status.success());
    transcript.output("wrong login", &wrong);
    let right = run(
        api,
        &as_analyst,
        &["login", "--user", "canary-analyst", "--password-stdin"],
        &format!("{user_password}\n"),
    );
    assert!(right.status.success(), "{}", stderr(&right));
    transcript.output("analyst login", &right);
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(analyst.join("casescope/sessions.json")).unwrap(),
    )
    .unwrap();
    let mut session_tokens = Vec::new();
    collect_tokens(&saved, &mut session_tokens);
    assert!(
        session_tokens.len() >= 2,
        "an access and a refresh token in {saved}"
    );
    for token in session_tokens {
        canaries.push(("a session token", token));
    }
    let listed = run(api, &as_analyst, &["case", "list", "--json"], "");
    assert!(stdout(&listed).contains(&case), "{}", stderr(&listed));
    transcript.output("analyst case list", &listed);
    let logout = run(api, &as_analyst, &["logout"], "");
    transcript.output("logout", &logout);

    // The API token revoked, then used: refused, and the refusal does not echo it.
    let tokens = run(api, &as_admin, &["token", "list", "--json"], "");
    transcript.output("token list", &tokens);
    let tokens: serde_json::Value = serde_json::from_str(&stdout(&tokens)).unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "canary automation")
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("the token in {tokens}"))
        .to_string();
    let revoked = run(api, &as_admin, &["token", "revoke", &id], "");
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    transcript.output("token revoke", &revoked);
    let refused = run(api, &with_token, &["case", "list"], "");
    assert!(!refused.status.success());
    transcript.output("revoked token used", &refused);

    // Servers that cannot start, given credentials in their URLs.
    let nats_port = nats.url.rsplit(':').next().unwrap().to_string();
    let bad_nats = failing_serve(&[
        "--service",
        "cases",
        "--database-url",
        &format!(
            "postgres://casescope:{database_password}@127.0.0.1:{}/nowhere",
            casescope_testkit::free_port()
        ),
        "--nats-url",
        &format!("nats://casescope:{wrong_password}@127.0.0.1:{nats_port}"),
    ]);
    assert!(!bad_nats.status.success());
    assert!(
        !stderr(&bad_nats).trim().is_empty(),
        "a failed start says why"
    );
    transcript.output("serve with unreachable credentials", &bad_nats);

    // The audit log, as an auditor would read it.
    let audit = run(
        api,
        &as_admin,
        &["audit", "list", "--limit", "1000", "--json"],
        "",
    );
    assert!(audit.status.success(), "{}", stderr(&audit));
    assert!(
        stdout(&audit).contains("canary-analyst"),
        "{}",
        stdout(&audit)
    );
    transcript.output("audit list", &audit);

    // Let the last facts arrive, then read every log.
    std::thread::sleep(Duration::from_secs(2));
    let messages = std::mem::take(&mut *bus.lock().unwrap());
    assert!(
        messages.iter().any(|m| m.contains(&case)),
        "the bus carried the case's facts ({} messages)",
        messages.len()
    );
    for (n, message) in messages.iter().enumerate() {
        transcript.add(format!("bus message {n}"), message.clone());
    }
    let mut traced = 0;
    for (name, server) in servers(&deployment) {
        let log = server.log_text();
        traced += log.lines().filter(|l| l.contains("TRACE")).count();
        transcript.add(format!("{name} log"), log);
    }
    assert!(traced > 0, "the servers logged at trace level");

    let mut leaks = Vec::new();
    for (what, secret) in &canaries {
        for (source, text) in &transcript.texts {
            if let Some(at) = text.find(secret.as_str()) {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                leaks.push(format!(
                    "{what} in {source}: {}",
                    &text[line_start..line_end.min(line_start + 400)]
                ));
            }
        }
    }
    let scanned: usize = transcript.texts.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "scanned {scanned} bytes from {} sources ({} bus messages, {traced} trace lines) for {} canaries",
        transcript.texts.len(),
        messages.len(),
        canaries.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Every string value under a key naming a token in `value`.
fn collect_tokens(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(text) if key.contains("token") => {
                        out.push(text.clone());
                    }
                    _ => collect_tokens(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_tokens(v, out)),
        _ => {}
    }
}
