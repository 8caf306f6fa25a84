//! The ioc service in all-in-one mode, on EVTX-ATTACK-SAMPLES files and IOCs imported
//! through the CLI (values taken from those logs):
//! - every file's stored matches are exactly what the hunter finds in-process in the
//!   same events;
//! - the old re-hunt bug, as a property test: re-hunting random sets of files leaves
//!   every other file's matches byte-identical;
//! - an IOC disabled, enabled again, or deleted changes only its own matches (a delta
//!   run): every other match byte-identical; re-enabling brings back the same matches;
//! - hunting the same file twice at once, or again, leaves one set of matches;
//! - imports of CSV, STIX 2.1 and MISP give a result per record (a defanged value, a
//!   duplicate and a refusal each), and exports read back as the same IOCs.

use casescope_e2e::{Server, stderr, stdout};
use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use casescope_ioc::{Hunter, Indicator, IocType};
use casescope_proto::common::v1::{CaseId, FileId, IocId, PageRequest};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use prost::Message;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Client = IocServiceClient<casescope_proto::channel::GrpcChannel>;

/// Sample files whose events hold the IOCs below.
const FILES: &[&str] = &[
    "LM_WMI_4624_4688_TargetHost.evtx",
    "smbmap_upload_exec_sysmon.evtx",
    "de_hiding_files_via_attrib_cmdlet.evtx",
    "exec_wmic_xsl_internet_sysmon_3_1_11.evtx",
    "DE_UAC_Disabled_Sysmon_12_13.evtx",
    "DE_renamed_psexec_service_sysmon_17_18.evtx",
    "LM_Remote_Service02_7045.evtx",
];

/// IOCs of many types, as an analyst's CSV (defanged where feeds defang).
const IOCS: &str = "type,value,description\n\
ip,10.0.2[.]17,lateral movement source\n\
cidr,10.0.2.0/24,lab network\n\
sha256,EBE94E294D86C714BED13EF018E70F75C37F8D8259144C0C847637EDC0222ECB,attrib\n\
md5,116D463D2F5DBF76F7E2F5C6D8B5D3BB,attrib\n\
domain,afterburst[.]com,hosting\n\
user_name,insecurebank\\Administrator,admin\n\
registry_key,HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\EnableLUA,uac\n\
command_line,+h nbtscan.exe,hiding\n\
process_name,PsExec.exe,psexec\n\
named_pipe,\\\\.\\pipe\\svchost-MSEDGEWIN10-8116-stdin,psexec pipe\n\
service_name,remotesvc,remote service\n\
hostname,MSEDGEWIN10,host\n\
other,wmic,lolbin\n";

fn shared() -> Option<PathBuf> {
    let corpus = casescope_testkit::shared_data_dir()?.join("evtx-attack-samples");
    corpus.is_dir().then_some(corpus)
}

fn find(root: &Path, name: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().and_then(|n| n.to_str()) == Some(name) {
                return path;
            }
        }
    }
    panic!("{name} is not in {}", root.display());
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn case(id: &str) -> Option<CaseId> {
    Some(CaseId {
        value: id.to_string(),
    })
}

/// (IOC value, field, matched text, event time) → count: what a hunt finds.
type Found = BTreeMap<(String, String, String, i64), usize>;

/// What the hunter finds in-process in `path` with `iocs` (type, canonical value).
fn hunted_in_process(iocs: &[(IocType, String)], path: &Path) -> Found {
    let list: Vec<Indicator> = iocs
        .iter()
        .map(|(kind, value)| Indicator {
            ioc_type: *kind,
            value: value.clone(),
        })
        .collect();
    let hunter = Hunter::new(&list);
    let context = Context {
        case_id: "x".into(),
        file_id: "x".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits::default(),
    };
    let mut found = Found::new();
    parse_file(path, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            let mut fields: Vec<(&str, &str)> = event
                .fields
                .iter()
                .filter_map(|(n, v)| v.as_str().map(|t| (n.as_str(), t)))
                .collect();
            if let Some(computer) = event.computer.as_deref()
                && !event.fields.contains_key("Computer")
            {
                fields.push(("Computer", computer));
            }
            let mut hits = Vec::new();
            hunter.hunt(&fields, &mut hits);
            for hit in hits {
                *found
                    .entry((
                        list[hit.ioc as usize].value.clone(),
                        hit.field.to_string(),
                        hit.matched.to_string(),
                        event.timestamp_micros,
                    ))
                    .or_default() += 1;
            }
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    found
}

/// Every match of the case: id → (match, its encoding).
async fn all_matches(
    client: &mut Client,
    case_id: &str,
) -> BTreeMap<String, (pb::IocMatch, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_matches(pb::ListMatchesRequest {
                case_id: case(case_id),
                filter: None,
                sort: 0,
                page: Some(PageRequest {
                    page_size: 1000,
                    cursor: cursor.clone(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        for m in page.matches {
            let id = m.id.clone().unwrap().value;
            let bytes = m.encode_to_vec();
            assert!(
                out.insert(id.clone(), (m, bytes)).is_none(),
                "match {id} listed twice"
            );
        }
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            return out;
        }
    }
}

async fn states(client: &mut Client, case_id: &str) -> (i64, HashMap<String, pb::HuntState>) {
    let response = client
        .list_hunt_states(pb::ListHuntStatesRequest {
            case_id: case(case_id),
            page: Some(PageRequest {
                page_size: 1000,
                cursor: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let states = response
        .states
        .into_iter()
        .map(|s| (s.file_id.clone().unwrap().value, s))
        .collect();
    (response.case_version, states)
}

/// Waits until `n` files are hunted at the case's version and `also` holds.
async fn wait_done(
    client: &mut Client,
    server: &Server,
    case_id: &str,
    n: usize,
    also: impl Fn(&HashMap<String, pb::HuntState>) -> bool,
) -> HashMap<String, pb::HuntState> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (version, now) = states(client, case_id).await;
        let done = now.len() == n
            && now.values().all(|s| {
                s.status == "done" && s.hunted_version == version && s.requested_version == version
            });
        if done && also(&now) {
            return now;
        }
        for state in now.values() {
            assert!(state.status != "failed", "hunt failed: {state:?}");
        }
        assert!(
            Instant::now() < deadline,
            "hunts not done: version {version} {now:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn hunts_match_the_engine_and_rehunts_touch_only_their_scope() {
    let Some(corpus) = shared() else {
        eprintln!("skipped: ../shared/data/evtx-attack-samples is not present");
        return;
    };
    let files: Vec<PathBuf> = FILES.iter().map(|name| find(&corpus, name)).collect();
    let by_sha: HashMap<String, PathBuf> = files.iter().map(|p| (sha256(p), p.clone())).collect();
    let server = Server::start(
        &[],
        &[
            ("CASESCOPE_RECONCILE_PERIOD_SECS", "1"),
            ("CASESCOPE_LEASE_TTL_SECS", "10"),
        ],
    );
    let created = server.cli(&["case", "create", "ioc e2e"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case_id = stdout(&created).trim().to_string();

    // IOCs first, files second: each file is hunted as it is indexed.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("iocs.csv");
    std::fs::write(&csv, IOCS).unwrap();
    let imported = server.cli(&["ioc", "import", &case_id, csv.to_str().unwrap(), "--json"]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let import: serde_json::Value = serde_json::from_str(&stdout(&imported)).unwrap();
    assert_eq!(import["created"], 13, "{import}");
    assert_eq!(import["rejected"], 0, "{import}");

    let mut upload = vec!["upload", case_id.as_str()];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    upload.extend(paths.iter().map(String::as_str));
    let uploaded = server.cli(&upload);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    let listed = server.cli(&["files", &case_id, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let file_path: HashMap<String, PathBuf> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file_id"].as_str().unwrap().to_string(),
                by_sha[f["sha256"].as_str().unwrap()].clone(),
            )
        })
        .collect();
    let n = file_path.len();
    assert_eq!(n, files.len());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = IocServiceClient::new(server.grpc().await);
        wait_done(&mut client, &server, &case_id, n, |_| true).await;
        // The files' status follows every stage: `ready` once detect and the hunt are done.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let files = server.cli(&["files", &case_id, "--json"]);
            let files: serde_json::Value = serde_json::from_str(&stdout(&files)).unwrap();
            if files
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["status"] == "ready")
            {
                break;
            }
            assert!(Instant::now() < deadline, "files not ready: {files}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The case's IOCs as stored (canonical), for the in-process hunter.
        let listed = client
            .list_iocs(pb::ListIocsRequest {
                case_id: case(&case_id),
                page: Some(PageRequest {
                    page_size: 100,
                    cursor: String::new(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.total, 13);
        let iocs: Vec<(IocType, String)> = listed
            .iocs
            .iter()
            .map(|i| {
                let name = pb::IocType::try_from(i.ioc_type)
                    .unwrap()
                    .as_str_name()
                    .trim_start_matches("IOC_TYPE_")
                    .to_ascii_lowercase();
                (
                    IocType::from_name(&name).unwrap(),
                    i.normalized_value.clone(),
                )
            })
            .collect();
        let stored = all_matches(&mut client, &case_id).await;
        let mut actual: HashMap<String, Found> = HashMap::new();
        for (m, _) in stored.values() {
            let ts = casescope_proto::time::timestamp_to_micros(m.timestamp.as_ref().unwrap());
            *actual
                .entry(m.file_id.clone().unwrap().value)
                .or_default()
                .entry((
                    m.ioc_value.clone(),
                    m.field.clone(),
                    m.matched_value.clone(),
                    ts,
                ))
                .or_default() += 1;
        }
        let mut total = 0;
        for (file_id, path) in &file_path {
            let expected = hunted_in_process(&iocs, path);
            total += expected.values().sum::<usize>();
            let got = actual.remove(file_id).unwrap_or_default();
            assert_eq!(got, expected, "{}", path.display());
        }
        assert!(total > 30, "the sample files hold matches: {total}");
        assert_eq!(stored.len(), total, "one match per (IOC, event, field)");
        // Every IOC but the substring `other` one found something, across the types.
        let counts = client
            .count_matches(pb::CountMatchesRequest {
                case_id: case(&case_id),
                filter: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(counts.total as usize, total);
        assert!(counts.by_ioc.len() >= 12, "{counts:?}");

        // Property: re-hunting random scopes leaves every other file byte-identical.
        let ids: Vec<String> = file_path.keys().cloned().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x10c_5eed);
        for round in 0..4 {
            let size = rng.random_range(1..=3.min(ids.len()));
            let mut scope: Vec<String> = Vec::new();
            while scope.len() < size {
                let pick = ids[rng.random_range(0..ids.len())].clone();
                if !scope.contains(&pick) {
                    scope.push(pick);
                }
            }
            let before = all_matches(&mut client, &case_id).await;
            let (_, runs_before) = states(&mut client, &case_id).await;
            client
                .hunt_files(pb::HuntFilesRequest {
                    case_id: case(&case_id),
                    file_ids: scope.iter().map(|f| FileId { value: f.clone() }).collect(),
                })
                .await
                .unwrap();
            let after_states = wait_done(&mut client, &server, &case_id, n, |now| {
                scope
                    .iter()
                    .all(|f| now[f].completed_runs > runs_before[f].completed_runs)
            })
            .await;
            let after = all_matches(&mut client, &case_id).await;
            assert_eq!(
                before.keys().collect::<Vec<_>>(),
                after.keys().collect::<Vec<_>>(),
                "round {round}: a re-hunt finds the same matches"
            );
            for (id, (m, bytes)) in &before {
                let file = &m.file_id.as_ref().unwrap().value;
                if !scope.contains(file) {
                    assert_eq!(
                        &after[id].1, bytes,
                        "round {round}: match {id} of file {file} outside the scope changed"
                    );
                }
            }
            for file in ids.iter().filter(|f| !scope.contains(f)) {
                assert_eq!(
                    after_states[file].completed_runs, runs_before[file].completed_runs,
                    "round {round}: file {file} outside the scope was re-hunted"
                );
            }
        }

        // One IOC disabled: only its matches go (a delta run); enabled: the same ones
        // come back; deleted: its matches go with it.
        let top = counts.by_ioc[0].clone();
        let ioc = top.ioc_id.clone().unwrap();
        let before = all_matches(&mut client, &case_id).await;
        let set_enabled = |enabled: bool| pb::UpdateIocRequest {
            case_id: case(&case_id),
            id: Some(ioc.clone()),
            enabled,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            ..Default::default()
        };
        client.update_ioc(set_enabled(false)).await.unwrap();
        let after_states = wait_done(&mut client, &server, &case_id, n, |_| true).await;
        assert!(
            after_states.values().all(|s| s.last_mode == "delta"),
            "{after_states:?}"
        );
        let after = all_matches(&mut client, &case_id).await;
        for (id, (m, bytes)) in &before {
            if m.ioc_id.as_ref() == Some(&ioc) {
                assert!(!after.contains_key(id), "{id} of the disabled IOC remains");
            } else {
                assert_eq!(after.get(id).map(|(_, b)| b), Some(bytes), "{id} changed");
            }
        }
        assert_eq!(after.len() as u64, before.len() as u64 - top.count);
        client.update_ioc(set_enabled(true)).await.unwrap();
        wait_done(&mut client, &server, &case_id, n, |_| true).await;
        let again = all_matches(&mut client, &case_id).await;
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        for (id, (m, bytes)) in &before {
            if m.ioc_id.as_ref() != Some(&ioc) {
                assert_eq!(
                    &again[id].1, bytes,
                    "{id} changed when another IOC came back"
                );
            }
        }

        // Hunting the same file twice at once, and again, leaves one set of matches.
        let file = ids[0].clone();
        let (_, runs_before) = states(&mut client, &case_id).await;
        let request = || pb::HuntFilesRequest {
            case_id: case(&case_id),
            file_ids: vec![FileId {
                value: file.clone(),
            }],
        };
        let (mut a, mut b) = (client.clone(), client.clone());
        let (x, y) = tokio::join!(a.hunt_files(request()), b.hunt_files(request()));
        x.unwrap();
        y.unwrap();
        wait_done(&mut client, &server, &case_id, n, |now| {
            now[&file].completed_runs > runs_before[&file].completed_runs
        })
        .await;
        let twice = all_matches(&mut client, &case_id).await;
        assert_eq!(
            twice.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );

        let deleted = client
            .delete_ioc(pb::DeleteIocRequest {
                case_id: case(&case_id),
                id: Some(ioc.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.matches_deleted, top.count);
        wait_done(&mut client, &server, &case_id, n, |_| true).await;
        let after = all_matches(&mut client, &case_id).await;
        for (id, (m, bytes)) in &twice {
            if m.ioc_id.as_ref() == Some(&ioc) {
                assert!(!after.contains_key(id));
            } else {
                assert_eq!(
                    after.get(id).map(|(_, b)| b),
                    Some(bytes),
                    "{id} changed by another IOC's deletion"
                );
            }
        }
        let gone = client
            .get_ioc(pb::GetIocRequest {
                case_id: case(&case_id),
                id: Some(IocId {
                    value: ioc.value.clone(),
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);
    });
}

#[test]
fn imports_report_each_record_and_exports_read_back() {
    let server = Server::start(&[], &[]);
    let created = server.cli(&["case", "create", "ioc formats"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case_id = stdout(&created).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let import = |name: &str, body: &str| -> serde_json::Value {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = server.cli(&["ioc", "import", &case_id, path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    // DFIR-IRIS CSV: a defanged value, a duplicate (within the file), a refusal.
    let csv = import(
        "iris.csv",
        "ioc_value,ioc_type,ioc_description,ioc_tags,ioc_tlp\n\
         198.51.100[.]7,ip-dst,c2,\"c2,apt\",red\n\
         198.51.100.7,ip-src,again,,\n\
         not-a-hash,sha256,broken,,\n",
    );
    assert_eq!(
        (
            csv["created"].as_u64(),
            csv["duplicates"].as_u64(),
            csv["rejected"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{csv}"
    );
    assert_eq!(csv["rejections"][0]["locator"], "line:4", "{csv}");
    // STIX 2.1: a defanged domain, the same address again (a duplicate of the case's),
    // a regular-expression pattern refused.
    let stix = import(
        "feed.json",
        r#"{"type":"bundle","id":"bundle--1","objects":[
 {"type":"indicator","id":"indicator--1","pattern":"[domain-name:value = 'evil[.]example']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--2","pattern":"[ipv4-addr:value = '198.51.100.7']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"indicator","id":"indicator--3","pattern":"[file:name MATCHES '^e.*']","pattern_type":"stix","valid_from":"2024-01-01T00:00:00Z"},
 {"type":"identity","id":"identity--1","name":"feed"}]}"#,
    );
    assert_eq!(
        (
            stix["created"].as_u64(),
            stix["duplicates"].as_u64(),
            stix["rejected"].as_u64(),
            stix["other_objects"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{stix}"
    );
    assert_eq!(stix["rejections"][0]["locator"], "objects[2]", "{stix}");
    // MISP: a defanged URL, a composite split, a duplicate, a non-to_ids refusal.
    let misp = import(
        "event.json",
        r#"{"Event":{"info":"wave","Attribute":[
 {"type":"url","value":"hxxp://evil[.]example/a","to_ids":true},
 {"type":"filename|sha256","value":"a.exe|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","to_ids":true},
 {"type":"domain","value":"evil.example","to_ids":true},
 {"type":"domain","value":"benign.example","to_ids":false}]}}"#,
    );
    assert_eq!(
        (
            misp["created"].as_u64(),
            misp["duplicates"].as_u64(),
            misp["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "{misp}"
    );
    // Malformed JSON: refused whole, with the place, and nothing created.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type":"bundle","objects":[{"type":"indicator","pattern":"[ipv4-addr:value = '203.0.113.1']"},"#).unwrap();
    let out = server.cli(&[
        "ioc",
        "import",
        &case_id,
        bad.to_str().unwrap(),
        "--format",
        "stix",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing was imported"),
        "{}",
        stderr(&out)
    );
    let listed = server.cli(&["ioc", "list", &case_id, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");
    assert!(!listed.to_string().contains("203.0.113.1"));
    // Exports in every format read back as the same IOCs in a fresh case.
    for format in ["csv", "stix", "misp"] {
        let out_path = dir.path().join(format!("export.{format}"));
        let exported = server.cli(&[
            "ioc",
            "export",
            &case_id,
            "--format",
            format,
            "--output",
            out_path.to_str().unwrap(),
        ]);
        assert!(exported.status.success(), "{}", stderr(&exported));
        let other = server.cli(&["case", "create", &format!("ioc {format} copy")]);
        let other_id = stdout(&other).trim().to_string();
        let out = server.cli(&[
            "ioc",
            "import",
            &other_id,
            out_path.to_str().unwrap(),
            "--format",
            format,
            "--json",
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(result["created"], 5, "{format}: {result}");
        let copy = server.cli(&["ioc", "list", &other_id, "--json"]);
        let copy: serde_json::Value = serde_json::from_str(&stdout(&copy)).unwrap();
        let values = |list: &serde_json::Value| {
            let mut v: Vec<(String, String)> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["type"].as_str().unwrap().to_string(),
                        i["normalized_value"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(values(&copy), values(&listed), "{format}");
    }
}
