//! The detect-service API against SQLite and a real PostgreSQL: rule import (loaded,
//! updated, refused, correlations), listing filters and paging, enable/disable with
//! ruleset versions, and every detection query's SQL (filters, counts, cursors).

use casescope_bus::{Bus, InProcessBus, Outbox};
use casescope_db::{Database, DbOptions};
use casescope_detect::{ALL_MIGRATIONS, DetectApi, DetectSettings, EventsClient};
use casescope_proto::common::v1::{CaseId, FileId, PageRequest, RuleId, TimeRange};
use casescope_proto::detect::v1 as pb;
use casescope_proto::detect::v1::detect_service_server::DetectService;
use std::sync::Arc;
use tonic::{Code, Request};

struct Harness {
    api: DetectApi,
    _dir: Option<tempfile::TempDir>,
}

async fn harness_on(db: Database, dir: Option<tempfile::TempDir>) -> Harness {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let bus = Arc::new(InProcessBus::default());
    let outbox = Outbox::new(db.clone(), bus as Arc<dyn Bus>);
    // No ingest service here: these tests never scan events.
    let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:9");
    let events = EventsClient::new(
        casescope_proto::channel::from_transport(endpoint.connect_lazy()),
        |_| {},
    );
    let api = DetectApi::new(db, DetectSettings::default(), outbox, events);
    Harness { api, _dir: dir }
}

async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("detect.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, Some(dir)).await
}

async fn postgres() -> Harness {
    let url = casescope_testkit::postgres_url().await;
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, None).await
}

const CASE: &str = "0194f6a8-3c1e-7d2a-9b4e-5f6a7b8c9d0e";

fn case() -> Option<CaseId> {
    Some(CaseId { value: CASE.into() })
}

async fn ruleset(h: &Harness) -> pb::Ruleset {
    h.api
        .get_ruleset(Request::new(pb::GetRulesetRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn list(h: &Harness, request: pb::ListRulesRequest) -> pb::ListRulesResponse {
    h.api
        .list_rules(Request::new(request))
        .await
        .unwrap()
        .into_inner()
}

async fn rules_and_versions(h: Harness) {
    h.api.seed_builtin_rules().await.unwrap();
    let seeded = ruleset(&h).await;
    assert_eq!(seeded.version, 1);
    assert_eq!(seeded.loaded_rules, 6, "{seeded:?}");
    assert_eq!(seeded.enabled_rules, 6);
    // Seeding is once: a second start leaves the store alone.
    h.api.seed_builtin_rules().await.unwrap();
    assert_eq!(ruleset(&h).await.version, 1);

    let first = list(
        &h,
        pb::ListRulesRequest {
            page: Some(PageRequest {
                page_size: 4,
                cursor: String::new(),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((first.rules.len(), first.total), (4, 6));
    let rest = list(
        &h,
        pb::ListRulesRequest {
            page: Some(PageRequest {
                page_size: 4,
                cursor: first.page.clone().unwrap().next_cursor,
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.rules.len(), 2);
    assert!(rest.page.unwrap().next_cursor.is_empty());
    let titles: Vec<String> = first
        .rules
        .iter()
        .chain(&rest.rules)
        .map(|r| r.title.clone())
        .collect();
    let mut sorted = titles.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(titles, sorted, "ordered by title, each once");

    let high = list(
        &h,
        pb::ListRulesRequest {
            levels: vec![pb::RuleLevel::High as i32, pb::RuleLevel::Critical as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(high.total >= 1 && high.total < 6, "{high:?}");
    assert!(
        high.rules
            .iter()
            .all(|r| r.level >= pb::RuleLevel::High as i32)
    );
    let whoami = list(
        &h,
        pb::ListRulesRequest {
            title_contains: "WHOAMI".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(whoami.total, 1, "{whoami:?}");
    let rule = whoami.rules[0].clone();
    let tagged = list(
        &h,
        pb::ListRulesRequest {
            tag: rule.tags[0].clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(tagged.rules.iter().any(|r| r.id == rule.id));

    // An import: one updated rule, one correlation over it, one refused document.
    let yaml = h
        .api
        .get_rule(Request::new(pb::GetRuleRequest {
            id: rule.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .yaml;
    assert!(yaml.contains("detection:"), "{yaml}");
    let edited = yaml.replacen("description: ", "description: Edited. ", 1);
    assert_ne!(edited, yaml);
    let correlation = format!(
        "title: Many whoami\nid: 5d6f7a8b-0000-4000-8000-00000000c0c0\nlevel: high\n\
         correlation:\n  type: event_count\n  rules: [{}]\n  group-by: [Computer]\n  \
         timespan: 1h\n  condition: {{gte: 3}}\n",
        rule.id.as_ref().unwrap().value
    );
    let files = vec![
        casescope_detect::ImportFile {
            path: "whoami.yml".into(),
            bytes: edited.into_bytes(),
        },
        casescope_detect::ImportFile {
            path: "corr.yml".into(),
            bytes: correlation.into_bytes(),
        },
        casescope_detect::ImportFile {
            path: "broken.yml".into(),
            bytes:
                b"title: broken\nlogsource: {product: windows}\ndetection: {condition: nothing}\n"
                    .to_vec(),
        },
    ];
    let (planned, version) = h
        .api
        .import(files, casescope_detect::ImportOptions::default(), false)
        .await
        .unwrap();
    assert_eq!((planned.added, planned.updated), (1, 1), "{planned:?}");
    assert_eq!(planned.refused.len(), 1, "{planned:?}");
    assert_eq!(version, 2, "one import, one version");
    let refused = list(
        &h,
        pb::ListRulesRequest {
            refused_only: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(refused.total, 1);
    assert!(!refused.rules[0].refusal_reason.is_empty());
    assert!(!refused.rules[0].enabled);
    let correlations = list(
        &h,
        pb::ListRulesRequest {
            is_correlation: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(correlations.total, 1);
    assert_eq!(
        correlations.rules[0].correlation_type,
        pb::CorrelationType::EventCount as i32
    );

    // Enable/disable: an empty selector is refused; a level selector changes rules once.
    let empty = h
        .api
        .set_rule_state(Request::new(pb::SetRuleStateRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let select = || pb::SetRuleStateRequest {
        selector: Some(pb::RuleSelector {
            levels: vec![pb::RuleLevel::High as i32],
            ..Default::default()
        }),
        enabled: false,
    };
    let disabled = h
        .api
        .set_rule_state(Request::new(select()))
        .await
        .unwrap()
        .into_inner();
    assert!(disabled.changed >= 1);
    assert_eq!(disabled.ruleset_version, 3);
    let again = h
        .api
        .set_rule_state(Request::new(select()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.changed, again.ruleset_version),
        (0, 3),
        "no change, no new version"
    );
    let state = ruleset(&h).await;
    assert_eq!(state.enabled_rules + disabled.changed, state.loaded_rules);
    assert_eq!(state.refused_rules, 1);
    assert_eq!(state.digest.len(), 64);
}

async fn detection_queries(h: Harness) {
    let filter = pb::DetectionFilter {
        rule_ids: vec![RuleId {
            value: "a-b".into(),
        }],
        levels: vec![pb::RuleLevel::High as i32],
        tactics: vec!["credential_access".into()],
        techniques: vec!["T1003".into()],
        file_ids: vec![FileId { value: "f1".into() }],
        time_range: Some(TimeRange {
            start_unix_micros: Some(1),
            end_unix_micros: Some(2_000_000_000_000_000),
        }),
        event_ids: vec![casescope_proto::common::v1::EventId { value: "e1".into() }],
        is_correlation: Some(false),
    };
    let listed = h
        .api
        .list_detections(Request::new(pb::ListDetectionsRequest {
            case_id: case(),
            filter: Some(filter.clone()),
            sort: casescope_proto::common::v1::SortOrder::Descending as i32,
            page: Some(PageRequest {
                page_size: 10,
                cursor: format!("5:{}", "ab".repeat(16)),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total, 0);
    let counts = h
        .api
        .count_detections(Request::new(pb::CountDetectionsRequest {
            case_id: case(),
            filter: Some(filter),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.total, 0);
    let bad_cursor = h
        .api
        .list_detections(Request::new(pb::ListDetectionsRequest {
            case_id: case(),
            page: Some(PageRequest {
                page_size: 10,
                cursor: "nope".into(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_cursor.code(), Code::InvalidArgument);
    let missing = h
        .api
        .get_detection(Request::new(pb::GetDetectionRequest {
            case_id: case(),
            id: Some(casescope_proto::common::v1::DetectionId {
                value: "ab".repeat(16),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let rerun = h
        .api
        .rerun_detection(Request::new(pb::RerunDetectionRequest {
            case_id: case(),
            scope: Some(pb::rerun_detection_request::Scope::Files(pb::FileIdList {
                file_ids: vec![FileId {
                    value: "never-indexed".into(),
                }],
            })),
        }))
        .await
        .unwrap_err();
    assert_eq!(rerun.code(), Code::NotFound, "{rerun:?}");
    let whole = h
        .api
        .rerun_detection(Request::new(pb::RerunDetectionRequest {
            case_id: case(),
            scope: Some(pb::rerun_detection_request::Scope::WholeCase(true)),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.files_scheduled, 0);
    let states = h
        .api
        .list_file_states(Request::new(pb::ListFileStatesRequest {
            case_id: case(),
            page: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(states.files.is_empty());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test]
            async fn $name() { super::$name(super::sqlite().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test]
            async fn $name() { super::$name(super::postgres().await).await; })*
        }
    };
}

on_both_backends!(rules_and_versions, detection_queries);
