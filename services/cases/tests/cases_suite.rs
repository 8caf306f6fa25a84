//! The cases-service suite, run against SQLite and a real PostgreSQL.

#[macro_use]
mod common;

use casescope_bus::Bus;
use casescope_proto::cases::v1 as pb;
use casescope_proto::cases::v1::cases_service_server::CasesService;
use casescope_proto::cases::v1::file_records_service_server::FileRecordsService;
use casescope_proto::error::error_detail;
use common::{Harness, assert_invalid, create, id, page};
use tonic::{Code, Request};

async fn create_get_and_page_through_cases(h: Harness) {
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(create(&h.api, &format!("case {n}")).await);
    }
    let fetched = h
        .api
        .get_case(Request::new(pb::GetCaseRequest {
            id: created[3].id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created[3]);
    assert_eq!(fetched.name, "case 3");
    assert_eq!(fetched.state, pb::CaseState::Open as i32);
    assert_eq!(fetched.version, 1);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let response = h
            .api
            .list_cases(Request::new(pb::ListCasesRequest {
                page: page(3, &cursor),
                include_archived: false,
            }))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(response.cases.len() <= 3);
        seen.extend(response.cases.into_iter().map(|c| c.name));
        cursor = response.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).rev().map(|n| format!("case {n}")).collect();
    assert_eq!(seen, expected, "newest first, each case once");
}

async fn bad_input_is_refused_with_what_and_where(h: Harness) {
    for (name, field) in [("", "name"), ("   ", "name"), ("a\u{1b}[31mred", "name")] {
        let status = h
            .api
            .create_case(Request::new(pb::CreateCaseRequest {
                name: name.into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_invalid(status, field);
    }
    let too_long = "x".repeat(201);
    let status = h
        .api
        .create_case(Request::new(pb::CreateCaseRequest {
            name: too_long,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "name");
    assert!(create(&h.api, &"y".repeat(200)).await.name.len() == 200);

    let status = h
        .api
        .create_case(Request::new(pb::CreateCaseRequest {
            name: "ok".into(),
            settings: Some(pb::CaseSettings {
                evidence_retention_days: 1_000_000,
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "settings.evidence_retention_days");

    let status = h
        .api
        .get_case(Request::new(pb::GetCaseRequest {
            id: id("not-a-uuid"),
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "id");
    let status = h
        .api
        .get_case(Request::new(pb::GetCaseRequest { id: None }))
        .await
        .unwrap_err();
    assert_invalid(status, "id");
    let unknown = uuid::Uuid::now_v7().to_string();
    let status = h
        .api
        .get_case(Request::new(pb::GetCaseRequest { id: id(&unknown) }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(&unknown), "{status:?}");

    let status = h
        .api
        .list_cases(Request::new(pb::ListCasesRequest {
            page: page(1001, ""),
            include_archived: false,
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "page.page_size");
    let status = h
        .api
        .list_cases(Request::new(pb::ListCasesRequest {
            page: page(10, "garbage!"),
            include_archived: false,
        }))
        .await
        .unwrap_err();
    assert_invalid(status, "page.cursor");
    let status = h
        .api
        .list_files(Request::new(pb::ListFilesRequest {
            case_id: id(&unknown),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn update_archive_restore_and_delete(h: Harness) {
    let case = create(&h.api, "original").await;
    let update = |name: &str, paths: &[&str], expected_version: i64| pb::UpdateCaseRequest {
        id: case.id.clone(),
        name: name.to_string(),
        description: String::new(),
        settings: Some(pb::CaseSettings {
            deduplicate_events: true,
            search_history_retention_days: 30,
            evidence_retention_days: 0,
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        expected_version,
    };
    let updated = h
        .api
        .update_case(Request::new(update("renamed", &["name", "settings"], 1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        updated.description, "about original",
        "unmasked fields are kept"
    );
    assert_eq!(updated.version, 2);
    assert!(updated.settings.unwrap().deduplicate_events);

    let stale = h
        .api
        .update_case(Request::new(update("again", &["name"], 1)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_invalid(
        h.api
            .update_case(Request::new(update("again", &[], 0)))
            .await
            .unwrap_err(),
        "update_mask",
    );
    assert_invalid(
        h.api
            .update_case(Request::new(update("again", &["state"], 0)))
            .await
            .unwrap_err(),
        "update_mask",
    );

    let archived = h
        .api
        .archive_case(Request::new(pb::ArchiveCaseRequest {
            id: case.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.state, pb::CaseState::Archived as i32);
    assert!(archived.archived_at.is_some());
    let again = h
        .api
        .archive_case(Request::new(pb::ArchiveCaseRequest {
            id: case.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.version, archived.version,
        "archiving twice changes nothing"
    );
    let refused = h
        .api
        .update_case(Request::new(update("while archived", &["name"], 0)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let listed = |include_archived| pb::ListCasesRequest {
        page: None,
        include_archived,
    };
    let open = h
        .api
        .list_cases(Request::new(listed(false)))
        .await
        .unwrap()
        .into_inner();
    assert!(
        open.cases.is_empty(),
        "archived cases are hidden by default"
    );
    let all = h
        .api
        .list_cases(Request::new(listed(true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.cases.len(), 1);

    // A restore runs in the ingest service: the case is RESTORING until it reports.
    let restore = || async {
        h.api
            .restore_case(Request::new(pb::RestoreCaseRequest {
                id: case.id.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    let restoring = restore().await;
    assert_eq!(restoring.state, pb::CaseState::Restoring as i32);
    assert_eq!(restore().await.version, restoring.version, "idempotent");
    let busy = h
        .api
        .archive_case(Request::new(pb::ArchiveCaseRequest {
            id: case.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);
    assert_eq!(error_detail(&busy).unwrap().reason, "CASE_RESTORING");
    let finish = |restored: bool, refusal: &str| {
        let request = pb::FinishRestoreRequest {
            case_id: case.id.clone(),
            restored,
            refusal: refusal.into(),
        };
        async {
            h.api
                .finish_restore(Request::new(request))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let refused = finish(false, "file \"a.evtx\" (f1) does not match its SHA-256").await;
    assert_eq!(refused.state, pb::CaseState::Archived as i32);
    assert!(refused.restore_error.contains("f1"), "{refused:?}");
    assert_eq!(
        finish(true, "").await.state,
        pb::CaseState::Archived as i32,
        "an outcome is ignored unless a restore runs"
    );
    assert_eq!(restore().await.state, pb::CaseState::Restoring as i32);
    let restored = finish(true, "").await;
    assert_eq!(restored.state, pb::CaseState::Open as i32);
    assert!(restored.archived_at.is_none());
    assert!(restored.restore_error.is_empty());

    let files = h
        .api
        .list_files(Request::new(pb::ListFilesRequest {
            case_id: case.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(files.files.is_empty());

    h.api
        .delete_case(Request::new(pb::DeleteCaseRequest {
            id: case.id.clone(),
        }))
        .await
        .unwrap();
    for status in [
        h.api
            .get_case(Request::new(pb::GetCaseRequest {
                id: case.id.clone(),
            }))
            .await
            .unwrap_err(),
        h.api
            .delete_case(Request::new(pb::DeleteCaseRequest {
                id: case.id.clone(),
            }))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }

    // Every committed change produced exactly one fact, in order, as JSON.
    assert_eq!(h.outbox.pending_count().await.unwrap(), 8);
    assert_eq!(h.outbox.publish_pending().await.unwrap(), 8);
    assert_eq!(h.outbox.pending_count().await.unwrap(), 0);
    let case_id = &case.id.as_ref().unwrap().value;
    let facts = h
        .bus
        .recent(&format!("casescope.v1.cases.{case_id}"), 100)
        .await
        .unwrap();
    let kinds: Vec<String> = facts
        .iter()
        .map(|m| {
            let fact: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(fact["header"]["case_id"], case_id.as_str());
            fact["header"]["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "case.created",
            "case.updated",
            "case.archived",
            "case.restore_requested",
            "case.restore_refused",
            "case.restore_requested",
            "case.restored",
            "case.deleted"
        ]
    );
}

on_both_backends!(
    create_get_and_page_through_cases,
    bad_input_is_refused_with_what_and_where,
    update_archive_restore_and_delete,
);
