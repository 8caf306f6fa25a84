//! `casescope upload`, `casescope files`, `casescope search` and `casescope synth`.

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, anyhow};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, PageRequest, SortOrder, TimeRange, UploadId};
use casescope_proto::ingest::v1 as pb;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

const CHUNK: usize = 1024 * 1024;

async fn channel(server: &ServerArgs) -> anyhow::Result<GrpcChannel> {
    // Uploads and streamed answers take as long as they take: no total timeout.
    crate::session::connect(server, None).await
}

fn case_id(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

/// Evidence files under `paths` (directories walked, sorted), by allowed extension.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_file() {
            files.push(path.clone());
            continue;
        }
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for entry in entries {
                if entry.is_dir() {
                    stack.push(entry);
                } else if entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(casescope_evidence::Format::from_file_name)
                    .is_some()
                {
                    files.push(entry);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

fn hash(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0;
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

pub async fn upload(
    server: &ServerArgs,
    case: String,
    paths: Vec<PathBuf>,
    timestamp_field: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let files = collect(&paths)?;
    if files.is_empty() {
        return Err(anyhow!(
            "no evidence files (.evtx, .json, .jsonl, .ndjson, .csv, .zip) under the given paths"
        ));
    }
    let channel = channel(server).await?;
    let client = IngestServiceClient::new(channel).max_encoding_message_size(8 * 1024 * 1024);
    let terminal = std::io::stderr().is_terminal() && !json;
    let mut report = Report {
        json,
        failures: 0,
        results: Vec::new(),
    };

    // Small files go several at a time: their uploads are mostly waiting on the server's
    // writes and transactions (277 small files took 4.2 s one by one, with the client
    // using 0.3 s of CPU). Files of the same content go one at a time after them, so the
    // second finds the first stored ("already present") instead of racing it; large
    // files too, each with its progress bar.
    let mut small = Vec::new();
    let mut one_by_one = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, path) in files.iter().enumerate() {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
        if size > SMALL_FILE {
            one_by_one.push((index, None));
            continue;
        }
        let hashed = path.clone();
        match tokio::task::spawn_blocking(move || hash(&hashed)).await? {
            Ok((sha256, size)) if seen.insert(sha256.clone()) => {
                small.push((index, Some((sha256, size))));
            }
            Ok(known) => one_by_one.push((index, Some(known))),
            Err(error) => report.failed(path, &error),
        }
    }
    let uploads = futures::stream::iter(small.into_iter().map(|(index, known)| {
        let mut client = client.clone();
        let (case, timestamp_field) = (case.clone(), timestamp_field.clone());
        let path = &files[index];
        async move {
            let result = upload_one(&mut client, &case, path, timestamp_field, false, known).await;
            (index, result)
        }
    }))
    .buffered(PARALLEL_UPLOADS);
    futures::pin_mut!(uploads);
    while let Some((index, result)) = uploads.next().await {
        report.add(index, &files[index], result);
    }
    for (index, known) in one_by_one {
        let mut client = client.clone();
        let result = upload_one(
            &mut client,
            &case,
            &files[index],
            timestamp_field.clone(),
            terminal,
            known,
        )
        .await;
        report.add(index, &files[index], result);
    }
    if json {
        report.results.sort_by_key(|(index, _)| *index);
        let results: Vec<_> = report.results.into_iter().map(|(_, r)| r).collect();
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if report.failures > 0 {
        return Err(anyhow!(
            "{} of {} files failed to upload",
            report.failures,
            files.len()
        ));
    }
    Ok(())
}

/// Files at most this large are uploaded [`PARALLEL_UPLOADS`] at a time, without a
/// progress bar.
const SMALL_FILE: u64 = 8 * 1024 * 1024;
const PARALLEL_UPLOADS: usize = 4;

/// What `upload` prints: a line per file as it is done, or (`--json`) one array in the
/// order the files were named.
struct Report {
    json: bool,
    failures: usize,
    results: Vec<(usize, serde_json::Value)>,
}

impl Report {
    fn failed(&mut self, path: &Path, error: &anyhow::Error) {
        self.failures += 1;
        eprintln!("error: {}: {error:#}", path.display());
    }

    fn add(&mut self, index: usize, path: &Path, result: anyhow::Result<pb::UploadResult>) {
        let result = match result {
            Ok(result) => result,
            Err(error) => return self.failed(path, &error),
        };
        let file_id = result
            .file_id
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_default();
        if self.json {
            self.results.push((index, serde_json::json!({
                "path": path.display().to_string(),
                "file_id": file_id,
                "sha256": result.sha256,
                "size_bytes": result.size_bytes,
                "already_present": result.already_present,
                "members": result.members.iter().map(|m| serde_json::json!({"file_id": m.file_id.as_ref().map(|f| f.value.clone()), "archive_path": m.archive_path, "already_present": m.already_present})).collect::<Vec<_>>(),
                "refused_members": result.refused_members.iter().map(|r| serde_json::json!({"archive_path": r.archive_path, "reason": r.reason, "detail": r.detail})).collect::<Vec<_>>(),
            })));
            return;
        }
        let state = if result.already_present {
            "already present"
        } else {
            "uploaded"
        };
        println!("{file_id}  {}  {state}", path.display());
        for member in &result.members {
            println!(
                "  member {}  {}{}",
                member
                    .file_id
                    .as_ref()
                    .map(|f| f.value.as_str())
                    .unwrap_or_default(),
                member.archive_path,
                if member.already_present {
                    "  already present"
                } else {
                    ""
                }
            );
        }
        for refused in &result.refused_members {
            eprintln!(
                "  refused {}: {} ({})",
                refused.archive_path, refused.reason, refused.detail
            );
        }
    }
}

/// Uploads one file, waiting and trying again (a few times) when the server says the
/// user is over its request rate or upload limit.
async fn upload_one(
    client: &mut IngestServiceClient<GrpcChannel>,
    case: &str,
    path: &Path,
    timestamp_field: Option<String>,
    terminal: bool,
    known: Option<(String, u64)>,
) -> anyhow::Result<pb::UploadResult> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = upload_attempt(
            client,
            case,
            path,
            timestamp_field.clone(),
            terminal,
            known.clone(),
        )
        .await;
        match result {
            Err(error) if attempt < THROTTLED_ATTEMPTS => {
                let Some(throttled) = error.downcast_ref::<crate::client::Throttled>() else {
                    return Err(error);
                };
                tokio::time::sleep(throttled.wait).await;
            }
            other => return other,
        }
    }
}

/// Tries of one file the server keeps throttling.
const THROTTLED_ATTEMPTS: u32 = 8;

async fn upload_attempt(
    client: &mut IngestServiceClient<GrpcChannel>,
    case: &str,
    path: &Path,
    timestamp_field: Option<String>,
    terminal: bool,
    known: Option<(String, u64)>,
) -> anyhow::Result<pb::UploadResult> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("file name is not UTF-8"))?
        .to_string();
    let (sha256, size) = match known {
        Some(known) => known,
        None => {
            let hashed = path.to_path_buf();
            tokio::task::spawn_blocking(move || hash(&hashed)).await??
        }
    };
    // Resume an interrupted upload of the same content, if the server has one.
    let mut offset = 0;
    let mut resume = None;
    let status = client
        .get_upload_status(pb::GetUploadStatusRequest {
            case_id: case_id(case),
            lookup: Some(pb::get_upload_status_request::Lookup::DeclaredSha256(
                sha256.clone(),
            )),
        })
        .await;
    if let Ok(status) = status {
        let status = status.into_inner();
        if status.state == pb::UploadState::Receiving as i32 && status.file_name == name {
            offset = status.next_offset.min(size);
            resume = status.upload_id;
        }
    }
    let header = pb::UploadHeader {
        case_id: case_id(case),
        file_name: name.clone(),
        declared_size_bytes: size,
        declared_sha256: sha256,
        timestamp_field,
        resume_upload_id: resume.map(|id: UploadId| id),
    };
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(name.clone());
        bar.set_position(offset);
        bar
    });
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::UploadChunk>(4);
    sender
        .send(pb::UploadChunk {
            payload: Some(pb::upload_chunk::Payload::Header(header)),
        })
        .await
        .ok();
    let progress = bar.clone();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut position = offset;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let read = file.read(&mut buf)?;
            if read == 0 {
                return Ok(());
            }
            let chunk = pb::UploadChunk {
                payload: Some(pb::upload_chunk::Payload::Data(pb::UploadData {
                    offset: position,
                    data: buf[..read].to_vec(),
                })),
            };
            if sender.blocking_send(chunk).is_err() {
                return Ok(()); // the server answered early (e.g. already present)
            }
            position += read as u64;
            if let Some(bar) = &progress {
                bar.set_position(position);
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let started = Instant::now();
    let result = client.upload(stream).await;
    reader.await??;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = result.map_err(rpc_error)?.into_inner();
    tracing::debug!(elapsed = ?started.elapsed(), "upload finished");
    Ok(result)
}

pub async fn files(server: &ServerArgs, case: String, json: bool) -> anyhow::Result<()> {
    let mut client = CasesServiceClient::new(channel(server).await?);
    let mut cursor = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .list_files(cases_pb::ListFilesRequest {
                case_id: case_id(&case),
                page: Some(PageRequest {
                    page_size: 1000,
                    cursor,
                }),
                status: 0,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        all.extend(page.files);
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            break;
        }
    }
    let stage_text = |stage: i32| {
        casescope_proto::common::v1::Stage::try_from(stage)
            .map(|s| match s {
                casescope_proto::common::v1::Stage::Ingest => "ingest",
                casescope_proto::common::v1::Stage::Detect => "detect",
                casescope_proto::common::v1::Stage::IocHunt => "ioc_hunt",
                casescope_proto::common::v1::Stage::Unspecified => "",
            })
            .unwrap_or("")
    };
    let status_text = |status: i32| {
        casescope_proto::common::v1::FileStatus::try_from(status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("FILE_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into())
    };
    if json {
        let files: Vec<_> = all
            .iter()
            .map(|f| {
                serde_json::json!({
                    "file_id": f.id.as_ref().map(|i| i.value.clone()),
                    "name": f.name,
                    "sha256": f.sha256,
                    "size_bytes": f.size_bytes,
                    "format": f.format,
                    "status": status_text(f.status),
                    "failed_stage": stage_text(f.failed_stage),
                    "error": f.error,
                    "records_read": f.records_read,
                    "events_indexed": f.events_indexed,
                    "records_rejected": f.records_rejected,
                    "duplicates_skipped": f.duplicates_skipped,
                    "rejects_by_reason": f.rejects_by_reason.iter().map(|r| (r.reason.clone(), r.count)).collect::<std::collections::BTreeMap<_, _>>(),
                    "parent_archive_id": f.parent_archive_id.as_ref().map(|i| i.value.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&files)?);
        return Ok(());
    }
    println!(
        "{:<36}  {:<8}  {:>9}  {:>9}  {:>8}  NAME",
        "FILE ID", "STATUS", "READ", "INDEXED", "REJECTED"
    );
    for f in &all {
        println!(
            "{:<36}  {:<8}  {:>9}  {:>9}  {:>8}  {}{}",
            f.id.as_ref().map(|i| i.value.as_str()).unwrap_or_default(),
            status_text(f.status),
            f.records_read,
            f.events_indexed,
            f.records_rejected,
            f.name,
            match (stage_text(f.failed_stage), f.error.is_empty()) {
                (_, true) => String::new(),
                ("", false) => format!("  ({})", f.error),
                (stage, false) => format!("  ({stage}: {})", f.error),
            }
        );
    }
    let read: u64 = all.iter().map(|f| f.records_read).sum();
    let indexed: u64 = all.iter().map(|f| f.events_indexed).sum();
    let rejected: u64 = all.iter().map(|f| f.records_rejected).sum();
    println!(
        "{} files, {read} records read, {indexed} events indexed, {rejected} rejected",
        all.len()
    );
    Ok(())
}

fn parse_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    casescope_evidence::parse_timestamp(&serde_json::Value::String(text.to_string()))
        .map_err(|why| anyhow!("{flag}: {why}"))
}

#[allow(clippy::too_many_arguments)]
pub async fn search(
    server: &ServerArgs,
    case: String,
    query: String,
    from: Option<String>,
    to: Option<String>,
    limit: u32,
    descending: bool,
    json: bool,
) -> anyhow::Result<()> {
    if limit > casescope_proto::paging::MAX_PAGE_SIZE {
        return Err(anyhow!(
            "invalid argument: --limit {limit} is above the maximum page size {}",
            casescope_proto::paging::MAX_PAGE_SIZE
        ));
    }
    let time_range = TimeRange {
        start_unix_micros: from
            .as_deref()
            .map(|t| parse_time(t, "--from"))
            .transpose()?,
        end_unix_micros: to.as_deref().map(|t| parse_time(t, "--to")).transpose()?,
    };
    let mut client = IngestServiceClient::new(channel(server).await?);
    let response = client
        .search_events(pb::SearchEventsRequest {
            case_id: case_id(&case),
            query: Some(pb::EventQuery {
                query,
                time_range: Some(time_range),
                ..Default::default()
            }),
            sort: if descending {
                SortOrder::Descending
            } else {
                SortOrder::Ascending
            } as i32,
            page: Some(PageRequest {
                page_size: limit,
                cursor: String::new(),
            }),
            include_raw: false,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let time_text = |event: &pb::Event| {
        event
            .timestamp
            .as_ref()
            .and_then(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            })
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default()
    };
    if json {
        let events: Vec<_> = response
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "event_id": e.event_id.as_ref().map(|i| i.value.clone()),
                    "file_id": e.file_id.as_ref().map(|i| i.value.clone()),
                    "timestamp": time_text(e),
                    "event_code": e.event_code,
                    "channel": e.channel,
                    "computer": e.computer,
                    "record_id": e.record_id,
                    "fields": serde_json::from_str::<serde_json::Value>(&e.fields_json).unwrap_or_default(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"total_hits": response.total_hits, "events": events})
            )?
        );
        return Ok(());
    }
    for event in &response.events {
        // Evidence is attacker-controlled: print control characters escaped.
        let fields: String = event
            .fields_json
            .chars()
            .take(160)
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect();
        println!(
            "{}  {:>5}  {:<32}  {:<16}  {}",
            time_text(event),
            event.event_code.map(|c| c.to_string()).unwrap_or_default(),
            event.channel.chars().take(32).collect::<String>(),
            event.computer.chars().take(16).collect::<String>(),
            fields
        );
    }
    eprintln!(
        "{} of {} matching events",
        response.events.len(),
        response.total_hits
    );
    Ok(())
}

pub fn synth_evtx(events: u64, out: &Path, seed: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let written =
        casescope_synth::write_evtx_file(out, casescope_synth::realistic_events(events, seed))
            .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {written} events to {} in {:.1?}",
        out.display(),
        started.elapsed()
    );
    Ok(())
}
