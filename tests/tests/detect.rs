//! The detect service in all-in-one mode, on EVTX-ATTACK-SAMPLES files and SigmaHQ's
//! Windows rules imported through the CLI:
//! - every file's stored detections are exactly what the engine finds in-process in the
//!   same events (rule id, EventRecordID);
//! - re-running random sets of files leaves every other file's detections
//!   byte-identical (a property test over seeded random scopes);
//! - disabling a rule re-evaluates only that rule (a delta run): its detections go, all
//!   others stay byte-identical; enabling it brings the same detections back;
//! - a correlation rule fires on events from several files of the case.

use casescope_e2e::{Server, stderr, stdout};
use casescope_evidence::{Context, Format, Limits, Outcome, parse_file};
use casescope_proto::common::v1::{CaseId, FileId, PageRequest, RuleId};
use casescope_proto::detect::v1 as pb;
use casescope_proto::detect::v1::detect_service_client::DetectServiceClient;
use casescope_sigma::{EventRef, LogsourceMapping, RuleSet};
use prost::Message;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Client = DetectServiceClient<casescope_proto::channel::GrpcChannel>;

fn shared() -> Option<(PathBuf, PathBuf)> {
    let data = casescope_testkit::shared_data_dir()?;
    let corpus = data.join("evtx-attack-samples");
    let rules = data.join("sigma/rules/windows");
    (corpus.is_dir() && rules.is_dir()).then_some((corpus, rules))
}

fn evtx_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "evtx") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// (rule id, EventRecordID) of every reported match of `rules` in `path`.
fn engine_matches(rules: &RuleSet, path: &Path) -> BTreeSet<(String, u64)> {
    let context = Context {
        case_id: "x".into(),
        file_id: "x".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        keep_raw: true,
        limits: Limits::default(),
    };
    let mut found = BTreeSet::new();
    parse_file(path, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            for index in rules.evaluate(&EventRef {
                channel: event.channel.as_deref(),
                event_code: event.event_code,
                fields: (&event.fields).into(),
            }) {
                if rules.reports_matches(index) {
                    found.insert((
                        rules.rules[index].meta.id.clone(),
                        event.record_id.unwrap_or_default(),
                    ));
                }
            }
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    found
}

fn case(id: &str) -> Option<CaseId> {
    Some(CaseId { value: id.into() })
}

/// Every detection of the case, by id, with its encoded bytes.
async fn all_detections(
    client: &mut Client,
    case_id: &str,
) -> BTreeMap<String, (pb::Detection, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_detections(pb::ListDetectionsRequest {
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
        for detection in page.detections {
            let id = detection.id.clone().unwrap().value;
            let bytes = detection.encode_to_vec();
            out.insert(id, (detection, bytes));
        }
        cursor = page.page.unwrap_or_default().next_cursor;
        if cursor.is_empty() {
            return out;
        }
    }
}

async fn states(client: &mut Client, case_id: &str) -> HashMap<String, pb::FileDetectState> {
    client
        .list_file_states(pb::ListFileStatesRequest {
            case_id: case(case_id),
            page: Some(PageRequest {
                page_size: 1000,
                cursor: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .files
        .into_iter()
        .map(|s| (s.file_id.clone().unwrap().value, s))
        .collect()
}

/// Waits until `files` files are done at the current ruleset version and `ready` holds.
async fn wait_done(
    client: &mut Client,
    server: &Server,
    case_id: &str,
    files: usize,
    ready: impl Fn(&HashMap<String, pb::FileDetectState>) -> bool,
) -> HashMap<String, pb::FileDetectState> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let version = client
            .get_ruleset(pb::GetRulesetRequest {})
            .await
            .unwrap()
            .into_inner()
            .version;
        let states = states(client, case_id).await;
        let done = states
            .values()
            .filter(|s| {
                s.status == pb::DetectStatus::Done as i32 && s.evaluated_ruleset_version == version
            })
            .count();
        if states.len() == files && done == files && ready(&states) {
            return states;
        }
        for state in states.values() {
            assert_ne!(
                state.status,
                pb::DetectStatus::Failed as i32,
                "a file failed detection: {state:?}\n{}",
                server.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {files} files done after 300 s: {states:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn stored_detections_match_the_engine_and_reruns_touch_only_their_scope() {
    let Some((corpus, rules_dir)) = shared() else {
        eprintln!("skipped: ../shared/data (evtx-attack-samples, sigma rules) not present");
        return;
    };
    // Every 23rd file of the corpus: a dozen files of varied channels.
    let files: Vec<PathBuf> = evtx_files(&corpus).into_iter().step_by(23).collect();
    let mut by_sha: HashMap<String, PathBuf> = HashMap::new();
    for path in &files {
        by_sha.insert(sha256(path), path.clone());
    }

    let server = Server::start(
        &[],
        &[
            ("CASESCOPE_RECONCILE_PERIOD_SECS", "1"),
            ("CASESCOPE_LEASE_TTL_SECS", "10"),
        ],
    );
    let created = server.cli(&["case", "create", "detect e2e"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let case_id = stdout(&created).trim().to_string();

    let imported = server.cli(&[
        "rules",
        "import",
        rules_dir.to_str().unwrap(),
        "--label",
        "sigmahq",
        "--json",
    ]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let import: serde_json::Value = serde_json::from_str(&stdout(&imported)).unwrap();
    let loaded = import["loaded"].as_u64().unwrap();
    assert!(loaded > 2000, "{import}");
    // Refusals are listed with their reasons.
    let refused = server.cli(&["rules", "list", "--refused", "--json"]);
    assert!(refused.status.success(), "{}", stderr(&refused));
    let refused: serde_json::Value = serde_json::from_str(&stdout(&refused)).unwrap();
    let refused = refused["rules"].as_array().unwrap();
    assert_eq!(
        refused.len() as u64,
        import["refused_count"].as_u64().unwrap(),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|r| !r["refusal_reason"].as_str().unwrap_or_default().is_empty())
    );

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
    assert_eq!(file_path.len(), by_sha.len());

    // The engine, in-process, over the same rules (the server also holds its built-in pack).
    let mapping = LogsourceMapping::built_in();
    let sigmahq = RuleSet::load(std::slice::from_ref(&rules_dir), &mapping);
    let builtin = RuleSet::built_in(&mapping);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = DetectServiceClient::new(server.grpc().await);
        let n = file_path.len();
        wait_done(&mut client, &server, &case_id, n, |_| true).await;
        let stored = all_detections(&mut client, &case_id).await;
        let mut actual: HashMap<String, BTreeSet<(String, u64)>> = HashMap::new();
        for (detection, _) in stored.values() {
            assert!(!detection.is_correlation);
            actual
                .entry(detection.file_id.clone().unwrap().value)
                .or_default()
                .insert((
                    detection.rule_id.clone().unwrap().value,
                    detection.record_id.unwrap(),
                ));
        }
        let mut total = 0;
        for (file_id, path) in &file_path {
            let mut expected = engine_matches(&sigmahq, path);
            expected.extend(engine_matches(&builtin, path));
            total += expected.len();
            let got = actual.remove(file_id).unwrap_or_default();
            assert_eq!(got, expected, "{}", path.display());
        }
        assert!(total > 20, "the sample files hold detections: {total}");
        assert_eq!(stored.len(), total, "one detection per (rule, event)");

        // Property: re-running random scopes leaves every other file byte-identical.
        let ids: Vec<String> = file_path.keys().cloned().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_de7e);
        for round in 0..4 {
            let size = rng.random_range(1..=3.min(ids.len()));
            let mut scope: Vec<String> = Vec::new();
            while scope.len() < size {
                let pick = ids[rng.random_range(0..ids.len())].clone();
                if !scope.contains(&pick) {
                    scope.push(pick);
                }
            }
            let before = all_detections(&mut client, &case_id).await;
            let runs_before = states(&mut client, &case_id).await;
            client
                .rerun_detection(pb::RerunDetectionRequest {
                    case_id: case(&case_id),
                    scope: Some(pb::rerun_detection_request::Scope::Files(pb::FileIdList {
                        file_ids: scope.iter().map(|f| FileId { value: f.clone() }).collect(),
                    })),
                })
                .await
                .unwrap();
            let after_states = wait_done(&mut client, &server, &case_id, n, |now| {
                scope
                    .iter()
                    .all(|f| now[f].completed_runs > runs_before[f].completed_runs)
            })
            .await;
            let after = all_detections(&mut client, &case_id).await;
            for (id, (detection, bytes)) in &before {
                let file = &detection.file_id.as_ref().unwrap().value;
                if scope.contains(file) {
                    assert!(after.contains_key(id), "round {round}: re-run lost {id}");
                } else {
                    assert_eq!(
                        after.get(id).map(|(_, b)| b),
                        Some(bytes),
                        "round {round}: detection {id} of file {file} outside the scope changed"
                    );
                }
            }
            assert_eq!(before.len(), after.len(), "round {round}");
            for file in ids.iter().filter(|f| !scope.contains(f)) {
                assert_eq!(
                    after_states[file].completed_runs, runs_before[file].completed_runs,
                    "round {round}: file {file} outside the scope was re-run"
                );
            }
        }

        // A rule change re-evaluates only the changed rule.
        let counts = client
            .count_detections(pb::CountDetectionsRequest {
                case_id: case(&case_id),
                filter: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(counts.total as usize, total);
        let rule = counts.by_rule[0].rule_id.clone().unwrap();
        let before = all_detections(&mut client, &case_id).await;
        let disabled = server.cli(&["rules", "disable", "--id", &rule.value]);
        assert!(disabled.status.success(), "{}", stderr(&disabled));
        let after_states = wait_done(&mut client, &server, &case_id, n, |_| true).await;
        assert!(
            after_states.values().all(|s| s.last_mode == "delta"),
            "{after_states:?}"
        );
        let after = all_detections(&mut client, &case_id).await;
        for (id, (detection, bytes)) in &before {
            if detection.rule_id.as_ref() == Some(&rule) {
                assert!(!after.contains_key(id), "{id} of the disabled rule remains");
            } else {
                assert_eq!(after.get(id).map(|(_, b)| b), Some(bytes), "{id} changed");
            }
        }
        assert_eq!(
            after.len() as u64,
            before.len() as u64 - counts.by_rule[0].count
        );
        let enabled = server.cli(&["rules", "enable", "--id", &rule.value]);
        assert!(enabled.status.success(), "{}", stderr(&enabled));
        wait_done(&mut client, &server, &case_id, n, |_| true).await;
        let again = all_detections(&mut client, &case_id).await;
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "re-enabling brings back exactly the same detections"
        );

        // A correlation over the case: the most frequent rule, 2+ times on one computer
        // within 10 years, across files.
        let correlation = format!(
            "title: Repeated {title}\nid: 7c0e2f4e-1f1a-4c1e-9d55-2d1f5e0c0a01\nlevel: high\n\
             correlation:\n  type: event_count\n  rules: [{id}]\n  group-by: [Computer]\n  \
             timespan: 3650d\n  generate: true\n  condition: {{gte: 2}}\n",
            title = counts.by_rule[0].rule_title.replace(':', " "),
            id = rule.value
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("correlation.yml");
        std::fs::write(&path, correlation).unwrap();
        let imported = server.cli(&["rules", "import", path.to_str().unwrap(), "--json"]);
        assert!(imported.status.success(), "{}", stderr(&imported));
        let import: serde_json::Value = serde_json::from_str(&stdout(&imported)).unwrap();
        assert_eq!(import["added"], 1, "{import}");
        let deadline = Instant::now() + Duration::from_secs(120);
        let found = loop {
            let list = client
                .list_detections(pb::ListDetectionsRequest {
                    case_id: case(&case_id),
                    filter: Some(pb::DetectionFilter {
                        is_correlation: Some(true),
                        rule_ids: vec![RuleId {
                            value: "7c0e2f4e-1f1a-4c1e-9d55-2d1f5e0c0a01".into(),
                        }],
                        ..Default::default()
                    }),
                    sort: 0,
                    page: None,
                })
                .await
                .unwrap()
                .into_inner();
            if !list.detections.is_empty() {
                break list.detections;
            }
            assert!(
                Instant::now() < deadline,
                "no correlation detection\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let base: Vec<&pb::Detection> = again
            .values()
            .map(|(d, _)| d)
            .filter(|d| d.rule_id.as_ref() == Some(&rule))
            .collect();
        let mut per_computer: HashMap<&str, usize> = HashMap::new();
        for detection in &base {
            *per_computer.entry(detection.computer.as_str()).or_default() += 1;
        }
        let expected: usize = per_computer.values().map(|n| n / 2).sum();
        assert_eq!(found.len(), expected, "{found:?}");
        for hit in &found {
            assert!(hit.correlated_event_count >= 2);
            assert_eq!(hit.event_ids.len() as u64, hit.correlated_event_count);
        }
    });
}
