//! OpenCTI lookups in batches: many IOC values per GraphQL query (values OR-ed inside
//! one filter group, hashes under their own keys — the FilterGroup form of OpenCTI ≥
//! 5.12), at most [`BATCH`] values per query, each query's results read page by page
//! with its cursor (`first` / `after`). 5,000 IOCs cost 10 requests when each batch's
//! matches fit one page. What OpenCTI knows of each value — its observable's score,
//! labels, indicators (pattern, score, validity, revocation) and related threats — is
//! returned per value.

use crate::outbound::{OutRequest, Outbound, OutboundError, excerpt};
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Values per query.
pub const BATCH: usize = 500;
/// Results per page of one query.
pub const PAGE: usize = 500;
/// Pages of one query read at most (a value matched by more is cut, and said so).
pub const MAX_PAGES: usize = 20;

/// The GraphQL query (one batch, one page).
pub const LOOKUP: &str = "query CaseScopeLookup($filters: FilterGroup, $first: Int, $after: ID) {
  stixCyberObservables(filters: $filters, first: $first, after: $after) {
    edges { node {
      id entity_type observable_value x_opencti_score
      objectLabel { value }
      indicators(first: 20) { edges { node { id name pattern x_opencti_score valid_until revoked } } }
      stixCoreRelationships(first: 20) { edges { node { relationship_type
        to { ... on BasicObject { entity_type } ... on StixDomainObject { id }
             ... on Malware { name } ... on ThreatActor { name } ... on IntrusionSet { name }
             ... on Campaign { name } ... on AttackPattern { name } } } } }
    } }
    pageInfo { hasNextPage endCursor globalCount }
  }
}";

/// The filter key an IOC type is looked up under (`None`: OpenCTI has no observable
/// for it that a value lookup can find).
pub fn filter_key(ioc_type: &str) -> Option<&'static str> {
    match ioc_type {
        "ip" | "domain" | "url" | "email" | "hostname" | "file_name" | "user_agent" | "mutex"
        | "registry_key" | "user_name" => Some("value"),
        "md5" => Some("hashes.MD5"),
        "sha1" => Some("hashes.SHA-1"),
        "sha256" => Some("hashes.SHA-256"),
        "sha512" => Some("hashes.SHA-512"),
        _ => None,
    }
}

/// One indicator OpenCTI holds for a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    pub id: String,
    pub name: String,
    pub pattern: String,
    pub score: Option<i64>,
    pub valid_until: String,
    pub revoked: bool,
}

/// What OpenCTI knows of one value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Knowledge {
    pub observable_id: String,
    pub entity_type: String,
    pub score: Option<i64>,
    pub labels: Vec<String>,
    pub indicators: Vec<Indicator>,
    /// `relationship_type entity_type name`, e.g. "related-to Malware Emotet".
    pub related: Vec<String>,
}

/// The outcome of a lookup.
#[derive(Debug, Default)]
pub struct Lookup {
    /// By value as given (hashes lower case).
    pub found: HashMap<String, Knowledge>,
    pub requests: u64,
    /// Queries whose results did not fit [`MAX_PAGES`] pages.
    pub cut: u64,
}

fn str_of(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn knowledge(node: &Value) -> Knowledge {
    let edges = |key: &str| {
        node.pointer(&format!("/{key}/edges"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Knowledge {
        observable_id: str_of(node, "id"),
        entity_type: str_of(node, "entity_type"),
        score: node.get("x_opencti_score").and_then(Value::as_i64),
        labels: node
            .get("objectLabel")
            .and_then(Value::as_array)
            .map(|labels| {
                labels
                    .iter()
                    .map(|l| str_of(l, "value"))
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        indicators: edges("indicators")
            .iter()
            .filter_map(|e| e.get("node"))
            .map(|n| Indicator {
                id: str_of(n, "id"),
                name: str_of(n, "name"),
                pattern: str_of(n, "pattern"),
                score: n.get("x_opencti_score").and_then(Value::as_i64),
                valid_until: str_of(n, "valid_until"),
                revoked: n.get("revoked").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect(),
        related: edges("stixCoreRelationships")
            .iter()
            .filter_map(|e| e.get("node"))
            .filter_map(|n| {
                let to = n.get("to")?;
                let name = str_of(to, "name");
                (!name.is_empty()).then(|| {
                    format!(
                        "{} {} {name}",
                        str_of(n, "relationship_type"),
                        str_of(to, "entity_type")
                    )
                })
            })
            .collect(),
    }
}

/// The filters of one batch: one filter per key, its values OR-ed.
pub fn filters(batch: &[(String, &'static str)]) -> Value {
    let mut by_key: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for (value, key) in batch {
        match by_key.iter_mut().find(|(k, _)| k == key) {
            Some((_, values)) => values.push(value),
            None => by_key.push((key, vec![value])),
        }
    }
    json!({
        "mode": "or",
        "filterGroups": [],
        "filters": by_key
            .iter()
            .map(|(key, values)| json!({"key": key, "values": values, "operator": "eq", "mode": "or"}))
            .collect::<Vec<_>>(),
    })
}

/// `POST {base}/graphql` of `body`: the answer's JSON, or the GraphQL error it holds.
pub async fn graphql(outbound: &Outbound, url: &Url, body: &Value) -> Result<Value, OutboundError> {
    let answer = outbound
        .send(&OutRequest::post_json(url.clone(), body))
        .await?;
    if !(200..300).contains(&answer.status) {
        return Err(OutboundError::Status {
            status: answer.status,
            excerpt: excerpt(&answer.body, 200),
        });
    }
    let value: Value = serde_json::from_slice(&answer.body).map_err(|_| OutboundError::Status {
        status: answer.status,
        excerpt: format!("not JSON: {}", excerpt(&answer.body, 120)),
    })?;
    if let Some(message) = value.pointer("/errors/0/message").and_then(Value::as_str) {
        return Err(OutboundError::Status {
            status: answer.status,
            excerpt: format!("GraphQL error: {}", excerpt(message.as_bytes(), 200)),
        });
    }
    Ok(value)
}

/// The connection `data.<name>` of an answer.
pub fn connection<'a>(value: &'a Value, name: &str) -> Result<&'a Value, OutboundError> {
    value
        .pointer(&format!("/data/{name}"))
        .ok_or_else(|| OutboundError::Status {
            status: 200,
            excerpt: format!("the answer has no data.{name}"),
        })
}

/// What an OpenCTI failure means for a delivery: a GraphQL error or a refused request
/// does not pass on another attempt; an overloaded or unreachable instance may.
pub fn failure(error: OutboundError) -> crate::iris::PushError {
    let transient = match &error {
        OutboundError::Status { status, .. } => {
            matches!(status, 408 | 425 | 429) || (500..600).contains(status)
        }
        other => other.transient(),
    };
    crate::iris::PushError {
        http_status: match &error {
            OutboundError::Status { status, .. } => u32::from(*status),
            _ => 0,
        },
        message: format!("OpenCTI: {error}"),
        transient,
    }
}

/// The endpoint of an OpenCTI instance.
pub fn endpoint(base_url: &str) -> Result<Url, OutboundError> {
    Url::parse(&format!("{}/graphql", base_url.trim_end_matches('/')))
        .map_err(|e| OutboundError::Refused(format!("the URL cannot be made: {e}")))
}

/// Looks up `(type, value)` pairs; types OpenCTI cannot look up are skipped.
pub async fn lookup(
    outbound: &Outbound,
    base_url: &str,
    iocs: &[(String, String)],
) -> Result<Lookup, OutboundError> {
    let url = endpoint(base_url)?;
    let wanted: Vec<(String, &'static str)> = iocs
        .iter()
        .filter_map(|(kind, value)| {
            let key = filter_key(kind)?;
            let value = if key.starts_with("hashes.") {
                value.to_ascii_lowercase()
            } else {
                value.clone()
            };
            Some((value, key))
        })
        .collect();
    let mut result = Lookup::default();
    for batch in wanted.chunks(BATCH) {
        let filters = filters(batch);
        let mut after: Option<String> = None;
        for page in 0.. {
            if page == MAX_PAGES {
                result.cut += 1;
                break;
            }
            let body = json!({
                "query": LOOKUP,
                "variables": {"filters": filters, "first": PAGE, "after": after},
            });
            result.requests += 1;
            let value = graphql(outbound, &url, &body).await?;
            let connection = connection(&value, "stixCyberObservables")?;
            for edge in connection
                .get("edges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(node) = edge.get("node") else {
                    continue;
                };
                let observed = str_of(node, "observable_value");
                if observed.is_empty() {
                    continue;
                }
                let key = batch
                    .iter()
                    .find(|(v, _)| v.eq_ignore_ascii_case(&observed))
                    .map(|(v, _)| v.clone())
                    .unwrap_or(observed);
                result.found.insert(key, knowledge(node));
            }
            let more = connection
                .pointer("/pageInfo/hasNextPage")
                .and_then(Value::as_bool)
                == Some(true);
            after = connection
                .pointer("/pageInfo/endCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !more || after.is_none() {
                break;
            }
        }
    }
    Ok(result)
}
