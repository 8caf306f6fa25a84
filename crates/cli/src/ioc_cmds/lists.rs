//! `casescope ioc lists …`: global IOC lists (create, show, update, delete). A list's
//! IOCs are added, imported, exported, listed and deleted with the IOC commands, given
//! `list:<name or id>` in place of the case.

use super::{PAGE_SIZE, case_id};
use crate::client::rpc_error;
use crate::detect_cmds::{cell, escaped, print_json};
use anyhow::bail;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::PageRequest;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use clap::Subcommand;
use std::io::Write;

#[derive(Subcommand, Debug)]
pub enum ListsCommand {
    /// Create a list, used by every case (--all-cases) or by the --case ones.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, conflicts_with = "cases")]
        all_cases: bool,
        #[arg(long = "case", value_name = "CASE_ID")]
        cases: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The lists, by name (only those a case uses with --case).
    Show {
        #[arg(long = "case", value_name = "CASE_ID")]
        case: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rename a list, or change its description or the cases that use it. Cases that
    /// gain it are hunted with its IOCs; cases that lose it lose those matches.
    Update {
        /// The list's name or id.
        list: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Every case uses it.
        #[arg(long, conflicts_with_all = ["cases", "no_cases"])]
        all_cases: bool,
        /// Only these cases use it (replaces the chosen cases).
        #[arg(long = "case", value_name = "CASE_ID")]
        cases: Vec<String>,
        /// No case uses it (it is kept with its IOCs).
        #[arg(long, conflicts_with = "cases")]
        no_cases: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a list, its IOCs and their matches in every case.
    Delete {
        /// The list's name or id.
        list: String,
    },
}

fn list_json(list: &pb::IocList) -> serde_json::Value {
    serde_json::json!({
        "id": list.id,
        "name": list.name,
        "description": list.description,
        "all_cases": list.all_cases,
        "case_ids": list.case_ids.iter().map(|c| c.value.clone()).collect::<Vec<_>>(),
        "ioc_count": list.ioc_count,
        "version": list.version,
    })
}

fn print_list(list: &pb::IocList, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&list_json(list));
    }
    println!(
        "{} {} ({} IOCs; {})",
        list.id,
        escaped(&list.name),
        list.ioc_count,
        scope(list)
    );
    Ok(())
}

fn scope(list: &pb::IocList) -> String {
    if list.all_cases {
        "all cases".into()
    } else if list.case_ids.is_empty() {
        "no case".into()
    } else {
        format!("{} cases", list.case_ids.len())
    }
}

pub(super) async fn run(
    client: &mut IocServiceClient<GrpcChannel>,
    command: ListsCommand,
) -> anyhow::Result<()> {
    match command {
        ListsCommand::Create {
            name,
            description,
            all_cases,
            cases,
            json,
        } => {
            let list = client
                .create_ioc_list(pb::CreateIocListRequest {
                    name,
                    description,
                    all_cases,
                    case_ids: cases.iter().filter_map(|c| case_id(c)).collect(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_list(&list, json)
        }
        ListsCommand::Show { case, json } => show(client, case.as_deref(), json).await,
        ListsCommand::Update {
            list,
            name,
            description,
            all_cases,
            cases,
            no_cases,
            json,
        } => {
            let stored = client
                .get_ioc_list(pb::GetIocListRequest { id: list })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let mut paths = Vec::new();
            if name.is_some() {
                paths.push("name".to_string());
            }
            if description.is_some() {
                paths.push("description".to_string());
            }
            if all_cases || !cases.is_empty() || no_cases {
                paths.push("all_cases".to_string());
            }
            if !cases.is_empty() || no_cases {
                paths.push("case_ids".to_string());
            }
            if paths.is_empty() {
                bail!(
                    "nothing to change: give --name, --description, --all-cases, --case or --no-cases"
                );
            }
            let updated = client
                .update_ioc_list(pb::UpdateIocListRequest {
                    id: stored.id,
                    update_mask: Some(prost_types::FieldMask { paths }),
                    name: name.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    all_cases,
                    case_ids: cases.iter().filter_map(|c| case_id(c)).collect(),
                    expected_version: stored.version,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_list(&updated, json)
        }
        ListsCommand::Delete { list } => {
            let stored = client
                .get_ioc_list(pb::GetIocListRequest { id: list })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let response = client
                .delete_ioc_list(pb::DeleteIocListRequest {
                    id: stored.id.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!(
                "deleted list {} with its {} IOCs and their {} matches",
                escaped(&stored.name),
                response.iocs_deleted,
                response.matches_deleted
            );
            Ok(())
        }
    }
}

async fn show(
    client: &mut IocServiceClient<GrpcChannel>,
    case: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let mut cursor = String::new();
    let mut all = Vec::new();
    loop {
        let response = client
            .list_ioc_lists(pb::ListIocListsRequest {
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    cursor: cursor.clone(),
                }),
                case_id: case.and_then(case_id),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        all.extend(response.lists);
        cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if json {
        return print_json(&serde_json::Value::Array(
            all.iter().map(list_json).collect(),
        ));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout());
    writeln!(out, "{:<36} {:<32} {:>7} USED BY", "ID", "NAME", "IOCS")?;
    for list in &all {
        writeln!(
            out,
            "{:<36} {:<32} {:>7} {}",
            list.id,
            cell(&list.name, 32),
            list.ioc_count,
            scope(list)
        )?;
    }
    out.flush()?;
    Ok(())
}
