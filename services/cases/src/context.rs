//! Around the timeline: the histogram of a selection and the context of one event (the
//! events before and after it, by count or by seconds, on its host or in the case).

use crate::annotations::event_id;
use crate::service::CasesApi;
use crate::timeline::{call, peer_error, position};
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, EventId, PageRequest, SortOrder, TimeRange};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as ingest;

/// Most events on each side of a context.
pub const MAX_CONTEXT_EVENTS: u32 = 500;
/// Widest context window each way, in seconds.
pub const MAX_CONTEXT_SECONDS: u32 = 86_400;
/// Buckets of a histogram when the caller does not say.
const DEFAULT_BUCKETS: u32 = 200;

fn micros_of(event: &ingest::Event) -> i64 {
    event
        .timestamp
        .as_ref()
        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1_000))
        .unwrap_or_default()
}

impl CasesApi {
    pub(crate) async fn timeline_histogram_now(
        &self,
        request: pb::TimelineHistogramRequest,
    ) -> Result<pb::TimelineHistogramResponse, ApiError> {
        let selection = self
            .selection(request.case_id.as_ref(), request.query.as_ref(), "query")
            .await?;
        let mut events = self.peers()?.events.clone();
        let answer = events
            .histogram(call(ingest::HistogramRequest {
                case_id: Some(CaseId {
                    value: selection.case_id,
                }),
                query: Some(selection.query),
                interval: request.interval,
                max_buckets: if request.max_buckets == 0 {
                    DEFAULT_BUCKETS
                } else {
                    request.max_buckets
                },
            }))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        Ok(pb::TimelineHistogramResponse {
            interval: answer.interval,
            buckets: answer
                .buckets
                .into_iter()
                .map(|b| pb::TimelineHistogramBucket {
                    start: b.start,
                    count: b.count,
                })
                .collect(),
            total_count: answer.total_count,
        })
    }

    pub(crate) async fn timeline_facets_now(
        &self,
        request: pb::TimelineFacetsRequest,
    ) -> Result<ingest::FacetsResponse, ApiError> {
        let selection = self
            .selection(request.case_id.as_ref(), request.query.as_ref(), "query")
            .await?;
        let mut events = self.peers()?.events.clone();
        Ok(events
            .facets(call(ingest::FacetsRequest {
                case_id: Some(CaseId {
                    value: selection.case_id,
                }),
                query: Some(selection.query),
                fields: request.fields,
                top: request.top,
            }))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner())
    }

    pub(crate) async fn event_context_now(
        &self,
        request: pb::GetEventContextRequest,
    ) -> Result<pb::GetEventContextResponse, ApiError> {
        let case_id = crate::validate::case_id(request.case_id.as_ref(), "case_id")?;
        let id = event_id(request.event_id.as_ref(), "event_id")?;
        let (count, seconds) = match (request.events, request.seconds) {
            (0, 0) | (1.., 1..) => {
                return Err(ApiError::invalid_field(
                    "CONTEXT_SIZE",
                    "events",
                    "give either events (the N before and after) or seconds (the window)",
                ));
            }
            (n, 0) if n > MAX_CONTEXT_EVENTS => {
                return Err(ApiError::invalid_field(
                    "CONTEXT_TOO_LARGE",
                    "events",
                    format!("{n} events each way; at most {MAX_CONTEXT_EVENTS}"),
                ));
            }
            (0, s) if s > MAX_CONTEXT_SECONDS => {
                return Err(ApiError::invalid_field(
                    "CONTEXT_TOO_LARGE",
                    "seconds",
                    format!("{s} seconds each way; at most {MAX_CONTEXT_SECONDS} (a day)"),
                ));
            }
            (n, 0) => (n, None),
            (_, s) => (MAX_CONTEXT_EVENTS, Some(i64::from(s) * 1_000_000)),
        };
        self.require_case(&case_id).await?;
        let mut events = self.peers()?.events.clone();
        let event = events
            .get_event(call(ingest::GetEventRequest {
                case_id: Some(CaseId {
                    value: case_id.clone(),
                }),
                event_id: Some(EventId { value: id.clone() }),
            }))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        let at = micros_of(&event);
        let cursor = position(&event).unwrap_or_default();
        let computers = if request.same_host {
            vec![event.computer.clone()]
        } else {
            Vec::new()
        };
        let side = |sort: SortOrder| {
            let time_range = seconds.map(|window| match sort {
                SortOrder::Descending => TimeRange {
                    start_unix_micros: Some(at.saturating_sub(window)),
                    end_unix_micros: Some(at.saturating_add(1)),
                },
                _ => TimeRange {
                    start_unix_micros: Some(at),
                    end_unix_micros: Some(at.saturating_add(window).saturating_add(1)),
                },
            });
            ingest::SearchEventsRequest {
                case_id: Some(CaseId {
                    value: case_id.clone(),
                }),
                query: Some(ingest::EventQuery {
                    computers: computers.clone(),
                    time_range,
                    ..Default::default()
                }),
                sort: sort as i32,
                page: Some(PageRequest {
                    page_size: count,
                    cursor: cursor.clone(),
                }),
                include_raw: request.include_raw,
            }
        };
        let before = events
            .search_events(call(side(SortOrder::Descending)))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        let after = events
            .search_events(call(side(SortOrder::Ascending)))
            .await
            .map_err(|status| peer_error("ingest", status))?
            .into_inner();
        let more = |page: &Option<casescope_proto::common::v1::PageResponse>| {
            page.as_ref().is_some_and(|p| !p.next_cursor.is_empty())
        };
        let (more_before, more_after) = (more(&before.page), more(&after.page));
        let mut before_events = before.events;
        before_events.reverse();
        let (n_before, n_after) = (before_events.len(), after.events.len());
        let mut all = before_events;
        all.push(event);
        all.extend(after.events);
        let mut joined = self.join(&case_id, all).await?.into_iter();
        let before: Vec<pb::TimelineEvent> = joined.by_ref().take(n_before).collect();
        let event = joined.next();
        let after: Vec<pb::TimelineEvent> = joined.take(n_after).collect();
        Ok(pb::GetEventContextResponse {
            event,
            before,
            after,
            more_before,
            more_after,
        })
    }
}
