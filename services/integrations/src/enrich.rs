//! `EnrichIocs`: a case's IOCs looked up in OpenCTI in batches ([`crate::opencti`]: 500
//! values per query, cursor pages) and what OpenCTI knows written onto each IOC by the
//! IOC service — found or not, so an analyst sees that it was asked.

use crate::delivery::Items;
use crate::iris::{Progress, PushError};
use crate::opencti::{Knowledge, failure, filter_key, lookup};
use crate::outbound::Outbound;
use crate::source::{CaseSource, IocItem};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::ioc::v1::IocType;
use casescope_proto::time::micros_to_rfc3339;
use serde_json::json;

/// IOCs one enrichment reads at most.
pub const MAX_IOCS: usize = 100_000;

/// The word OpenCTI lookups use for an IOC type.
pub fn type_word(ioc_type: i32) -> &'static str {
    match IocType::try_from(ioc_type).unwrap_or(IocType::Unspecified) {
        IocType::Ip => "ip",
        IocType::Domain => "domain",
        IocType::Url => "url",
        IocType::Email => "email",
        IocType::Hostname => "hostname",
        IocType::FileName => "file_name",
        IocType::UserAgent => "user_agent",
        IocType::Mutex => "mutex",
        IocType::RegistryKey => "registry_key",
        IocType::UserName => "user_name",
        IocType::Md5 => "md5",
        IocType::Sha1 => "sha1",
        IocType::Sha256 => "sha256",
        IocType::Sha512 => "sha512",
        _ => "other",
    }
}

fn enrichment(found: Option<&Knowledge>, at: &str, integration: &str) -> String {
    match found {
        None => json!({
            "source": "opencti",
            "integration": integration,
            "found": false,
            "looked_up_at": at,
        }),
        Some(k) => json!({
            "source": "opencti",
            "integration": integration,
            "found": true,
            "looked_up_at": at,
            "observable_id": k.observable_id,
            "entity_type": k.entity_type,
            "score": k.score,
            "labels": k.labels,
            "indicators": k.indicators.iter().map(|i| json!({
                "id": i.id, "name": i.name, "pattern": i.pattern, "score": i.score,
                "valid_until": i.valid_until, "revoked": i.revoked,
            })).collect::<Vec<_>>(),
            "related": k.related,
        }),
    }
    .to_string()
}

/// What an enrichment did.
pub struct Enriched {
    pub items: Items,
    /// Requests sent to OpenCTI.
    pub requests: u64,
    pub notes: Vec<String>,
}

/// The IOCs of `request` an enrichment looks up.
fn selected<'a>(iocs: &'a [IocItem], request: &pb::EnrichIocsRequest) -> Vec<&'a IocItem> {
    let wanted: std::collections::HashSet<&str> =
        request.ioc_ids.iter().map(|i| i.value.as_str()).collect();
    iocs.iter()
        .filter(|i| {
            if wanted.is_empty() {
                i.enabled
            } else {
                wanted.contains(i.id.as_str())
            }
        })
        .filter(|i| request.force || !i.enriched)
        .collect()
}

/// Runs one enrichment.
pub async fn enrich(
    out: &Outbound,
    base_url: &str,
    integration: &str,
    source: &dyn CaseSource,
    progress: &dyn Progress,
    case_id: &str,
    request: &pb::EnrichIocsRequest,
) -> Result<Enriched, PushError> {
    let (iocs, more) = source.iocs(case_id, MAX_IOCS).await?;
    let chosen = selected(&iocs, request);
    let (askable, unaskable): (Vec<&IocItem>, Vec<&IocItem>) = chosen
        .into_iter()
        .partition(|i| filter_key(type_word(i.ioc_type)).is_some());
    let mut notes = Vec::new();
    if more {
        notes.push(format!(
            "the case has more than {MAX_IOCS} IOCs; the first were enriched"
        ));
    }
    if !unaskable.is_empty() {
        notes.push(format!(
            "{} IOCs are of types OpenCTI has no observable for (command lines, paths, …) and were not looked up",
            unaskable.len()
        ));
    }
    let mut items = Items {
        total: askable.len() as i64,
        ..Default::default()
    };
    progress.report(items, "").await.map_err(|m| PushError {
        message: m,
        http_status: 0,
        transient: true,
    })?;
    if askable.is_empty() {
        return Ok(Enriched {
            items,
            requests: 0,
            notes,
        });
    }
    let pairs: Vec<(String, String)> = askable
        .iter()
        .map(|i| (type_word(i.ioc_type).to_string(), i.value.clone()))
        .collect();
    let found = lookup(out, base_url, &pairs).await.map_err(failure)?;
    if found.cut > 0 {
        notes.push(format!(
            "{} queries matched more than OpenCTI's pages allowed; some observables may be missing",
            found.cut
        ));
    }
    let at = micros_to_rfc3339(casescope_db::now_micros());
    let writes: Vec<(String, String)> = askable
        .iter()
        .map(|i| {
            let key = if type_word(i.ioc_type).starts_with("sha") || type_word(i.ioc_type) == "md5"
            {
                i.value.to_ascii_lowercase()
            } else {
                i.value.clone()
            };
            (
                i.id.clone(),
                enrichment(found.found.get(&key), &at, integration),
            )
        })
        .collect();
    let written = source.set_enrichments(case_id, writes).await?;
    items.succeeded = written as i64;
    let gone = items.total - items.succeeded;
    if gone > 0 {
        // Deleted while they were looked up: nothing left to enrich.
        items.total = items.succeeded;
        notes.push(format!("{gone} IOCs were deleted meanwhile"));
    }
    tracing::info!(
        case_id,
        iocs = items.total,
        requests = found.requests,
        found = found.found.len(),
        "IOCs enriched from OpenCTI"
    );
    Ok(Enriched {
        items,
        requests: found.requests,
        notes,
    })
}
