//! One 64 KiB EVTX chunk being filled with records, and its header.

use crate::SynthEvent;
use crate::binxml::{self, NameTable, Out, STRING_BUCKETS, Unfit};
use crate::template::{TEMPLATE_BUCKETS, TemplateTable};

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
    templates: TemplateTable,
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
            templates: TemplateTable::default(),
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
        let templates = self.templates.mark();
        let mut out = Out::new(&mut self.buf, self.free);
        let written = binxml::encode_record(
            &mut out,
            &mut self.names,
            &mut self.templates,
            record_id,
            filetime,
            event,
        );
        let end = out.pos;
        if let Err(unfit) = written {
            // Undo the names and templates it defined: its bytes are past `free`, gone.
            self.names = names;
            self.templates.undo(templates);
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
        for (slot, head) in header[384..384 + 4 * TEMPLATE_BUCKETS]
            .chunks_exact_mut(4)
            .zip(self.templates.buckets)
        {
            slot.copy_from_slice(&head.to_le_bytes());
        }
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
        self.templates.clear();
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

    /// A record's template instance: where the record is, its template ID, the offset of the
    /// definition it uses, and whether it holds that definition.
    #[derive(Debug)]
    struct Instance {
        record: usize,
        id: u32,
        definition: usize,
        inline: bool,
    }

    /// The template instance of every record of a sealed chunk, checking that each record's
    /// BinXML is one: fragment header, `TemplateInstance`, and EOF right after its values.
    fn instances(chunk: &[u8]) -> Vec<Instance> {
        let free = u32_at(chunk, 48) as usize;
        let mut at = CHUNK_HEADER_SIZE;
        let mut found = Vec::new();
        while at < free {
            let size = u32_at(chunk, at + 4) as usize;
            let binxml = at + 24;
            assert_eq!(&chunk[binxml..binxml + 6], &[0x0f, 1, 1, 0, 0x0c, 1]);
            let id = u32_at(chunk, binxml + 6);
            let definition = u32_at(chunk, binxml + 10) as usize;
            let inline = definition == binxml + 14;
            let mut values_at = binxml + 14;
            if inline {
                values_at = definition + 24 + u32_at(chunk, definition + 20) as usize;
            }
            let count = u32_at(chunk, values_at) as usize;
            let descriptors = &chunk[values_at + 4..values_at + 4 + 4 * count];
            let sizes: usize = descriptors
                .chunks_exact(4)
                .map(|d| usize::from(u16::from_le_bytes([d[0], d[1]])))
                .sum();
            let eof = values_at + 4 + 4 * count + sizes;
            assert_eq!(chunk[eof], 0, "EOF after the values");
            assert_eq!(eof + 1 + 4, at + size, "then the size copy");
            found.push(Instance {
                record: at,
                id,
                definition,
                inline,
            });
            at += size;
        }
        found
    }

    /// The definitions in the sealed chunk's template table, walking each bucket's chain, with
    /// the bucket each is found under.
    fn template_table(chunk: &[u8]) -> Vec<(usize, usize)> {
        let mut definitions = Vec::new();
        for bucket in 0..TEMPLATE_BUCKETS {
            let mut at = u32_at(chunk, 384 + 4 * bucket) as usize;
            while at != 0 {
                definitions.push((bucket, at));
                at = u32_at(chunk, at) as usize;
            }
        }
        definitions
    }

    #[test]
    fn records_are_template_instances_of_templates_defined_once() {
        let mut chunk = Chunk::new();
        let events: Vec<_> = realistic_events(25, 3).collect();
        for (id, event) in (1..).zip(&events) {
            chunk.append(id, 0, event).unwrap();
        }
        let data = chunk.seal().to_vec();
        let found = instances(&data);
        assert_eq!(found.len(), events.len());
        let defined: Vec<_> = found.iter().filter(|i| i.inline).collect();
        assert_eq!(defined.len(), chunk.templates.len());
        assert!(
            defined.len() > 2 && defined.len() < events.len(),
            "{defined:?}"
        );
        // Each record uses the definition of the first record of its shape, which holds it.
        let shape = |event: &SynthEvent| {
            let names: Vec<_> = event.data.iter().map(|(name, _)| name.clone()).collect();
            let guid = event.provider_guid.is_some();
            (guid, event.security_user_id.is_some(), names)
        };
        for (i, instance) in found.iter().enumerate() {
            let first = events.iter().position(|e| shape(e) == shape(&events[i]));
            let first = &found[first.unwrap()];
            assert!(first.inline, "{first:?}");
            assert_eq!(instance.definition, first.definition);
            assert_eq!(instance.id, first.id);
            assert_eq!(instance.inline, first.record == instance.record);
        }
        // The header's template table links every definition once, in bucket `id % 32`, and
        // each definition's GUID starts with its template ID.
        let mut table = template_table(&data);
        table.sort_by_key(|&(_, at)| at);
        assert_eq!(table.len(), defined.len());
        for ((bucket, at), instance) in table.iter().zip(&defined) {
            assert_eq!(*at, instance.definition);
            assert_eq!(*bucket, instance.id as usize % TEMPLATE_BUCKETS);
            assert_eq!(u32_at(&data, at + 4), instance.id);
        }

        // One shape only: one definition, whatever the number of records.
        let mut chunk = Chunk::new();
        let one = &events[0];
        for id in 1..=40 {
            chunk.append(id, 0, one).unwrap();
        }
        let data = chunk.seal().to_vec();
        let found = instances(&data);
        assert_eq!(found.len(), 40);
        assert!(found[0].inline);
        assert!(found[1..].iter().all(|i| !i.inline));
        assert!(found.iter().all(|i| i.definition == found[0].definition));
        assert_eq!(template_table(&data).len(), 1);
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
        assert!(data[free..].iter().all(|&b| b == 0));

        // A record that does not fit leaves the chunk as it was: its template, defined
        // before its values ran out of room, is not in the table, nor its names.
        let templates = chunk.templates.len();
        let mut big = events[0].clone();
        big.data = vec![("Payload".into(), "x".repeat(40_000))];
        assert_eq!(chunk.append(51, 0, &big), Err(Unfit::Full));
        assert_eq!(chunk.templates.len(), templates);
        assert_eq!(chunk.seal(), &data[..]);
        // So the next record of that shape defines it again, in the chunk.
        big.data[0].1 = "x".into();
        chunk.append(51, 0, &big).unwrap();
        let with_big = chunk.seal().to_vec();
        let last = instances(&with_big).pop().unwrap();
        assert!(last.inline);
        assert_eq!(last.record, free);
        assert!(
            template_table(&with_big)
                .contains(&(last.id as usize % TEMPLATE_BUCKETS, last.definition))
        );

        chunk.reset();
        assert!(chunk.is_empty());
        chunk.append(1, 0, &events[0]).unwrap();
        let again = chunk.seal();
        assert_eq!(u64::from_le_bytes(again[8..16].try_into().unwrap()), 1);
        // Templates are per chunk: the new one defines its own.
        assert!(instances(again)[0].inline);
        assert_eq!(template_table(again).len(), 1);
        // All names but `UserID` in a Security event, which has no `Security UserID`.
        let names = 24 + usize::from(events[0].security_user_id.is_some());
        assert_eq!(string_table(again).len(), names);
    }
}
