//! Annotations (tags, stars, comments) on SQLite and a real PostgreSQL: bulk changes up
//! to the limit, every limit refused with its name, text kept as written, threads and
//! edit history, and one fact per change on the bus.

#[macro_use]
mod common;

use casescope_bus::Bus;
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_server::CasesService;
use casescope_proto::common::v1::{CaseId, CommentId, EventId};
use casescope_proto::identity::{CallerKind, Identity};
use common::{Harness, assert_invalid, create, page};
use sha2::{Digest, Sha256};
use tonic::{Code, Request};

/// A plausible event id (32 hex digits), distinct per `n`.
fn event(n: u64) -> EventId {
    EventId {
        value: hex(&Sha256::digest(n.to_le_bytes())[..16]),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn as_user<T>(message: T, user: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Identity {
        kind: CallerKind::User,
        user_id: format!("id-{user}"),
        username: user.to_string(),
        role: "analyst".into(),
        cases: None,
        method: String::new(),
        expires: u64::MAX,
    });
    request
}

async fn tag(h: &Harness, case: &Option<CaseId>, tag: &str, events: Vec<EventId>) -> u64 {
    h.api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: events,
                tag: tag.into(),
            },
            "alice",
        ))
        .await
        .unwrap()
        .into_inner()
        .changed
}

async fn tags(h: &Harness, case: &Option<CaseId>) -> Vec<(String, u64, String)> {
    h.api
        .list_tags(Request::new(pb::ListTagsRequest {
            case_id: case.clone(),
            page: page(1000, ""),
        }))
        .await
        .unwrap()
        .into_inner()
        .tags
        .into_iter()
        .map(|t| (t.name, t.event_count, t.colour))
        .collect()
}

async fn facts(h: &Harness, case: &Option<CaseId>) -> Vec<serde_json::Value> {
    h.outbox.publish_pending().await.unwrap();
    let case_id = &case.as_ref().unwrap().value;
    h.bus
        .recent(&format!("casescope.v1.annotations.{case_id}"), 10_000)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

async fn tags_stars_and_their_counts(h: Harness) {
    let case = create(&h.api, "tags").await.id;
    let events: Vec<EventId> = (0..10).map(event).collect();
    assert_eq!(
        tag(&h, &case, "  Lateral   Movement ", events[..6].to_vec()).await,
        6
    );
    assert_eq!(
        tag(&h, &case, "lateral movement", events[4..8].to_vec()).await,
        2,
        "normalised to the same tag; already tagged events are not counted"
    );
    let markup = "<img src=x onerror=alert(1)>\u{7}";
    assert_eq!(tag(&h, &case, markup, vec![events[9].clone()]).await, 1);
    let untagged = h
        .api
        .untag_events(as_user(
            pb::UntagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: vec![events[0].clone(), events[9].clone()],
                tag: "LATERAL MOVEMENT".into(),
            },
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(untagged.changed, 1, "event 9 never had it");
    let colour = h
        .api
        .update_tag(as_user(
            pb::UpdateTagRequest {
                case_id: case.clone(),
                name: "Lateral Movement".into(),
                colour: "#D33F49".into(),
                description: "hosts reached from WS01".into(),
            },
            "alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((colour.colour.as_str(), colour.event_count), ("#d33f49", 7));
    assert_eq!(
        tags(&h, &case).await,
        vec![
            (
                "<img src=x onerror=alert(1)>\u{7}".to_string(),
                1,
                String::new()
            ),
            ("lateral movement".to_string(), 7, "#d33f49".to_string()),
        ],
        "markup and control characters are kept as text"
    );

    let starred = h
        .api
        .star_events(as_user(
            pb::StarEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: vec![events[1].clone(), events[2].clone()],
                starred: true,
            },
            "bob",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(starred.changed, 2);
    let annotations = h
        .api
        .get_annotations(Request::new(pb::GetAnnotationsRequest {
            case_id: case.clone(),
            event_ids: vec![events[1].clone(), events[8].clone(), events[9].clone()],
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(annotations.len(), 2, "event 8 has none: {annotations:?}");
    assert_eq!(annotations[0].tags, vec!["lateral movement"]);
    assert!(annotations[0].starred);
    assert_eq!(annotations[1].tags, vec![markup.to_string()]);
    assert!(!annotations[1].starred);

    let kinds: Vec<(String, String, usize)> = facts(&h, &case)
        .await
        .iter()
        .map(|f| {
            (
                f["header"]["kind"].as_str().unwrap().to_string(),
                f["actor_name"].as_str().unwrap_or_default().to_string(),
                f["event_ids"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("event.tagged".to_string(), "alice".to_string(), 6),
            ("event.tagged".to_string(), "alice".to_string(), 4),
            ("event.tagged".to_string(), "alice".to_string(), 1),
            ("event.untagged".to_string(), "alice".to_string(), 2),
            ("tag.updated".to_string(), "alice".to_string(), 0),
            ("event.starred".to_string(), "bob".to_string(), 2),
        ]
    );
}

async fn bulk_tagging_reaches_the_limit_and_no_further(h: Harness) {
    let case = create(&h.api, "bulk").await.id;
    let events: Vec<EventId> = (0..100_000).map(event).collect();
    let started = std::time::Instant::now();
    assert_eq!(tag(&h, &case, "triage", events.clone()).await, 100_000);
    eprintln!("tagged 100,000 events in {:?}", started.elapsed());
    assert_eq!(tag(&h, &case, "triage", events[..10].to_vec()).await, 0);
    assert_eq!(tags(&h, &case).await[0].1, 100_000);
    let parts = facts(&h, &case).await;
    assert_eq!(parts.len(), 100, "one fact per 1,000 events");
    assert_eq!(parts[99]["part"], 100);
    assert_eq!(parts[99]["parts"], 100);

    let too_many: Vec<EventId> = (0..200_000).map(event).collect();
    let status = h
        .api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: too_many,
                tag: "x".into(),
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status.clone(), "event_ids");
    assert!(status.message().contains("100000"), "{status:?}");
}

async fn every_limit_is_named(h: Harness) {
    let case = create(&h.api, "limits").await.id;
    let one = vec![event(1)];
    for n in 0..100 {
        assert_eq!(tag(&h, &case, &format!("tag {n}"), one.clone()).await, 1);
    }
    let status = h
        .api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: one.clone(),
                tag: "one too many".into(),
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status.clone(), "event_ids");
    assert!(status.message().contains("100 tags"), "{status:?}");
    // Re-tagging with one it already has is fine.
    assert_eq!(tag(&h, &case, "tag 7", one.clone()).await, 0);

    let long_tag = "x".repeat(101);
    let status = h
        .api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: one.clone(),
                tag: long_tag,
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status, "tag");
    let status = h
        .api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.clone(),
                event_ids: vec![EventId {
                    value: "not-an-id".into(),
                }],
                tag: "t".into(),
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status, "event_ids[0]");
    let status = h
        .api
        .add_comment(as_user(
            pb::AddCommentRequest {
                case_id: case.clone(),
                event_id: Some(event(1)),
                body: "x".repeat(100 * 1024),
                parent_id: None,
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status.clone(), "body");
    assert!(status.message().contains("65536"), "{status:?}");
    let status = h
        .api
        .get_annotations(Request::new(pb::GetAnnotationsRequest {
            case_id: case.clone(),
            event_ids: (0..1001).map(event).collect(),
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "event_ids");
    let status = h
        .api
        .list_tags(Request::new(pb::ListTagsRequest {
            case_id: case.clone(),
            page: page(1001, ""),
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "page.page_size");
    let status = h
        .api
        .update_tag(as_user(
            pb::UpdateTagRequest {
                case_id: case.clone(),
                name: "t".into(),
                colour: "red; background: url(x)".into(),
                description: String::new(),
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_invalid(status, "colour");
}

async fn comments_thread_edit_with_history_and_delete(h: Harness) {
    let case = create(&h.api, "comments").await.id;
    let body = "**Lateral movement** from <script>alert(1)</script>\u{1b}[31m to DC01";
    let comment = |body: &str, parent: Option<CommentId>, user: &str| {
        as_user(
            pb::AddCommentRequest {
                case_id: case.clone(),
                event_id: Some(event(5)),
                body: body.into(),
                parent_id: parent,
            },
            user,
        )
    };
    let first = h
        .api
        .add_comment(comment(body, None, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.body, body, "stored and returned exactly as written");
    assert_eq!(first.author_name, "alice");
    assert_eq!(first.revision, 1);
    let answer = h
        .api
        .add_comment(comment("agreed", first.id.clone(), "bob"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.parent_id, first.id);

    let edit = |expected: u32, user: &str, text: &str| {
        as_user(
            pb::EditCommentRequest {
                case_id: case.clone(),
                id: first.id.clone(),
                body: text.into(),
                expected_revision: expected,
            },
            user,
        )
    };
    let edited = h
        .api
        .edit_comment(edit(1, "alice", "lateral movement to DC01 (confirmed)"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.revision, 2);
    assert!(edited.edited_at.is_some());
    let stale = h
        .api
        .edit_comment(edit(1, "alice", "lost edit"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let not_theirs = h
        .api
        .edit_comment(edit(0, "bob", "bob rewrites alice"))
        .await
        .unwrap_err();
    assert_eq!(not_theirs.code(), Code::PermissionDenied, "{not_theirs:?}");

    let revisions = h
        .api
        .list_comment_revisions(Request::new(pb::ListCommentRevisionsRequest {
            case_id: case.clone(),
            id: first.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .revisions;
    let bodies: Vec<&str> = revisions.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, vec![body, "lateral movement to DC01 (confirmed)"]);

    let deleted = h
        .api
        .delete_comment(as_user(
            pb::DeleteCommentRequest {
                case_id: case.clone(),
                id: answer.id.clone(),
            },
            "bob",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted && deleted.body.is_empty());

    let listed = h
        .api
        .list_comments(Request::new(pb::ListCommentsRequest {
            case_id: case.clone(),
            event_id: Some(event(5)),
            page: page(1, ""),
            newest_first: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.comments.len(), 1);
    let cursor = listed.page.unwrap().next_cursor;
    assert!(!cursor.is_empty());
    let second = h
        .api
        .list_comments(Request::new(pb::ListCommentsRequest {
            case_id: case.clone(),
            event_id: Some(event(5)),
            page: page(1, &cursor),
            newest_first: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.comments[0].id, answer.id,
        "the tombstone keeps its place"
    );
    assert!(second.page.unwrap().next_cursor.is_empty());
    // Newest first (a case's recent activity), paged in that order.
    let newest = |cursor: &str| pb::ListCommentsRequest {
        case_id: case.clone(),
        event_id: None,
        page: page(1, cursor),
        newest_first: true,
    };
    let latest = h
        .api
        .list_comments(Request::new(newest("")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.comments[0].id, answer.id, "the newest comes first");
    let older = h
        .api
        .list_comments(Request::new(newest(&latest.page.unwrap().next_cursor)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(older.comments[0].id, first.id);
    assert!(older.page.unwrap().next_cursor.is_empty());
    let counts = h
        .api
        .get_annotations(Request::new(pb::GetAnnotationsRequest {
            case_id: case.clone(),
            event_ids: vec![event(5)],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        counts.events[0].comment_count, 1,
        "deleted comments do not count"
    );

    let kinds: Vec<String> = facts(&h, &case)
        .await
        .iter()
        .map(|f| f["header"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "comment.added",
            "comment.added",
            "comment.edited",
            "comment.deleted"
        ]
    );
}

async fn archived_cases_refuse_annotations(h: Harness) {
    let case = create(&h.api, "archived").await;
    h.api
        .archive_case(Request::new(pb::ArchiveCaseRequest {
            id: case.id.clone(),
        }))
        .await
        .unwrap();
    let status = h
        .api
        .tag_events(as_user(
            pb::TagEventsRequest {
                matching: None,
                case_id: case.id.clone(),
                event_ids: vec![event(1)],
                tag: "x".into(),
            },
            "alice",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("archived"), "{status:?}");
}

on_both_backends!(
    tags_stars_and_their_counts,
    bulk_tagging_reaches_the_limit_and_no_further,
    every_limit_is_named,
    comments_thread_edit_with_history_and_delete,
    archived_cases_refuse_annotations,
);
