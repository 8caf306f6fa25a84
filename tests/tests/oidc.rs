//! Signing in through a real OpenID Connect provider (panva/node-oidc-provider, OpenID
//! Certified, from the npm registry: scripts/oidc-provider), authorization code with
//! PKCE: `casescope login --oidc` end to end with the test playing the browser, groups
//! mapped to roles (strongest wins, a group given as one string, a user in no mapped
//! group refused), a state good once, redirect URIs checked, and an OIDC user who has no
//! password to log in with.

use casescope_e2e::oidc_provider::Provider;
use casescope_e2e::{Server, casescope_binary, json, stderr};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

/// A browser: HTTP/1.1 over loopback with a cookie jar.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: u16,
    location: Option<String>,
}

impl Browser {
    fn request(&mut self, method: &str, url: &str, form: Option<&str>) -> Answer {
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mut stream = std::net::TcpStream::connect(authority).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let body = form.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if !cookies.is_empty() {
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        write!(stream, "{head}\r\n{body}").unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8_lossy(&response).to_string();
        let head = response.split("\r\n\r\n").next().unwrap_or_default();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut location = None;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "location" => {
                    location = Some(if value.starts_with('/') {
                        format!("http://{authority}{value}")
                    } else {
                        value.to_string()
                    });
                }
                "set-cookie" => {
                    let pair = value.split(';').next().unwrap_or_default();
                    if let Some((k, v)) = pair.split_once('=') {
                        self.cookies.insert(k.trim().into(), v.trim().into());
                    }
                }
                _ => {}
            }
        }
        Answer { status, location }
    }

    /// Signs in at the provider from `authorization_url`; the URL it finally sends the
    /// browser to (the redirect URI with the code, or with an error).
    fn sign_in(&mut self, provider: &Provider, authorization_url: &str, user: &str) -> String {
        let password = format!("{}-idp-password", user.split('@').next().unwrap());
        let mut url = authorization_url.to_string();
        for _ in 0..10 {
            if !url.starts_with(&provider.issuer()) {
                return url;
            }
            let answer = if url.contains("/interaction/") && !url.ends_with("/login") {
                self.request(
                    "POST",
                    &format!("{url}/login"),
                    Some(&format!(
                        "login={}&password={password}",
                        user.replace('@', "%40")
                    )),
                )
            } else {
                self.request("GET", &url, None)
            };
            assert!(
                (300..400).contains(&answer.status),
                "the provider answered {} at {url}",
                answer.status
            );
            url = answer.location.expect("a redirect");
        }
        panic!("the provider never sent the browser back");
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.replace("%2F", "/").replace("%3D", "="))
    })
}

fn start_server(provider: &Provider) -> Server {
    let issuer = provider.issuer();
    Server::start(
        &[],
        &[
            ("CASESCOPE_OIDC_ISSUER", issuer.as_str()),
            ("CASESCOPE_OIDC_CLIENT_ID", "casescope-cli"),
            (
                "CASESCOPE_OIDC_ROLE_MAP",
                "staff=viewer,dfir-admins=admin,dfir=analyst,dfir-auditors=auditor",
            ),
        ],
    )
}

/// `casescope login --oidc` with the test as the browser; its exit status and stderr.
fn cli_login(server: &Server, provider: &Provider, config: &Path, user: &str) -> (bool, String) {
    let mut child = Command::new(casescope_binary())
        .args(["login", "--oidc"])
        .env("CASESCOPE_SERVER", server.api_address())
        .env("XDG_CONFIG_HOME", config)
        .env_remove("CASESCOPE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let url = loop {
        let line = lines.next().expect("the CLI printed the address").unwrap();
        said.push_str(&line);
        said.push('\n');
        if let Some(url) = line.trim().strip_prefix("http") {
            break format!("http{url}");
        }
    };
    let back = Browser::default().sign_in(provider, &url, user);
    assert!(back.starts_with("http://127.0.0.1:"), "{back}");
    let answer = Browser::default().request("GET", &back, None);
    assert_eq!(answer.status, 200, "the CLI's listener took the redirect");
    for line in lines {
        said.push_str(&line.unwrap());
        said.push('\n');
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the CLI did not finish: {said}");
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), said)
}

#[test]
fn signing_in_through_the_provider_from_the_cli_maps_groups_to_roles() {
    let provider = Provider::start();
    let server = start_server(&provider);
    let work = tempfile::tempdir().unwrap();

    // Alice is in dfir-admins and staff: the strongest, admin.
    let alice = work.path().join("alice");
    let (ok, said) = cli_login(&server, &provider, &alice, "alice");
    assert!(ok, "{said}");
    assert!(said.contains("logged in"), "{said}");
    let who = json(server.cli_signed_out(&alice, &["whoami", "--json"], ""));
    assert_eq!(who["username"], "alice", "{who}");
    assert_eq!(who["is_admin"], true, "{who}");
    let created = server.cli_signed_out(&alice, &["case", "create", "via oidc"], "");
    assert!(created.status.success(), "{}", stderr(&created));

    // Dave has no preferred_username (his email names him) and one group as a string.
    let dave = work.path().join("dave");
    let (ok, said) = cli_login(&server, &provider, &dave, "dave@example.org");
    assert!(ok, "{said}");
    let users = json(server.cli(&["user", "list", "--json"]));
    let role_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .map(|u| u["role"].clone())
    };
    assert_eq!(role_of("alice"), Some("admin".into()), "{users}");
    assert_eq!(
        role_of("dave_example.org"),
        Some("auditor".into()),
        "{users}"
    );

    // Mallory signs in at the provider, but her groups grant nothing here.
    let mallory = work.path().join("mallory");
    let (ok, said) = cli_login(&server, &provider, &mallory, "mallory");
    assert!(!ok);
    assert!(said.contains("none of your groups grants"), "{said}");
    assert!(role_of("mallory").is_none());
}

#[test]
fn a_sign_in_is_good_once_and_returns_only_where_allowed() {
    let provider = Provider::start();
    let server = start_server(&provider);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // No credential of the harness: only what each call carries.
        let channel = tonic::transport::Endpoint::from_shared(server.api_address().to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut auth = AuthServiceClient::new(channel);

        let refused = auth
            .begin_oidc_login(pb::BeginOidcLoginRequest {
                redirect_uri: "https://attacker.example/callback".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

        let redirect_uri = "http://127.0.0.1:9/callback".to_string();
        let begun = auth
            .begin_oidc_login(pb::BeginOidcLoginRequest {
                redirect_uri: redirect_uri.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            begun
                .authorization_url
                .contains("code_challenge_method=S256")
        );
        let back = Browser::default().sign_in(&provider, &begun.authorization_url, "carol");
        assert!(back.starts_with(&redirect_uri), "{back}");
        assert_eq!(
            query_param(&back, "state").as_deref(),
            Some(begun.state.as_str())
        );
        let code = query_param(&back, "code").expect("a code");

        let complete = pb::CompleteOidcLoginRequest {
            state: begun.state.clone(),
            code: code.clone(),
        };
        let signed_in = auth
            .complete_oidc_login(complete.clone())
            .await
            .unwrap()
            .into_inner();
        let tokens = signed_in.tokens.unwrap();
        let mut whoami = tonic::Request::new(pb::WhoAmIRequest {});
        whoami.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", tokens.access_token).parse().unwrap(),
        );
        let me = auth.who_am_i(whoami).await.unwrap().into_inner();
        assert_eq!(me.username, "carol");
        assert!(!me.is_admin);

        // The same state again, and a state never begun: refused.
        let again = auth.complete_oidc_login(complete).await.unwrap_err();
        assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
        let forged = auth
            .complete_oidc_login(pb::CompleteOidcLoginRequest {
                state: "not-a-state-this-server-made".into(),
                code,
            })
            .await
            .unwrap_err();
        assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");

        // Carol has no CaseScope password: a password login fails like a wrong one.
        let login = auth
            .login(pb::LoginRequest {
                username: "carol".into(),
                password: "carol-idp-password".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(login.code(), Code::Unauthenticated);
    });
}
