//! Annotations: the tags, stars and comments analysts put on events. The cases service
//! owns them (the event store's events are immutable); they are keyed by the
//! deterministic event id, so re-ingesting or re-indexing a file keeps them. Every
//! change commits with its `casescope.v1.annotations.<case>` fact(s) and bumps the
//! case's annotation version (which keys the cache of annotation sets, see
//! [`crate::sets`]).
//!
//! Bounds: 100,000 events per bulk request, 100 tags per event, 100 characters per tag,
//! 65,536 bytes per comment; each refusal names its limit.

mod listing;
pub(crate) mod store;

use crate::jobs::JobKind;
use crate::service::{CasesApi, db_error, require_open};
use crate::validate;
use casescope_bus::{OutboundMessage, subjects};
use casescope_db::Tx;
use casescope_proto::bus::v1::{AnnotationFact, FactHeader};
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, CommentId, EventId, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::identity::Identity;
use casescope_proto::time::{micros_to_rfc3339, micros_to_timestamp};
use store::{CommentRow, EventKey, TagRow};

/// Most events one tag/untag/star request may name.
pub const MAX_BULK_EVENTS: usize = 100_000;
/// Most tags one event may carry.
pub const MAX_TAGS_PER_EVENT: i64 = 100;
/// Longest comment, in bytes of UTF-8.
pub const MAX_COMMENT_BYTES: usize = 65_536;
/// Longest tag description, in characters.
pub const MAX_TAG_DESCRIPTION_CHARS: usize = 1_000;
/// Most events one GetAnnotations request may name.
pub const MAX_LOOKUP_EVENTS: usize = 1_000;
/// Events named per annotation fact (a larger change is several facts).
const FACT_EVENTS: usize = 1_000;

/// Who made a change: the user's id and name from the gateway's identity.
pub(crate) struct Actor {
    pub id: String,
    pub name: String,
}

impl Actor {
    pub fn of<T>(request: &tonic::Request<T>) -> Actor {
        match Identity::of(request) {
            Some(identity) => Actor {
                id: identity.user_id.clone(),
                name: identity.username.clone(),
            },
            // Only where no guard runs (the service's own tests).
            None => Actor {
                id: "unknown".into(),
                name: "unknown".into(),
            },
        }
    }
}

/// Length of an event id: 128 bits of SHA-256 in hex.
pub const EVENT_ID_LEN: usize = 32;

/// An event id: [`EVENT_ID_LEN`] hex digits (lower-cased).
pub(crate) fn event_id(id: Option<&EventId>, field: &str) -> Result<String, ApiError> {
    let value = id.map(|id| id.value.trim()).unwrap_or_default();
    if value.len() != EVENT_ID_LEN || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid_field(
            "EVENT_ID_INVALID",
            field,
            format!(
                "{:?} is not an event id ({EVENT_ID_LEN} hex digits)",
                value.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// The events of a bulk request: validated, de-duplicated, at most [`MAX_BULK_EVENTS`].
pub(crate) fn bulk_events(ids: &[EventId], field: &str) -> Result<Vec<EventKey>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::invalid_field(
            "EVENT_IDS_EMPTY",
            field,
            "name at least one event",
        ));
    }
    if ids.len() > MAX_BULK_EVENTS {
        return Err(ApiError::invalid_field(
            "TOO_MANY_EVENTS",
            field,
            format!(
                "{} events; at most {MAX_BULK_EVENTS} per request (split the request)",
                ids.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut events = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        let id = event_id(Some(id), &format!("{field}[{n}]"))?;
        if seen.insert(id.clone()) {
            events.push(EventKey::new(id));
        }
    }
    Ok(events)
}

fn tag_name(text: &str, field: &str) -> Result<String, ApiError> {
    casescope_query::normalise_tag(text)
        .map_err(|why| ApiError::invalid_field("TAG_INVALID", field, why))
}

fn colour(text: &str, field: &str) -> Result<String, ApiError> {
    let text = text.trim();
    let hex = text.strip_prefix('#').unwrap_or("-");
    let valid = text.is_empty()
        || ((hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(ApiError::invalid_field(
            "COLOUR_INVALID",
            field,
            format!("{text:?} is not a colour (\"#rgb\" or \"#rrggbb\")"),
        ));
    }
    Ok(text.to_ascii_lowercase())
}

fn comment_body(body: &str, field: &str) -> Result<String, ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "COMMENT_EMPTY",
            field,
            "a comment needs some text",
        ));
    }
    if body.len() > MAX_COMMENT_BYTES {
        return Err(ApiError::invalid_field(
            "COMMENT_TOO_LONG",
            field,
            format!(
                "{} bytes; a comment is at most {MAX_COMMENT_BYTES} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.to_string())
}

pub(crate) fn comment_id(id: Option<&CommentId>, field: &str) -> Result<String, ApiError> {
    let value = id.map(|id| id.value.trim()).unwrap_or_default();
    uuid::Uuid::parse_str(value)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            ApiError::invalid_field("COMMENT_ID_INVALID", field, "not a comment id (a UUID)")
        })
}

pub(crate) fn tag_to_pb(tag: &TagRow) -> pb::Tag {
    pb::Tag {
        name: tag.name.clone(),
        colour: tag.colour.clone(),
        event_count: u64::try_from(tag.event_count).unwrap_or_default(),
        description: tag.description.clone(),
        updated_at: Some(micros_to_timestamp(tag.updated_at)),
    }
}

pub(crate) fn comment_to_pb(comment: &CommentRow) -> pb::Comment {
    pb::Comment {
        id: Some(CommentId {
            value: comment.id.clone(),
        }),
        case_id: Some(CaseId {
            value: comment.case_id.clone(),
        }),
        event_id: Some(EventId {
            value: comment.event_id.clone(),
        }),
        author: Some(UserId {
            value: comment.author_id.clone(),
        }),
        body: comment.body.clone(),
        created_at: Some(micros_to_timestamp(comment.created_at)),
        parent_id: comment.parent_id.clone().map(|value| CommentId { value }),
        author_name: comment.author_name.clone(),
        edited_at: comment.edited_at.map(micros_to_timestamp),
        revision: u32::try_from(comment.revision).unwrap_or_default(),
        deleted: comment.deleted,
    }
}

/// What an annotation fact says besides its kind and events.
#[derive(Default)]
pub(crate) struct FactDetail {
    pub tag: String,
    pub comment: Option<CommentRow>,
    pub colour: String,
    pub description: String,
}

impl CasesApi {
    /// Opens a transaction on the open case `id` (validated from `case_id`).
    async fn begin_change(
        &self,
        id: Option<&CaseId>,
        what: &str,
    ) -> Result<(String, Tx<'static>), ApiError> {
        let case_id = validate::case_id(id, "case_id")?;
        let mut tx = self.begin().await?;
        let case = self.load(&mut tx, &case_id).await?;
        require_open(&case, what)?;
        Ok((case_id, tx))
    }

    /// Queues the fact(s) of one annotation change (events in parts of
    /// [`FACT_EVENTS`]) and bumps the case's annotation version.
    pub(crate) async fn record_annotation(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        kind: &str,
        actor: &Actor,
        events: &[String],
        detail: FactDetail,
    ) -> Result<(), ApiError> {
        store::bump_version(tx, case_id).await.map_err(db_error)?;
        let now = casescope_db::now_micros();
        let parts: Vec<&[String]> = if events.is_empty() {
            vec![&[]]
        } else {
            events.chunks(FACT_EVENTS).collect()
        };
        let count = parts.len();
        for (n, part) in parts.into_iter().enumerate() {
            let fact_id = uuid::Uuid::now_v7().to_string();
            let comment = detail.comment.as_ref();
            let fact = AnnotationFact {
                header: Some(FactHeader {
                    fact_id: fact_id.clone(),
                    kind: kind.to_string(),
                    case_id: case_id.to_string(),
                    occurred_at: micros_to_rfc3339(now),
                    producer: "cases".to_string(),
                }),
                actor_id: actor.id.clone(),
                actor_name: actor.name.clone(),
                tag: detail.tag.clone(),
                event_ids: part.to_vec(),
                part: (n + 1) as u32,
                parts: count as u32,
                comment_id: comment.map(|c| c.id.clone()).unwrap_or_default(),
                parent_comment_id: comment
                    .and_then(|c| c.parent_id.clone())
                    .unwrap_or_default(),
                body: comment.map(|c| c.body.clone()).unwrap_or_default(),
                revision: comment
                    .map(|c| u32::try_from(c.revision).unwrap_or_default())
                    .unwrap_or_default(),
                colour: detail.colour.clone(),
                description: detail.description.clone(),
            };
            let message =
                OutboundMessage::json(subjects::annotation_facts(case_id), fact_id, &fact)
                    .map_err(|error| ApiError::internal_logged("encode annotation fact", error))?;
            self.outbox
                .enqueue(tx, &message)
                .await
                .map_err(|error| ApiError::internal_logged("queue annotation fact", error))?;
        }
        Ok(())
    }

    pub(crate) async fn tag_events_now(
        &self,
        request: tonic::Request<pb::TagEventsRequest>,
        add: bool,
    ) -> Result<pb::TagEventsResponse, ApiError> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let tag = tag_name(&request.tag, "tag")?;
        if let Some(query) = request.matching.filter(|_| request.event_ids.is_empty()) {
            let kind = if add { JobKind::Tag } else { JobKind::Untag };
            let job_id = self
                .start_job(&actor, request.case_id.as_ref(), kind, &tag, query)
                .await?;
            return Ok(pb::TagEventsResponse { changed: 0, job_id });
        }
        let events = bulk_events(&request.event_ids, "event_ids")?;
        let (case_id, mut tx) = self
            .begin_change(
                request.case_id.as_ref(),
                if add {
                    "tagging its events"
                } else {
                    "untagging its events"
                },
            )
            .await?;
        let now = casescope_db::now_micros();
        let (changed_ids, changed) = if add {
            let full = store::at_tag_limit(&mut tx, &case_id, &tag, &events, MAX_TAGS_PER_EVENT)
                .await
                .map_err(db_error)?;
            if let Some(first) = full.first() {
                return Err(ApiError::invalid_field(
                    "TOO_MANY_TAGS",
                    "event_ids",
                    format!(
                        "event {first} (and {} more) already carries {MAX_TAGS_PER_EVENT} tags, \
                         the most an event may have",
                        full.len() - 1
                    ),
                ));
            }
            let changed = store::tag(&mut tx, &case_id, &tag, &events, &actor.id, now)
                .await
                .map_err(db_error)?;
            (events, changed)
        } else {
            let changed = store::untag(&mut tx, &case_id, &tag, &events, now)
                .await
                .map_err(db_error)?;
            (events, changed)
        };
        if changed > 0 {
            let ids: Vec<String> = changed_ids.into_iter().map(|e| e.id).collect();
            self.record_annotation(
                &mut tx,
                &case_id,
                if add {
                    "event.tagged"
                } else {
                    "event.untagged"
                },
                &actor,
                &ids,
                FactDetail {
                    tag,
                    ..FactDetail::default()
                },
            )
            .await?;
        }
        self.commit_change(tx).await?;
        Ok(pb::TagEventsResponse {
            changed,
            job_id: String::new(),
        })
    }

    pub(crate) async fn update_tag_now(
        &self,
        request: tonic::Request<pb::UpdateTagRequest>,
    ) -> Result<pb::Tag, ApiError> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let name = tag_name(&request.name, "name")?;
        let colour = colour(&request.colour, "colour")?;
        let chars = request.description.chars().count();
        if chars > MAX_TAG_DESCRIPTION_CHARS {
            return Err(ApiError::invalid_field(
                "DESCRIPTION_TOO_LONG",
                "description",
                format!("is {chars} characters; the maximum is {MAX_TAG_DESCRIPTION_CHARS}"),
            ));
        }
        let (case_id, mut tx) = self
            .begin_change(request.case_id.as_ref(), "changing its tags")
            .await?;
        let now = casescope_db::now_micros();
        let row = store::upsert_tag(&mut tx, &case_id, &name, &colour, &request.description, now)
            .await
            .map_err(db_error)?;
        self.record_annotation(
            &mut tx,
            &case_id,
            "tag.updated",
            &actor,
            &[],
            FactDetail {
                tag: name,
                colour,
                description: request.description,
                ..FactDetail::default()
            },
        )
        .await?;
        self.commit_change(tx).await?;
        Ok(tag_to_pb(&row))
    }

    pub(crate) async fn star_events_now(
        &self,
        request: tonic::Request<pb::StarEventsRequest>,
    ) -> Result<pb::TagEventsResponse, ApiError> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        if let Some(query) = request.matching.filter(|_| request.event_ids.is_empty()) {
            let kind = if request.starred {
                JobKind::Star
            } else {
                JobKind::Unstar
            };
            let job_id = self
                .start_job(&actor, request.case_id.as_ref(), kind, "", query)
                .await?;
            return Ok(pb::TagEventsResponse { changed: 0, job_id });
        }
        let events = bulk_events(&request.event_ids, "event_ids")?;
        let (case_id, mut tx) = self
            .begin_change(request.case_id.as_ref(), "starring its events")
            .await?;
        let now = casescope_db::now_micros();
        let changed = store::star(&mut tx, &case_id, &events, request.starred, &actor.id, now)
            .await
            .map_err(db_error)?;
        if changed > 0 {
            let ids: Vec<String> = events.into_iter().map(|e| e.id).collect();
            self.record_annotation(
                &mut tx,
                &case_id,
                if request.starred {
                    "event.starred"
                } else {
                    "event.unstarred"
                },
                &actor,
                &ids,
                FactDetail::default(),
            )
            .await?;
        }
        self.commit_change(tx).await?;
        Ok(pb::TagEventsResponse {
            changed,
            job_id: String::new(),
        })
    }

    pub(crate) async fn add_comment_now(
        &self,
        request: tonic::Request<pb::AddCommentRequest>,
    ) -> Result<pb::Comment, ApiError> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let event_id = event_id(request.event_id.as_ref(), "event_id")?;
        let body = comment_body(&request.body, "body")?;
        let parent = request
            .parent_id
            .as_ref()
            .filter(|id| !id.value.is_empty())
            .map(|id| comment_id(Some(id), "parent_id"))
            .transpose()?;
        let (case_id, mut tx) = self
            .begin_change(request.case_id.as_ref(), "commenting on its events")
            .await?;
        if let Some(parent) = &parent {
            let found = store::get_comment(&mut tx, &case_id, parent)
                .await
                .map_err(db_error)?;
            match found {
                Some(found) if found.event_id == event_id => {}
                Some(_) => {
                    return Err(ApiError::invalid_field(
                        "PARENT_ON_ANOTHER_EVENT",
                        "parent_id",
                        "an answer must be on the same event as the comment it answers",
                    ));
                }
                None => {
                    return Err(ApiError::not_found(
                        "COMMENT_NOT_FOUND",
                        format!("comment {parent} does not exist in this case"),
                    ));
                }
            }
        }
        let now = casescope_db::now_micros();
        let comment = CommentRow {
            id: uuid::Uuid::now_v7().to_string(),
            case_id: case_id.clone(),
            event_id: event_id.clone(),
            parent_id: parent,
            author_id: actor.id.clone(),
            author_name: actor.name.clone(),
            body,
            created_at: now,
            edited_at: None,
            revision: 1,
            deleted: false,
        };
        store::insert_comment(&mut tx, &comment)
            .await
            .map_err(db_error)?;
        self.record_annotation(
            &mut tx,
            &case_id,
            "comment.added",
            &actor,
            std::slice::from_ref(&event_id),
            FactDetail {
                comment: Some(comment.clone()),
                ..FactDetail::default()
            },
        )
        .await?;
        self.commit_change(tx).await?;
        Ok(comment_to_pb(&comment))
    }

    /// Edits (`body` set) or deletes (`body` None) a comment; only its author may.
    pub(crate) async fn rewrite_comment_now(
        &self,
        actor: Actor,
        case_id: Option<&CaseId>,
        id: Option<&CommentId>,
        body: Option<String>,
        expected_revision: u32,
    ) -> Result<pb::Comment, ApiError> {
        let id = comment_id(id, "id")?;
        let body = body.map(|body| comment_body(&body, "body")).transpose()?;
        let (case_id, mut tx) = self.begin_change(case_id, "changing its comments").await?;
        let mut comment = store::get_comment(&mut tx, &case_id, &id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "COMMENT_NOT_FOUND",
                    format!("comment {id} does not exist in this case"),
                )
            })?;
        if comment.author_id != actor.id {
            return Err(ApiError::PermissionDenied {
                reason: "NOT_THE_AUTHOR",
                message: "only a comment's author may change it".into(),
            });
        }
        if comment.deleted {
            return Err(ApiError::failed_precondition(
                "COMMENT_DELETED",
                format!("comment {id} was deleted"),
            ));
        }
        if expected_revision != 0 && i64::from(expected_revision) != comment.revision {
            return Err(ApiError::Aborted {
                reason: "REVISION_MISMATCH",
                message: format!(
                    "comment {id} is at revision {}, not {expected_revision}; reload and retry",
                    comment.revision
                ),
            });
        }
        let kind = if body.is_some() {
            "comment.edited"
        } else {
            "comment.deleted"
        };
        comment.deleted = body.is_none();
        comment.body = body.unwrap_or_default();
        comment.revision += 1;
        comment.edited_at = Some(casescope_db::now_micros().max(comment.created_at));
        if !store::rewrite_comment(&mut tx, &comment, &actor.id)
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: format!("comment {id} was changed concurrently; retry"),
            });
        }
        let event = comment.event_id.clone();
        self.record_annotation(
            &mut tx,
            &case_id,
            kind,
            &actor,
            std::slice::from_ref(&event),
            FactDetail {
                comment: Some(comment.clone()),
                ..FactDetail::default()
            },
        )
        .await?;
        self.commit_change(tx).await?;
        Ok(comment_to_pb(&comment))
    }

    pub(crate) async fn get_annotations_now(
        &self,
        request: pb::GetAnnotationsRequest,
    ) -> Result<pb::GetAnnotationsResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        if request.event_ids.len() > MAX_LOOKUP_EVENTS {
            return Err(ApiError::invalid_field(
                "TOO_MANY_EVENTS",
                "event_ids",
                format!(
                    "{} events; at most {MAX_LOOKUP_EVENTS} per request",
                    request.event_ids.len()
                ),
            ));
        }
        let ids = request
            .event_ids
            .iter()
            .enumerate()
            .map(|(n, id)| event_id(Some(id), &format!("event_ids[{n}]")))
            .collect::<Result<Vec<_>, _>>()?;
        self.require_case(&case_id).await?;
        let found = store::of_events(self.repo.db(), &case_id, &ids)
            .await
            .map_err(db_error)?;
        let events = ids
            .iter()
            .filter_map(|id| {
                found.get(id).map(|a| pb::EventAnnotations {
                    event_id: Some(EventId { value: id.clone() }),
                    tags: a.tags.clone(),
                    starred: a.starred,
                    comment_count: a.comment_count,
                })
            })
            .collect();
        Ok(pb::GetAnnotationsResponse { events })
    }
}
