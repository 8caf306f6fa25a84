//! Streaming EVTX writer: file header, then one 64 KiB chunk after another.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::binxml::Unfit;
use crate::chunk::{CHUNK_SIZE, Chunk, MAX_RECORD_SIZE};
use crate::{Error, Result, SynthEvent};

/// The file header block: 128 bytes of fields, padded to 4 KiB.
const FILE_HEADER_BLOCK_SIZE: u16 = 4096;
const FILE_MAGIC: &[u8; 8] = b"ElfFile\0";
const FILE_HEADER_FIELDS_SIZE: u32 = 128;
/// EVTX 3.1, what Windows Vista and later write.
const MAJOR_VERSION: u16 = 3;
const MINOR_VERSION: u16 = 1;

/// Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
const FILETIME_EPOCH_OFFSET_SECS: i64 = 11_644_473_600;
/// 9999-12-30T00:00:00Z: readers (the `evtx` crate with jiff) stop a little after it.
const MAX_UNIX_SECS: i64 = 253_402_128_000;

/// Writes [`SynthEvent`]s as an EVTX file to `W`, one chunk at a time.
///
/// Memory stays at one chunk (64 KiB) whatever the number of events. The file is complete
/// only once [`finish`](EvtxWriter::finish) has written its header; after an I/O error it is
/// not usable. Other errors ([`Error::EventTooLarge`], [`Error::NulInText`],
/// [`Error::TimestampOutOfRange`]) reject that event only, and the writer goes on (an event
/// too large for any chunk is only found so after trying a new one: the chunk before it ends
/// early).
///
/// Chunks are filled up to their 64 KiB. The header's chunk count is a `u16`: a file of more
/// than 65535 chunks (about 4 GiB) stores 65535 there, and readers count the chunks from the
/// file size, as they do for Windows logs that large.
pub struct EvtxWriter<W: Write + Seek> {
    out: W,
    /// Where the file starts in `out`.
    base: u64,
    chunk: Chunk,
    chunks_written: u64,
    next_record_id: u64,
}

impl<W: Write + Seek> EvtxWriter<W> {
    /// Start a file at `out`'s current position. Its header is written at
    /// [`finish`](EvtxWriter::finish); room is left for it now.
    pub fn new(mut out: W) -> Result<Self> {
        let base = out.stream_position()?;
        out.write_all(&[0; FILE_HEADER_BLOCK_SIZE as usize])?;
        Ok(EvtxWriter {
            out,
            base,
            chunk: Chunk::new(),
            chunks_written: 0,
            next_record_id: 1,
        })
    }

    /// Append an event and return the record ID it was given (1 for the first, then +1).
    /// `event.record_id` is ignored.
    pub fn push(&mut self, event: &SynthEvent) -> Result<u64> {
        let filetime = filetime(event.timestamp)?;
        let id = self.next_record_id;
        let next = id.checked_add(1).ok_or(Error::RecordIdOverflow)?;
        let too_large = || Error::EventTooLarge {
            event_id: event.event_id,
            provider: event.provider.clone(),
            limit: MAX_RECORD_SIZE,
        };
        match self.chunk.append(id, filetime, event) {
            Ok(()) => {}
            Err(Unfit::Nul) => return Err(nul_error(event)),
            Err(Unfit::Full) if self.chunk.is_empty() => return Err(too_large()),
            Err(Unfit::Full) => {
                self.write_chunk()?;
                self.chunk
                    .append(id, filetime, event)
                    .map_err(|unfit| match unfit {
                        Unfit::Full => too_large(),
                        Unfit::Nul => nul_error(event),
                    })?;
            }
        }
        self.next_record_id = next;
        Ok(id)
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.next_record_id - 1
    }

    /// Write the last chunk and the file header, and return the output, positioned at the
    /// end of the file.
    pub fn finish(mut self) -> Result<W> {
        if !self.chunk.is_empty() {
            self.write_chunk()?;
        }
        let header = self.file_header();
        self.out.seek(SeekFrom::Start(self.base))?;
        self.out.write_all(&header)?;
        let chunks = self.chunks_written.saturating_mul(CHUNK_SIZE as u64);
        let end = u64::from(FILE_HEADER_BLOCK_SIZE).saturating_add(chunks);
        self.out
            .seek(SeekFrom::Start(self.base.saturating_add(end)))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_chunk(&mut self) -> Result<()> {
        self.out.write_all(self.chunk.seal())?;
        self.chunk.reset();
        self.chunks_written += 1;
        Ok(())
    }

    fn file_header(&self) -> [u8; 128] {
        let mut header = [0u8; 128];
        header[0..8].copy_from_slice(FILE_MAGIC);
        // First chunk 0 (the oldest), last chunk the newest: a log that never wrapped.
        let last_chunk = self.chunks_written.saturating_sub(1);
        header[16..24].copy_from_slice(&last_chunk.to_le_bytes());
        header[24..32].copy_from_slice(&self.next_record_id.to_le_bytes());
        header[32..36].copy_from_slice(&FILE_HEADER_FIELDS_SIZE.to_le_bytes());
        header[36..38].copy_from_slice(&MINOR_VERSION.to_le_bytes());
        header[38..40].copy_from_slice(&MAJOR_VERSION.to_le_bytes());
        header[40..42].copy_from_slice(&FILE_HEADER_BLOCK_SIZE.to_le_bytes());
        let chunk_count = u16::try_from(self.chunks_written).unwrap_or(u16::MAX);
        header[42..44].copy_from_slice(&chunk_count.to_le_bytes());
        // 44..120 unused, 120..124 flags: none (closed cleanly, not full, CRC32 present).
        let crc = crc32fast::hash(&header[..120]);
        header[124..128].copy_from_slice(&crc.to_le_bytes());
        header
    }
}

/// Write `events` to a new EVTX file at `path` (replacing any file there) and return how
/// many records it holds.
pub fn write_evtx_file(
    path: impl AsRef<Path>,
    events: impl IntoIterator<Item = SynthEvent>,
) -> Result<u64> {
    // Chunks go out in single 64 KiB writes: no buffering needed.
    let mut writer = EvtxWriter::new(File::create(path)?)?;
    for event in events {
        writer.push(&event)?;
    }
    let records = writer.records();
    writer.finish()?.sync_all()?;
    Ok(records)
}

/// The FILETIME (100 ns ticks since 1601) of `time`, within what readers accept.
pub(crate) fn filetime(time: DateTime<Utc>) -> Result<u64> {
    let secs = time.timestamp();
    if !(-FILETIME_EPOCH_OFFSET_SECS..MAX_UNIX_SECS).contains(&secs) {
        return Err(Error::TimestampOutOfRange(time));
    }
    // In range, both terms are non-negative and far from overflowing.
    let ticks_secs = (secs + FILETIME_EPOCH_OFFSET_SECS) as u64 * 10_000_000;
    // A leap second shows as nanoseconds past 999,999,999; keep it within its second.
    let sub_ticks = u64::from(time.timestamp_subsec_nanos().min(999_999_999)) / 100;
    Ok(ticks_secs + sub_ticks)
}

/// The error for an event with a NUL in its text (readers would cut the text short there),
/// naming the field. Encoding finds it; this looks for where, on that rare path only.
fn nul_error(event: &SynthEvent) -> Error {
    let nul = |text: &str| text.contains('\0');
    let field = if nul(&event.provider) {
        "Provider Name".to_owned()
    } else if event.provider_guid.as_deref().is_some_and(nul) {
        "Provider Guid".to_owned()
    } else if nul(&event.channel) {
        "Channel".to_owned()
    } else if nul(&event.computer) {
        "Computer".to_owned()
    } else if event.security_user_id.as_deref().is_some_and(nul) {
        "Security UserID".to_owned()
    } else {
        match event.data.iter().find(|(n, v)| nul(n) || nul(v)) {
            Some((name, value)) if nul(value) => format!("EventData value {name:?}"),
            Some((name, _)) => format!("EventData name {name:?}"),
            None => "Some text".to_owned(),
        }
    };
    Error::NulInText { field }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn filetime_counts_100ns_ticks_since_1601() {
        let epoch = Utc.with_ymd_and_hms(1601, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(filetime(epoch).unwrap(), 0);
        let unix = Utc.timestamp_opt(0, 123_456_789).unwrap();
        assert_eq!(filetime(unix).unwrap(), 116_444_736_000_000_000 + 1_234_567);
        let before = epoch - chrono::Duration::nanoseconds(100);
        assert!(matches!(
            filetime(before),
            Err(Error::TimestampOutOfRange(_))
        ));
        let last = Utc.with_ymd_and_hms(9999, 12, 29, 23, 59, 59).unwrap();
        assert!(filetime(last).is_ok());
        let past = Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0).unwrap();
        assert!(filetime(past).is_err());
    }
}
