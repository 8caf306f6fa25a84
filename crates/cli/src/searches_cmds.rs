//! Saved searches (`searches save/list/delete`), search history (`history`) and case
//! notes (`notes show/edit/versions`).

use crate::client::{ServerArgs, rpc_error};
use anyhow::Context;
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, PageRequest, SavedSearchId};
use clap::Subcommand;
use std::io::Read;

#[derive(Subcommand, Debug)]
pub enum SearchesCommand {
    /// Save a timeline query under a name (saving a name again replaces it).
    Save {
        case: String,
        name: String,
        query: String,
        /// Show it to every member of the case.
        #[arg(long)]
        shared: bool,
    },
    /// Your saved searches and those shared in the case.
    List {
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete one of your saved searches.
    Delete { case: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum NotesCommand {
    /// Print the case's notes (Markdown).
    Show { case: String },
    /// Replace the notes with standard input; --version is the version you edited
    /// (refused if someone saved since).
    Edit {
        case: String,
        #[arg(long)]
        version: i64,
    },
    /// Earlier versions, newest first.
    Versions { case: String },
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

async fn client(
    server: &ServerArgs,
) -> anyhow::Result<CasesServiceClient<casescope_proto::channel::GrpcChannel>> {
    Ok(CasesServiceClient::new(
        crate::session::connect(server, None).await?,
    ))
}

fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

pub async fn run_searches(server: &ServerArgs, command: SearchesCommand) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    match command {
        SearchesCommand::Save {
            case,
            name,
            query,
            shared,
        } => {
            let saved = client
                .save_search(pb::SaveSearchRequest {
                    case_id: case_id(&case),
                    name,
                    query: Some(pb::TimelineQuery {
                        query,
                        ..Default::default()
                    }),
                    shared,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!("{}", saved.id.map(|id| id.value).unwrap_or_default());
        }
        SearchesCommand::List { case, json } => {
            let mut all = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = client
                    .list_saved_searches(pb::ListSavedSearchesRequest {
                        case_id: case_id(&case),
                        page: Some(PageRequest {
                            page_size: casescope_proto::paging::MAX_PAGE_SIZE,
                            cursor: cursor.clone(),
                        }),
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                all.extend(page.searches);
                cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
                if cursor.is_empty() {
                    break;
                }
            }
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id.as_ref().map(|i| i.value.clone()),
                            "name": s.name,
                            "query": s.query.as_ref().map(|q| q.query.clone()),
                            "owner": s.owner_name,
                            "shared": s.shared,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for s in &all {
                    println!(
                        "{}  {:<24}  {:<12}  {}{}",
                        s.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
                        printable(&s.name),
                        printable(&s.owner_name),
                        printable(s.query.as_ref().map(|q| q.query.as_str()).unwrap_or("")),
                        if s.shared { "  (shared)" } else { "" }
                    );
                }
            }
        }
        SearchesCommand::Delete { case, id } => {
            client
                .delete_saved_search(pb::DeleteSavedSearchRequest {
                    case_id: case_id(&case),
                    id: Some(SavedSearchId { value: id }),
                })
                .await
                .map_err(rpc_error)?;
        }
    }
    Ok(())
}

pub async fn history(server: &ServerArgs, case: String, json: bool) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let page = client
        .list_search_history(pb::ListSearchHistoryRequest {
            case_id: case_id(&case),
            page: Some(PageRequest {
                page_size: casescope_proto::paging::MAX_PAGE_SIZE,
                cursor: String::new(),
            }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let when = |e: &pb::SearchHistoryEntry| {
        e.searched_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    if json {
        let rows: Vec<_> = page
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "query": e.query.as_ref().map(|q| q.query.clone()),
                    "searched_at": when(e),
                    "hit_count": e.hit_count,
                    "repeats": e.repeats,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for e in &page.entries {
        println!(
            "{}  {:>9} hits  x{:<3}  {}",
            when(e),
            e.hit_count,
            e.repeats,
            printable(e.query.as_ref().map(|q| q.query.as_str()).unwrap_or(""))
        );
    }
    Ok(())
}

pub async fn run_notes(server: &ServerArgs, command: NotesCommand) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    match command {
        NotesCommand::Show { case } => {
            let notes = client
                .get_case_notes(pb::GetCaseNotesRequest {
                    case_id: case_id(&case),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            eprintln!(
                "version {} by {}",
                notes.version,
                printable(&notes.updated_by_name)
            );
            println!("{}", printable(&notes.body));
        }
        NotesCommand::Edit { case, version } => {
            let mut body = String::new();
            std::io::stdin()
                .take(crate::MAX_STDIN_BYTES + 1)
                .read_to_string(&mut body)
                .context("cannot read the notes from standard input")?;
            let notes = client
                .update_case_notes(pb::UpdateCaseNotesRequest {
                    case_id: case_id(&case),
                    body,
                    expected_version: version,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            eprintln!("saved version {}", notes.version);
        }
        NotesCommand::Versions { case } => {
            let page = client
                .list_case_notes_versions(pb::ListCaseNotesVersionsRequest {
                    case_id: case_id(&case),
                    page: Some(PageRequest {
                        page_size: 100,
                        cursor: String::new(),
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            for v in &page.versions {
                println!(
                    "{:>4}  {}  {} bytes",
                    v.version,
                    printable(&v.updated_by_name),
                    v.body.len()
                );
            }
        }
    }
    Ok(())
}
