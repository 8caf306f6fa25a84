//! Administration from the command line: `casescope user …`, `casescope case members …`
//! and `casescope audit list/verify`.

use crate::account_cmds::{case_role_text, when};
use crate::client::{ServerArgs, rpc_error};
use crate::session;
use anyhow::{anyhow, bail};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, PageRequest, UserId};
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::admin_service_client::AdminServiceClient;
use clap::Subcommand;
use std::time::Duration;

async fn admin(server: &ServerArgs) -> anyhow::Result<AdminServiceClient<GrpcChannel>> {
    Ok(AdminServiceClient::new(
        session::connect(server, Some(Duration::from_secs(120))).await?,
    ))
}

fn page(size: u32, cursor: &str) -> Option<PageRequest> {
    Some(PageRequest {
        page_size: size.min(casescope_proto::paging::MAX_PAGE_SIZE),
        cursor: cursor.to_string(),
    })
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (administrators only).
    Create {
        name: String,
        /// Global role: admin, analyst, auditor or viewer.
        #[arg(long, default_value = "analyst")]
        role: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value = "")]
        email: String,
    },
    /// List users.
    List {
        /// Include disabled users.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: every session and API token stops working at once.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
}

/// The user named `name` (administrators only).
async fn user_by_name(
    client: &mut AdminServiceClient<GrpcChannel>,
    name: &str,
) -> anyhow::Result<pb::User> {
    let users = client
        .list_users(pb::ListUsersRequest {
            page: page(casescope_proto::paging::MAX_PAGE_SIZE, ""),
            include_disabled: true,
            username_prefix: name.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .users;
    users
        .into_iter()
        .find(|user| user.username == name)
        .ok_or_else(|| anyhow!("not found: no user {name}"))
}

pub async fn run_user(server: &ServerArgs, command: UserCommand) -> anyhow::Result<()> {
    let mut client = admin(server).await?;
    match command {
        UserCommand::Create {
            name,
            role,
            password_stdin,
            display_name,
            email,
        } => {
            let password =
                session::read_password(&format!("password for {name}: "), password_stdin)?;
            let user = client
                .create_user(pb::CreateUserRequest {
                    username: name.clone(),
                    display_name,
                    email,
                    password,
                    is_admin: role == "admin",
                    role,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!("{}", user.id.map(|i| i.value).unwrap_or_default());
            eprintln!("user {name} created");
        }
        UserCommand::List { all, json } => {
            let users = client
                .list_users(pb::ListUsersRequest {
                    page: page(casescope_proto::paging::MAX_PAGE_SIZE, ""),
                    include_disabled: all,
                    username_prefix: String::new(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .users;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id.as_ref().map(|i| i.value.clone()),
                            "username": u.username,
                            "role": u.role,
                            "disabled": u.disabled,
                            "last_login_at": when(u.last_login_at.as_ref()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for u in &users {
                println!(
                    "{:<24} {:<8} last login {}{}",
                    u.username,
                    u.role,
                    when(u.last_login_at.as_ref()),
                    if u.disabled { "  disabled" } else { "" }
                );
            }
        }
        UserCommand::Disable { name } => set_disabled(&mut client, &name, true).await?,
        UserCommand::Enable { name } => set_disabled(&mut client, &name, false).await?,
    }
    Ok(())
}

async fn set_disabled(
    client: &mut AdminServiceClient<GrpcChannel>,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let user = user_by_name(client, name).await?;
    client
        .update_user(pb::UpdateUserRequest {
            id: user.id,
            disabled,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["disabled".into()],
            }),
            expected_version: user.version,
            ..Default::default()
        })
        .await
        .map_err(rpc_error)?;
    eprintln!(
        "user {name} {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum MembersCommand {
    /// Give a user a role on the case (replacing the one they had).
    Add {
        case: String,
        user: String,
        /// viewer, analyst or case_admin.
        #[arg(long, default_value = "analyst")]
        role: String,
    },
    /// Take a user's role on the case away.
    Remove { case: String, user: String },
    /// Who holds which role on the case.
    List {
        case: String,
        #[arg(long)]
        json: bool,
    },
}

fn case_role(text: &str) -> anyhow::Result<pb::CaseRole> {
    Ok(match text {
        "viewer" => pb::CaseRole::Viewer,
        "analyst" => pb::CaseRole::Analyst,
        "case_admin" | "owner" => pb::CaseRole::CaseAdmin,
        other => bail!("--role {other:?}: one of viewer, analyst, case_admin"),
    })
}

pub async fn run_members(server: &ServerArgs, command: MembersCommand) -> anyhow::Result<()> {
    let mut client = admin(server).await?;
    match command {
        MembersCommand::Add { case, user, role } => {
            let role = case_role(&role)?;
            client
                .set_case_role(pb::SetCaseRoleRequest {
                    user_id: None,
                    username: user.clone(),
                    case_id: Some(CaseId {
                        value: case.clone(),
                    }),
                    role: role as i32,
                })
                .await
                .map_err(rpc_error)?;
            eprintln!("{user} is {} on case {case}", case_role_text(role as i32));
        }
        MembersCommand::Remove { case, user } => {
            client
                .remove_case_role(pb::RemoveCaseRoleRequest {
                    user_id: None,
                    username: user.clone(),
                    case_id: Some(CaseId {
                        value: case.clone(),
                    }),
                })
                .await
                .map_err(rpc_error)?;
            eprintln!("{user} no longer has a role on case {case}");
        }
        MembersCommand::List { case, json } => {
            let mut grants = Vec::new();
            let mut cursor = String::new();
            loop {
                let answer = client
                    .list_case_roles(pb::ListCaseRolesRequest {
                        page: page(casescope_proto::paging::MAX_PAGE_SIZE, &cursor),
                        case_id: Some(CaseId {
                            value: case.clone(),
                        }),
                        user_id: None,
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                grants.extend(answer.grants);
                cursor = answer.page.map(|p| p.next_cursor).unwrap_or_default();
                if cursor.is_empty() {
                    break;
                }
            }
            if json {
                let rows: Vec<_> = grants
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "user_id": g.user_id.as_ref().map(|u| u.value.clone()),
                            "username": g.username,
                            "role": case_role_text(g.role),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for g in &grants {
                println!("{:<24} {}", g.username, case_role_text(g.role));
            }
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// The audit log, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only this RPC or event (e.g. /casescope.cases.v1.CasesService/DeleteCase).
        #[arg(long, default_value = "")]
        method: String,
        /// Only this case.
        #[arg(long, default_value = "")]
        case: String,
        /// Only this user's records (a user id).
        #[arg(long, default_value = "")]
        actor: String,
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain; names the first edited, deleted or misplaced record and
    /// exits non-zero when there is one.
    Verify,
}

pub async fn run_audit(server: &ServerArgs, command: AuditCommand) -> anyhow::Result<()> {
    let mut client = admin(server).await?;
    match command {
        AuditCommand::List {
            limit,
            method,
            case,
            actor,
            json,
        } => {
            let entries = client
                .list_audit_log(pb::ListAuditLogRequest {
                    page: page(limit, ""),
                    actor_user_id: (!actor.is_empty()).then_some(UserId { value: actor }),
                    method,
                    case_id: (!case.is_empty()).then_some(CaseId { value: case }),
                    outcomes: Vec::new(),
                    time_range: None,
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .entries;
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "sequence": e.sequence,
                            "at": when(e.time.as_ref()),
                            "actor": e.actor_username,
                            "method": e.method,
                            "case_id": e.case_id.as_ref().map(|c| c.value.clone()),
                            "outcome": outcome_text(e.outcome),
                            "status_code": e.status_code,
                            "client_address": e.client_address,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            for e in &entries {
                println!(
                    "{:>8} {} {:<16} {:<15} {} {}",
                    e.sequence,
                    when(e.time.as_ref()),
                    e.actor_username,
                    outcome_text(e.outcome),
                    e.method,
                    e.case_id
                        .as_ref()
                        .map(|c| c.value.as_str())
                        .unwrap_or_default()
                );
            }
        }
        AuditCommand::Verify => {
            let answer = client
                .verify_audit_log(pb::VerifyAuditLogRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner();
            if !answer.intact {
                bail!(
                    "the audit log is broken at record {}: {}",
                    answer.first_broken_sequence,
                    answer.problem
                );
            }
            println!(
                "the audit log verifies: {} records intact",
                answer.records_verified
            );
        }
    }
    Ok(())
}

fn outcome_text(outcome: i32) -> &'static str {
    match pb::AuditOutcome::try_from(outcome) {
        Ok(pb::AuditOutcome::Succeeded) => "succeeded",
        Ok(pb::AuditOutcome::Unauthenticated) => "unauthenticated",
        Ok(pb::AuditOutcome::Denied) => "denied",
        Ok(pb::AuditOutcome::Failed) => "failed",
        Ok(pb::AuditOutcome::RateLimited) => "rate_limited",
        _ => "other",
    }
}
