//! One 64 KiB EVTX chunk being filled with records, and its header.

use crate::SynthEvent;
use crate::binxml::{self, NameTable, Out, STRING_BUCKETS, Unfit};

/// Every chunk is this size, whatever it holds.
pub(crate) const CHUNK_SIZE: usize = 0x1_0000;
/// The chunk header: fixed fields, then the string and template tables.
pub(crate) const CHUNK_HEADER_SIZE: usize = 512;
/// The most a single record can take: a chunk less its header.
pub(crate) const MAX_RECORD_SIZE: usize = CHUNK_SIZE - CHUNK_HEADER_SIZE;

const CHUNK_MAGIC: &[u8; 8] = b"ElfChnk\0";
/// The size of the header's fixed fields, which the header stores.
const CHUNK_HEADER_FIELDS_SIZE: u32 = 128;

/// A chunk being filled. Its buffer is allocated once and reused for every chunk of a file.
pub(crate) struct Chunk {
    /// Always `CHUNK_SIZE` bytes. Past `free` it holds whatever was there (an earlier chunk,
    /// a record that did not fit) until `seal` zeroes it: zeroing once per chunk is cheaper.
    buf: Vec<u8>,
    /// Where the next record goes (the header's free space offset).
    free: usize,
    names: NameTable,
    first_id: u64,
    last_id: u64,
    last_offset: usize,
    records: u64,
}

impl Chunk {
    pub(crate) fn new() -> Self {
        Chunk {
            buf: vec![0; CHUNK_SIZE],
            free: CHUNK_HEADER_SIZE,
            names: NameTable::default(),
            first_id: 0,
            last_id: 0,
            last_offset: 0,
            records: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Append a record. On error the chunk is as it was: [`Unfit::Full`] says to start
    /// another one.
    pub(crate) fn append(
        &mut self,
        record_id: u64,
        filetime: u64,
        event: &SynthEvent,
    ) -> Result<(), Unfit> {
        let names = self.names;
        let mut out = Out::new(&mut self.buf, self.free);
        let written = binxml::encode_record(&mut out, &mut self.names, record_id, filetime, event);
        let end = out.pos;
        if let Err(unfit) = written {
            // Undo the names it defined; its bytes are past `free`, as good as gone.
            self.names = names;
            return Err(unfit);
        }
        if self.records == 0 {
            self.first_id = record_id;
        }
        self.last_id = record_id;
        self.last_offset = self.free;
        self.records += 1;
        self.free = end;
        Ok(())
    }

    /// Fill in the header and return the whole chunk, ready to write.
    pub(crate) fn seal(&mut self) -> &[u8] {
        // Free space is zero, as in chunks Windows writes.
        self.buf[self.free..].fill(0);
        let (header, records) = self.buf.split_at_mut(CHUNK_HEADER_SIZE);
        header.fill(0);
        header[0..8].copy_from_slice(CHUNK_MAGIC);
        // Record numbers and IDs are the same: the file is written once, never wrapped.
        header[8..16].copy_from_slice(&self.first_id.to_le_bytes());
        header[16..24].copy_from_slice(&self.last_id.to_le_bytes());
        header[24..32].copy_from_slice(&self.first_id.to_le_bytes());
        header[32..40].copy_from_slice(&self.last_id.to_le_bytes());
        header[40..44].copy_from_slice(&CHUNK_HEADER_FIELDS_SIZE.to_le_bytes());
        // Offsets within a 64 KiB chunk fit in a u32.
        header[44..48].copy_from_slice(&(self.last_offset as u32).to_le_bytes());
        header[48..52].copy_from_slice(&(self.free as u32).to_le_bytes());
        let records_crc = crc32fast::hash(&records[..self.free - CHUNK_HEADER_SIZE]);
        header[52..56].copy_from_slice(&records_crc.to_le_bytes());
        // 56..120 unused, 120..124 flags: none (not dirty, CRC32s present).
        for (slot, head) in header[128..128 + 4 * STRING_BUCKETS]
            .chunks_exact_mut(4)
            .zip(self.names.buckets)
        {
            slot.copy_from_slice(&head.to_le_bytes());
        }
        // 384..512, the template table, stays empty: records use no templates.
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..120]);
        crc.update(&header[128..]);
        header[124..128].copy_from_slice(&crc.finalize().to_le_bytes());
        &self.buf
    }

    /// Empty the chunk for the next one.
    pub(crate) fn reset(&mut self) {
        self.free = CHUNK_HEADER_SIZE;
        self.names = NameTable::default();
        self.first_id = 0;
        self.last_id = 0;
        self.last_offset = 0;
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realistic_events;
    use std::collections::BTreeSet;

    fn u32_at(data: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
    }

    /// The names in the sealed chunk's string table, walking each bucket's chain the way
    /// readers do, with the bucket and hash each is found under.
    fn string_table(chunk: &[u8]) -> Vec<(usize, u16, String)> {
        let mut names = Vec::new();
        for bucket in 0..STRING_BUCKETS {
            let mut at = u32_at(chunk, 128 + 4 * bucket) as usize;
            while at != 0 {
                let hash = u16::from_le_bytes([chunk[at + 4], chunk[at + 5]]);
                let len = usize::from(u16::from_le_bytes([chunk[at + 6], chunk[at + 7]]));
                let units: Vec<u16> = chunk[at + 8..at + 8 + 2 * len]
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]))
                    .collect();
                assert_eq!(&chunk[at + 8 + 2 * len..at + 10 + 2 * len], &[0, 0]);
                names.push((bucket, hash, String::from_utf16(&units).unwrap()));
                at = u32_at(chunk, at) as usize;
            }
        }
        names
    }

    #[test]
    fn sealed_chunk_has_its_names_in_the_string_table_once() {
        let mut chunk = Chunk::new();
        let events: Vec<_> = realistic_events(20, 5).collect();
        for (id, event) in (1..).zip(&events) {
            chunk.append(id, 0, event).unwrap();
        }
        let data = chunk.seal().to_vec();
        let table = string_table(&data);
        let names: BTreeSet<_> = table.iter().map(|(_, _, name)| name.as_str()).collect();
        assert_eq!(names.len(), table.len(), "each name defined once");
        // Sysmon events use every name (Guid, UserID); Security ones all but UserID.
        assert_eq!(names.len(), 25, "{names:?}");
        for (bucket, hash, name) in &table {
            let expected = name.encode_utf16().fold(0u32, |h, c| {
                h.wrapping_mul(65599).wrapping_add(u32::from(c))
            });
            assert_eq!(*hash, (expected & 0xffff) as u16, "{name}");
            assert_eq!(*bucket, usize::from(*hash) % STRING_BUCKETS, "{name}");
        }
    }

    #[test]
    fn sealed_header_describes_the_records() {
        let mut chunk = Chunk::new();
        let events: Vec<_> = realistic_events(10, 6).collect();
        for (id, event) in (41..).zip(&events) {
            chunk.append(id, 0, event).unwrap();
        }
        let data = chunk.seal().to_vec();
        assert_eq!(&data[..8], b"ElfChnk\0");
        let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        assert_eq!(
            [u64_at(8), u64_at(16), u64_at(24), u64_at(32)],
            [41, 50, 41, 50]
        );
        assert_eq!(u32_at(&data, 40), 128);
        let (last, free) = (u32_at(&data, 44) as usize, u32_at(&data, 48) as usize);
        assert_eq!(
            u64::from_le_bytes(data[last + 8..last + 16].try_into().unwrap()),
            50
        );
        assert_eq!(last + u32_at(&data, last + 4) as usize, free);
        assert_eq!(u32_at(&data, 52), crc32fast::hash(&data[512..free]));
        let mut crc = crc32fast::Hasher::new();
        crc.update(&data[..120]);
        crc.update(&data[128..512]);
        assert_eq!(u32_at(&data, 124), crc.finalize());
        assert!(data[384..512].iter().all(|&b| b == 0), "no templates");
        assert!(data[free..].iter().all(|&b| b == 0));

        // A record that does not fit leaves the chunk as it was.
        let mut big = events[0].clone();
        big.data = vec![("Payload".into(), "x".repeat(40_000))];
        assert_eq!(chunk.append(51, 0, &big), Err(Unfit::Full));
        assert_eq!(chunk.seal(), &data[..]);

        chunk.reset();
        assert!(chunk.is_empty());
        chunk.append(1, 0, &events[0]).unwrap();
        let again = chunk.seal();
        assert_eq!(u64::from_le_bytes(again[8..16].try_into().unwrap()), 1);
        // All names but `UserID` in a Security event, which has no `Security UserID`.
        let names = 24 + usize::from(events[0].security_user_id.is_some());
        assert_eq!(string_table(again).len(), names);
    }
}
