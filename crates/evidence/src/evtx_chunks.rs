//! Reading an EVTX file's chunks on several threads without the evtx crate's record
//! tree, for records whose template values give their fields (`evtx_values`).
//!
//! The evtx crate builds each record's tree before handing it over, which reading from
//! template values never looks at (~15,000 instructions a record, a tenth of
//! `casescope analyze`). Here the chunks come from the evtx crate (in record order,
//! with its errors for chunks it cannot read), and each chunk's records are walked as
//! the evtx crate walks them: from the chunk header to the free space or the chunk's
//! last record. A chunk where any record header does not check out is read wholly by
//! the evtx crate, which resynchronises past damage. In a chunk whose records all
//! walk, a record whose template is not programmed is read through the evtx crate's
//! records for that chunk, which yield one item per walked record, so the `n`th walked
//! record is its `n`th item.

use crate::RawJson;
use crate::evtx_source::{Decoded, RecordView, decode};
use crate::evtx_values::Programs;
use evtx::err::{EvtxError, Result};
use evtx::{EvtxChunkData, EvtxChunkHeader, ParserSettings};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, mpsc};

const CHUNK_HEADER: usize = 512;
const RECORD_HEADER: usize = 24;
const RECORD_MAGIC: &[u8; 4] = b"\x2a\x2a\x00\x00";

/// A chunk's record as its header gives it: id, header time, and its BinXML's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Walked {
    id: u64,
    micros: i64,
    start: usize,
    end: usize,
}

/// The record header's FILETIME as UTC microseconds, as the evtx crate converts it;
/// `None` where it refuses it (outside what `jiff` represents).
fn header_micros(filetime: u64) -> Option<i64> {
    const TICKS_PER_SEC: u64 = 10_000_000;
    const WINDOWS_TO_UNIX_SECS: i64 = 11_644_473_600;
    let secs = (filetime / TICKS_PER_SEC) as i64 - WINDOWS_TO_UNIX_SECS;
    let nanos = ((filetime % TICKS_PER_SEC) * 100) as i32;
    jiff::Timestamp::new(secs, nanos)
        .ok()
        .map(|t| t.as_microsecond())
}

/// The chunk's live records, when every record header on the way checks out; `None`
/// otherwise.
fn walk(data: &[u8], header: &EvtxChunkHeader) -> Option<Vec<Walked>> {
    let live_end = (header.free_space_offset as usize).min(data.len());
    let mut records = Vec::with_capacity(256);
    let mut offset = CHUNK_HEADER;
    while offset < live_end {
        let head = data.get(offset..offset.checked_add(RECORD_HEADER)?)?;
        let (magic, rest) = head.split_first_chunk::<4>()?;
        let (size, rest) = rest.split_first_chunk::<4>()?;
        let (id, rest) = rest.split_first_chunk::<8>()?;
        let (filetime, _) = rest.split_first_chunk::<8>()?;
        if magic != RECORD_MAGIC {
            return None;
        }
        let size = u32::from_le_bytes(*size) as usize;
        let id = u64::from_le_bytes(*id);
        let micros = header_micros(u64::from_le_bytes(*filetime))?;
        // The header, the BinXML and a copy of the size.
        let binxml = size.checked_sub(RECORD_HEADER + 4)?;
        let start = offset + RECORD_HEADER;
        let end = start.checked_add(binxml)?;
        if end > data.len() {
            return None;
        }
        records.push(Walked {
            id,
            micros,
            start,
            end,
        });
        if id == header.last_event_record_id {
            break;
        }
        offset = offset.checked_add(size)?;
    }
    Some(records)
}

/// Every record of one chunk through `inspect`, in order, or the chunk's error.
pub(crate) fn inspect_chunk<T>(
    data: EvtxChunkData,
    settings: &Arc<ParserSettings>,
    inspect: &impl Fn(RecordView<'_>) -> T,
) -> Vec<Result<T>> {
    let programs = Programs::giving_pairs();
    decode_chunk(data, settings, &programs, false, &|decoded| {
        inspect(decoded.view())
    })
}

/// Every record of one chunk decoded (with its stored form when `keep_raw`) and
/// handed to `make`, in order, or the chunk's error. `programs` is a fresh cache
/// (cloned for the chunk): [`Programs::rendering_raw`] when `keep_raw`.
pub(crate) fn decode_chunk<T>(
    mut data: EvtxChunkData,
    settings: &Arc<ParserSettings>,
    programs: &Programs,
    keep_raw: bool,
    make: &impl Fn(Decoded) -> T,
) -> Vec<Result<T>> {
    let walked = walk(&data.data, &data.header);
    let number = data.number.unwrap_or_default();
    let mut chunk = match data.parse(Arc::clone(settings)) {
        Ok(chunk) => chunk,
        Err(error) => {
            return vec![Err(EvtxError::FailedToParseChunk {
                chunk_id: number,
                source: Box::new(error),
            })];
        }
    };
    let mut programs = Some(programs.clone());
    let Some(walked) = walked else {
        return chunk
            .iter()
            .map(|record| Ok(make(decode(record?, keep_raw, &mut programs)?)))
            .collect();
    };
    let bytes = chunk.data;
    let mut out = Vec::with_capacity(walked.len());
    // The evtx crate's records of this chunk, made when a record needs them, and how
    // many it has yielded.
    let mut records = None;
    let mut unread = Some(&mut chunk);
    let mut yielded = 0;
    for (index, record) in walked.iter().enumerate() {
        let fast = programs
            .as_mut()
            .and_then(|programs| programs.decode_at(bytes, record.start, record.end));
        if let Some(mut parts) = fast {
            let raw = match parts.raw.take() {
                None => Default::default(),
                Some(text) => match RawJson::from_text(text) {
                    Ok(raw) => raw,
                    // Not reached (the text is rendered as JSON); if it were, the
                    // record still gives one item.
                    Err(error) => {
                        out.push(Err(EvtxError::from(evtx::err::SerializationError::from(
                            error,
                        ))));
                        continue;
                    }
                },
            };
            let decoded = Decoded::new(record.id, record.micros, parts, raw, true);
            out.push(Ok(make(decoded)));
            continue;
        }
        if records.is_none() {
            records = unread.take().map(|chunk| chunk.iter());
        }
        let Some(item) = records.as_mut().and_then(|r| r.nth(index - yielded)) else {
            // Not reached (the evtx crate walks the same records); if it were, each
            // record still gives one item, so the counts add up.
            out.push(Err(EvtxError::FailedToParseRecord {
                record_id: record.id,
                source: Box::new(EvtxError::FailedToCreateRecordModel(
                    "record not found again in its chunk",
                )),
            }));
            continue;
        };
        yielded = index + 1;
        let decoded = item.and_then(|item| decode(item, keep_raw, &mut None));
        out.push(decoded.map(make));
    }
    out
}

/// Hands `sink`, in chunk order, what `work` made of each chunk (`chunks`' errors as
/// they are), with up to `workers` chunks worked on at a time on their own threads
/// (here when one) and at most two per worker waiting. Returns whether `sink` stopped.
pub(crate) fn pipeline<T: Send>(
    chunks: impl Iterator<Item = Result<EvtxChunkData>>,
    workers: usize,
    work: impl Fn(EvtxChunkData) -> Vec<Result<T>> + Sync,
    sink: &mut dyn FnMut(Result<T>) -> ControlFlow<()>,
) -> bool {
    let mut chunks = chunks;
    if workers <= 1 {
        for chunk in chunks {
            let batch = chunk.map(&work).unwrap_or_else(|error| vec![Err(error)]);
            for item in batch {
                if sink(item).is_break() {
                    return true;
                }
            }
        }
        return false;
    }
    let (jobs, job_queue) = mpsc::channel::<(u64, EvtxChunkData)>();
    let job_queue = Mutex::new(job_queue);
    let (done, finished) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done = done.clone();
            let (job_queue, work) = (&job_queue, &work);
            scope.spawn(move || {
                loop {
                    let job = match job_queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => break,
                    };
                    let Ok((sequence, data)) = job else { break };
                    // A panic goes to the consumer, which re-raises it.
                    let batch =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(data)));
                    if done.send((sequence, batch)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        let mut waiting = BTreeMap::new();
        let (mut sent, mut next, mut exhausted) = (0u64, 0u64, false);
        let stopped = 'run: loop {
            while !exhausted && sent - next < 2 * workers as u64 {
                match chunks.next() {
                    None => exhausted = true,
                    Some(Ok(data)) => {
                        if jobs.send((sent, data)).is_err() {
                            exhausted = true;
                            break;
                        }
                        sent += 1;
                    }
                    Some(Err(error)) => {
                        waiting.insert(sent, Ok(vec![Err(error)]));
                        sent += 1;
                    }
                }
            }
            if let Some(batch) = waiting.remove(&next) {
                next += 1;
                let batch = batch.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for item in batch {
                    if sink(item).is_break() {
                        break 'run true;
                    }
                }
                continue;
            }
            if exhausted && next == sent {
                break false;
            }
            match finished.recv() {
                Ok((sequence, batch)) => {
                    waiting.insert(sequence, batch);
                }
                // Every worker gone with chunks outstanding: not reached.
                Err(_) => break false,
            }
        };
        drop(jobs);
        stopped
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(events: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.evtx");
        casescope_synth::write_evtx_file(&path, casescope_synth::realistic_events(events, 7))
            .unwrap();
        (dir, path)
    }

    fn chunks(path: &std::path::Path) -> Vec<EvtxChunkData> {
        let mut parser = evtx::EvtxParser::from_path(path).unwrap();
        parser.chunks().map(Result::unwrap).collect()
    }

    #[test]
    fn the_walk_finds_the_records_the_evtx_crate_finds() {
        let (_dir, path) = synthetic(2_000);
        let all = chunks(&path);
        assert!(all.len() > 3, "{} chunks", all.len());
        let settings = Arc::new(ParserSettings::new());
        for mut data in all {
            let walked = walk(&data.data, &data.header).expect("a clean chunk walks");
            let mut chunk = data.parse(Arc::clone(&settings)).unwrap();
            let theirs: Vec<Walked> = chunk
                .iter()
                .map(|record| {
                    let record = record.unwrap();
                    let start = record.binxml_offset as usize;
                    Walked {
                        id: record.event_record_id,
                        micros: record.timestamp.as_microsecond(),
                        start,
                        end: start + record.binxml_size as usize,
                    }
                })
                .collect();
            assert_eq!(walked, theirs);
        }
    }

    #[test]
    fn ingest_reads_template_records_from_their_values() {
        let (_dir, path) = synthetic(2_000);
        let settings = Arc::new(ParserSettings::new());
        let programs = Programs::rendering_raw();
        let mut from_template = 0;
        for data in chunks(&path) {
            for decoded in decode_chunk(data, &settings, &programs, true, &|d| d) {
                from_template += usize::from(decoded.unwrap().view().from_template);
            }
        }
        // Every synthetic record is a template instance: none went through the evtx
        // crate's record tree (`tests/evtx_raw.rs` compares the stored forms).
        assert_eq!(from_template, 2_000);
    }

    #[test]
    fn a_damaged_record_header_leaves_the_chunk_to_the_evtx_crate() {
        let (_dir, path) = synthetic(300);
        let data = chunks(&path).remove(0);
        let second = {
            let walked = walk(&data.data, &data.header).unwrap();
            walked[1].start - RECORD_HEADER
        };
        // Magic, size (too small, past the chunk) and time (beyond year 9999).
        let damages: [(usize, &[u8]); 4] = [
            (second, b"\x2a\x2a\x00\x01"),
            (second + 4, &[3, 0, 0, 0]),
            (second + 4, &[0, 0, 2, 0]),
            (second + 16, &[0xff; 8]),
        ];
        for (at, bytes) in damages {
            let mut damaged = data.data.clone();
            damaged[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(walk(&damaged, &data.header), None, "{at}: {bytes:?}");
        }
    }

    #[test]
    fn the_pipeline_keeps_chunk_order_and_stops_when_told() {
        let (_dir, path) = synthetic(3_000);
        let ids = |workers: usize, stop_after: Option<usize>| {
            let mut parser = evtx::EvtxParser::from_path(&path).unwrap();
            let mut seen = Vec::new();
            let work = |data: EvtxChunkData| {
                let first = data.header.first_event_record_id;
                // Uneven work, so chunks finish out of order.
                if first.is_multiple_of(3) {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                let last = data.header.last_event_record_id;
                (first..=last).map(Ok).collect()
            };
            let stopped = pipeline(parser.chunks(), workers, work, &mut |item| {
                seen.push(item.unwrap());
                match stop_after {
                    Some(n) if seen.len() >= n => ControlFlow::Break(()),
                    _ => ControlFlow::Continue(()),
                }
            });
            (seen, stopped)
        };
        let (one, stopped) = ids(1, None);
        assert!(!stopped);
        assert_eq!(one, (1..=3_000).collect::<Vec<u64>>());
        assert_eq!(ids(2, None), (one.clone(), false));
        assert_eq!(ids(3, None), (one.clone(), false));
        let (some, stopped) = ids(2, Some(1_000));
        assert!(stopped);
        assert_eq!(some, one[..1_000]);
    }

    #[test]
    fn a_chunk_error_keeps_its_place() {
        let chunks = vec![Err(EvtxError::FailedToParseChunk {
            chunk_id: 0,
            source: Box::new(evtx::err::ChunkError::IncompleteChunk),
        })];
        let mut seen = Vec::new();
        let work = |_: EvtxChunkData| -> Vec<Result<u64>> { Vec::new() };
        pipeline(chunks.into_iter(), 2, work, &mut |item| {
            seen.push(item.map_err(|e| e.to_string()));
            ControlFlow::Continue(())
        });
        assert_eq!(
            seen,
            vec![Err("Failed to parse chunk number 0".to_string())]
        );
    }
}
