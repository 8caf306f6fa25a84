//! The gateway end to end with the real binary: signing in from the CLI, what an
//! unauthenticated command says, abuse limits, the audit log's tamper evidence through
//! `casescope audit verify`, and (cluster mode) a service called around the gateway.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::{Server, TEST_ADMIN_PASSWORD, json, stderr, stdout};
use std::process::Output;

fn cli_as(server: &Server, config: &std::path::Path, args: &[&str], input: &str) -> Output {
    server.cli_signed_out(config, args, input)
}

/// `casescope login --user <user>` with `password` on stdin.
fn login(server: &Server, config: &std::path::Path, user: &str, password: &str) -> Output {
    cli_as(
        server,
        config,
        &["login", "--user", user, "--password-stdin"],
        &format!("{password}\n"),
    )
}

#[test]
fn signing_in_from_the_cli_and_what_a_stranger_is_told() {
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&[], &[]);
    let config = work.path().join("config");

    // Nobody signed in: the command fails and says how to sign in.
    let anonymous = server.cli_anonymous(&["case", "list"]);
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("casescope login"),
        "{}",
        stderr(&anonymous)
    );

    // A wrong password is refused; the right one signs in and keeps the session 0600.
    let wrong = login(&server, &config, "admin", "not the password");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("wrong username or password"),
        "{}",
        stderr(&wrong)
    );
    let signed_in = login(&server, &config, "admin", TEST_ADMIN_PASSWORD);
    assert!(signed_in.status.success(), "{}", stderr(&signed_in));
    let sessions = config.join("casescope/sessions.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sessions).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "sessions.json is readable by its owner only");
    let saved = std::fs::read_to_string(&sessions).unwrap();
    assert!(
        !saved.contains(TEST_ADMIN_PASSWORD),
        "the password is never kept"
    );

    // Every command works signed in; whoami says who.
    let who = json(cli_as(&server, &config, &["whoami", "--json"], ""));
    assert_eq!(who["username"], "admin");
    assert_eq!(who["is_admin"], true);
    let created = cli_as(&server, &config, &["case", "create", "signed in"], "");
    assert!(created.status.success(), "{}", stderr(&created));
    let case = stdout(&created).trim().to_string();

    // A user made from the CLI sees only the cases they are a member of.
    let made = cli_as(
        &server,
        &config,
        &[
            "user",
            "create",
            "alice",
            "--role",
            "analyst",
            "--password-stdin",
        ],
        "alice's long password\n",
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let alice = work.path().join("alice");
    let signed_in = login(&server, &alice, "alice", "alice's long password");
    assert!(signed_in.status.success(), "{}", stderr(&signed_in));
    let listed = json(cli_as(&server, &alice, &["case", "list", "--json"], ""));
    assert_eq!(
        listed["cases"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    let hidden = cli_as(&server, &alice, &["case", "show", &case], "");
    assert!(stderr(&hidden).contains("not found"), "{}", stderr(&hidden));
    let added = cli_as(
        &server,
        &config,
        &["case", "members", "add", &case, "alice", "--role", "viewer"],
        "",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let listed = json(cli_as(&server, &alice, &["case", "list", "--json"], ""));
    assert_eq!(
        listed["cases"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let members = json(cli_as(
        &server,
        &config,
        &["case", "members", "list", &case, "--json"],
        "",
    ));
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "the creator (case_admin) and alice: {members}"
    );
    assert!(names.contains(&"alice") && names.contains(&"admin"));
    // A viewer may not change the case.
    let refused = cli_as(&server, &alice, &["case", "archive", &case], "");
    assert!(
        stderr(&refused).contains("not allowed"),
        "{}",
        stderr(&refused)
    );

    // Logging out ends the session on the server too.
    let out = cli_as(&server, &alice, &["logout"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let after = cli_as(&server, &alice, &["case", "list"], "");
    assert!(!after.status.success());

    // The audit log has the logins, the refusals and the changes.
    let audit = json(cli_as(
        &server,
        &config,
        &["audit", "list", "--limit", "200", "--json"],
        "",
    ));
    let methods: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (method, outcome) in [
        ("/casescope.gateway.v1.AuthService/Login", "failed"),
        ("/casescope.gateway.v1.AuthService/Login", "succeeded"),
        ("/casescope.cases.v1.CasesService/CreateCase", "succeeded"),
        (
            "/casescope.gateway.v1.AdminService/SetCaseRole",
            "succeeded",
        ),
        ("/casescope.cases.v1.CasesService/ArchiveCase", "denied"),
        ("/casescope.cases.v1.CasesService/GetCase", "denied"),
    ] {
        assert!(
            methods.iter().any(|(m, o)| m == method && o == outcome),
            "no {outcome} {method} in {methods:?}"
        );
    }
    let verified = cli_as(&server, &config, &["audit", "verify"], "");
    assert!(verified.status.success(), "{}", stderr(&verified));
}

/// Rewrites the gateway database of an all-in-one server under `data`.
fn tamper(data: &std::path::Path, statements: &[&str]) {
    let url = format!("sqlite://{}", data.join("db/gateway.sqlite").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&url).await.unwrap();
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    });
}

#[test]
fn an_edited_and_a_deleted_audit_record_are_named_by_audit_verify() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = Server::start(&["--data-dir", data.to_str().unwrap()], &[]);
    for name in ["one", "two", "three", "four"] {
        let created = server.cli(&["case", "create", name]);
        assert!(created.status.success(), "{}", stderr(&created));
    }
    let intact = server.cli(&["audit", "verify"]);
    assert!(intact.status.success(), "{}", stderr(&intact));

    // Someone with the database rewrites record 3 and deletes record 5.
    tamper(
        &data,
        &[
            "UPDATE gateway_audit SET actor_username = 'nobody' WHERE sequence = 3",
            "DELETE FROM gateway_audit WHERE sequence = 5",
        ],
    );
    let broken = server.cli(&["audit", "verify"]);
    assert!(!broken.status.success(), "a tampered log must not verify");
    assert!(
        stderr(&broken).contains("broken at record 3") && stderr(&broken).contains("edited"),
        "{}",
        stderr(&broken)
    );
    // Putting record 3 back leaves the deletion, now the first break.
    tamper(
        &data,
        &["UPDATE gateway_audit SET actor_username = 'admin' WHERE sequence = 3"],
    );
    let broken = server.cli(&["audit", "verify"]);
    assert!(
        stderr(&broken).contains("broken at record 5") && stderr(&broken).contains("missing"),
        "{}",
        stderr(&broken)
    );
}

#[test]
fn abuse_is_slowed_and_limited() {
    let server = Server::start(
        &[],
        &[
            ("CASESCOPE_RATE_LIMIT_PER_SECOND", "1"),
            ("CASESCOPE_RATE_LIMIT_BURST", "20"),
        ],
    );
    // A principal over its rate: RESOURCE_EXHAUSTED with a retry hint.
    let mut limited = None;
    for _ in 0..40 {
        let output = server.cli(&["case", "list"]);
        if !output.status.success() {
            limited = Some(stderr(&output));
            break;
        }
    }
    let limited = limited.expect("40 calls at once exceed a burst of 20");
    assert!(
        limited.contains("too many requests") && limited.contains("retry after"),
        "{limited}"
    );

    // Brute force on one account: after 5 failures even the right password waits.
    let config = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let wrong = login(&server, config.path(), "admin", "guess guess guess");
        assert!(
            stderr(&wrong).contains("wrong username or password"),
            "{}",
            stderr(&wrong)
        );
    }
    let right = login(&server, config.path(), "admin", TEST_ADMIN_PASSWORD);
    assert!(!right.status.success(), "the account is throttled");
    assert!(stderr(&right).contains("retry after"), "{}", stderr(&right));
}

#[test]
fn a_service_called_around_the_gateway_answers_unauthenticated() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &[], "around") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use casescope_proto::cases::v1 as pb;
        let api = deployment.api();
        // Through the gateway, the admin's token works.
        let mut through = pb::cases_service_client::CasesServiceClient::new(api.grpc().await);
        through
            .list_cases(pb::ListCasesRequest::default())
            .await
            .expect("through the gateway");
        // Straight to the cases service, even with the same token: refused.
        for server in [&deployment.cases, deployment.ingest(), deployment.detect()] {
            let mut direct =
                pb::cases_service_client::CasesServiceClient::connect(server.address.clone())
                    .await
                    .unwrap();
            let status = direct
                .list_cases(api.authorized(pb::ListCasesRequest::default()))
                .await
                .unwrap_err();
            let code = status.code();
            assert!(
                code == tonic::Code::Unauthenticated || code == tonic::Code::Unimplemented,
                "{status:?}"
            );
        }
        let mut direct =
            pb::cases_service_client::CasesServiceClient::connect(deployment.cases.address.clone())
                .await
                .unwrap();
        let status = direct
            .list_cases(api.authorized(pb::ListCasesRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains("gateway"), "{status:?}");
        // A forged identity (another key) is refused too.
        let forged = casescope_proto::identity::InternalKey::generate().mint(
            &casescope_proto::identity::Identity::service(
                "ingest",
                "/casescope.cases.v1.CasesService/ListCases",
            ),
        );
        let mut request = tonic::Request::new(pb::ListCasesRequest::default());
        request.metadata_mut().insert(
            "casescope-identity",
            forged.to_str().unwrap().parse().unwrap(),
        );
        let status = direct.list_cases(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    });
}
