//! The investigation commands: `timeline` (events with their tags, star, comments and
//! detections; annotation clauses such as `tag:x` and `starred:true` work here),
//! `tag` / `untag`, `star`, `comment` and `comments`.

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, anyhow};
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, CommentId, EventId, PageRequest, SortOrder, TimeRange};
use std::io::Read;

/// Event ids per request (the server's bulk limit).
const BULK: usize = 100_000;

async fn client(server: &ServerArgs) -> anyhow::Result<CasesServiceClient<GrpcChannel>> {
    let channel = crate::session::connect(server, None).await?;
    Ok(CasesServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(16 * 1024 * 1024))
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    casescope_evidence::parse_timestamp(&serde_json::Value::String(text.to_string()))
        .map_err(|why| anyhow!("{flag}: {why}"))
}

/// Evidence and analysts' text for a terminal: control characters escaped.
fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    pub case: String,
    /// Query string: the search language plus `tag:x`, `-tag:x`, `starred:true`,
    /// `commented:true`.
    #[arg(default_value = "")]
    pub query: String,
    /// Start of the time range (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the time range, exclusive (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Only events with any of these tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long)]
    pub starred: bool,
    #[arg(long)]
    pub commented: bool,
    /// Only events a detection fired on.
    #[arg(long)]
    pub detected: bool,
    /// Only events detections of this level fired on (repeatable).
    #[arg(long = "level")]
    pub levels: Vec<String>,
    /// Only events detections of this ATT&CK tactic fired on (repeatable).
    #[arg(long = "tactic")]
    pub tactics: Vec<String>,
    /// Only events this rule (id) fired on (repeatable).
    #[arg(long = "rule")]
    pub rules: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// Continue from a cursor printed by an earlier page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// With --cursor: the page before it.
    #[arg(long)]
    pub backward: bool,
    #[arg(long)]
    pub json: bool,
}

pub async fn timeline(server: &ServerArgs, args: TimelineArgs) -> anyhow::Result<()> {
    if args.limit > casescope_proto::paging::MAX_PAGE_SIZE {
        return Err(anyhow!(
            "invalid argument: --limit {} is above the maximum page size {}",
            args.limit,
            casescope_proto::paging::MAX_PAGE_SIZE
        ));
    }
    let time_range = TimeRange {
        start_unix_micros: args
            .from
            .as_deref()
            .map(|t| parse_time(t, "--from"))
            .transpose()?,
        end_unix_micros: args
            .to
            .as_deref()
            .map(|t| parse_time(t, "--to"))
            .transpose()?,
    };
    let mut client = client(server).await?;
    let response = client
        .search_timeline(pb::SearchTimelineRequest {
            case_id: case_id(&args.case),
            query: Some(pb::TimelineQuery {
                query: args.query,
                time_range: Some(time_range),
                tags: args.tags,
                only_starred: args.starred,
                only_commented: args.commented,
                only_with_detections: args.detected,
                detection_levels: args.levels,
                detection_tactics: args.tactics,
                detection_rule_ids: args
                    .rules
                    .into_iter()
                    .map(|value| casescope_proto::common::v1::RuleId { value })
                    .collect(),
                sort: if args.desc {
                    SortOrder::Descending
                } else {
                    SortOrder::Ascending
                } as i32,
                ..Default::default()
            }),
            page: Some(PageRequest {
                page_size: args.limit,
                cursor: args.cursor.unwrap_or_default(),
            }),
            backward: args.backward,
            include_raw: false,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let next = response
        .page
        .as_ref()
        .map(|p| p.next_cursor.clone())
        .unwrap_or_default();
    if args.json {
        let events: Vec<_> = response.events.iter().map(event_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "total_hits": response.total_hits,
                "events": events,
                "next_cursor": next,
                "previous_cursor": response.previous_cursor,
            }))?
        );
        return Ok(());
    }
    for event in &response.events {
        print_event(event);
    }
    eprintln!(
        "{} of {} matching events (* starred, ! detections, c comments)",
        response.events.len(),
        response.total_hits
    );
    if !next.is_empty() {
        eprintln!("next page: --cursor {next}");
    }
    if !response.previous_cursor.is_empty() {
        eprintln!(
            "previous page: --cursor {} --backward",
            response.previous_cursor
        );
    }
    Ok(())
}

fn time_text(event: &pb::TimelineEvent) -> String {
    event
        .timestamp
        .as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn event_json(e: &pb::TimelineEvent) -> serde_json::Value {
    serde_json::json!({
        "event_id": e.event_id.as_ref().map(|i| i.value.clone()),
        "file_id": e.file_id.as_ref().map(|i| i.value.clone()),
        "timestamp": time_text(e),
        "event_code": e.event_code,
        "channel": e.channel,
        "computer": e.computer,
        "record_id": e.record_id,
        "tags": e.tags,
        "starred": e.starred,
        "comment_count": e.comment_count,
        "detection_count": e.detection_count,
        "detections": e.detections.iter().map(|d| serde_json::json!({
            "rule_title": d.rule_title, "level": d.level, "tactics": d.tactics,
        })).collect::<Vec<_>>(),
        "fields": serde_json::from_str::<serde_json::Value>(&e.fields_json).unwrap_or_default(),
    })
}

fn print_event(event: &pb::TimelineEvent) {
    let marks = format!(
        "{}{}{}",
        if event.starred { "*" } else { " " },
        if event.detection_count > 0 { "!" } else { " " },
        if event.comment_count > 0 { "c" } else { " " },
    );
    let tags = if event.tags.is_empty() {
        String::new()
    } else {
        format!("[{}] ", printable(&event.tags.join(", "), 60))
    };
    println!(
        "{}  {marks}  {}  {:>5}  {:<16}  {tags}{}",
        time_text(event),
        event
            .event_id
            .as_ref()
            .map(|id| id.value.chars().take(16).collect::<String>())
            .unwrap_or_default(),
        event.event_code,
        printable(&event.computer, 16),
        printable(&event.fields_json, 140)
    );
}

pub async fn context(
    server: &ServerArgs,
    case: String,
    event: String,
    events: u32,
    seconds: u32,
    same_host: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let answer = client
        .get_event_context(pb::GetEventContextRequest {
            case_id: case_id(&case),
            event_id: Some(EventId { value: event }),
            events: if events == 0 && seconds == 0 {
                10
            } else {
                events
            },
            seconds,
            same_host,
            include_raw: false,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "before": answer.before.iter().map(event_json).collect::<Vec<_>>(),
                "event": answer.event.as_ref().map(event_json),
                "after": answer.after.iter().map(event_json).collect::<Vec<_>>(),
                "more_before": answer.more_before,
                "more_after": answer.more_after,
            }))?
        );
        return Ok(());
    }
    if answer.more_before {
        println!("…");
    }
    answer.before.iter().for_each(print_event);
    if let Some(event) = &answer.event {
        print!("> ");
        print_event(event);
    }
    answer.after.iter().for_each(print_event);
    if answer.more_after {
        println!("…");
    }
    Ok(())
}

fn event_ids(ids: &[String]) -> Vec<EventId> {
    ids.iter()
        .map(|id| EventId {
            value: id.trim().to_string(),
        })
        .collect()
}

/// Which events a tag/untag/star command changes.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Selected {
    /// An event id (repeatable).
    #[arg(long = "event")]
    pub events: Vec<String>,
    /// Every event this timeline query selects (a job on the server; at most 1,000,000).
    #[arg(long)]
    pub query: Option<String>,
}

/// Follows a job until it ends, printing its progress.
async fn wait_for_job(
    client: &mut CasesServiceClient<GrpcChannel>,
    case: &str,
    job_id: String,
) -> anyhow::Result<pb::AnnotationJob> {
    let progress = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} events {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let job = client
            .get_annotation_job(pb::GetAnnotationJobRequest {
                case_id: case_id(case),
                job_id: job_id.clone(),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        progress.set_length(job.total);
        progress.set_position(job.matched);
        match job.state.as_str() {
            "done" => {
                progress.finish_and_clear();
                return Ok(job);
            }
            "failed" => {
                progress.finish_and_clear();
                return Err(anyhow!("job {job_id} failed: {}", job.error));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
        }
    }
}

/// Tags (`add`) or untags events: by id in requests of at most [`BULK`], or by query
/// as a job.
pub async fn tag(
    server: &ServerArgs,
    case: String,
    tag: String,
    selected: Selected,
    add: bool,
) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let verb = if add { "tagged" } else { "untagged" };
    if let Some(query) = selected.query {
        let matching = Some(pb::TimelineQuery {
            query,
            ..Default::default()
        });
        let response = if add {
            client
                .tag_events(pb::TagEventsRequest {
                    case_id: case_id(&case),
                    event_ids: Vec::new(),
                    tag: tag.clone(),
                    matching,
                })
                .await
        } else {
            client
                .untag_events(pb::UntagEventsRequest {
                    case_id: case_id(&case),
                    event_ids: Vec::new(),
                    tag: tag.clone(),
                    matching,
                })
                .await
        };
        let job_id = response.map_err(rpc_error)?.into_inner().job_id;
        let job = wait_for_job(&mut client, &case, job_id).await?;
        eprintln!("{verb} {} of {} events", job.changed, job.matched);
        return Ok(());
    }
    let events = selected.events;
    let mut changed = 0;
    for chunk in event_ids(&events).chunks(BULK) {
        let response = if add {
            client
                .tag_events(pb::TagEventsRequest {
                    matching: None,
                    case_id: case_id(&case),
                    event_ids: chunk.to_vec(),
                    tag: tag.clone(),
                })
                .await
        } else {
            client
                .untag_events(pb::UntagEventsRequest {
                    matching: None,
                    case_id: case_id(&case),
                    event_ids: chunk.to_vec(),
                    tag: tag.clone(),
                })
                .await
        };
        changed += response.map_err(rpc_error)?.into_inner().changed;
    }
    eprintln!("{verb} {changed} of {} events", events.len());
    Ok(())
}

pub async fn star(
    server: &ServerArgs,
    case: String,
    selected: Selected,
    starred: bool,
) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let verb = if starred { "starred" } else { "unstarred" };
    if let Some(query) = selected.query {
        let job_id = client
            .star_events(pb::StarEventsRequest {
                case_id: case_id(&case),
                event_ids: Vec::new(),
                starred,
                matching: Some(pb::TimelineQuery {
                    query,
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .job_id;
        let job = wait_for_job(&mut client, &case, job_id).await?;
        eprintln!("{verb} {} of {} events", job.changed, job.matched);
        return Ok(());
    }
    let events = selected.events;
    let mut changed = 0;
    for chunk in event_ids(&events).chunks(BULK) {
        changed += client
            .star_events(pb::StarEventsRequest {
                matching: None,
                case_id: case_id(&case),
                event_ids: chunk.to_vec(),
                starred,
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .changed;
    }
    eprintln!("{verb} {changed} of {} events", events.len());
    Ok(())
}

pub async fn comment(
    server: &ServerArgs,
    case: String,
    event: String,
    text: Option<String>,
    reply_to: Option<String>,
) -> anyhow::Result<()> {
    let body = match text {
        Some(text) if text != "-" => text,
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .take(crate::MAX_STDIN_BYTES)
                .read_to_string(&mut text)
                .context("cannot read the comment from standard input")?;
            text
        }
    };
    let mut client = client(server).await?;
    let comment = client
        .add_comment(pb::AddCommentRequest {
            case_id: case_id(&case),
            event_id: Some(EventId { value: event }),
            body,
            parent_id: reply_to.map(|value| CommentId { value }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!("{}", comment.id.map(|id| id.value).unwrap_or_default());
    Ok(())
}

pub async fn comments(
    server: &ServerArgs,
    case: String,
    event: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let mut cursor = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .list_comments(pb::ListCommentsRequest {
                case_id: case_id(&case),
                event_id: event.clone().map(|value| EventId { value }),
                page: Some(PageRequest {
                    page_size: casescope_proto::paging::MAX_PAGE_SIZE,
                    cursor: cursor.clone(),
                }),
                newest_first: false,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        all.extend(page.comments);
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id.as_ref().map(|i| i.value.clone()),
                    "event_id": c.event_id.as_ref().map(|i| i.value.clone()),
                    "parent_id": c.parent_id.as_ref().map(|i| i.value.clone()),
                    "author": c.author_name,
                    "body": c.body,
                    "revision": c.revision,
                    "deleted": c.deleted,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for c in &all {
        println!(
            "{}  {}  {}{}: {}",
            c.event_id
                .as_ref()
                .map(|i| i.value.chars().take(16).collect::<String>())
                .unwrap_or_default(),
            printable(&c.author_name, 32),
            if c.parent_id.is_some() {
                "(reply) "
            } else {
                ""
            },
            if c.deleted { " (deleted)" } else { "" },
            printable(&c.body, 200)
        );
    }
    Ok(())
}

/// The top values of fields over a timeline selection.
pub async fn facets(
    server: &ServerArgs,
    case: String,
    fields: Vec<String>,
    query: String,
    top: u32,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = client(server).await?;
    let answer = client
        .timeline_facets(pb::TimelineFacetsRequest {
            case_id: case_id(&case),
            query: Some(pb::TimelineQuery {
                query,
                ..Default::default()
            }),
            fields,
            top,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if json {
        let facets: Vec<_> = answer
            .facets
            .iter()
            .map(|f| {
                serde_json::json!({
                    "field": f.field,
                    "values": f.values.iter().map(|v| serde_json::json!({"value": v.value, "count": v.count})).collect::<Vec<_>>(),
                    "other": f.other,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"selected": answer.selected, "facets": facets})
            )?
        );
        return Ok(());
    }
    for facet in &answer.facets {
        println!(
            "{}  ({} events selected)",
            printable(&facet.field, 80),
            answer.selected
        );
        for value in &facet.values {
            println!("  {:>10}  {}", value.count, printable(&value.value, 120));
        }
        if facet.other > 0 {
            println!("  {:>10}  (other values)", facet.other);
        }
    }
    Ok(())
}
