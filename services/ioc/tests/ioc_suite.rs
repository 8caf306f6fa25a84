//! The ioc-service API against SQLite and a real PostgreSQL: create (canonical values,
//! duplicates, refusals), listing filters and paging, updates with versions and the
//! case's IOC version, imports (all or nothing, per-record results, limits), exports,
//! the hunt-state and match queries on a case without files, and global lists (their
//! IOCs counted in the cases using them, each change bumping exactly those cases'
//! versions).

use casescope_bus::{Bus, InProcessBus, Outbox};
use casescope_db::{Database, DbOptions};
use casescope_ioc_service::{ALL_MIGRATIONS, EventsClient, IocApi, IocSettings};
use casescope_proto::common::v1::{CaseId, FileId, IocId, PageRequest};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_server::IocService;
use std::sync::Arc;
use tonic::{Code, Request};

struct Harness {
    api: IocApi,
    _dir: Option<tempfile::TempDir>,
}

async fn harness_on(
    db: Database,
    dir: Option<tempfile::TempDir>,
    settings: IocSettings,
) -> Harness {
    db.migrate(ALL_MIGRATIONS).await.unwrap();
    let bus = Arc::new(InProcessBus::default());
    let outbox = Outbox::new(db.clone(), bus as Arc<dyn Bus>);
    // No ingest service here: these tests never scan events (no file is indexed).
    let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:9");
    let events = EventsClient::new(
        casescope_proto::channel::from_transport(endpoint.connect_lazy()),
        |_| {},
    );
    Harness {
        api: IocApi::new(db, settings, outbox, events),
        _dir: dir,
    }
}

async fn sqlite(settings: IocSettings) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ioc.db").display());
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, Some(dir), settings).await
}

async fn postgres(settings: IocSettings) -> Harness {
    let url = casescope_testkit::postgres_url().await;
    let db = Database::connect(&url, &DbOptions::default())
        .await
        .unwrap();
    harness_on(db, None, settings).await
}

fn case_of(id: &str) -> Option<CaseId> {
    Some(CaseId { value: id.into() })
}

fn new_case() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn create(
    h: &Harness,
    case: &str,
    kind: pb::IocType,
    value: &str,
) -> Result<pb::Ioc, tonic::Status> {
    h.api
        .create_ioc(Request::new(pb::CreateIocRequest {
            case_id: case_of(case),
            ioc_type: kind as i32,
            value: value.into(),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner())
}

async fn states(h: &Harness, case: &str) -> pb::ListHuntStatesResponse {
    h.api
        .list_hunt_states(Request::new(pb::ListHuntStatesRequest {
            case_id: case_of(case),
            page: None,
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn import(
    h: &Harness,
    case: &str,
    format: pb::IocImportFormat,
    body: &[u8],
    dry_run: bool,
) -> Result<pb::ImportIocsResponse, tonic::Status> {
    // The client-streaming RPC, through the API's server called in-process.
    let server = casescope_proto::ioc::v1::ioc_service_server::IocServiceServer::new(h.api.clone());
    let channel =
        casescope_proto::channel::in_process(tonic::service::Routes::new(server).prepare());
    let mut client = casescope_proto::ioc::v1::ioc_service_client::IocServiceClient::new(channel);
    let mut messages = vec![pb::ImportIocsChunk {
        part: Some(pb::import_iocs_chunk::Part::Header(pb::ImportIocsHeader {
            case_id: case_of(case),
            format: format as i32,
            file_name: "feed".into(),
            size_bytes: body.len() as u64,
            dry_run,
            ..Default::default()
        })),
    }];
    for chunk in body.chunks(64 * 1024) {
        messages.push(pb::ImportIocsChunk {
            part: Some(pb::import_iocs_chunk::Part::Data(chunk.to_vec())),
        });
    }
    client
        .import_iocs(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

async fn crud_and_versions(h: Harness) {
    let case = new_case();
    let ioc = create(&h, &case, pb::IocType::Domain, "Evil[.]Example.")
        .await
        .unwrap();
    assert_eq!(ioc.normalized_value, "evil.example");
    assert_eq!(ioc.value, "Evil[.]Example.");
    assert_eq!(ioc.tlp, pb::Tlp::Amber as i32);
    assert_eq!((ioc.confidence, ioc.enabled, ioc.version), (50, true, 1));
    assert_eq!(
        states(&h, &case).await.case_version,
        1,
        "a hunted IOC bumps the case version"
    );
    let again = create(&h, &case, pb::IocType::Domain, "evil.example")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(
        again.message().contains(&ioc.id.as_ref().unwrap().value),
        "{}",
        again.message()
    );
    let bad = create(&h, &case, pb::IocType::Sha256, "abc")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("64 hexadecimal"),
        "{}",
        bad.message()
    );
    // The same value in another case is another IOC.
    create(&h, &new_case(), pb::IocType::Domain, "evil.example")
        .await
        .unwrap();

    // A disabled IOC does not change what hunts look for.
    let disabled = h
        .api
        .create_ioc(Request::new(pb::CreateIocRequest {
            case_id: case_of(&case),
            ioc_type: pb::IocType::Ip as i32,
            value: "2001:DB8:0:0::1".into(),
            enabled: Some(false),
            labels: vec![" c2 ".into(), "c2".into(), "".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.normalized_value, "2001:db8::1");
    assert_eq!(disabled.labels, vec!["c2"]);
    assert_eq!(states(&h, &case).await.case_version, 1);

    // Updates: optimistic versions; enabling bumps the case version; a description
    // does not.
    let id = disabled.id.clone().unwrap();
    let update = |mask: &[&str], expected: i64, enabled: bool| pb::UpdateIocRequest {
        case_id: case_of(&case),
        id: Some(id.clone()),
        description: "seen in the proxy logs".into(),
        enabled,
        expected_version: expected,
        update_mask: Some(prost_types::FieldMask {
            paths: mask.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    };
    let updated = h
        .api
        .update_ioc(Request::new(update(&["description"], 1, false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.version, updated.description.as_str()),
        (2, "seen in the proxy logs")
    );
    assert_eq!(states(&h, &case).await.case_version, 1);
    let stale = h
        .api
        .update_ioc(Request::new(update(&["enabled"], 1, true)))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let enabled = h
        .api
        .update_ioc(Request::new(update(&["enabled"], 2, true)))
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.enabled);
    assert_eq!(states(&h, &case).await.case_version, 2);
    let bad_mask = h
        .api
        .update_ioc(Request::new(update(&["value"], 0, true)))
        .await
        .unwrap_err();
    assert_eq!(bad_mask.code(), Code::InvalidArgument);

    // Listing: filters and paging, newest first.
    for i in 0..7 {
        create(&h, &case, pb::IocType::Md5, &format!("{i:032x}"))
            .await
            .unwrap();
    }
    let list = |types: Vec<i32>, contains: &str, cursor: String| pb::ListIocsRequest {
        case_id: case_of(&case),
        page: Some(PageRequest {
            page_size: 3,
            cursor,
        }),
        ioc_types: types,
        value_contains: contains.into(),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = h
            .api
            .list_iocs(Request::new(list(
                vec![pb::IocType::Md5 as i32],
                "",
                cursor,
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total, 7);
        seen.extend(page.iocs.iter().map(|i| i.normalized_value.clone()));
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    let mut expected: Vec<String> = (0..7).map(|i| format!("{i:032x}")).collect();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");
    let found = h
        .api
        .list_iocs(Request::new(list(vec![], "EXAMPLE", String::new())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.total, 1);

    // Deleting: the IOC is gone, the case version moves.
    let version = states(&h, &case).await.case_version;
    assert_eq!(version, 9, "each enabled IOC created moved it");
    let deleted = h
        .api
        .delete_ioc(Request::new(pb::DeleteIocRequest {
            case_id: case_of(&case),
            id: ioc.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.matches_deleted, 0);
    assert_eq!(states(&h, &case).await.case_version, version + 1);
    let gone = h
        .api
        .get_ioc(Request::new(pb::GetIocRequest {
            case_id: case_of(&case),
            id: ioc.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Hunting a file the service has not seen is refused; a case hunt schedules none.
    let unknown = h
        .api
        .hunt_files(Request::new(pb::HuntFilesRequest {
            case_id: case_of(&case),
            file_ids: vec![FileId {
                value: "0194f6a8-3c1e-7d2a-9b4e-000000000001".into(),
            }],
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let hunt = h
        .api
        .hunt_case(Request::new(pb::HuntCaseRequest {
            case_id: case_of(&case),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((hunt.files_scheduled, hunt.enabled_iocs), (0, 8));
    let matches = h
        .api
        .list_matches(Request::new(pb::ListMatchesRequest {
            case_id: case_of(&case),
            filter: Some(pb::MatchFilter {
                ioc_ids: vec![IocId {
                    value: "not-a-uuid".into(),
                }],
                ..Default::default()
            }),
            sort: 0,
            page: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(matches.code(), Code::InvalidArgument);
}

async fn imports(h: Harness) {
    let case = new_case();
    let csv = b"ioc_value,ioc_type,ioc_description,ioc_tags,ioc_tlp\n\
10[.]0[.]0[.]5,ip-dst,c2,\"c2,apt\",red\n\
10.0.0.5,ip-src,again,,\n\
nope,sha256,broken,,\n\
evil.exe|0000000000000000000000000000000000000000000000000000000000000001,filename|sha256,dropper,,\n";
    let dry = import(&h, &case, pb::IocImportFormat::Csv, csv, true)
        .await
        .unwrap();
    assert_eq!(
        (
            dry.records_read,
            dry.created,
            dry.duplicates,
            dry.rejected_count
        ),
        (5, 3, 1, 1)
    );
    assert_eq!(
        states(&h, &case).await.case_version,
        0,
        "a dry run creates nothing"
    );
    let done = import(&h, &case, pb::IocImportFormat::Csv, csv, false)
        .await
        .unwrap();
    assert_eq!(
        (
            done.records_read,
            done.created,
            done.duplicates,
            done.rejected_count
        ),
        (5, 3, 1, 1)
    );
    assert_eq!(done.rejected[0].locator, "line:4");
    assert!(
        done.rejected[0].reason.contains("64 hexadecimal"),
        "{:?}",
        done.rejected
    );
    assert_eq!(
        states(&h, &case).await.case_version,
        1,
        "one import, one version"
    );
    // The unary import of browsers reads the same file the same way.
    let other = new_case();
    let header = |case: &str, size: usize| pb::ImportIocsHeader {
        case_id: case_of(case),
        format: pb::IocImportFormat::Csv as i32,
        file_name: "feed.csv".into(),
        size_bytes: size as u64,
        ..Default::default()
    };
    let unary = h
        .api
        .import_iocs_file(Request::new(pb::ImportIocsFileRequest {
            header: Some(header(&other, csv.len())),
            data: csv.to_vec(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            unary.records_read,
            unary.created,
            unary.duplicates,
            unary.rejected_count,
            unary.rejected[0].locator.as_str()
        ),
        (5, 3, 1, 1, "line:4")
    );
    let mismatch = h
        .api
        .import_iocs_file(Request::new(pb::ImportIocsFileRequest {
            header: Some(header(&other, csv.len() + 1)),
            data: csv.to_vec(),
        }))
        .await
        .unwrap_err();
    assert!(mismatch.message().contains("declared"), "{mismatch:?}");
    let big = vec![b'a'; casescope_ioc_service::MAX_FILE_IMPORT_BYTES + 1];
    let too_big = h
        .api
        .import_iocs_file(Request::new(pb::ImportIocsFileRequest {
            header: Some(header(&other, big.len())),
            data: big,
        }))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(too_big.message().contains("ImportIocs"), "{too_big:?}");

    // Importing again: every record is a duplicate of the case's.
    let again = import(&h, &case, pb::IocImportFormat::Csv, csv, false)
        .await
        .unwrap();
    assert_eq!((again.created, again.duplicates), (0, 4));
    assert_eq!(states(&h, &case).await.case_version, 1);

    // All or nothing: a bundle cut short creates nothing and says where.
    let cut = br#"{"type":"bundle","objects":[{"type":"indicator","pattern":"[ipv4-addr:value = '203.0.113.1']","pattern_type":"stix"},"#;
    let refused = import(&h, &case, pb::IocImportFormat::Stix2Bundle, cut, false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("nothing was imported"),
        "{}",
        refused.message()
    );
    let list = h
        .api
        .list_iocs(Request::new(pb::ListIocsRequest {
            case_id: case_of(&case),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total, 3);

    // Exports read back as the same IOCs.
    let mut stream = h
        .api
        .export_iocs(Request::new(pb::ExportIocsRequest {
            case_id: case_of(&case),
            format: pb::IocImportFormat::Stix2Bundle as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut bundle = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        bundle.extend(chunk.unwrap().data);
    }
    let other = new_case();
    let copied = import(&h, &other, pb::IocImportFormat::Stix2Bundle, &bundle, false)
        .await
        .unwrap();
    assert_eq!((copied.created, copied.rejected_count), (3, 0));
}

async fn limits() {
    let settings = IocSettings {
        max_import_records: 5,
        max_iocs_per_case: 4,
        ..IocSettings::default()
    };
    let h = sqlite(settings).await;
    let case = new_case();
    let six: String = (1..=6).map(|i| format!("10.0.0.{i}\n")).collect();
    let over = import(
        &h,
        &case,
        pb::IocImportFormat::TextLines,
        six.as_bytes(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(over.code(), Code::InvalidArgument);
    assert!(
        over.message().contains("more than 5 records"),
        "{}",
        over.message()
    );
    let five: String = (1..=5).map(|i| format!("10.0.0.{i}\n")).collect();
    let full = import(
        &h,
        &case,
        pb::IocImportFormat::TextLines,
        five.as_bytes(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition);
    assert!(
        full.message().contains("nothing was imported"),
        "{}",
        full.message()
    );
    let four: String = (1..=4).map(|i| format!("10.0.0.{i}\n")).collect();
    import(
        &h,
        &case,
        pb::IocImportFormat::TextLines,
        four.as_bytes(),
        false,
    )
    .await
    .unwrap();
    let fifth = create(&h, &case, pb::IocType::Ip, "10.0.0.9")
        .await
        .unwrap_err();
    assert_eq!(fifth.code(), Code::FailedPrecondition);
}

async fn list_of(h: &Harness, name: &str, all_cases: bool, cases: &[&str]) -> pb::IocList {
    h.api
        .create_ioc_list(Request::new(pb::CreateIocListRequest {
            name: name.into(),
            description: "feed".into(),
            all_cases,
            case_ids: cases
                .iter()
                .map(|c| CaseId {
                    value: c.to_string(),
                })
                .collect(),
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn hunted_count(h: &Harness, case: &str) -> u32 {
    h.api
        .hunt_case(Request::new(pb::HuntCaseRequest {
            case_id: case_of(case),
        }))
        .await
        .unwrap()
        .into_inner()
        .enabled_iocs
}

async fn global_lists(h: Harness) {
    // Three cases the service knows (each has an IOC), one it does not.
    let [a, b, c, unknown] = [new_case(), new_case(), new_case(), new_case()];
    for case in [&a, &b, &c] {
        create(
            &h,
            case,
            pb::IocType::Md5,
            "0123456789abcdef0123456789abcdef",
        )
        .await
        .unwrap();
    }
    let version = |case: String| {
        let h = &h;
        async move { states(h, &case).await.case_version }
    };
    let everyone = list_of(&h, "Everyone's feed", true, &[]).await;
    let chosen = list_of(&h, "APT feed", false, &[&a]).await;
    assert_eq!((everyone.version, chosen.case_ids.len()), (1, 1));
    // Names are unique case-insensitively; bad input is refused with its field.
    let taken = h
        .api
        .create_ioc_list(Request::new(pb::CreateIocListRequest {
            name: "apt FEED".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    for bad in [
        pb::CreateIocListRequest {
            name: " ".into(),
            ..Default::default()
        },
        pb::CreateIocListRequest {
            name: "x".into(),
            all_cases: true,
            case_ids: vec![CaseId { value: a.clone() }],
            ..Default::default()
        },
        pb::CreateIocListRequest {
            name: "y".into(),
            case_ids: vec![CaseId {
                value: "not a case".into(),
            }],
            ..Default::default()
        },
    ] {
        let refused = h.api.create_ioc_list(Request::new(bad)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }

    // An IOC of the all-cases list bumps every known case; of the chosen list, only a.
    let before = [
        version(a.clone()).await,
        version(b.clone()).await,
        version(c.clone()).await,
    ];
    let shared = h
        .api
        .create_list_ioc(Request::new(pb::CreateIocRequest {
            list_id: everyone.id.clone(),
            ioc_type: pb::IocType::Domain as i32,
            value: "bad[.]example".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (shared.case_id.clone(), shared.list_id.clone()),
        (None, everyone.id.clone())
    );
    assert_eq!(shared.normalized_value, "bad.example");
    h.api
        .create_list_ioc(Request::new(pb::CreateIocRequest {
            list_id: chosen.id.clone(),
            ioc_type: pb::IocType::Ip as i32,
            value: "203.0.113.9".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        [
            version(a.clone()).await,
            version(b.clone()).await,
            version(c.clone()).await
        ],
        [before[0] + 2, before[1] + 1, before[2] + 1]
    );
    assert_eq!(hunted_count(&h, &a).await, 3);
    assert_eq!(hunted_count(&h, &b).await, 2);
    // A case the service has never seen starts with the all-cases list's IOCs.
    assert_eq!(hunted_count(&h, &unknown).await, 1);

    // The case RPCs do not reach a list's IOCs, nor the list RPCs a case's.
    let through_case = h
        .api
        .get_ioc(Request::new(pb::GetIocRequest {
            case_id: case_of(&a),
            id: shared.id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(through_case.code(), Code::NotFound);
    let mixed = h
        .api
        .create_ioc(Request::new(pb::CreateIocRequest {
            case_id: case_of(&a),
            list_id: everyone.id.clone(),
            ioc_type: pb::IocType::Domain as i32,
            value: "x.example".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), Code::InvalidArgument);
    let missing = h
        .api
        .create_list_ioc(Request::new(pb::CreateIocRequest {
            list_id: uuid::Uuid::now_v7().to_string(),
            ioc_type: pb::IocType::Domain as i32,
            value: "x.example".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Lists a case uses; by name.
    let used = |case: String| {
        let h = &h;
        async move {
            h.api
                .list_ioc_lists(Request::new(pb::ListIocListsRequest {
                    page: None,
                    case_id: case_of(&case),
                }))
                .await
                .unwrap()
                .into_inner()
                .lists
                .into_iter()
                .map(|l| (l.name, l.ioc_count))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        used(a.clone()).await,
        [
            ("APT feed".to_string(), 1),
            ("Everyone's feed".to_string(), 1)
        ]
    );
    assert_eq!(used(b.clone()).await, [("Everyone's feed".to_string(), 1)]);
    let by_name = h
        .api
        .get_ioc_list(Request::new(pb::GetIocListRequest {
            id: "apt feed".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.id, chosen.id);

    // Moving the chosen list from a to b: both change, c does not.
    let before = [
        version(a.clone()).await,
        version(b.clone()).await,
        version(c.clone()).await,
    ];
    let moved = h
        .api
        .update_ioc_list(Request::new(pb::UpdateIocListRequest {
            id: chosen.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["case_ids".into()],
            }),
            case_ids: vec![CaseId { value: b.clone() }],
            expected_version: chosen.version,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.version, chosen.version + 1);
    assert_eq!(
        [
            version(a.clone()).await,
            version(b.clone()).await,
            version(c.clone()).await
        ],
        [before[0] + 1, before[1] + 1, before[2]]
    );
    assert_eq!(hunted_count(&h, &a).await, 2);
    assert_eq!(hunted_count(&h, &b).await, 3);
    let stale = h
        .api
        .update_ioc_list(Request::new(pb::UpdateIocListRequest {
            id: chosen.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
            name: "renamed".into(),
            expected_version: chosen.version,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Deleting the all-cases list: its IOC is gone from every case's hunts.
    let deleted = h
        .api
        .delete_ioc_list(Request::new(pb::DeleteIocListRequest {
            id: everyone.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((deleted.iocs_deleted, deleted.matches_deleted), (1, 0));
    assert_eq!(hunted_count(&h, &a).await, 1);
    assert_eq!(hunted_count(&h, &c).await, 1);
    assert_eq!(hunted_count(&h, &unknown).await, 0);
}

#[tokio::test]
async fn global_lists_on_sqlite() {
    global_lists(sqlite(IocSettings::default()).await).await;
}

#[tokio::test]
async fn global_lists_on_postgres() {
    global_lists(postgres(IocSettings::default()).await).await;
}

#[tokio::test]
async fn crud_and_versions_on_sqlite() {
    crud_and_versions(sqlite(IocSettings::default()).await).await;
}

#[tokio::test]
async fn crud_and_versions_on_postgres() {
    crud_and_versions(postgres(IocSettings::default()).await).await;
}

#[tokio::test]
async fn imports_on_sqlite() {
    imports(sqlite(IocSettings::default()).await).await;
}

#[tokio::test]
async fn imports_on_postgres() {
    imports(postgres(IocSettings::default()).await).await;
}

#[tokio::test]
async fn import_and_case_limits() {
    limits().await;
}
