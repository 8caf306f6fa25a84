use super::*;
use crate::export::{CsvWriter, MispWriter, StixWriter};

/// (locator, Ok((type, normalised)) or Err(reason)) of every entry.
type Seen2 = Vec<(String, Result<(IocType, String), String>)>;

fn read_all(
    format: Format,
    input: &str,
    options: &Options,
) -> Result<(Seen2, Vec<Record>), ImportError> {
    let mut out = Vec::new();
    let mut records = Vec::new();
    read(format, input.as_bytes(), options, &mut |entry| {
        match entry.item {
            Item::Ioc(record) => {
                out.push((
                    entry.locator,
                    Ok((record.kind(), record.normalized.clone())),
                ));
                records.push(*record);
            }
            Item::Refused { reason, .. } => out.push((entry.locator, Err(reason))),
        }
        ControlFlow::Continue(())
    })?;
    Ok((out, records))
}

/// (created, duplicates, refused) as an importer counts them.
fn counts(entries: &Seen2) -> (usize, usize, usize) {
    let mut seen = Seen::default();
    let (mut created, mut duplicates, mut refused) = (0, 0, 0);
    for (_, item) in entries {
        match item {
            Ok((kind, value)) if seen.first(*kind, value) => created += 1,
            Ok(_) => duplicates += 1,
            Err(_) => refused += 1,
        }
    }
    (created, duplicates, refused)
}

#[test]
fn iris_csv_with_a_defanged_value_a_duplicate_and_a_refused_line() {
    let csv = "ioc_value,ioc_type,ioc_description,ioc_tags,ioc_tlp\n\
               10[.]0[.]0[.]5,ip-dst,C2 address,\"c2,apt\",amber\n\
               evil(.)example,domain,,,TLP:RED\n\
               10.0.0.5,ip-src,again,,\n\
               not-a-hash,sha256,broken,,\n\
               evil.exe|ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789,filename|sha256,dropper,,green\n\
               x,AS,unknown type,,\n";
    let (entries, records) = read_all(Format::Csv, csv, &Options::default()).unwrap();
    assert_eq!(
        entries[0],
        ("line:2".into(), Ok((IocType::Ip, "10.0.0.5".into())))
    );
    assert_eq!(records[0].description, "C2 address");
    assert_eq!(records[0].labels, vec!["c2", "apt"]);
    assert_eq!(records[0].tlp, Some(Tlp::Amber));
    assert_eq!(entries[1].1, Ok((IocType::Domain, "evil.example".into())));
    assert_eq!(records[1].tlp, Some(Tlp::Red));
    assert!(
        matches!(&entries[3], (l, Err(reason)) if l == "line:5" && reason.contains("64 hexadecimal"))
    );
    assert_eq!(entries[4].0, "line:6#1");
    assert_eq!(entries[4].1, Ok((IocType::FileName, "evil.exe".into())));
    assert_eq!(entries[5].0, "line:6#2");
    assert_eq!(
        entries[5].1,
        Ok((IocType::Sha256, "abcdef0123456789".repeat(4)))
    );
    assert!(matches!(&entries[6].1, Err(reason) if reason.contains("unknown IOC type")));
    assert_eq!(counts(&entries), (4, 1, 2));
}

#[test]
fn our_csv_header_and_headerless_lists() {
    let csv = "type,value,description,confidence,expires_at\ncidr,10.1.2.3/16,net,80,2030-01-01\nurl,hxxps://evil[.]example/a,,101,\n";
    let (entries, records) = read_all(Format::Csv, csv, &Options::default()).unwrap();
    assert_eq!(entries[0].1, Ok((IocType::Cidr, "10.1.0.0/16".into())));
    assert_eq!(records[0].confidence, Some(80));
    assert!(records[0].expires_at.is_some());
    assert!(matches!(&entries[1].1, Err(reason) if reason.contains("confidence")));

    let list = "# feed\n10.0.0.5\nhxxp://evil[.]example/x\n10.0.0.5\nwhat is this\n";
    let (entries, _) = read_all(Format::Csv, list, &Options::default()).unwrap();
    assert_eq!(counts(&entries), (2, 1, 1));
    let (text_entries, _) = read_all(Format::Text, list, &Options::default()).unwrap();
    assert_eq!(counts(&text_entries), (2, 1, 1));
    assert_eq!(text_entries[0].0, "line:2");
    assert!(matches!(&text_entries[3], (l, Err(_)) if l == "line:5"));
}

#[test]
fn a_csv_without_a_header_is_refused_whole() {
    let error = read_all(Format::Csv, "a,b,c\n1,2,3\n", &Options::default()).unwrap_err();
    assert!(error.message.contains("no recognised header"), "{error}");
}

const STIX: &str = r#"{"type":"bundle","id":"bundle--1","objects":[
 {"type":"identity","id":"identity--1","name":"feed"},
 {"type":"indicator","id":"indicator--1","name":"C2","pattern":"[ipv4-addr:value = '198.51.100.7']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z","valid_until":"2025-01-01T00:00:00Z","object_marking_refs":["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"],"labels":["c2"],"confidence":70},
 {"type":"indicator","id":"indicator--2","pattern":"[domain-name:value = 'evil[.]example' OR file:hashes.'SHA-256' = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--3","pattern":"[ipv4-addr:value = '198.51.100.7']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--4","pattern":"[file:name MATCHES '^evil.*']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--5","pattern":"[x509-certificate:serial_number = '01']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--6","pattern":"rule x { condition: true }","pattern_type":"yara","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"ipv4-addr","id":"ipv4-addr--1","value":"203.0.113.9"},
 {"type":"relationship","id":"relationship--1"}
]}"#;

#[test]
fn stix_bundles_with_a_defanged_value_a_duplicate_and_refusals() {
    let mut summary = Summary::default();
    let mut entries = Vec::new();
    let mut records = Vec::new();
    read(
        Format::Stix,
        STIX.as_bytes(),
        &Options::default(),
        &mut |entry| {
            match entry.item {
                Item::Ioc(record) => {
                    entries.push((
                        entry.locator,
                        Ok((record.kind(), record.normalized.clone())),
                    ));
                    records.push(*record);
                }
                Item::Refused { reason, .. } => entries.push((entry.locator, Err(reason))),
            }
            ControlFlow::Continue(())
        },
    )
    .map(|s| summary = s)
    .unwrap();
    assert_eq!(summary.other_objects, 2);
    assert_eq!(
        entries[0],
        (
            "objects[1]".into(),
            Ok((IocType::Ip, "198.51.100.7".into()))
        )
    );
    assert_eq!(records[0].tlp, Some(Tlp::Red));
    assert_eq!(records[0].confidence, Some(70));
    assert_eq!(records[0].labels, vec!["c2"]);
    assert_eq!(records[0].expires_at, parse_time("2025-01-01T00:00:00Z"));
    assert_eq!(
        entries[1],
        (
            "objects[2]#1".into(),
            Ok((IocType::Domain, "evil.example".into()))
        )
    );
    assert_eq!(entries[2].1, Ok((IocType::Sha256, "a".repeat(64))));
    assert!(
        matches!(&entries[4].1, Err(r) if r.contains("MATCHES")),
        "{:?}",
        entries[4]
    );
    assert!(
        matches!(&entries[5].1, Err(r) if r.contains("x509-certificate")),
        "{:?}",
        entries[5]
    );
    assert!(
        matches!(&entries[6].1, Err(r) if r.contains("yara")),
        "{:?}",
        entries[6]
    );
    assert_eq!(
        entries[7],
        ("objects[7]".into(), Ok((IocType::Ip, "203.0.113.9".into())))
    );
    assert_eq!(counts(&entries), (4, 1, 3));
}

#[test]
fn stix_patterns_parse_or_say_why_not() {
    assert_eq!(
        parse_pattern("[url:value = 'http://a.example/it\\'s'] OR [email-addr:value IN ('a@b.example', 'c@d.example')]").unwrap(),
        vec![
            ("url:value".to_string(), "http://a.example/it's".to_string()),
            ("email-addr:value".to_string(), "a@b.example".to_string()),
            ("email-addr:value".to_string(), "c@d.example".to_string()),
        ]
    );
    for (pattern, reason) in [
        ("[a:b = 'x'] FOLLOWEDBY [a:b = 'y']", "FOLLOWEDBY"),
        ("[a:b = 'x'] WITHIN 300 SECONDS", "WITHIN"),
        ("[a:b != 'x']", "operator"),
        ("[a:b LIKE 'x%']", "LIKE"),
        ("[a:b = 'x'", "without its ]"),
        ("[a:b = 'x]", "not closed"),
        ("", "no comparison"),
    ] {
        let error = parse_pattern(pattern).unwrap_err();
        assert!(error.contains(reason), "{pattern}: {error}");
    }
}

const MISP: &str = r#"{"Event":{"info":"Phishing wave","Attribute":[
 {"type":"ip-dst","value":"198.51.100[.]7","to_ids":true,"category":"Network activity","comment":"C2"},
 {"type":"domain","value":"evil.example","to_ids":false},
 {"type":"filename|sha256","value":"invoice.exe|BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB","to_ids":true},
 {"type":"ip-src","value":"198.51.100.7","to_ids":"1"},
 {"type":"btc","value":"1BoatSLRHtKNngkdXEeobR76b53LETtpyT","to_ids":true}
],"Object":[{"name":"file","Attribute":[{"type":"md5","value":"CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC","to_ids":true}]}],
"Tag":[{"name":"tlp:green"},{"name":"phishing"}]}}"#;

#[test]
fn misp_events_with_a_defanged_value_a_duplicate_and_refusals() {
    let (entries, records) = read_all(Format::Misp, MISP, &Options::default()).unwrap();
    assert_eq!(
        entries[0],
        (
            "Attribute[0]".into(),
            Ok((IocType::Ip, "198.51.100.7".into()))
        )
    );
    assert_eq!(
        records[0].tlp,
        Some(Tlp::Green),
        "the event's TLP, written after the attributes"
    );
    assert_eq!(records[0].labels, vec!["phishing"]);
    assert_eq!(records[0].description, "C2");
    assert!(matches!(&entries[1], (l, Err(r)) if l == "Attribute[1]" && r.contains("to_ids")));
    assert_eq!(
        entries[2],
        (
            "Attribute[2]#1".into(),
            Ok((IocType::FileName, "invoice.exe".into()))
        )
    );
    assert_eq!(entries[3].1, Ok((IocType::Sha256, "b".repeat(64))));
    assert!(matches!(&entries[5].1, Err(r) if r.contains("btc")));
    assert_eq!(
        entries[6],
        (
            "Object[0].Attribute[0]".into(),
            Ok((IocType::Md5, "c".repeat(32)))
        )
    );
    assert_eq!(records[4].description, "MISP event: Phishing wave");
    assert_eq!(counts(&entries), (4, 1, 2));

    let all = Options {
        misp_all_attributes: true,
    };
    let (entries, _) = read_all(Format::Misp, MISP, &all).unwrap();
    assert_eq!(entries[1].1, Ok((IocType::Domain, "evil.example".into())));
    // A list of events and a response wrapper read the same.
    let wrapped = format!("{{\"response\":[{MISP},{MISP}]}}");
    let (entries, _) = read_all(Format::Misp, &wrapped, &Options::default()).unwrap();
    assert_eq!(entries.len(), 14);
}

#[test]
fn malformed_json_is_an_error_with_a_place() {
    for (format, input) in [
        (
            Format::Stix,
            r#"{"type":"bundle","objects":[{"type":"indicator","#,
        ),
        (Format::Stix, r#"{"type":"report","objects":[]}"#),
        (Format::Stix, "[1,2,3]"),
        (Format::Misp, r#"{"Event":{"Attribute":[{"type":"ip-dst""#),
        (Format::Misp, r#"{"hello":"world"}"#),
    ] {
        let error = read_all(format, input, &Options::default()).unwrap_err();
        assert!(!error.message.is_empty());
        if input.len() > 40 {
            assert!(error.message.contains("line 1 column"), "{error}");
        }
    }
}

#[test]
fn hostile_values_are_refused_not_crashed_on() {
    let huge = "a".repeat(1 << 20);
    let csv = format!("type,value\nother,{huge}\nother,(a|b)+.*\ndomain,(a|b)+.*\n");
    let (entries, _) = read_all(Format::Csv, &csv, &Options::default()).unwrap();
    assert!(matches!(&entries[0].1, Err(r) if r.contains("at most 4096")));
    // A regex-like value is a plain substring for `other`, refused as a domain.
    assert_eq!(entries[1].1, Ok((IocType::Other, "(a|b)+.*".into())));
    assert!(entries[2].1.is_err());
    // A refusal shows at most 256 characters of the value.
    read(
        Format::Csv,
        csv.as_bytes(),
        &Options::default(),
        &mut |entry| {
            if let Item::Refused { value, .. } = &entry.item {
                assert!(value.chars().count() <= 257);
            }
            ControlFlow::Break(())
        },
    )
    .unwrap();
    // A text line past the line limit.
    let long = format!("{}\n10.0.0.1\n", "b".repeat(100_000));
    let (entries, _) = read_all(Format::Text, &long, &Options::default()).unwrap();
    assert!(matches!(&entries[0].1, Err(r) if r.contains("longer than")));
    assert_eq!(
        entries[1],
        ("line:2".into(), Ok((IocType::Ip, "10.0.0.1".into())))
    );
}

#[test]
fn a_stix_bundle_of_a_million_objects_streams() {
    // ~60 MB of JSON, never held as one tree: objects are read one at a time.
    /// Writes the bundle a piece at a time: the header, each object, the end.
    struct Bundle {
        next: usize,
        total: usize,
        buffer: Vec<u8>,
        at: usize,
    }
    impl Read for Bundle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.buffer.len() {
                self.buffer.clear();
                self.at = 0;
                let i = self.next;
                self.next += 1;
                if i == 0 {
                    self.buffer
                        .extend_from_slice(br#"{"type":"bundle","id":"bundle--x","objects":["#);
                } else if i <= self.total {
                    let comma = if i == self.total { "" } else { "," };
                    self.buffer.extend_from_slice(
                        format!(
                            r#"{{"type":"indicator","id":"indicator--{i}","pattern":"[ipv4-addr:value = '10.{}.{}.{}']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"}}{comma}"#,
                            (i >> 16) & 255,
                            (i >> 8) & 255,
                            i & 255
                        )
                        .as_bytes(),
                    );
                } else if i == self.total + 1 {
                    self.buffer.extend_from_slice(b"]}");
                } else {
                    return Ok(0);
                }
            }
            let n = out.len().min(self.buffer.len() - self.at);
            out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let input = Bundle {
        next: 0,
        total: 1_000_000,
        buffer: Vec::new(),
        at: 0,
    };
    let mut seen = Seen::default();
    let (mut created, mut other) = (0u64, 0u64);
    read(Format::Stix, input, &Options::default(), &mut |entry| {
        match entry.item {
            Item::Ioc(record) if seen.first(record.kind(), &record.normalized) => created += 1,
            _ => other += 1,
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(created + other, 1_000_000);
    assert_eq!(created, 1_000_000);
}

#[test]
fn exports_read_back_as_the_same_iocs() {
    let csv = "type,value,description,tags,tlp,confidence\n\
               ip,10.0.0.5,c2,\"a,b\",amber,90\n\
               cidr,10.1.0.0/16,,,,\n\
               domain,evil.example,,,red,\n\
               hostname,wkstn-01,,,,\n\
               url,https://evil.example/x?y=1,,,,\n\
               email,bob@evil.example,,,,\n\
               md5,0123456789abcdef0123456789abcdef,,,,\n\
               sha1,0123456789abcdef0123456789abcdef01234567,,,,\n\
               sha256,0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,,,,\n\
               imphash,f34d5f2d4577ed6d9ceec516c1f5a744,,,,\n\
               file_name,evil.exe,,,,\n\
               file_path,c:\\temp\\evil.exe,,,,\n\
               registry_key,hklm\\software\\run\\x,,,,\n\
               user_name,corp\\alice,,,,\n\
               command_line,-enc jab,,,,\n\
               service_name,psexesvc,,,,\n\
               named_pipe,\\msagent_12,,,,\n\
               mutex,global\\evilmutex,,,,\n\
               user_agent,EvilBot/1.0,,,,\n\
               other,Invoke-Mimikatz,,,,\n";
    let (_, records) = read_all(Format::Csv, csv, &Options::default()).unwrap();
    assert_eq!(records.len(), 20);
    let key = |r: &Record| (r.kind(), r.normalized.clone());
    let wanted: Vec<_> = records.iter().map(key).collect();

    let mut out = CsvWriter::new(Vec::new()).unwrap();
    for r in &records {
        out.write(r).unwrap();
    }
    let text = String::from_utf8(out.finish().unwrap()).unwrap();
    assert!(text.starts_with("ioc_value,ioc_type,ioc_description,ioc_tags,ioc_tlp"));
    let (_, back) = read_all(Format::Csv, &text, &Options::default()).unwrap();
    assert_eq!(back.iter().map(key).collect::<Vec<_>>(), wanted);
    assert_eq!(back[0].labels, vec!["a", "b"]);
    assert_eq!(back[0].tlp, Some(Tlp::Amber));
    assert_eq!(back[0].confidence, Some(90));

    let mut out = StixWriter::new(Vec::new(), "case", 1_700_000_000_000_000).unwrap();
    for r in &records {
        out.write(r).unwrap();
    }
    let text = String::from_utf8(out.finish().unwrap()).unwrap();
    let (_, back) = read_all(Format::Stix, &text, &Options::default()).unwrap();
    assert_eq!(back.iter().map(key).collect::<Vec<_>>(), wanted);
    assert_eq!(back[2].tlp, Some(Tlp::Red));

    let mut out = MispWriter::new(Vec::new(), "export", "case", "2024-01-01").unwrap();
    for r in &records {
        out.write(r, true).unwrap();
    }
    let text = String::from_utf8(out.finish().unwrap()).unwrap();
    let (_, back) = read_all(Format::Misp, &text, &Options::default()).unwrap();
    // MISP has no command-line, process-name or CIDR types: those come back as the
    // nearest it has (text, filename, ip-dst with a prefix → cidr), hunted alike.
    let back_keys: Vec<_> = back.iter().map(key).collect();
    for (kind, value) in &wanted {
        let expected = match kind {
            IocType::CommandLine => (IocType::Other, value.clone()),
            other => (*other, value.clone()),
        };
        assert!(
            back_keys.contains(&expected),
            "{expected:?} missing from {back_keys:?}"
        );
    }
}

#[test]
fn a_50_mb_csv_streams_with_a_result_per_line() {
    // ~50 MB, generated as it is read: the reader holds one record at a time.
    struct Lines {
        next: u64,
        total: u64,
        buffer: Vec<u8>,
        at: usize,
    }
    impl Read for Lines {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.buffer.len() {
                self.buffer.clear();
                self.at = 0;
                if self.next == 0 {
                    self.buffer.extend_from_slice(b"type,value,description\n");
                }
                while self.buffer.len() < 64 * 1024 && self.next < self.total {
                    let i = self.next;
                    self.next += 1;
                    let line = match i % 3 {
                        0 => format!("domain,host{i}.bad-infra[.]example,feed line {i}\n"),
                        1 => format!("sha256,{:064x},feed line {i}\n", i),
                        _ => format!(
                            "ip,10.{}.{}.{}/99,broken {i}\n",
                            (i >> 16) & 255,
                            (i >> 8) & 255,
                            i & 255
                        ),
                    };
                    self.buffer.extend_from_slice(line.as_bytes());
                }
                if self.buffer.is_empty() {
                    return Ok(0);
                }
            }
            let n = out.len().min(self.buffer.len() - self.at);
            out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    let total = 900_000u64;
    let input = Lines {
        next: 0,
        total,
        buffer: Vec::new(),
        at: 0,
    };
    let (mut ok, mut refused, mut last) = (0u64, 0u64, String::new());
    read(Format::Csv, input, &Options::default(), &mut |entry| {
        match entry.item {
            Item::Ioc(_) => ok += 1,
            Item::Refused { reason, .. } => {
                refused += 1;
                assert!(
                    reason.contains("prefix length") || reason.contains("cidr"),
                    "{reason}"
                );
            }
        }
        last = entry.locator;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(ok + refused, total, "a result per line");
    assert_eq!(refused, total / 3);
    assert_eq!(last, format!("line:{}", total + 1));
}
