//! `ImportOpenCtiIndicators`: OpenCTI's indicators (its `indicators` query: a
//! FilterGroup of confidence, main observable type and validity, not revoked, a
//! full-text search; cursor pages of 500) made into STIX 2.1 bundles, one per page, and
//! handed to the IOC service's own import — so patterns are read, duplicates and
//! rejections counted exactly as for an analyst's STIX file, and the new IOCs hunted
//! over the case's events at once.

use crate::delivery::Items;
use crate::iris::{Progress, PushError};
use crate::opencti::{connection, endpoint, failure, graphql};
use crate::outbound::Outbound;
use crate::source::CaseSource;
use casescope_proto::integrations::v1 as pb;
use casescope_proto::time::{micros_to_rfc3339, timestamp_to_micros};
use serde_json::{Value, json};

/// Indicators per page.
pub const PAGE: usize = 500;
/// Indicators one import fetches by default, and at most.
pub const DEFAULT_INDICATORS: u32 = 10_000;
pub const MAX_INDICATORS: u32 = 100_000;

/// The GraphQL query (one page).
pub const INDICATORS: &str =
    "query CaseScopeIndicators($filters: FilterGroup, $search: String, $first: Int, $after: ID) {
  indicators(filters: $filters, search: $search, first: $first, after: $after) {
    edges { node {
      id standard_id name pattern pattern_type valid_from valid_until revoked confidence
      x_opencti_score x_opencti_main_observable_type
      objectLabel { value }
    } }
    pageInfo { hasNextPage endCursor globalCount }
  }
}";

/// What an import did.
pub struct Imported {
    pub items: Items,
    pub requests: u64,
    pub notes: Vec<String>,
}

/// The filters of an import.
pub fn filters(request: &pb::ImportOpenCtiIndicatorsRequest, min_confidence: u32) -> Value {
    let mut filters =
        vec![json!({"key": "revoked", "values": ["false"], "operator": "eq", "mode": "or"})];
    if min_confidence > 0 {
        filters.push(json!({"key": "confidence", "values": [min_confidence.to_string()], "operator": "gte", "mode": "or"}));
    }
    if !request.observable_types.is_empty() {
        filters.push(json!({"key": "x_opencti_main_observable_type", "values": request.observable_types, "operator": "eq", "mode": "or"}));
    }
    if let Some(from) = &request.valid_from {
        filters.push(json!({"key": "valid_from", "values": [micros_to_rfc3339(timestamp_to_micros(from))], "operator": "gte", "mode": "or"}));
    }
    json!({"mode": "and", "filterGroups": [], "filters": filters})
}

fn str_of(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn labels_of(node: &Value) -> Vec<String> {
    node.get("objectLabel")
        .and_then(Value::as_array)
        .map(|l| l.iter().map(|v| str_of(v, "value")).collect())
        .unwrap_or_default()
}

/// The STIX 2.1 indicator object of an OpenCTI indicator node (`None`: not a STIX
/// pattern, or without the labels asked for).
fn stix(node: &Value, labels: &[String]) -> Option<Value> {
    let pattern_type = str_of(node, "pattern_type");
    if !pattern_type.is_empty() && pattern_type != "stix" {
        return None;
    }
    let have = labels_of(node);
    if !labels.is_empty()
        && !labels
            .iter()
            .any(|l| have.iter().any(|h| h.eq_ignore_ascii_case(l)))
    {
        return None;
    }
    let id = match str_of(node, "standard_id") {
        id if id.starts_with("indicator--") => id,
        _ => format!("indicator--{}", uuid::Uuid::new_v4()),
    };
    let mut object = json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": id,
        "name": str_of(node, "name"),
        "pattern": str_of(node, "pattern"),
        "pattern_type": "stix",
        "valid_from": str_of(node, "valid_from"),
        "labels": have,
    });
    if let Some(confidence) = node.get("confidence").and_then(Value::as_u64) {
        object["confidence"] = json!(confidence.min(100));
    }
    let until = str_of(node, "valid_until");
    if !until.is_empty() {
        object["valid_until"] = json!(until);
    }
    Some(object)
}

/// Runs one import into `case_id`.
pub async fn import(
    out: &Outbound,
    base_url: &str,
    source: &dyn CaseSource,
    progress: &dyn Progress,
    case_id: &str,
    request: &pb::ImportOpenCtiIndicatorsRequest,
    min_confidence: u32,
) -> Result<Imported, PushError> {
    let url = endpoint(base_url).map_err(failure)?;
    let limit = match request.max_indicators {
        0 => DEFAULT_INDICATORS,
        n => n,
    } as usize;
    let filters = filters(request, min_confidence);
    let search = (!request.search.trim().is_empty()).then(|| request.search.trim().to_string());
    let mut items = Items::default();
    let mut requests = 0;
    let mut fetched = 0usize;
    let mut skipped = 0u64;
    let mut after: Option<String> = None;
    let mut more = true;
    while more && fetched < limit {
        if progress.stopped() {
            return Err(PushError {
                message: "the delivery's lease was lost".into(),
                http_status: 0,
                transient: true,
            });
        }
        let body = json!({
            "query": INDICATORS,
            "variables": {"filters": filters, "search": search, "first": PAGE.min(limit - fetched), "after": after},
        });
        requests += 1;
        let value = graphql(out, &url, &body).await.map_err(failure)?;
        let page = connection(&value, "indicators").map_err(failure)?;
        let nodes: Vec<&Value> = page
            .get("edges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("node"))
            .take(limit - fetched)
            .collect();
        fetched += nodes.len();
        let objects: Vec<Value> = nodes
            .iter()
            .filter_map(|n| {
                let object = stix(n, &request.labels);
                if object.is_none() {
                    skipped += 1;
                }
                object
            })
            .collect();
        if !objects.is_empty() {
            let bundle = json!({
                "type": "bundle",
                "id": format!("bundle--{}", uuid::Uuid::new_v4()),
                "objects": objects,
            });
            let counts = source
                .import_stix(case_id, bundle.to_string().into_bytes(), "opencti")
                .await?;
            items.total += counts.records_read as i64;
            items.succeeded += (counts.created + counts.duplicates) as i64;
            items.failed += counts.rejected as i64;
        }
        progress.report(items, "").await.map_err(|m| PushError {
            message: m,
            http_status: 0,
            transient: true,
        })?;
        more = page
            .pointer("/pageInfo/hasNextPage")
            .and_then(Value::as_bool)
            == Some(true);
        after = page
            .pointer("/pageInfo/endCursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        more &= after.is_some() && !nodes.is_empty();
    }
    let mut notes = Vec::new();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} indicators were not imported (not STIX patterns, or without the labels asked for)"
        ));
    }
    if items.failed > 0 {
        notes.push(format!(
            "{} patterns were refused by the IOC import (e.g. compound AND patterns); casescope deliveries get shows the counts",
            items.failed
        ));
    }
    if more {
        notes.push(format!(
            "more indicators matched than the {limit} asked for"
        ));
    }
    tracing::info!(
        case_id,
        fetched,
        requests,
        created_or_known = items.succeeded,
        refused = items.failed,
        "OpenCTI indicators imported"
    );
    Ok(Imported {
        items,
        requests,
        notes,
    })
}
