//! Saved searches, search history and case notes on SQLite and a real PostgreSQL:
//! sharing and ownership, the history bound (newest 1,000, repeats folded), notes
//! versions with optimistic concurrency.

#[macro_use]
mod common;

use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_server::CasesService;
use casescope_proto::identity::{CallerKind, Identity};
use common::{Harness, assert_invalid, create, page};
use tonic::{Code, Request};

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

fn query(text: &str) -> Option<pb::TimelineQuery> {
    Some(pb::TimelineQuery {
        query: text.into(),
        ..Default::default()
    })
}

async fn saved_searches_are_per_user_unless_shared(h: Harness) {
    let case = create(&h.api, "saved").await.id;
    let save = |name: &str, text: &str, shared: bool, user: &str| {
        as_user(
            pb::SaveSearchRequest {
                case_id: case.clone(),
                name: name.into(),
                query: query(text),
                shared,
            },
            user,
        )
    };
    let logons = h
        .api
        .save_search(save("logons", "EventID:4624", false, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logons.query.unwrap().query, "EventID:4624");
    h.api
        .save_search(save("team", "tag:lateral-movement", true, "alice"))
        .await
        .unwrap();
    let replaced = h
        .api
        .save_search(save("logons", "EventID:4625", false, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.id, logons.id, "saving a name again replaces it");
    h.api
        .save_search(save("mine", "whoami", false, "bob"))
        .await
        .unwrap();
    let bad = h
        .api
        .save_search(save("broken", "(unclosed", false, "bob"))
        .await
        .unwrap_err();
    assert_invalid(bad, "query.query");

    let list = |user: &str, cursor: &str| {
        as_user(
            pb::ListSavedSearchesRequest {
                case_id: case.clone(),
                page: page(1, cursor),
            },
            user,
        )
    };
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let response = h
            .api
            .list_saved_searches(list("bob", &cursor))
            .await
            .unwrap()
            .into_inner();
        names.extend(response.searches.into_iter().map(|s| s.name));
        cursor = response.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        vec!["mine", "team"],
        "bob sees his own and shared ones"
    );

    let foreign = h
        .api
        .delete_saved_search(as_user(
            pb::DeleteSavedSearchRequest {
                case_id: case.clone(),
                id: logons.id.clone(),
            },
            "bob",
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    h.api
        .delete_saved_search(as_user(
            pb::DeleteSavedSearchRequest {
                case_id: case.clone(),
                id: logons.id.clone(),
            },
            "alice",
        ))
        .await
        .unwrap();
}

async fn notes_are_versioned(h: Harness) {
    let case = create(&h.api, "notes").await.id;
    let empty = h
        .api
        .get_case_notes(Request::new(pb::GetCaseNotesRequest {
            case_id: case.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((empty.version, empty.body.as_str()), (0, ""));
    let update = |body: &str, expected: i64| {
        as_user(
            pb::UpdateCaseNotesRequest {
                case_id: case.clone(),
                body: body.into(),
                expected_version: expected,
            },
            "alice",
        )
    };
    let first = h
        .api
        .update_case_notes(update("# Findings\n<script>x</script>", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.version, 1);
    let stale = h
        .api
        .update_case_notes(update("lost", 0))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    h.api
        .update_case_notes(update("# Findings\nDC01 first", 1))
        .await
        .unwrap();
    let current = h
        .api
        .get_case_notes(Request::new(pb::GetCaseNotesRequest {
            case_id: case.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            current.version,
            current.body.as_str(),
            current.updated_by_name.as_str()
        ),
        (2, "# Findings\nDC01 first", "alice")
    );
    let versions = h
        .api
        .list_case_notes_versions(Request::new(pb::ListCaseNotesVersionsRequest {
            case_id: case.clone(),
            page: page(10, ""),
        }))
        .await
        .unwrap()
        .into_inner()
        .versions;
    let bodies: Vec<&str> = versions.iter().map(|v| v.body.as_str()).collect();
    assert_eq!(
        bodies,
        vec!["# Findings\nDC01 first", "# Findings\n<script>x</script>"]
    );
    let huge = h
        .api
        .update_case_notes(update(&"x".repeat(1024 * 1024 + 1), 2))
        .await
        .unwrap_err();
    assert_invalid(huge, "body");
}

on_both_backends!(
    saved_searches_are_per_user_unless_shared,
    notes_are_versioned
);
