//! Conversions between the ioc service's rows and its wire messages.

use crate::repo::{IocRow, ListRow, MatchRow, Owner};
use casescope_ioc::{IocType, Tlp};
use casescope_proto::common::v1::{CaseId, EventId, FileId, IocId, IocMatchId, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::ioc::v1 as pb;
use casescope_proto::time::micros_to_timestamp;

/// Labels one IOC may carry, and their length.
pub(super) const MAX_LABELS: usize = 32;
pub(super) const MAX_LABEL_CHARS: usize = 128;
/// Longest description and source.
pub(super) const MAX_DESCRIPTION_CHARS: usize = 4096;
pub(super) const MAX_SOURCE_CHARS: usize = 256;

/// The user behind a request (empty for a service).
pub(super) fn author<T>(request: &tonic::Request<T>) -> String {
    Identity::of(request)
        .and_then(|identity| identity.author())
        .unwrap_or_default()
        .to_string()
}

pub(super) fn type_of(value: i32) -> Option<IocType> {
    Some(match pb::IocType::try_from(value).ok()? {
        pb::IocType::Unspecified => return None,
        pb::IocType::Ip => IocType::Ip,
        pb::IocType::Cidr => IocType::Cidr,
        pb::IocType::Domain => IocType::Domain,
        pb::IocType::Url => IocType::Url,
        pb::IocType::Md5 => IocType::Md5,
        pb::IocType::Sha1 => IocType::Sha1,
        pb::IocType::Sha256 => IocType::Sha256,
        pb::IocType::FileName => IocType::FileName,
        pb::IocType::FilePath => IocType::FilePath,
        pb::IocType::UserName => IocType::UserName,
        pb::IocType::CommandLine => IocType::CommandLine,
        pb::IocType::RegistryKey => IocType::RegistryKey,
        pb::IocType::Hostname => IocType::Hostname,
        pb::IocType::Email => IocType::Email,
        pb::IocType::Other => IocType::Other,
        pb::IocType::Sha512 => IocType::Sha512,
        pb::IocType::Imphash => IocType::Imphash,
        pb::IocType::ProcessName => IocType::ProcessName,
        pb::IocType::ServiceName => IocType::ServiceName,
        pb::IocType::NamedPipe => IocType::NamedPipe,
        pb::IocType::Mutex => IocType::Mutex,
        pb::IocType::UserAgent => IocType::UserAgent,
    })
}

pub(super) fn type_to_pb(kind: IocType) -> pb::IocType {
    match kind {
        IocType::Ip => pb::IocType::Ip,
        IocType::Cidr => pb::IocType::Cidr,
        IocType::Domain => pb::IocType::Domain,
        IocType::Url => pb::IocType::Url,
        IocType::Md5 => pb::IocType::Md5,
        IocType::Sha1 => pb::IocType::Sha1,
        IocType::Sha256 => pb::IocType::Sha256,
        IocType::FileName => pb::IocType::FileName,
        IocType::FilePath => pb::IocType::FilePath,
        IocType::UserName => pb::IocType::UserName,
        IocType::CommandLine => pb::IocType::CommandLine,
        IocType::RegistryKey => pb::IocType::RegistryKey,
        IocType::Hostname => pb::IocType::Hostname,
        IocType::Email => pb::IocType::Email,
        IocType::Other => pb::IocType::Other,
        IocType::Sha512 => pb::IocType::Sha512,
        IocType::Imphash => pb::IocType::Imphash,
        IocType::ProcessName => pb::IocType::ProcessName,
        IocType::ServiceName => pb::IocType::ServiceName,
        IocType::NamedPipe => pb::IocType::NamedPipe,
        IocType::Mutex => pb::IocType::Mutex,
        IocType::UserAgent => pb::IocType::UserAgent,
    }
}

/// The wire type of a stored type name.
pub(super) fn stored_type(name: &str) -> pb::IocType {
    IocType::from_name(name).map_or(pb::IocType::Unspecified, type_to_pb)
}

pub(super) fn tlp_of(value: i32) -> Option<Tlp> {
    Some(match pb::Tlp::try_from(value).ok()? {
        pb::Tlp::Unspecified => return None,
        pb::Tlp::Clear => Tlp::Clear,
        pb::Tlp::Green => Tlp::Green,
        pb::Tlp::Amber => Tlp::Amber,
        pb::Tlp::AmberStrict => Tlp::AmberStrict,
        pb::Tlp::Red => Tlp::Red,
    })
}

pub(super) fn tlp_to_pb(name: &str) -> pb::Tlp {
    match Tlp::parse(name) {
        Some(Tlp::Clear) => pb::Tlp::Clear,
        Some(Tlp::Green) => pb::Tlp::Green,
        Some(Tlp::Amber) => pb::Tlp::Amber,
        Some(Tlp::AmberStrict) => pb::Tlp::AmberStrict,
        Some(Tlp::Red) => pb::Tlp::Red,
        None => pb::Tlp::Unspecified,
    }
}

/// Labels trimmed, without control characters, deduplicated and bounded.
pub(super) fn clean_labels(labels: &[String]) -> Result<Vec<String>, ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid_field(
            "LABELS_TOO_MANY",
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let clean: String = label
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LABEL_CHARS)
            .collect();
        if !clean.is_empty() && !out.contains(&clean) {
            out.push(clean);
        }
    }
    Ok(out)
}

/// Free text kept: control characters other than newlines and tabs dropped, bounded.
pub(super) fn clean_text(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .take(max)
        .collect()
}

pub(super) fn labels_of(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub(super) fn ioc_to_pb(row: &IocRow, match_count: i64) -> pb::Ioc {
    let (case_id, list_id) = match Owner::of_key(&row.case_id) {
        Owner::Case(case) => (Some(CaseId { value: case }), String::new()),
        Owner::List(list) => (None, list),
    };
    pb::Ioc {
        id: Some(IocId {
            value: row.id.clone(),
        }),
        case_id,
        list_id,
        ioc_type: stored_type(&row.ioc_type) as i32,
        value: row.value.clone(),
        normalized_value: row.normalized.clone(),
        description: row.description.clone(),
        source: row.source.clone(),
        tlp: tlp_to_pb(&row.tlp) as i32,
        confidence: u32::try_from(row.confidence).unwrap_or_default(),
        enabled: row.enabled,
        labels: labels_of(&row.labels),
        enrichment_json: row.enrichment_json.clone(),
        enriched_at: row.enriched_at.map(micros_to_timestamp),
        created_by: (!row.created_by.is_empty()).then(|| UserId {
            value: row.created_by.clone(),
        }),
        created_at: Some(micros_to_timestamp(row.created_at)),
        updated_at: Some(micros_to_timestamp(row.updated_at)),
        version: row.version,
        match_count: u64::try_from(match_count).unwrap_or_default(),
        first_seen: row.first_seen.map(micros_to_timestamp),
        last_seen: row.last_seen.map(micros_to_timestamp),
        expires_at: row.expires_at.map(micros_to_timestamp),
    }
}

pub(super) fn match_to_pb(row: &MatchRow) -> pb::IocMatch {
    pb::IocMatch {
        id: Some(IocMatchId {
            value: row.id.clone(),
        }),
        ioc_id: Some(IocId {
            value: row.ioc_id.clone(),
        }),
        case_id: Some(CaseId {
            value: row.case_id.clone(),
        }),
        event_id: Some(EventId {
            value: row.event_id.clone(),
        }),
        file_id: Some(FileId {
            value: row.file_id.clone(),
        }),
        field: row.field.clone(),
        matched_value: row.matched_value.clone(),
        timestamp: Some(micros_to_timestamp(row.event_ts)),
        ioc_type: stored_type(&row.ioc_type) as i32,
        ioc_value: row.ioc_value.clone(),
        matched_at: Some(micros_to_timestamp(row.matched_at)),
    }
}

/// The import record of a stored IOC (for exports).
pub(super) fn record_of(row: &IocRow) -> casescope_ioc::import::Record {
    casescope_ioc::import::Record {
        ioc_type: IocType::from_name(&row.ioc_type),
        value: row.value.clone(),
        normalized: row.normalized.clone(),
        description: row.description.clone(),
        labels: labels_of(&row.labels),
        tlp: Tlp::parse(&row.tlp),
        confidence: u32::try_from(row.confidence).ok(),
        source: (!row.source.is_empty()).then(|| row.source.clone()),
        first_seen: row.first_seen,
        last_seen: row.last_seen,
        expires_at: row.expires_at,
        enabled: Some(row.enabled),
    }
}

pub(super) fn list_to_pb(row: &ListRow, cases: &[String], ioc_count: i64) -> pb::IocList {
    pb::IocList {
        id: row.id.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        all_cases: row.all_cases,
        case_ids: cases.iter().map(|c| CaseId { value: c.clone() }).collect(),
        ioc_count: u64::try_from(ioc_count).unwrap_or_default(),
        created_by: (!row.created_by.is_empty()).then(|| UserId {
            value: row.created_by.clone(),
        }),
        created_at: Some(micros_to_timestamp(row.created_at)),
        updated_at: Some(micros_to_timestamp(row.updated_at)),
        version: row.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_type_maps_both_ways() {
        for kind in IocType::ALL {
            assert_eq!(type_of(type_to_pb(kind) as i32), Some(kind));
            assert_eq!(stored_type(kind.name()), type_to_pb(kind));
        }
        assert_eq!(type_of(0), None);
        assert_eq!(type_of(999), None);
    }
}
