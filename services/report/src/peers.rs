//! The other services a report reads, through their gRPC clients (in-process in
//! all-in-one mode, over the network in a cluster), every call bounded by a timeout.

use crate::model::*;
use casescope_proto::cases::v1 as cases;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{CaseId, PageRequest, SortOrder};
use casescope_proto::detect::v1 as detect;
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_proto::gateway::v1 as gateway;
use casescope_proto::gateway::v1::case_members_service_client::CaseMembersServiceClient;
use casescope_proto::ioc::v1 as ioc;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use casescope_proto::time::{micros_to_rfc3339, timestamp_to_micros};
use std::future::Future;
use std::time::Duration;
use tonic::{Code, Status};

/// Largest message read from a peer.
const MAX_PEER_MESSAGE: usize = 16 * 1024 * 1024;
/// Files per ListFiles page.
const FILES_PAGE: u32 = 500;
/// Members listed in a report at most.
const MAX_MEMBERS: usize = 1_000;

/// Why a peer could not answer.
#[derive(Debug, Clone)]
pub struct PeerError {
    /// Worth another attempt (the peer was down, slow or overloaded).
    pub transient: bool,
    /// The peer's answer, when it answered.
    pub code: Option<Code>,
    pub message: String,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl PeerError {
    pub fn from_status(service: &str, what: &str, status: &Status) -> Self {
        let transient = matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
        );
        Self {
            transient,
            code: Some(status.code()),
            message: format!(
                "the {service} service could not {what}: {}",
                status.message()
            ),
        }
    }

    fn timeout(service: &str, what: &str, after: Duration) -> Self {
        Self {
            transient: true,
            code: None,
            message: format!(
                "the {service} service did not {what} within {} s",
                after.as_secs()
            ),
        }
    }
}

/// The clients of the services a report reads.
#[derive(Clone)]
pub struct Peers {
    pub(crate) cases: CasesServiceClient<GrpcChannel>,
    pub(crate) detect: Option<DetectServiceClient<GrpcChannel>>,
    pub(crate) ioc: Option<IocServiceClient<GrpcChannel>>,
    pub(crate) members: Option<CaseMembersServiceClient<GrpcChannel>>,
    pub(crate) timeout: Duration,
}

/// `name` without its enum prefix, lower case: `RULE_LEVEL_HIGH` → `high`.
pub(crate) fn enum_word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn case_ref(case_id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: case_id.to_string(),
    })
}

fn time_text(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|ts| micros_to_rfc3339(timestamp_to_micros(ts)))
        .unwrap_or_default()
}

impl Peers {
    /// Channels carry the report service's identity; `detect` and `ioc` are optional
    /// (a deployment without them gets reports saying so).
    pub fn new(
        cases: GrpcChannel,
        detect: Option<GrpcChannel>,
        ioc: Option<GrpcChannel>,
        timeout: Duration,
    ) -> Self {
        Self {
            cases: CasesServiceClient::new(cases).max_decoding_message_size(MAX_PEER_MESSAGE),
            detect: detect.map(|channel| {
                DetectServiceClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE)
            }),
            ioc: ioc.map(|channel| {
                IocServiceClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE)
            }),
            members: None,
            timeout,
        }
    }

    /// The gateway's internal members service (a report without it says the members
    /// are not available).
    pub fn with_members(mut self, gateway: Option<GrpcChannel>) -> Self {
        self.members = gateway.map(CaseMembersServiceClient::new);
        self
    }

    /// The case's members (at most [`MAX_MEMBERS`]), or why they cannot be listed.
    pub async fn members(&self, case_id: &str) -> Result<(Vec<Member>, String), PeerError> {
        let Some(client) = &self.members else {
            return Ok((
                Vec::new(),
                "the gateway's address is not known to this report service".into(),
            ));
        };
        let mut members = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut client = client.clone();
            let page = self
                .bounded(
                    "gateway",
                    "list the case's members",
                    client.list_case_members(gateway::ListCaseMembersRequest {
                        case_id: case_ref(case_id),
                        page: Some(PageRequest {
                            page_size: 500,
                            cursor: cursor.clone(),
                        }),
                    }),
                )
                .await?;
            for grant in page.grants {
                members.push(Member {
                    name: grant.username,
                    role: gateway::CaseRole::try_from(grant.role)
                        .map(|r| enum_word(r.as_str_name(), "CASE_ROLE_"))
                        .unwrap_or_default(),
                    since: time_text(grant.granted_at.as_ref()),
                });
            }
            cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() || members.len() >= MAX_MEMBERS {
                members.truncate(MAX_MEMBERS);
                return Ok((members, String::new()));
            }
        }
    }

    /// `call` bounded by the peer timeout.
    pub(crate) async fn bounded<T>(
        &self,
        service: &str,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, PeerError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(PeerError::from_status(service, what, &status)),
            Err(_) => Err(PeerError::timeout(service, what, self.timeout)),
        }
    }

    pub async fn case(&self, case_id: &str) -> Result<cases::Case, PeerError> {
        let mut client = self.cases.clone();
        self.bounded(
            "cases",
            "read the case",
            client.get_case(cases::GetCaseRequest {
                id: case_ref(case_id),
            }),
        )
        .await
    }

    /// Every file of the case, page by page, each handed to `each`.
    pub async fn files(
        &self,
        case_id: &str,
        mut each: impl FnMut(FileEntry),
    ) -> Result<(), PeerError> {
        let mut cursor = String::new();
        loop {
            let mut client = self.cases.clone();
            let page = self
                .bounded(
                    "cases",
                    "list the case's files",
                    client.list_files(cases::ListFilesRequest {
                        case_id: case_ref(case_id),
                        page: Some(PageRequest {
                            page_size: FILES_PAGE,
                            cursor: cursor.clone(),
                        }),
                        status: 0,
                    }),
                )
                .await?;
            for file in page.files {
                each(file_entry(file));
            }
            cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                return Ok(());
            }
        }
    }

    /// The time of the case's first (or last) event, empty when it has none.
    pub async fn event_bound(&self, case_id: &str, last: bool) -> Result<String, PeerError> {
        let mut client = self.cases.clone();
        let page = self
            .bounded(
                "cases",
                "read the case's time span",
                client.search_timeline(cases::SearchTimelineRequest {
                    case_id: case_ref(case_id),
                    query: Some(cases::TimelineQuery {
                        sort: if last {
                            SortOrder::Descending as i32
                        } else {
                            SortOrder::Ascending as i32
                        },
                        ..Default::default()
                    }),
                    page: Some(PageRequest {
                        page_size: 1,
                        cursor: String::new(),
                    }),
                    backward: false,
                    include_raw: false,
                }),
            )
            .await?;
        Ok(page
            .events
            .first()
            .map(|event| time_text(event.timestamp.as_ref()))
            .unwrap_or_default())
    }

    pub async fn detections(&self, case_id: &str) -> Result<Detections, PeerError> {
        let Some(client) = &self.detect else {
            return Ok(Detections::unavailable(
                "the detect service is not deployed with this report service",
            ));
        };
        let mut client = client.clone();
        let counts = self
            .bounded(
                "detect",
                "count the case's detections",
                client.count_detections(detect::CountDetectionsRequest {
                    case_id: case_ref(case_id),
                    filter: None,
                }),
            )
            .await?;
        let level = |value: i32| {
            detect::RuleLevel::try_from(value)
                .map(|l| enum_word(l.as_str_name(), "RULE_LEVEL_"))
                .unwrap_or_default()
        };
        let attack = |list: Vec<detect::AttackCount>| {
            list.into_iter()
                .map(|a| Count {
                    name: a.name,
                    count: a.count,
                })
                .collect()
        };
        Ok(Detections {
            unavailable: String::new(),
            total: counts.total,
            by_level: counts
                .by_level
                .iter()
                .rev()
                .map(|l| Count {
                    name: level(l.level),
                    count: l.count,
                })
                .collect(),
            by_rule: counts
                .by_rule
                .into_iter()
                .map(|r| RuleCount {
                    rule_id: r.rule_id.map(|id| id.value).unwrap_or_default(),
                    title: r.rule_title,
                    level: level(r.level),
                    count: r.count,
                })
                .collect(),
            by_rule_truncated: counts.by_rule_truncated,
            by_tactic: attack(counts.by_tactic),
            by_technique: attack(counts.by_technique),
        })
    }

    pub async fn ioc_matches(&self, case_id: &str) -> Result<IocMatches, PeerError> {
        let Some(client) = &self.ioc else {
            return Ok(IocMatches::unavailable(
                "the ioc service is not deployed with this report service",
            ));
        };
        let mut client = client.clone();
        let counts = self
            .bounded(
                "ioc",
                "count the case's IOC matches",
                client.count_matches(ioc::CountMatchesRequest {
                    case_id: case_ref(case_id),
                    filter: None,
                }),
            )
            .await?;
        let kind = |value: i32| {
            ioc::IocType::try_from(value)
                .map(|t| enum_word(t.as_str_name(), "IOC_TYPE_"))
                .unwrap_or_default()
        };
        Ok(IocMatches {
            unavailable: String::new(),
            total: counts.total,
            distinct_events: counts.distinct_events,
            by_type: counts
                .by_type
                .iter()
                .map(|t| Count {
                    name: kind(t.ioc_type),
                    count: t.count,
                })
                .collect(),
            by_ioc: counts
                .by_ioc
                .into_iter()
                .map(|i| IocCount {
                    ioc_type: kind(i.ioc_type),
                    value: i.ioc_value,
                    count: i.count,
                })
                .collect(),
            by_ioc_truncated: counts.by_ioc_truncated,
        })
    }

    pub async fn notes(&self, case_id: &str) -> Result<cases::CaseNotes, PeerError> {
        let mut client = self.cases.clone();
        self.bounded(
            "cases",
            "read the case notes",
            client.get_case_notes(cases::GetCaseNotesRequest {
                case_id: case_ref(case_id),
            }),
        )
        .await
    }

    /// How many events the tagged timeline's selection holds.
    pub async fn count_selection(
        &self,
        case_id: &str,
        query: &cases::TimelineQuery,
    ) -> Result<u64, PeerError> {
        let mut client = self.cases.clone();
        let histogram = self
            .bounded(
                "cases",
                "count the tagged events",
                client.timeline_histogram(cases::TimelineHistogramRequest {
                    case_id: case_ref(case_id),
                    query: Some(query.clone()),
                    interval: None,
                    max_buckets: 1,
                }),
            )
            .await?;
        Ok(histogram.total_count)
    }
}

impl Detections {
    pub fn unavailable(why: &str) -> Self {
        Self {
            unavailable: why.to_string(),
            total: 0,
            by_level: Vec::new(),
            by_rule: Vec::new(),
            by_rule_truncated: false,
            by_tactic: Vec::new(),
            by_technique: Vec::new(),
        }
    }
}

impl IocMatches {
    pub fn unavailable(why: &str) -> Self {
        Self {
            unavailable: why.to_string(),
            total: 0,
            distinct_events: 0,
            by_type: Vec::new(),
            by_ioc: Vec::new(),
            by_ioc_truncated: false,
        }
    }
}

fn file_entry(file: cases::File) -> FileEntry {
    let status = casescope_proto::common::v1::FileStatus::try_from(file.status)
        .map(|s| enum_word(s.as_str_name(), "FILE_STATUS_"))
        .unwrap_or_default();
    FileEntry {
        name: file.name,
        sha256: file.sha256,
        size_bytes: file.size_bytes,
        format: file.format,
        status,
        error: file.error,
        uploaded_at: time_text(file.uploaded_at.as_ref()),
        uploaded_by: if file.uploaded_by_name.is_empty() {
            file.uploaded_by.map(|u| u.value).unwrap_or_default()
        } else {
            file.uploaded_by_name
        },
        records_read: file.records_read,
        events_indexed: file.events_indexed,
        records_rejected: file.records_rejected,
        duplicates_skipped: file.duplicates_skipped,
        rejects: file
            .rejects_by_reason
            .into_iter()
            .map(|r| Reject {
                reason: r.reason,
                count: r.count,
            })
            .collect(),
        from_archive: file
            .parent_archive_id
            .map(|id| id.value)
            .unwrap_or_default(),
    }
}
