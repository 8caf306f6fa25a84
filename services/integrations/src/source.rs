//! What a push reads of a case — the case, its IOCs, its hosts, its tagged and starred
//! events with their comments — from the services that own them (cases, ioc), through
//! their gRPC clients (in-process in all-in-one mode), every call bounded by a timeout.

use async_trait::async_trait;
use casescope_proto::cases::v1 as cases;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, PageRequest, SortOrder};
use casescope_proto::ioc::v1 as ioc;
use casescope_proto::ioc::v1::ioc_enrichment_service_client::IocEnrichmentServiceClient;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;
use tonic::{Code, Status};

/// Largest message read from a peer.
const MAX_PEER_MESSAGE: usize = 16 * 1024 * 1024;
/// IOCs per ListIocs page.
const IOC_PAGE: u32 = 500;
/// Hosts read from the case's `Computer` facet (the most frequent).
pub const MAX_FACET_HOSTS: u32 = 100;
/// Fields of one event carried to the remote side at most, and characters per value.
const MAX_FIELDS: usize = 40;
const MAX_VALUE_CHARS: usize = 1_000;

/// Why a source could not answer.
#[derive(Debug, Clone)]
pub struct SourceError {
    pub transient: bool,
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl SourceError {
    fn from_status(service: &str, what: &str, status: &Status) -> Self {
        Self {
            transient: !matches!(
                status.code(),
                Code::NotFound
                    | Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::FailedPrecondition
                    | Code::Unimplemented
            ),
            message: format!(
                "the {service} service could not {what}: {}",
                status.message()
            ),
        }
    }
}

/// The case as pushed.
#[derive(Debug, Clone, Default)]
pub struct CaseInfo {
    pub name: String,
    pub description: String,
}

/// One IOC as pushed.
#[derive(Debug, Clone, Default)]
pub struct IocItem {
    pub id: String,
    /// `IocType`.
    pub ioc_type: i32,
    pub value: String,
    pub description: String,
    /// `Tlp`.
    pub tlp: i32,
    pub labels: Vec<String>,
    pub enabled: bool,
    /// Whether it holds an enrichment already.
    pub enriched: bool,
}

/// One comment on an event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommentItem {
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub created_at: String,
}

/// One tagged or starred event as pushed (a row of the cases service's JSON lines
/// export, docs/investigation.md).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventItem {
    #[serde(default)]
    pub event_id: String,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub datetime: String,
    #[serde(default)]
    pub computer: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub event_code: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub starred: bool,
    #[serde(default)]
    pub comments: Vec<CommentItem>,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl EventItem {
    /// Cuts the fields to what a remote item carries.
    fn bounded(mut self) -> Self {
        let fields = std::mem::take(&mut self.fields);
        self.fields = fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(name, value)| {
                let value = match value {
                    serde_json::Value::String(text) if text.chars().count() > MAX_VALUE_CHARS => {
                        let mut cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
                        cut.push('…');
                        serde_json::Value::String(cut)
                    }
                    other => other,
                };
                (name, value)
            })
            .collect();
        self
    }
}

/// The IOC service's counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub records_read: u64,
    pub created: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// The events of a case's timeline selection, and how many more it held.
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub items: Vec<EventItem>,
    pub left_out: u64,
}

/// What a push reads of a case.
#[async_trait]
pub trait CaseSource: Send + Sync {
    async fn case(&self, case_id: &str) -> Result<CaseInfo, SourceError>;
    /// The case's IOCs, at most `limit` (and whether there were more).
    async fn iocs(&self, case_id: &str, limit: usize) -> Result<(Vec<IocItem>, bool), SourceError>;
    /// The hosts seen in the case, most frequent first.
    async fn hosts(&self, case_id: &str) -> Result<Vec<String>, SourceError>;
    /// The tagged (with any of `tags`, or any tag when empty) and starred events, oldest
    /// first, at most `limit`.
    async fn events(
        &self,
        case_id: &str,
        tags: &[String],
        limit: usize,
    ) -> Result<Events, SourceError>;
    /// Imports a STIX 2.1 bundle into the case's IOCs through the IOC service's import
    /// (`source` names where they came from).
    async fn import_stix(
        &self,
        case_id: &str,
        bundle: Vec<u8>,
        source: &str,
    ) -> Result<ImportCounts, SourceError>;
    /// Records the enrichment (a JSON object) of IOCs `(id, json)`; how many were found.
    async fn set_enrichments(
        &self,
        case_id: &str,
        enrichments: Vec<(String, String)>,
    ) -> Result<u64, SourceError>;
}

/// The gRPC clients of the cases and IOC services.
#[derive(Clone)]
pub struct Peers {
    cases: CasesServiceClient<GrpcChannel>,
    ioc: Option<IocServiceClient<GrpcChannel>>,
    enrichment: Option<IocEnrichmentServiceClient<GrpcChannel>>,
    timeout: Duration,
}

fn case_ref(case_id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: case_id.to_string(),
    })
}

impl Peers {
    /// Channels carry the integrations service's identity; without the IOC service a
    /// push carries no IOCs (and says so).
    pub fn new(cases: GrpcChannel, ioc: Option<GrpcChannel>, timeout: Duration) -> Self {
        Self {
            cases: CasesServiceClient::new(cases).max_decoding_message_size(MAX_PEER_MESSAGE),
            enrichment: ioc.clone().map(IocEnrichmentServiceClient::new),
            ioc: ioc.map(|channel| {
                IocServiceClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE)
            }),
            timeout,
        }
    }

    async fn bounded<T>(
        &self,
        service: &str,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(SourceError::from_status(service, what, &status)),
            Err(_) => Err(SourceError {
                transient: true,
                message: format!(
                    "the {service} service did not {what} within {} s",
                    self.timeout.as_secs()
                ),
            }),
        }
    }
}

/// The timeline selection a push carries.
pub fn selection(tags: &[String]) -> cases::TimelineQuery {
    let mut query = cases::TimelineQuery {
        sort: SortOrder::Ascending as i32,
        ..Default::default()
    };
    if tags.is_empty() {
        query.query = "tag:* OR starred:true".into();
    } else {
        query.tags = tags.to_vec();
    }
    query
}

#[async_trait]
impl CaseSource for Peers {
    async fn case(&self, case_id: &str) -> Result<CaseInfo, SourceError> {
        let mut client = self.cases.clone();
        let case = self
            .bounded(
                "cases",
                "read the case",
                client.get_case(cases::GetCaseRequest {
                    id: case_ref(case_id),
                }),
            )
            .await?;
        Ok(CaseInfo {
            name: case.name,
            description: case.description,
        })
    }

    async fn iocs(&self, case_id: &str, limit: usize) -> Result<(Vec<IocItem>, bool), SourceError> {
        let Some(client) = &self.ioc else {
            return Err(no_ioc_service());
        };
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut client = client.clone();
            let page = self
                .bounded(
                    "ioc",
                    "list the case's IOCs",
                    client.list_iocs(ioc::ListIocsRequest {
                        case_id: case_ref(case_id),
                        page: Some(PageRequest {
                            page_size: IOC_PAGE,
                            cursor: cursor.clone(),
                        }),
                        ..Default::default()
                    }),
                )
                .await?;
            for found in page.iocs {
                if out.len() >= limit {
                    return Ok((out, true));
                }
                out.push(IocItem {
                    id: found.id.map(|i| i.value).unwrap_or_default(),
                    ioc_type: found.ioc_type,
                    value: found.value,
                    description: found.description,
                    tlp: found.tlp,
                    labels: found.labels,
                    enabled: found.enabled,
                    enriched: found.enriched_at.is_some(),
                });
            }
            cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                return Ok((out, false));
            }
        }
    }

    async fn hosts(&self, case_id: &str) -> Result<Vec<String>, SourceError> {
        let mut client = self.cases.clone();
        let facets = self
            .bounded(
                "cases",
                "count the case's hosts",
                client.timeline_facets(cases::TimelineFacetsRequest {
                    case_id: case_ref(case_id),
                    query: Some(cases::TimelineQuery::default()),
                    fields: vec!["Computer".into()],
                    top: MAX_FACET_HOSTS,
                }),
            )
            .await?;
        Ok(facets
            .facets
            .into_iter()
            .flat_map(|f| f.values)
            .map(|v| v.value)
            .filter(|v| !v.trim().is_empty())
            .collect())
    }

    async fn events(
        &self,
        case_id: &str,
        tags: &[String],
        limit: usize,
    ) -> Result<Events, SourceError> {
        let what = "export the tagged events";
        let mut client = self.cases.clone();
        let mut stream = self
            .bounded(
                "cases",
                what,
                client.export_timeline(cases::ExportTimelineRequest {
                    case_id: case_ref(case_id),
                    query: Some(selection(tags)),
                    format: cases::ExportFormat::Jsonl as i32,
                    resume_cursor: String::new(),
                }),
            )
            .await?;
        let mut events = Events::default();
        let mut selected = 0u64;
        loop {
            let chunk = match tokio::time::timeout(self.timeout, stream.message()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                Ok(Err(status)) => return Err(SourceError::from_status("cases", what, &status)),
                Err(_) => {
                    return Err(SourceError {
                        transient: true,
                        message: format!(
                            "the cases service sent nothing of the export for {} s",
                            self.timeout.as_secs()
                        ),
                    });
                }
            };
            if selected == 0 {
                selected = chunk.total;
            }
            let room = limit.saturating_sub(events.items.len());
            if room == 0 {
                break;
            }
            let parsed = tokio::task::spawn_blocking(move || parse(&chunk.data, room))
                .await
                .map_err(|e| SourceError {
                    transient: true,
                    message: format!("parsing stopped: {e}"),
                })??;
            events.items.extend(parsed);
        }
        events.left_out = selected.saturating_sub(events.items.len() as u64);
        Ok(events)
    }

    async fn import_stix(
        &self,
        case_id: &str,
        bundle: Vec<u8>,
        source: &str,
    ) -> Result<ImportCounts, SourceError> {
        let Some(client) = &self.ioc else {
            return Err(no_ioc_service());
        };
        let mut client = client.clone();
        let answer = self
            .bounded(
                "ioc",
                "import the indicators",
                client.import_iocs_file(ioc::ImportIocsFileRequest {
                    header: Some(ioc::ImportIocsHeader {
                        case_id: case_ref(case_id),
                        format: ioc::IocImportFormat::Stix2Bundle as i32,
                        file_name: format!("{source}-indicators.json"),
                        size_bytes: bundle.len() as u64,
                        default_source: source.to_string(),
                        ..Default::default()
                    }),
                    data: bundle,
                }),
            )
            .await?;
        Ok(ImportCounts {
            records_read: answer.records_read,
            created: answer.created,
            duplicates: answer.duplicates,
            rejected: answer.rejected_count,
        })
    }

    async fn set_enrichments(
        &self,
        case_id: &str,
        enrichments: Vec<(String, String)>,
    ) -> Result<u64, SourceError> {
        let Some(client) = &self.enrichment else {
            return Err(no_ioc_service());
        };
        let mut updated = 0;
        for chunk in enrichments.chunks(ENRICHMENTS_PER_CALL) {
            let mut client = client.clone();
            let answer = self
                .bounded(
                    "ioc",
                    "record the IOCs' enrichment",
                    client.set_enrichments(ioc::SetEnrichmentsRequest {
                        case_id: case_ref(case_id),
                        enrichments: chunk
                            .iter()
                            .map(|(id, json)| ioc::IocEnrichment {
                                id: Some(casescope_proto::common::v1::IocId { value: id.clone() }),
                                enrichment_json: json.clone(),
                            })
                            .collect(),
                    }),
                )
                .await?;
            updated += u64::from(answer.updated);
        }
        Ok(updated)
    }
}

/// IOC enrichments per call to the IOC service.
const ENRICHMENTS_PER_CALL: usize = 1_000;

/// The IOC service is needed but its address is not known.
fn no_ioc_service() -> SourceError {
    SourceError {
        transient: false,
        message: "the IOC service's address is not known to the integrations service".into(),
    }
}

/// The rows of one export chunk (at most `room`).
fn parse(data: &[u8], room: usize) -> Result<Vec<EventItem>, SourceError> {
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() >= room {
            break;
        }
        let row: EventItem = serde_json::from_slice(line).map_err(|e| SourceError {
            transient: false,
            message: format!("the timeline export sent a row that is not JSON: {e}"),
        })?;
        out.push(row.bounded());
    }
    Ok(out)
}
