//! The ingest service in process, as all-in-one mode wires it: SQLite, tantivy, the
//! in-process bus, the cases service over an in-process gRPC channel. Drives the real
//! Upload protocol and the ingest stage with good and hostile evidence.

mod common;

use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::common::v1::{CaseId, FileId, PageRequest};
use casescope_proto::ingest::v1 as pb;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evtx_upload_is_indexed_exactly_and_a_second_upload_adds_nothing() {
    let mut h = harness(|_| {}).await;
    let bytes = synth_evtx(h.root.path(), 3000, 7);
    let result = upload(&mut h, "Security.evtx", &bytes).await.unwrap();
    assert!(!result.already_present);
    assert_eq!(result.sha256, sha256(&bytes));
    let file_id = result.file_id.unwrap().value;
    let record = processed(&mut h, &file_id).await;
    assert_eq!(
        status_of(&record),
        casescope_proto::common::v1::FileStatus::Indexed,
        "{record:?}"
    );
    assert_eq!(record.records_read, 3000);
    assert_eq!(record.events_indexed, 3000);
    assert_counts_add_up(&record);
    assert_eq!(
        h.store.count_file(&h.case_id, &file_id).await.unwrap(),
        3000
    );

    let again = upload(&mut h, "copy-of-Security.evtx", &bytes)
        .await
        .unwrap();
    assert!(again.already_present);
    assert_eq!(again.file_id.unwrap().value, file_id);
    let files = h
        .cases
        .list_files(cases_pb::ListFilesRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            page: Some(PageRequest::default()),
            status: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(files.files.len(), 1);

    // Re-index: the same events replace themselves; the count stays exact.
    h.ingest
        .reindex_file(pb::ReindexFileRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            file_id: Some(FileId {
                value: file_id.clone(),
            }),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = processed(&mut h, &file_id).await;
    assert_eq!(record.events_indexed, 3000);
    assert_eq!(
        h.store.count_file(&h.case_id, &file_id).await.unwrap(),
        3000
    );

    let search = h
        .ingest
        .search_events(pb::SearchEventsRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            query: Some(pb::EventQuery {
                query: "EventID:4624 AND Channel:Security".into(),
                ..Default::default()
            }),
            page: Some(PageRequest {
                page_size: 5,
                cursor: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(search.total_hits > 0);
    assert!(search.events.iter().all(|e| e.event_code == Some(4624)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_protocol_refuses_what_is_wrong_and_resumes_what_was_cut() {
    let mut h = harness(|_| {}).await;
    let bytes = b"{\"timestamp\": \"2024-01-01T00:00:00Z\", \"a\": 1}\n".repeat(20_000);

    let bad_ext = upload(&mut h, "notes.txt", b"hello").await.unwrap_err();
    assert_eq!(bad_ext.code(), tonic::Code::InvalidArgument);
    assert!(bad_ext.message().contains(".evtx"), "{bad_ext:?}");
    let traversal = upload(&mut h, "../../etc/x.jsonl", &bytes)
        .await
        .unwrap_err();
    assert_eq!(traversal.code(), tonic::Code::InvalidArgument);
    let not_evtx = upload(&mut h, "fake.evtx", b"MZ this is not an event log")
        .await
        .unwrap_err();
    assert_eq!(
        not_evtx.code(),
        tonic::Code::InvalidArgument,
        "{not_evtx:?}"
    );

    let mut wrong_hash = header(&h, "a.jsonl", &bytes);
    wrong_hash.declared_sha256 = "0".repeat(64);
    let lied = h
        .ingest
        .upload(futures::stream::iter(chunks(
            wrong_hash,
            &bytes,
            0,
            64 * 1024,
        )))
        .await
        .unwrap_err();
    assert_eq!(lied.code(), tonic::Code::DataLoss, "{lied:?}");

    // A gap in offsets is refused with where to resume.
    let mut gapped = chunks(header(&h, "b.jsonl", &bytes), &bytes, 0, 64 * 1024);
    gapped.remove(2);
    let gap = h
        .ingest
        .upload(futures::stream::iter(gapped))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), tonic::Code::FailedPrecondition);
    assert!(gap.message().contains("resume from 65536"), "{gap:?}");

    // An interrupted upload (the stream ends early) resumes from what the server holds.
    let mut cut = chunks(header(&h, "c.jsonl", &bytes), &bytes, 0, 64 * 1024);
    cut.truncate(5);
    let incomplete = h
        .ingest
        .upload(futures::stream::iter(cut))
        .await
        .unwrap_err();
    assert_eq!(incomplete.code(), tonic::Code::FailedPrecondition);
    let status = h
        .ingest
        .get_upload_status(pb::GetUploadStatusRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            lookup: Some(pb::get_upload_status_request::Lookup::DeclaredSha256(
                sha256(&bytes),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, pb::UploadState::Receiving as i32);
    assert_eq!(status.next_offset, 4 * 64 * 1024);
    let mut resumed_header = header(&h, "c.jsonl", &bytes);
    resumed_header.resume_upload_id = status.upload_id.clone();
    let resumed = h
        .ingest
        .upload(futures::stream::iter(chunks(
            resumed_header,
            &bytes,
            status.next_offset as usize,
            64 * 1024,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.upload_id, status.upload_id);
    let record = processed(&mut h, &resumed.file_id.unwrap().value).await;
    assert_eq!(record.events_indexed, 20_000);
    assert_counts_add_up(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_evidence_ends_in_clear_errors_and_the_service_stays_up() {
    let mut h = harness(|settings| {
        settings.parse_limits.max_record_bytes = 1024 * 1024;
    })
    .await;
    let good = synth_evtx(h.root.path(), 2000, 11);

    // Truncated EVTX: what can be read is indexed, the rest is reported.
    let truncated = good[..good.len() / 2 + 1000].to_vec();
    let id = upload(&mut h, "truncated.evtx", &truncated)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_counts_add_up(&record);
    assert!(
        record.events_indexed > 0 && record.events_indexed < 2000,
        "{record:?}"
    );

    // Bit flips inside records: every record is indexed or rejected with a reason.
    let mut flipped = good.clone();
    for position in (5000..flipped.len()).step_by(7919) {
        flipped[position] ^= 0x5a;
    }
    let id = upload(&mut h, "flipped.evtx", &flipped)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_counts_add_up(&record);

    // Random bytes behind a valid EVTX signature: a clear file-level failure.
    let mut random = b"ElfFile\0".to_vec();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.push(state as u8);
    }
    let id = upload(&mut h, "random.evtx", &random)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_counts_add_up(&record);
    assert!(
        status_of(&record) == casescope_proto::common::v1::FileStatus::Failed
            || record.records_rejected > 0,
        "{record:?}"
    );
    if status_of(&record) == casescope_proto::common::v1::FileStatus::Failed {
        assert!(!record.error.is_empty());
    }

    // A 20 MB single-line JSON record is rejected on its own; the next line is indexed.
    let mut huge = b"{\"timestamp\": 1700000000, \"blob\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
    huge.extend_from_slice(b"\"}\n{\"timestamp\": 1700000001, \"ok\": true}\n");
    let id = upload(&mut h, "huge.jsonl", &huge)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_eq!(
        (record.events_indexed, record.records_rejected),
        (1, 1),
        "{record:?}"
    );
    assert_eq!(record.rejects_by_reason[0].reason, "record_too_large");

    // CSV whose header is not UTF-8: refused at upload; bad rows later: rejected per row.
    let bad_header = upload(&mut h, "bad.csv", b"time,\xff\xfe\n1,2\n")
        .await
        .unwrap_err();
    assert_eq!(
        bad_header.code(),
        tonic::Code::InvalidArgument,
        "{bad_header:?}"
    );
    // (Past the first 64 KiB, which the upload checks as a whole.)
    let mut csv = b"timestamp,user\n".to_vec();
    for _ in 0..3000 {
        csv.extend_from_slice(b"2024-01-01T00:00:00Z,alice\n");
    }
    csv.extend_from_slice(b"2024-01-01T00:00:01Z,\xff\xfe\n");
    let id = upload(&mut h, "rows.csv", &csv)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_eq!(
        (record.events_indexed, record.records_rejected),
        (3000, 1),
        "{record:?}"
    );
    assert_eq!(record.rejects_by_reason[0].reason, "invalid_utf8");

    // Hostile ZIP: bomb, slip, absolute path and link refused; the good member ingested.
    let zip_path = h.root.path().join("evidence.zip");
    {
        use std::io::Write;
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("logs/good.jsonl", options).unwrap();
        writer
            .write_all(b"{\"timestamp\": 1700000000, \"m\": 1}\n")
            .unwrap();
        writer.start_file("../../escaped.jsonl", options).unwrap();
        writer.write_all(b"{\"timestamp\": 1700000000}\n").unwrap();
        writer.start_file("/tmp/absolute.jsonl", options).unwrap();
        writer.write_all(b"{\"timestamp\": 1700000000}\n").unwrap();
        writer.start_file("bomb.jsonl", options).unwrap();
        writer.write_all(&vec![b' '; 50 * 1024 * 1024]).unwrap();
        writer
            .add_symlink("link.jsonl", "/etc/passwd", options)
            .unwrap();
        writer.finish().unwrap();
    }
    let zip_bytes = std::fs::read(&zip_path).unwrap();
    let result = upload(&mut h, "evidence.zip", &zip_bytes).await.unwrap();
    assert_eq!(result.members.len(), 1, "{result:?}");
    let mut reasons: Vec<_> = result
        .refused_members
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "COMPRESSION_RATIO_EXCEEDED",
            "LINK_MEMBER",
            "PATH_TRAVERSAL",
            "PATH_TRAVERSAL"
        ]
    );
    let member = result.members[0].file_id.clone().unwrap().value;
    let record = processed(&mut h, &member).await;
    assert_eq!(record.events_indexed, 1);
    assert_eq!(
        record.parent_archive_id.unwrap().value,
        result.file_id.unwrap().value
    );
    for escaped in ["escaped.jsonl", "absolute.jsonl"] {
        let found = walk(h.root.path())
            .into_iter()
            .any(|p| p.ends_with(escaped));
        assert!(!found, "{escaped} was written somewhere");
    }
    assert!(!Path::new("/tmp/absolute.jsonl").exists());

    // After all that, ordinary evidence still goes through.
    let id = upload(&mut h, "after.evtx", &good)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record = processed(&mut h, &id).await;
    assert_eq!(record.events_indexed, 2000);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path.clone());
                }
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_case_deduplication_overlapping_files_are_counted_not_duplicated() {
    let mut h = harness(|_| {}).await;
    h.case_id = h
        .cases
        .create_case(cases_pb::CreateCaseRequest {
            name: "dedupe".into(),
            settings: Some(cases_pb::CaseSettings {
                deduplicate_events: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap()
        .value;
    // The same generator and seed: the longer log starts with the shorter one's records.
    let first = synth_evtx(h.root.path(), 1000, 5);
    let dir = h.root.path().join("longer");
    std::fs::create_dir_all(&dir).unwrap();
    let second = synth_evtx(&dir, 1500, 5);
    let a = upload(&mut h, "day1.evtx", &first)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record_a = processed(&mut h, &a).await;
    assert_eq!(
        (record_a.events_indexed, record_a.duplicates_skipped),
        (1000, 0)
    );
    let b = upload(&mut h, "day1-2.evtx", &second)
        .await
        .unwrap()
        .file_id
        .unwrap()
        .value;
    let record_b = processed(&mut h, &b).await;
    assert_eq!(record_b.records_read, 1500);
    assert_eq!(
        (record_b.events_indexed, record_b.duplicates_skipped),
        (500, 1000),
        "{record_b:?}"
    );
    assert_counts_add_up(&record_b);
    assert_eq!(h.store.count_file(&h.case_id, &b).await.unwrap(), 500);
    // Re-indexing the first file keeps it whole: its records were claimed by it.
    h.ingest
        .reindex_file(pb::ReindexFileRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            file_id: Some(FileId { value: a.clone() }),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record_a = processed(&mut h, &a).await;
    assert_eq!(
        (record_a.events_indexed, record_a.duplicates_skipped),
        (1000, 0),
        "{record_a:?}"
    );
}

/// One `UploadPart` of the browser's upload path.
async fn part(
    h: &mut Harness,
    upload_id: &Option<casescope_proto::common::v1::UploadId>,
    bytes: &[u8],
    offset: usize,
    length: usize,
) -> Result<pb::UploadPartResponse, tonic::Status> {
    let end = (offset + length).min(bytes.len());
    h.ingest
        .upload_part(pb::UploadPartRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            upload_id: upload_id.clone(),
            offset: offset as u64,
            data: bytes[offset..end].to_vec(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unary_upload_of_browsers_checks_each_part_and_ends_like_the_stream() {
    let mut h = harness(|_| {}).await;
    let bytes = b"{\"timestamp\": \"2024-01-01T00:00:00Z\", \"b\": 2}\n".repeat(10_000);
    let chunk = 100 * 1024;

    let begun = h
        .ingest
        .begin_upload(header(&h, "parts.jsonl", &bytes))
        .await
        .unwrap()
        .into_inner();
    assert!(begun.already_present.is_none());
    let status = begun.status.unwrap();
    assert_eq!(status.next_offset, 0);
    let id = status.upload_id.clone();

    // Parts go in order: one at the wrong offset is refused with where to resume, one
    // above the chunk limit too, and nothing of either is kept.
    let first = part(&mut h, &id, &bytes, 0, chunk).await.unwrap();
    assert_eq!(
        (first.next_offset, first.result.is_none()),
        (chunk as u64, true)
    );
    let skipped = part(&mut h, &id, &bytes, 2 * chunk, chunk)
        .await
        .unwrap_err();
    assert_eq!(skipped.code(), tonic::Code::FailedPrecondition);
    assert!(
        skipped.message().contains(&format!("resume from {chunk}")),
        "{skipped:?}"
    );
    let too_big = part(&mut h, &id, &bytes, chunk, 300 * 1024)
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), tonic::Code::InvalidArgument, "{too_big:?}");
    let unknown = part(
        &mut h,
        &Some(casescope_proto::common::v1::UploadId {
            value: "0194f6a8-3c1e-7d2a-9b4e-000000000009".into(),
        }),
        &bytes,
        0,
        10,
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // A lost answer: the status says where the parts stand; the rest completes it.
    let status = h
        .ingest
        .get_upload_status(pb::GetUploadStatusRequest {
            case_id: Some(CaseId {
                value: h.case_id.clone(),
            }),
            lookup: Some(pb::get_upload_status_request::Lookup::UploadId(
                id.clone().unwrap(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.next_offset, chunk as u64);
    let mut offset = chunk;
    let result = loop {
        let answer = part(&mut h, &id, &bytes, offset, chunk).await.unwrap();
        offset = answer.next_offset as usize;
        if let Some(result) = answer.result {
            break result;
        }
        assert!(offset < bytes.len());
    };
    assert_eq!(offset, bytes.len());
    assert_eq!(result.sha256, sha256(&bytes));
    assert_eq!(result.upload_id, id);
    let record = processed(&mut h, &result.file_id.unwrap().value).await;
    assert_eq!(record.events_indexed, 10_000);
    assert_counts_add_up(&record);
    // The finished upload takes no more parts; the same content again is already present.
    let late = part(&mut h, &id, &bytes, 0, 10).await.unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    let again = h
        .ingest
        .begin_upload(header(&h, "parts-again.jsonl", &bytes))
        .await
        .unwrap()
        .into_inner();
    assert!(again.status.is_none());
    assert!(again.already_present.unwrap().already_present);

    // Content that is not what was declared fails the upload whole (DATA_LOSS).
    let other = b"{\"timestamp\": \"2024-01-01T00:00:00Z\", \"c\": 3}\n".repeat(100);
    let mut lying = header(&h, "lie.jsonl", &other);
    lying.declared_sha256 = "0".repeat(64);
    let begun = h
        .ingest
        .begin_upload(lying)
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let lied = part(&mut h, &begun.upload_id, &other, 0, other.len())
        .await
        .unwrap_err();
    assert_eq!(lied.code(), tonic::Code::DataLoss, "{lied:?}");
}
