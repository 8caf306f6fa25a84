//! Files written here, read back with the `evtx` crate, hold exactly what was written.

use std::io::Cursor;
use std::time::Instant;

use casescope_synth::{Error, EvtxWriter, SynthEvent, realistic_events, write_evtx_file};
use chrono::{DateTime, TimeZone, Utc};
use evtx::{EvtxParser, ParserSettings};
use serde_json::{Value, json};

/// A record read back: its header's ID and timestamp (Unix nanoseconds), and its JSON.
type Record = (u64, i128, Value);

/// Read every record of `path` as JSON, with CRC32s checked; panics on any error.
fn read_back(path: &std::path::Path) -> (EvtxParser<std::fs::File>, Vec<Record>) {
    let settings = ParserSettings::new()
        .validate_checksums(true)
        .num_threads(1);
    let mut parser = EvtxParser::from_path(path)
        .unwrap()
        .with_configuration(settings);
    let records = parser
        .records_json_value()
        .map(|r| {
            let r = r.expect("record reads back");
            (r.event_record_id, r.timestamp.as_nanosecond(), r.data)
        })
        .collect();
    (parser, records)
}

/// `TimeCreated SystemTime` as readers render a FILETIME: 7 fractional digits.
fn system_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// `record` is `event` with ID `id`: every System field and exactly its EventData.
fn assert_record(id: u64, record: &Value, event: &SynthEvent) {
    let system = &record["Event"]["System"];
    let context = || format!("record {id}: {record:#}");
    assert_eq!(system["EventID"], json!(event.event_id), "{}", context());
    assert_eq!(system["Version"], json!(event.version), "{}", context());
    assert_eq!(system["Level"], json!(event.level), "{}", context());
    assert_eq!(system["Task"], json!(event.task), "{}", context());
    assert_eq!(system["Opcode"], json!(event.opcode), "{}", context());
    assert_eq!(
        system["Keywords"],
        json!(format!("{:#x}", event.keywords)),
        "{}",
        context()
    );
    assert_eq!(system["EventRecordID"], json!(id), "{}", context());
    assert_eq!(system["Channel"], json!(event.channel), "{}", context());
    assert_eq!(system["Computer"], json!(event.computer), "{}", context());
    let provider = &system["Provider"]["#attributes"];
    assert_eq!(provider["Name"], json!(event.provider), "{}", context());
    match &event.provider_guid {
        Some(guid) => assert_eq!(provider["Guid"], json!(guid), "{}", context()),
        None => assert!(provider.get("Guid").is_none(), "{}", context()),
    }
    assert_eq!(
        system["TimeCreated"]["#attributes"]["SystemTime"],
        json!(system_time(event.timestamp)),
        "{}",
        context()
    );
    let execution = &system["Execution"]["#attributes"];
    assert_eq!(
        execution["ProcessID"],
        json!(event.process_id),
        "{}",
        context()
    );
    assert_eq!(
        execution["ThreadID"],
        json!(event.thread_id),
        "{}",
        context()
    );
    match &event.security_user_id {
        Some(sid) => assert_eq!(
            system["Security"]["#attributes"]["UserID"],
            json!(sid),
            "{}",
            context()
        ),
        None => assert_eq!(system["Security"], Value::Null, "{}", context()),
    }

    let data = record["Event"]["EventData"]
        .as_object()
        .unwrap_or_else(|| panic!("no EventData object: {}", context()));
    assert_eq!(data.len(), event.data.len(), "extra fields: {}", context());
    for (name, value) in &event.data {
        assert_eq!(data.get(name), Some(&json!(value)), "{name}: {}", context());
    }
}

#[test]
fn realistic_events_read_back_exactly() {
    const N: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("realistic.evtx");
    let started = Instant::now();
    assert_eq!(write_evtx_file(&path, realistic_events(N, 42)).unwrap(), N);
    let written = started.elapsed();

    let (parser, records) = read_back(&path);
    eprintln!(
        "wrote {N} events in {written:?}, read back in {:?}",
        started.elapsed() - written
    );
    let header = parser.header();
    assert!(header.validate_checksum());
    assert_eq!(header.next_record_id, N + 1);
    let file_chunks = (std::fs::metadata(&path).unwrap().len() - 4096) / 65536;
    assert_eq!(u64::from(header.chunk_count), file_chunks);
    assert!(file_chunks > 1, "a few chunks at least");

    assert_eq!(records.len() as u64, N);
    for ((id, time, record), (expected_id, event)) in
        records.iter().zip((1..).zip(realistic_events(N, 42)))
    {
        assert_eq!(*id, expected_id);
        // The record header's timestamp, as well as TimeCreated.
        let nanos = event.timestamp.timestamp_nanos_opt().unwrap();
        assert_eq!(*time, i128::from(nanos));
        assert_record(*id, record, &event);
    }
}

/// A small event, so that many fit in a chunk.
fn small_event(i: u64) -> SynthEvent {
    SynthEvent {
        record_id: 0,
        timestamp: DateTime::from_timestamp_nanos(1_700_000_000_000_000_000 + i as i64 * 1_000_000),
        provider: "P".into(),
        provider_guid: None,
        event_id: (i % 65_536) as u16,
        version: 0,
        level: 4,
        task: 0,
        opcode: 0,
        keywords: 0,
        channel: "C".into(),
        computer: "H".into(),
        security_user_id: None,
        process_id: 4,
        thread_id: 8,
        data: vec![("N".into(), "v".into())],
    }
}

#[test]
fn many_chunks() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.evtx");
    let started = Instant::now();
    assert_eq!(write_evtx_file(&path, (0..N).map(small_event)).unwrap(), N);
    let written = started.elapsed();

    let settings = ParserSettings::new().validate_checksums(true);
    let mut parser = EvtxParser::from_path(&path)
        .unwrap()
        .with_configuration(settings);
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!((size - 4096) % 65536, 0);
    let chunks = (size - 4096) / 65536;
    assert!(chunks > 100, "{chunks} chunks");
    let header = parser.header();
    assert!(header.validate_checksum());
    assert_eq!(u64::from(header.chunk_count), chunks);
    assert_eq!(header.last_chunk_number, chunks - 1);
    assert_eq!(header.next_record_id, N + 1);

    // Every chunk's header and CRC32s; the records of every 50th chunk and the last, parsed.
    let mut next_id = 1;
    let mut seen = 0;
    for (number, chunk) in parser.chunks().enumerate() {
        let mut chunk = chunk.unwrap();
        assert!(chunk.validate_checksum());
        let header = &chunk.header;
        assert_eq!(header.first_event_record_id, next_id);
        assert_eq!(header.first_event_record_number, next_id);
        assert_eq!(header.last_event_record_number, header.last_event_record_id);
        let last_id = header.last_event_record_id;
        if number % 50 == 0 || last_id == N {
            let settings = std::sync::Arc::new(ParserSettings::new());
            let mut parsed = chunk.parse(settings).unwrap();
            let ids: Vec<u64> = parsed.iter().map(|r| r.unwrap().event_record_id).collect();
            assert_eq!(ids, (next_id..=last_id).collect::<Vec<_>>());
        }
        next_id = last_id + 1;
        seen += 1;
    }
    assert_eq!(seen, chunks);
    assert_eq!(next_id, N + 1);

    // Every record of every chunk, walked by hand: magic, size and its copy, ID.
    let bytes = std::fs::read(&path).unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut expected_id = 1u64;
    for chunk in bytes[4096..].chunks_exact(65536) {
        let base = chunk.as_ptr() as usize - bytes.as_ptr() as usize;
        let free = u32_at(base + 48) as usize;
        let mut at = 512;
        let mut last = 0;
        while at < free {
            last = at;
            assert_eq!(&chunk[at..at + 4], &[0x2a, 0x2a, 0, 0]);
            let size = u32_at(base + at + 4) as usize;
            assert_eq!(u32_at(base + at + size - 4) as usize, size);
            let id = u64::from_le_bytes(chunk[at + 8..at + 16].try_into().unwrap());
            assert_eq!(id, expected_id);
            expected_id += 1;
            at += size;
        }
        assert_eq!(at, free);
        assert_eq!(u32_at(base + 44) as usize, last, "last record's offset");
        assert!(chunk[free..].iter().all(|&b| b == 0), "free space is zero");
    }
    assert_eq!(expected_id, N + 1);
    eprintln!(
        "{N} events, {chunks} chunks ({size} bytes): written in {written:?}, checked in {:?}",
        started.elapsed() - written
    );
}

#[test]
fn records_are_template_instances_one_definition_per_shape_and_chunk() {
    const N: u64 = 3_000;
    let events: Vec<_> = realistic_events(N, 11).collect();
    let mut parser = EvtxParser::from_buffer(write_to_vec(events.clone())).unwrap();
    let settings = std::sync::Arc::new(ParserSettings::new());
    let shape = |event: &SynthEvent| {
        let names: Vec<_> = event.data.iter().map(|(name, _)| name.clone()).collect();
        let guid = event.provider_guid.is_some();
        (guid, event.security_user_id.is_some(), names)
    };
    let mut next = 0usize;
    let mut chunks = 0;
    for chunk in parser.chunks() {
        let mut chunk = chunk.unwrap();
        let mut parsed = chunk.parse(settings.clone()).unwrap();
        // Definition offset of each shape in this chunk, and the templates defined inline.
        let mut definitions = std::collections::HashMap::new();
        let mut inline = 0;
        for record in parsed.iter() {
            let record = record.unwrap();
            let event = &events[next];
            next += 1;
            let instances = record.template_instances().unwrap();
            let [instance] = &instances[..] else {
                panic!("record {}: {instances:?}", record.event_record_id)
            };
            let optional = usize::from(event.provider_guid.is_some())
                + usize::from(event.security_user_id.is_some());
            assert_eq!(instance.values.len(), 13 + optional + event.data.len());
            let offset = *definitions
                .entry(shape(event))
                .or_insert(instance.template_def_offset);
            assert_eq!(instance.template_def_offset, offset);
            // The GUID is read from an inline definition only.
            inline += usize::from(instance.template_guid.is_some());
        }
        assert_eq!(inline, definitions.len(), "one definition per shape");
        chunks += 1;
    }
    assert_eq!(next as u64, N);
    assert!(chunks > 1);
}

fn write_to_vec(events: impl IntoIterator<Item = SynthEvent>) -> Vec<u8> {
    let mut writer = EvtxWriter::new(Cursor::new(Vec::new())).unwrap();
    for event in events {
        writer.push(&event).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn same_seed_same_bytes() {
    let a = write_to_vec(realistic_events(3_000, 9));
    let b = write_to_vec(realistic_events(3_000, 9));
    assert_eq!(a, b);
    assert_ne!(a, write_to_vec(realistic_events(3_000, 10)));
}

#[test]
fn event_larger_than_a_chunk_is_an_error_and_the_writer_goes_on() {
    let mut big = small_event(0);
    big.data = vec![("Payload".into(), "A".repeat(40_000))];
    let mut writer = EvtxWriter::new(Cursor::new(Vec::new())).unwrap();
    assert_eq!(writer.push(&small_event(1)).unwrap(), 1);
    let err = writer.push(&big).unwrap_err();
    assert!(
        matches!(err, Error::EventTooLarge { limit: 65_024, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("does not fit in one EVTX chunk"));
    // Many fields, none large, too many for one chunk.
    big.data = (0..2_000)
        .map(|i| (format!("F{i}"), "x".repeat(20)))
        .collect();
    assert!(matches!(
        writer.push(&big),
        Err(Error::EventTooLarge { .. })
    ));
    // Too large even in UTF-16 code-unit count: still the same error.
    big.data = vec![("Payload".into(), "é".repeat(70_000))];
    assert!(matches!(
        writer.push(&big),
        Err(Error::EventTooLarge { .. })
    ));
    assert_eq!(writer.push(&small_event(2)).unwrap(), 2);
    let bytes = writer.finish().unwrap().into_inner();

    let mut parser = EvtxParser::from_buffer(bytes).unwrap();
    let ids: Vec<u64> = parser
        .records_json_value()
        .map(|r| r.unwrap().event_record_id)
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn edge_values_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.evtx");
    let mut odd = small_event(0);
    odd.timestamp = Utc.with_ymd_and_hms(1601, 1, 1, 0, 0, 0).unwrap();
    // Not in the form a GUID or SID renders: written as text, read back as written.
    odd.provider_guid = Some("{54849625-5478-4994-A5BA-3E3B0328C30D}".into());
    odd.security_user_id = Some(r"NT AUTHORITY\SYSTEM".into());
    odd.keywords = u64::MAX;
    odd.event_id = u16::MAX;
    odd.process_id = u32::MAX;
    odd.data = vec![
        ("Empty".into(), String::new()),
        ("Spaces".into(), "  trailing  ".into()),
        (
            "Escapes".into(),
            "<a href=\"x\">&amp;</a>\r\n\t\\ 'q'".into(),
        ),
        ("Astral".into(), "🦀 𝄞 emoji".into()),
        ("Ключ".into(), "значение".into()),
        ("Control".into(), "\u{1}\u{1f}".into()),
    ];
    let mut canonical = small_event(1);
    canonical.timestamp = Utc.timestamp_opt(1_710_144_000, 123_456_700).unwrap();
    canonical.provider_guid = Some("{5770385f-c22a-43e0-bf4c-06f5698ffbd9}".into());
    canonical.security_user_id = Some("S-1-5-21-1-2-3-4294967295".into());
    let mut no_data = small_event(2);
    no_data.timestamp = Utc.with_ymd_and_hms(9999, 12, 29, 23, 59, 59).unwrap();
    no_data.data.clear();
    let mut empty = small_event(3);
    empty.channel.clear();
    empty.computer.clear();
    empty.provider.clear();
    let events = [odd, canonical, no_data, empty];
    write_evtx_file(&path, events.clone()).unwrap();

    let (_, records) = read_back(&path);
    assert_eq!(records.len(), 4);
    for ((id, _, record), event) in records.iter().take(2).zip(&events) {
        assert_record(*id, record, event);
    }
    assert_eq!(records[2].2["Event"]["EventData"], Value::Null);
    // Empty System text reads back as null, an element with only empty attributes too.
    let system = &records[3].2["Event"]["System"];
    assert_eq!(system["Channel"], Value::Null);
    assert_eq!(system["Computer"], Value::Null);
    assert_eq!(system["Provider"], Value::Null, "{system}");
}

#[test]
fn text_with_nul_and_times_out_of_range_are_rejected() {
    let mut writer = EvtxWriter::new(Cursor::new(Vec::new())).unwrap();
    let mut nul = small_event(0);
    nul.data.push(("Bad".into(), "a\0b".into()));
    let err = writer.push(&nul).unwrap_err();
    assert!(
        matches!(&err, Error::NulInText { field } if field.contains("Bad")),
        "{err}"
    );
    let mut early = small_event(0);
    early.timestamp = Utc.with_ymd_and_hms(1600, 12, 31, 23, 59, 59).unwrap();
    assert!(matches!(
        writer.push(&early),
        Err(Error::TimestampOutOfRange(_))
    ));
    assert_eq!(writer.records(), 0);
}

#[test]
fn empty_file_is_valid() {
    let bytes = write_to_vec(std::iter::empty());
    assert_eq!(bytes.len(), 4096);
    let mut parser = EvtxParser::from_buffer(bytes).unwrap();
    assert!(parser.header().validate_checksum());
    assert_eq!(parser.header().chunk_count, 0);
    assert_eq!(parser.header().next_record_id, 1);
    assert_eq!(parser.records().count(), 0);
}

#[test]
fn writes_after_existing_bytes() {
    // The file starts where the output is: its header goes there, not at offset 0.
    let mut out = Cursor::new(b"prefix".to_vec());
    out.set_position(6);
    let mut writer = EvtxWriter::new(out).unwrap();
    writer.push(&small_event(0)).unwrap();
    let out = writer.finish().unwrap();
    assert_eq!(out.position(), 6 + 4096 + 65536);
    let bytes = out.into_inner();
    assert_eq!(&bytes[..6], b"prefix");
    let mut parser = EvtxParser::from_buffer(bytes[6..].to_vec()).unwrap();
    assert_eq!(parser.records().count(), 1);
}
