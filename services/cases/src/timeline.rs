//! The case timeline (`SearchTimeline`): the ingest service's events for a query,
//! joined with what analysts and the other services added to them — tags, star,
//! comments (this service) and detections (the detect service) — in one time-ordered,
//! cursor-paged stream that pages in both directions.
//!
//! Annotation clauses of the query (`tag:x`, `starred:true`, …) and the annotation
//! filters are resolved here to the sets of events they name ([`crate::sets`]) and
//! sent with the query, so the event store evaluates them with every other clause.

use crate::annotations::{Actor, store};
use crate::service::{CasesApi, db_error};
use crate::sets::SetError;
use crate::validate;
use casescope_proto::cases::v1 as pb;
use casescope_proto::channel::GrpcChannel;
use casescope_proto::common::v1::{
    CaseId, DetectionId, EventId, PageRequest, PageResponse, RuleId, SortOrder,
};
use casescope_proto::detect::v1 as detect;
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as ingest;
use casescope_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use casescope_proto::paging::validate_page;
use casescope_query::{Annotation, annotations, parse_query};
use std::collections::HashMap;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Detections shown per timeline event (the count has them all).
const DETECTIONS_PER_EVENT: usize = 20;
/// Pages of detections read for one page of events (1,000 each).
const MAX_DETECTION_PAGES: usize = 10;
/// Event ids per detections lookup (each is a clause of the detect service's query).
const DETECTION_LOOKUP_GROUP: usize = 200;
/// Most tags one timeline filter may list.
const MAX_FILTER_TAGS: usize = 100;

/// The services the timeline reads from.
#[derive(Clone)]
pub struct Peers {
    pub events: IngestServiceClient<GrpcChannel>,
    pub detections: Option<DetectServiceClient<GrpcChannel>>,
}

pub(crate) fn call<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    casescope_runtime::trace_context::inject_into_request(&mut request);
    request
}

/// A peer's refusal as this service's answer: what the caller can fix keeps the peer's
/// message (it names what was wrong); the rest is "unavailable, retry".
pub(crate) fn peer_error(peer: &str, status: tonic::Status) -> ApiError {
    let message = status.message().to_string();
    match status.code() {
        tonic::Code::InvalidArgument => ApiError::InvalidArgument {
            reason: "QUERY_INVALID",
            message: message.clone(),
            violations: vec![("query".into(), message)],
        },
        tonic::Code::NotFound => ApiError::not_found("NOT_FOUND", message),
        tonic::Code::FailedPrecondition => ApiError::failed_precondition("PRECONDITION", message),
        _ => {
            tracing::warn!(peer, error = %status, "timeline peer call failed");
            ApiError::Unavailable {
                message: format!("the {peer} service did not answer ({message}); retry shortly"),
            }
        }
    }
}

/// The event store's cursor text for the position of an event.
pub(crate) fn position(event: &ingest::Event) -> Option<String> {
    let timestamp = event.timestamp.as_ref()?;
    let micros = timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos / 1_000);
    let tiebreak = casescope_query::tiebreak_of(&event.event_id.as_ref()?.value);
    Some(format!("{micros}.{tiebreak:016x}"))
}

fn level_name(level: i32) -> String {
    detect::RuleLevel::try_from(level)
        .map(|level| {
            level
                .as_str_name()
                .trim_start_matches("RULE_LEVEL_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// The timeline query as the event store's query: the same string, the filters, and
/// the annotation sets it names.
pub(crate) struct Selection {
    pub case_id: String,
    pub query: ingest::EventQuery,
}

impl CasesApi {
    pub(crate) fn peers(&self) -> Result<&Peers, ApiError> {
        self.peers.as_ref().ok_or_else(|| {
            ApiError::failed_precondition(
                "TIMELINE_UNAVAILABLE",
                "this cases service is not connected to the ingest service",
            )
        })
    }

    /// Validates `query` for case `case_id` and resolves its annotation clauses.
    pub(crate) async fn selection(
        &self,
        case_id: Option<&CaseId>,
        query: Option<&pb::TimelineQuery>,
        field: &str,
    ) -> Result<Selection, ApiError> {
        let case_id = validate::case_id(case_id, "case_id")?;
        let query = query.cloned().unwrap_or_default();
        let parsed = parse_query(&query.query).map_err(|error| {
            ApiError::invalid_field("QUERY_INVALID", format!("{field}.query"), error.to_string())
        })?;
        if query.only_with_ioc_matches {
            return Err(ApiError::failed_precondition(
                "FILTER_NOT_AVAILABLE",
                "filtering the timeline by IOC matches is not available yet (no IOC service)",
            ));
        }
        if query.tags.len() > MAX_FILTER_TAGS {
            return Err(ApiError::invalid_field(
                "TOO_MANY_TAGS",
                format!("{field}.tags"),
                format!("{} tags; at most {MAX_FILTER_TAGS}", query.tags.len()),
            ));
        }
        let filter_tags = query
            .tags
            .iter()
            .enumerate()
            .map(|(n, tag)| {
                casescope_query::normalise_tag(tag)
                    .map(Annotation::Tag)
                    .map_err(|why| {
                        ApiError::invalid_field("TAG_INVALID", format!("{field}.tags[{n}]"), why)
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let version = store::version(self.repo.db(), &case_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found("CASE_NOT_FOUND", format!("case {case_id} does not exist"))
            })?;
        let mut wanted = annotations(&parsed);
        // Sets the query string itself names (a filter-only tag goes out once, in the
        // union below, not also under its own key).
        let in_query = wanted.clone();
        for extra in filter_tags
            .iter()
            .cloned()
            .chain(query.only_starred.then_some(Annotation::Starred))
            .chain(query.only_commented.then_some(Annotation::Commented))
        {
            if !wanted.contains(&extra) {
                wanted.push(extra);
            }
        }
        let mut sets = Vec::with_capacity(wanted.len() + 1);
        let mut resolved = HashMap::new();
        let mut total = 0usize;
        for annotation in &wanted {
            let members = self
                .sets
                .members(self.repo.db(), &case_id, annotation, version)
                .await
                .map_err(|error| match error {
                    SetError::Db(error) => db_error(error),
                    SetError::TooLarge { key } => ApiError::invalid_field(
                        "SET_TOO_LARGE",
                        format!("{field}.query"),
                        format!(
                            "{key} names more than {} events, the most one search may filter by",
                            crate::sets::MAX_QUERY_MEMBERS
                        ),
                    ),
                })?;
            let filter_only = filter_tags.contains(annotation) && !in_query.contains(annotation);
            if !filter_only {
                total += members.len();
                sets.push(ingest::EventSet {
                    key: annotation.key(),
                    tiebreaks: members.as_ref().clone(),
                });
            }
            resolved.insert(annotation.clone(), members);
        }
        let mut required = Vec::new();
        if !filter_tags.is_empty() {
            let mut union = Vec::new();
            for tag in &filter_tags {
                union.extend(resolved[tag].iter().copied());
            }
            total += union.len();
            sets.push(ingest::EventSet {
                key: "filter:tags".into(),
                tiebreaks: union,
            });
            required.push("filter:tags".to_string());
        }
        if let Some(detected) = self.detected_events(&case_id, &query, field).await? {
            total += detected.len();
            sets.push(ingest::EventSet {
                key: "filter:detections".into(),
                tiebreaks: detected,
            });
            required.push("filter:detections".to_string());
        }
        if query.only_starred {
            required.push(Annotation::Starred.key());
        }
        if query.only_commented {
            required.push(Annotation::Commented.key());
        }
        if total > crate::sets::MAX_QUERY_MEMBERS {
            return Err(ApiError::invalid_field(
                "SET_TOO_LARGE",
                format!("{field}.query"),
                format!(
                    "the query's annotation clauses name {total} events together; at most {}",
                    crate::sets::MAX_QUERY_MEMBERS
                ),
            ));
        }
        Ok(Selection {
            case_id,
            query: ingest::EventQuery {
                query: query.query,
                time_range: query.time_range,
                file_ids: query.file_ids,
                channels: query.channels,
                event_codes: query.event_codes,
                computers: query.computers,
                providers: query.providers,
                sets,
                required_sets: required,
            },
        })
    }

    /// The events the query's detection filters select (`None` without any), from the
    /// detect service.
    async fn detected_events(
        &self,
        case_id: &str,
        query: &pb::TimelineQuery,
        field: &str,
    ) -> Result<Option<Vec<u64>>, ApiError> {
        let filtered = query.only_with_detections
            || !query.detection_levels.is_empty()
            || !query.detection_rule_ids.is_empty()
            || !query.detection_tactics.is_empty();
        if !filtered {
            return Ok(None);
        }
        let levels = query
            .detection_levels
            .iter()
            .enumerate()
            .map(|(n, level)| {
                let name = format!("RULE_LEVEL_{}", level.trim().to_uppercase());
                detect::RuleLevel::from_str_name(&name)
                    .filter(|l| *l != detect::RuleLevel::Unspecified)
                    .map(|l| l as i32)
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "LEVEL_INVALID",
                            format!("{field}.detection_levels[{n}]"),
                            format!(
                                "{level:?} is not a level (informational, low, medium, high, critical)"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(mut client) = self.peers()?.detections.clone() else {
            return Err(ApiError::failed_precondition(
                "DETECTIONS_UNAVAILABLE",
                "filtering by detections needs the detect service, which this cases service \
                 is not connected to (CASESCOPE_DETECT_ADDR)",
            ));
        };
        let answer = client
            .detected_events(call(detect::DetectedEventsRequest {
                case_id: Some(CaseId {
                    value: case_id.to_string(),
                }),
                filter: Some(detect::DetectionFilter {
                    levels,
                    rule_ids: query.detection_rule_ids.clone(),
                    tactics: query.detection_tactics.clone(),
                    ..Default::default()
                }),
            }))
            .await
            .map_err(|status| peer_error("detect", status))?
            .into_inner();
        Ok(Some(answer.tiebreaks))
    }

    pub(crate) async fn search_timeline_now(
        &self,
        actor: Actor,
        request: pb::SearchTimelineRequest,
    ) -> Result<pb::SearchTimelineResponse, ApiError> {
        let page = validate_page(request.page.as_ref(), "page")?;
        let display = match request.query.as_ref().map(|q| q.sort()) {
            Some(SortOrder::Descending) => SortOrder::Descending,
            _ => SortOrder::Ascending,
        };
        if request.backward && page.cursor.is_none() {
            return Err(ApiError::invalid_field(
                "CURSOR_MISSING",
                "page.cursor",
                "a backward page starts from a cursor (previous_cursor of a page)",
            ));
        }
        let selection = self
            .selection(request.case_id.as_ref(), request.query.as_ref(), "query")
            .await?;
        let fetch_order = match (display, request.backward) {
            (SortOrder::Descending, false) | (SortOrder::Ascending, true) => SortOrder::Descending,
            _ => SortOrder::Ascending,
        };
        let peers = self.peers()?;
        let mut events = peers.events.clone();
        let answer = events
            .search_events(call(ingest::SearchEventsRequest {
                case_id: Some(CaseId {
                    value: selection.case_id.clone(),
                }),
                query: Some(selection.query),
                sort: fetch_order as i32,
                page: Some(PageRequest {
                    page_size: page.size,
                    cursor: page.cursor.clone().unwrap_or_default(),
                }),
                include_raw: request.include_raw,
            }))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        let more = answer
            .page
            .as_ref()
            .is_some_and(|p| !p.next_cursor.is_empty());
        let mut found = answer.events;
        let (next_cursor, previous_cursor) = if request.backward {
            found.reverse();
            let previous = if more {
                found.first().and_then(position)
            } else {
                None
            };
            (found.last().and_then(position), previous)
        } else {
            let next = if more {
                found.last().and_then(position)
            } else {
                None
            };
            let previous = page
                .cursor
                .as_ref()
                .and_then(|_| found.first().and_then(position));
            (next, previous)
        };
        let timeline = self.join(&selection.case_id, found).await?;
        self.remember(
            &actor,
            &selection.case_id,
            request.query.unwrap_or_default(),
            answer.total_hits,
        )
        .await;
        Ok(pb::SearchTimelineResponse {
            events: timeline,
            total_hits: answer.total_hits,
            page: Some(PageResponse {
                next_cursor: next_cursor.unwrap_or_default(),
            }),
            previous_cursor: previous_cursor.unwrap_or_default(),
            total_hits_is_lower_bound: answer.total_hits_is_lower_bound,
        })
    }

    /// Adds the search to the caller's history (a failure is logged: the search
    /// itself succeeded).
    async fn remember(&self, actor: &Actor, case_id: &str, query: pb::TimelineQuery, hits: u64) {
        let retention = match self.require_case(case_id).await {
            Ok(case) => case.settings.search_history_retention_days,
            Err(_) => 0,
        };
        if let Err(error) = crate::searches::record_search(
            self.repo.db(),
            case_id,
            &actor.id,
            &query,
            hits,
            retention,
        )
        .await
        {
            tracing::warn!(%error, case_id, "could not record the search in the history");
        }
    }

    /// Events with their annotations and detections, in the given order.
    pub(crate) async fn join(
        &self,
        case_id: &str,
        events: Vec<ingest::Event>,
    ) -> Result<Vec<pb::TimelineEvent>, ApiError> {
        let ids: Vec<String> = events
            .iter()
            .filter_map(|e| e.event_id.as_ref().map(|id| id.value.clone()))
            .collect();
        let annotations = store::of_events(self.repo.db(), case_id, &ids)
            .await
            .map_err(db_error)?;
        let detections = self.detections_of(case_id, &ids).await?;
        Ok(events
            .into_iter()
            .map(|event| {
                let id = event
                    .event_id
                    .as_ref()
                    .map(|id| id.value.clone())
                    .unwrap_or_default();
                let notes = annotations.get(&id).cloned().unwrap_or_default();
                let (count, shown) = detections.get(&id).cloned().unwrap_or_default();
                pb::TimelineEvent {
                    event_id: event.event_id,
                    file_id: event.file_id,
                    timestamp: event.timestamp,
                    source: ingest::EvidenceFormat::try_from(event.source)
                        .map(|f| {
                            f.as_str_name()
                                .trim_start_matches("EVIDENCE_FORMAT_")
                                .to_lowercase()
                        })
                        .unwrap_or_default(),
                    event_code: event.event_code.unwrap_or_default(),
                    channel: event.channel,
                    provider: event.provider,
                    computer: event.computer,
                    fields_json: event.fields_json,
                    tags: notes.tags,
                    detection_count: count,
                    ioc_match_count: 0,
                    comment_count: notes.comment_count,
                    starred: notes.starred,
                    detections: shown,
                    record_id: event.record_id,
                    raw_json: event.raw_json,
                }
            })
            .collect())
    }

    /// Per event: how many detections, and the first [`DETECTIONS_PER_EVENT`].
    async fn detections_of(
        &self,
        case_id: &str,
        ids: &[String],
    ) -> Result<HashMap<String, (u32, Vec<pb::TimelineDetection>)>, ApiError> {
        let mut out: HashMap<String, (u32, Vec<pb::TimelineDetection>)> = HashMap::new();
        let Some(mut client) = self.peers()?.detections.clone() else {
            return Ok(out);
        };
        if ids.is_empty() {
            return Ok(out);
        }
        // The detect service matches event ids one by one: asked in groups.
        for group in ids.chunks(DETECTION_LOOKUP_GROUP) {
            self.detections_of_group(&mut client, case_id, group, &mut out)
                .await?;
        }
        Ok(out)
    }

    async fn detections_of_group(
        &self,
        client: &mut DetectServiceClient<GrpcChannel>,
        case_id: &str,
        ids: &[String],
        out: &mut HashMap<String, (u32, Vec<pb::TimelineDetection>)>,
    ) -> Result<(), ApiError> {
        let mut cursor = String::new();
        for _ in 0..MAX_DETECTION_PAGES {
            let answer = client
                .list_detections(call(detect::ListDetectionsRequest {
                    case_id: Some(CaseId {
                        value: case_id.to_string(),
                    }),
                    filter: Some(detect::DetectionFilter {
                        event_ids: ids.iter().map(|id| EventId { value: id.clone() }).collect(),
                        ..Default::default()
                    }),
                    sort: SortOrder::Ascending as i32,
                    page: Some(PageRequest {
                        page_size: 1000,
                        cursor: cursor.clone(),
                    }),
                }))
                .await
                .map_err(|status| peer_error("detect", status))?
                .into_inner();
            for detection in answer.detections {
                for event in &detection.event_ids {
                    let entry = out.entry(event.value.clone()).or_default();
                    entry.0 += 1;
                    if entry.1.len() < DETECTIONS_PER_EVENT {
                        entry.1.push(pb::TimelineDetection {
                            id: detection
                                .id
                                .clone()
                                .map(|id| DetectionId { value: id.value }),
                            rule_id: detection
                                .rule_id
                                .clone()
                                .map(|id| RuleId { value: id.value }),
                            rule_title: detection.rule_title.clone(),
                            level: level_name(detection.level),
                            tactics: detection.tactics.clone(),
                        });
                    }
                }
            }
            cursor = answer.page.map(|p| p.next_cursor).unwrap_or_default();
            if cursor.is_empty() {
                break;
            }
        }
        Ok(())
    }
}
