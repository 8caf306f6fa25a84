//! `casescope ioc matches` and `ioc states`: a case's IOC matches (or their counts)
//! and the hunt state of its files.

use super::{PAGE_SIZE, case_id, type_name, wire_type};
use crate::client::rpc_error;
use crate::detect_cmds::{cell, escaped, print_json};
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{FileId, IocId, PageRequest};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct MatchesArgs {
    pub case: String,
    #[arg(long = "ioc", value_name = "IOC_ID")]
    pub iocs: Vec<String>,
    #[arg(long = "type")]
    pub types: Vec<String>,
    #[arg(long = "file", value_name = "FILE_ID")]
    pub files: Vec<String>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Counts by IOC and by type instead of the matches.
    #[arg(long)]
    pub counts: bool,
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn matches(
    client: &mut IocServiceClient<GrpcChannel>,
    args: MatchesArgs,
) -> anyhow::Result<()> {
    let filter = pb::MatchFilter {
        ioc_ids: args
            .iocs
            .iter()
            .map(|value| IocId {
                value: value.clone(),
            })
            .collect(),
        ioc_types: args
            .types
            .iter()
            .map(|t| wire_type(t))
            .collect::<anyhow::Result<Vec<_>>>()?,
        file_ids: args
            .files
            .iter()
            .map(|value| FileId {
                value: value.clone(),
            })
            .collect(),
        event_ids: Vec::new(),
        time_range: None,
    };
    if args.counts {
        let counts = client
            .count_matches(pb::CountMatchesRequest {
                case_id: case_id(&args.case),
                filter: Some(filter),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        if args.json {
            return print_json(&serde_json::json!({
                "total": counts.total,
                "distinct_events": counts.distinct_events,
                "by_ioc": counts.by_ioc.iter().map(|c| serde_json::json!({
                    "ioc_id": c.ioc_id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
                    "type": type_name(c.ioc_type), "value": c.ioc_value, "count": c.count,
                })).collect::<Vec<_>>(),
                "by_type": counts.by_type.iter().map(|c| serde_json::json!({
                    "type": type_name(c.ioc_type), "count": c.count,
                })).collect::<Vec<_>>(),
            }));
        }
        println!(
            "{} matches in {} events",
            counts.total, counts.distinct_events
        );
        for c in &counts.by_type {
            println!("  {:<13} {:>9}", type_name(c.ioc_type), c.count);
        }
        for c in &counts.by_ioc {
            println!(
                "  {:>9}  {} {}",
                c.count,
                type_name(c.ioc_type),
                escaped(&c.ioc_value)
            );
        }
        return Ok(());
    }
    let mut cursor = String::new();
    let mut shown = 0u32;
    let mut json = Vec::new();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if !args.json {
        writeln!(
            out,
            "{:<27} {:<13} {:<40} {:<20} MATCHED",
            "TIME", "TYPE", "IOC", "FIELD"
        )?;
    }
    loop {
        let size = if args.limit == 0 {
            PAGE_SIZE
        } else {
            (args.limit - shown).min(PAGE_SIZE)
        };
        if size == 0 {
            break;
        }
        let response = client
            .list_matches(pb::ListMatchesRequest {
                case_id: case_id(&args.case),
                filter: Some(filter.clone()),
                sort: 0,
                page: Some(PageRequest {
                    page_size: size,
                    cursor: cursor.clone(),
                }),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        for m in &response.matches {
            shown += 1;
            let time = m
                .timestamp
                .as_ref()
                .map(|t| {
                    casescope_proto::time::micros_to_rfc3339(
                        casescope_proto::time::timestamp_to_micros(t),
                    )
                })
                .unwrap_or_default();
            if args.json {
                json.push(serde_json::json!({
                    "id": m.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
                    "time": time,
                    "ioc_id": m.ioc_id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
                    "type": type_name(m.ioc_type),
                    "ioc_value": m.ioc_value,
                    "event_id": m.event_id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
                    "file_id": m.file_id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
                    "field": m.field,
                    "matched_value": m.matched_value,
                }));
            } else {
                writeln!(
                    out,
                    "{:<27} {:<13} {:<40} {:<20} {}",
                    time,
                    type_name(m.ioc_type),
                    cell(&m.ioc_value, 40),
                    cell(&m.field, 20),
                    cell(&m.matched_value, 80)
                )?;
            }
        }
        cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if args.json {
        return print_json(&serde_json::Value::Array(json));
    }
    out.flush()?;
    Ok(())
}

pub(super) async fn states(
    client: &mut IocServiceClient<GrpcChannel>,
    case: &str,
    json: bool,
) -> anyhow::Result<()> {
    let mut cursor = String::new();
    let mut rows = Vec::new();
    let version = loop {
        let response = client
            .list_hunt_states(pb::ListHuntStatesRequest {
                case_id: case_id(case),
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    cursor: cursor.clone(),
                }),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        rows.extend(response.states);
        cursor = response.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break response.case_version;
        }
    };
    if json {
        return print_json(&serde_json::json!({
            "case_version": version,
            "files": rows.iter().map(|s| serde_json::json!({
                "file_id": s.file_id.as_ref().map(|f| f.value.clone()).unwrap_or_default(),
                "status": s.status,
                "generation": s.generation,
                "requested_version": s.requested_version,
                "hunted_version": s.hunted_version,
                "last_mode": s.last_mode,
                "events_scanned": s.events_scanned,
                "matches": s.matches,
                "completed_runs": s.completed_runs,
                "error": s.error,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("case IOC version {version}");
    println!(
        "{:<36} {:<8} {:>9} {:>9} {:<6} ERROR",
        "FILE", "STATUS", "EVENTS", "MATCHES", "MODE"
    );
    for s in &rows {
        println!(
            "{:<36} {:<8} {:>9} {:>9} {:<6} {}",
            s.file_id.as_ref().map(|f| f.value.as_str()).unwrap_or(""),
            s.status,
            s.events_scanned,
            s.matches,
            s.last_mode,
            escaped(&s.error)
        );
    }
    Ok(())
}
