//! Signing in and out, who am I, and API tokens: `casescope login/logout/whoami` and
//! `casescope token create/list/revoke`.

use crate::client::{ServerArgs, rpc_error};
use crate::session;
use anyhow::bail;
use casescope_proto::common::v1::{CaseId, PageRequest};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::admin_service_client::AdminServiceClient;
use casescope_proto::gateway::v1::auth_service_client::AuthServiceClient;
use clap::Subcommand;
use std::time::Duration;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

pub async fn login(server: &ServerArgs, user: String, password_stdin: bool) -> anyhow::Result<()> {
    let password = session::read_password(&format!("password for {user}: "), password_stdin)?;
    let channel = session::raw_channel(server, TIMEOUT).await?;
    let response = AuthServiceClient::new(channel)
        .login(pb::LoginRequest {
            username: user.clone(),
            password,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let Some(pair) = response.tokens else {
        bail!("the server answered the login without tokens");
    };
    let path = session::remember(server, &user, &pair)?;
    eprintln!(
        "logged in to {} as {user} (session kept in {})",
        server.server,
        path.display()
    );
    Ok(())
}

pub async fn logout(server: &ServerArgs) -> anyhow::Result<()> {
    let Some(saved) = session::forget(server)? else {
        eprintln!("not logged in to {}", server.server);
        return Ok(());
    };
    let channel = session::raw_channel(server, TIMEOUT).await?;
    AuthServiceClient::new(channel)
        .logout(pb::LogoutRequest {
            refresh_token: saved.refresh_token,
        })
        .await
        .map_err(rpc_error)?;
    eprintln!("logged out of {} ({})", server.server, saved.username);
    Ok(())
}

pub fn case_role_text(role: i32) -> &'static str {
    match pb::CaseRole::try_from(role) {
        Ok(pb::CaseRole::Viewer) => "viewer",
        Ok(pb::CaseRole::Analyst) => "analyst",
        Ok(pb::CaseRole::CaseAdmin) => "case_admin",
        _ => "unknown",
    }
}

pub async fn whoami(server: &ServerArgs, json: bool) -> anyhow::Result<()> {
    let channel = session::connect(server, TIMEOUT).await?;
    let me = AuthServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    let method = match pb::AuthMethod::try_from(me.auth_method) {
        Ok(pb::AuthMethod::Session) => "session",
        Ok(pb::AuthMethod::ApiToken) => "api token",
        _ => "unknown",
    };
    let roles: Vec<(String, &str)> = me
        .case_roles
        .iter()
        .map(|grant| {
            (
                grant
                    .case_id
                    .as_ref()
                    .map(|c| c.value.clone())
                    .unwrap_or_default(),
                case_role_text(grant.role),
            )
        })
        .collect();
    if json {
        let value = serde_json::json!({
            "user_id": me.user_id.map(|u| u.value),
            "username": me.username,
            "is_admin": me.is_admin,
            "auth_method": method,
            "case_roles": roles.iter().map(|(case, role)| serde_json::json!({"case_id": case, "role": role})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} ({}{}, by {method})",
        me.username,
        me.user_id.map(|u| u.value).unwrap_or_default(),
        if me.is_admin { ", admin" } else { "" }
    );
    for (case, role) in roles {
        println!("  {case}  {role}");
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for automation; its value is printed once.
    Create {
        name: String,
        /// Days until it expires (at most 366).
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Only read-only RPCs.
        #[arg(long)]
        read_only: bool,
        /// Limit it to these cases (repeatable); default every case of the user.
        #[arg(long = "case")]
        cases: Vec<String>,
    },
    /// List your API tokens (never their values).
    List {
        /// Also expired and revoked ones.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token at once.
    Revoke { id: String },
}

pub fn when(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

pub async fn run_token(server: &ServerArgs, command: TokenCommand) -> anyhow::Result<()> {
    let channel = session::connect(server, TIMEOUT).await?;
    let mut admin = AdminServiceClient::new(channel);
    match command {
        TokenCommand::Create {
            name,
            days,
            read_only,
            cases,
        } => {
            let expires = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
            let created = admin
                .create_api_token(pb::CreateApiTokenRequest {
                    name,
                    user_id: None,
                    case_ids: cases.into_iter().map(|value| CaseId { value }).collect(),
                    read_only,
                    expires_at: Some(prost_types::Timestamp {
                        seconds: expires.timestamp(),
                        nanos: 0,
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let id = created
                .token
                .as_ref()
                .and_then(|t| t.id.as_ref())
                .map(|i| i.value.clone())
                .unwrap_or_default();
            eprintln!(
                "API token {id} created; its value is shown this once (use it as CASESCOPE_TOKEN):"
            );
            println!("{}", created.token_value);
        }
        TokenCommand::List { all, json } => {
            let tokens = admin
                .list_api_tokens(pb::ListApiTokensRequest {
                    page: Some(PageRequest {
                        page_size: casescope_proto::paging::MAX_PAGE_SIZE,
                        cursor: String::new(),
                    }),
                    user_id: None,
                    include_inactive: all,
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .tokens;
            if json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id.as_ref().map(|i| i.value.clone()),
                            "name": t.name,
                            "prefix": t.value_prefix,
                            "read_only": t.read_only,
                            "case_ids": t.case_ids.iter().map(|c| c.value.clone()).collect::<Vec<_>>(),
                            "expires_at": when(t.expires_at.as_ref()),
                            "last_used_at": when(t.last_used_at.as_ref()),
                            "revoked": t.revoked_at.is_some(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for t in &tokens {
                println!(
                    "{}  {:<24} {}…  expires {}  last used {}{}{}",
                    t.id.as_ref().map(|i| i.value.as_str()).unwrap_or_default(),
                    t.name,
                    t.value_prefix,
                    when(t.expires_at.as_ref()),
                    when(t.last_used_at.as_ref()),
                    if t.read_only { "  read-only" } else { "" },
                    if t.revoked_at.is_some() {
                        "  revoked"
                    } else {
                        ""
                    },
                );
            }
        }
        TokenCommand::Revoke { id } => {
            admin
                .revoke_api_token(pb::RevokeApiTokenRequest {
                    id: Some(pb::ApiTokenId { value: id.clone() }),
                })
                .await
                .map_err(rpc_error)?;
            eprintln!("API token {id} revoked");
        }
    }
    Ok(())
}
