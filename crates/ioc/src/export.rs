//! Writing IOCs as CSV (DFIR-IRIS's header), a STIX 2.1 bundle, or a MISP event —
//! streamed, one IOC at a time, in the shapes [`crate::import`] reads back.

use crate::import::Record;
use crate::kind::IocType;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

/// The type name written in CSV: the DFIR-IRIS/MISP name when it reads back as the
/// same type, ours otherwise (`cidr`, `file_path`, `command_line`, …).
pub fn csv_type_name(kind: IocType) -> &'static str {
    let misp = kind.misp_type();
    if IocType::from_name(misp) == Some(kind) {
        misp
    } else {
        kind.name()
    }
}

fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// A UUID (version 5 layout) derived from `parts`: the same IOC gets the same STIX id
/// and MISP uuid in every export.
fn derived_uuid(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut bytes: [u8; 16] = hasher.finalize()[..16].try_into().unwrap_or([0; 16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// CSV with DFIR-IRIS's header plus our extra columns.
pub struct CsvWriter<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record([
            "ioc_value",
            "ioc_type",
            "ioc_description",
            "ioc_tags",
            "ioc_tlp",
            "confidence",
            "source",
            "first_seen",
            "last_seen",
            "expires_at",
        ])?;
        Ok(CsvWriter { writer })
    }

    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let time = |t: Option<i64>| t.map(micros_text).unwrap_or_default();
        self.writer.write_record([
            record.normalized.as_str(),
            csv_type_name(record.kind()),
            &record.description,
            &record.labels.join(","),
            record.tlp.map(|t| t.name()).unwrap_or(""),
            &record.confidence.map(|c| c.to_string()).unwrap_or_default(),
            record.source.as_deref().unwrap_or(""),
            &time(record.first_seen),
            &time(record.last_seen),
            &time(record.expires_at),
        ])?;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.writer.flush()?;
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}

/// A STIX 2.1 bundle, one indicator per IOC.
pub struct StixWriter<W: Write> {
    out: W,
    first: bool,
    now: String,
}

impl<W: Write> StixWriter<W> {
    /// `bundle_key` makes the bundle's id (e.g. the case id and export time).
    pub fn new(mut out: W, bundle_key: &str, now_micros: i64) -> std::io::Result<Self> {
        let id = format!("bundle--{}", derived_uuid(&["bundle", bundle_key]));
        write!(out, "{{\"type\":\"bundle\",\"id\":\"{id}\",\"objects\":[")?;
        Ok(StixWriter {
            out,
            first: true,
            now: micros_text(now_micros),
        })
    }

    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let kind = record.kind();
        let mut object = json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": format!("indicator--{}", derived_uuid(&[kind.name(), &record.normalized])),
            "created": self.now,
            "modified": self.now,
            "name": format!("{} {}", kind.name(), record.normalized),
            "pattern": crate::import::stix_pattern(kind, &record.normalized),
            "pattern_type": "stix",
            "valid_from": record.first_seen.map(micros_text).unwrap_or_else(|| self.now.clone()),
        });
        let fields = object
            .as_object_mut()
            .ok_or_else(|| std::io::Error::other("not an object"))?;
        if !record.description.is_empty() {
            fields.insert("description".into(), json!(record.description));
        }
        if let Some(until) = record.expires_at {
            fields.insert("valid_until".into(), json!(micros_text(until)));
        }
        if !record.labels.is_empty() {
            fields.insert("labels".into(), json!(record.labels));
        }
        if let Some(confidence) = record.confidence {
            fields.insert("confidence".into(), json!(confidence));
        }
        if let Some(tlp) = record.tlp {
            fields.insert("object_marking_refs".into(), json!([tlp.stix_marking()]));
        }
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &object)?;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(b"]}\n")?;
        Ok(self.out)
    }
}

/// A MISP event, one attribute per IOC (`to_ids` = enabled).
pub struct MispWriter<W: Write> {
    out: W,
    first: bool,
}

fn misp_category(kind: IocType) -> &'static str {
    match kind {
        IocType::Ip
        | IocType::Cidr
        | IocType::Domain
        | IocType::Hostname
        | IocType::Url
        | IocType::UserAgent => "Network activity",
        IocType::Email => "Payload delivery",
        IocType::Md5
        | IocType::Sha1
        | IocType::Sha256
        | IocType::Sha512
        | IocType::Imphash
        | IocType::FileName => "Payload delivery",
        IocType::FilePath | IocType::Mutex | IocType::NamedPipe | IocType::ProcessName => {
            "Artifacts dropped"
        }
        IocType::RegistryKey | IocType::ServiceName => "Persistence mechanism",
        IocType::UserName => "Attribution",
        IocType::CommandLine | IocType::Other => "Other",
    }
}

impl<W: Write> MispWriter<W> {
    pub fn new(mut out: W, info: &str, event_key: &str, date: &str) -> std::io::Result<Self> {
        out.write_all(b"{\"Event\":{\"info\":")?;
        serde_json::to_writer(&mut out, info)?;
        write!(
            out,
            ",\"uuid\":\"{}\",\"date\":",
            derived_uuid(&["misp-event", event_key])
        )?;
        serde_json::to_writer(&mut out, date)?;
        out.write_all(b",\"Attribute\":[")?;
        Ok(MispWriter { out, first: true })
    }

    /// `enabled`: whether the IOC is hunted (MISP's `to_ids`).
    pub fn write(&mut self, record: &Record, enabled: bool) -> std::io::Result<()> {
        let kind = record.kind();
        let mut tags: Vec<serde_json::Value> =
            record.labels.iter().map(|l| json!({ "name": l })).collect();
        if let Some(tlp) = record.tlp {
            tags.push(json!({ "name": format!("tlp:{}", tlp.name()) }));
        }
        let mut attribute = json!({
            "uuid": derived_uuid(&["misp", kind.name(), &record.normalized]),
            "type": kind.misp_type(),
            "category": misp_category(kind),
            "value": record.normalized,
            "to_ids": enabled,
            "comment": record.description,
            "Tag": tags,
        });
        if let Some(fields) = attribute.as_object_mut() {
            if let Some(t) = record.first_seen {
                fields.insert("first_seen".into(), json!(micros_text(t)));
            }
            if let Some(t) = record.last_seen {
                fields.insert("last_seen".into(), json!(micros_text(t)));
            }
        }
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &attribute)?;
        Ok(())
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(b"]}}\n")?;
        Ok(self.out)
    }
}
