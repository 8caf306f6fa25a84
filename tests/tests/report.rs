//! Case reports end to end, through the CLI, in both modes (all-in-one: SQLite,
//! tantivy, in-process bus; multi-process: the report service in its own process over
//! PostgreSQL, NATS and OpenSearch):
//! - one job renders HTML, Markdown and JSON from the same snapshot; the JSON's
//!   counts are the case's (files, events, detections, the tagged and starred events
//!   with their comments, the notes), each download matches its recorded SHA-256;
//! - markup in a comment, a field value, the notes and the case name shows as text in
//!   every format (no live HTML, no Markdown emphasis or link); a 10 MB comment is
//!   refused with the limit named, a 60,000-character one cut to 2,000 in the report;
//! - a tag filter narrows the timeline; bad requests and an AI summary with no LLM are
//!   refused with the reason; a deleted report is gone.

use casescope_bus::Bus;
use casescope_e2e::deployment::Deployment;
use casescope_e2e::reports::{self, download};
use casescope_e2e::{Server, json, stderr, stdout};
use casescope_proto::cases::v1 as cases_pb;
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::common::v1::{CaseId, EventId};
use std::collections::BTreeSet;
use std::time::Duration;

const FAST: [(&str, &str); 1] = [("CASESCOPE_RECONCILE_PERIOD_SECS", "2")];
const EVENTS: u64 = 600;
const HOSTILE: &str =
    "<script>alert(1)</script> **bold** [x](javascript:alert(1)) $\\frac{a}{b}$ | done";

fn event_ids(api: &Server, case: &str) -> Vec<String> {
    let page = json(api.cli(&["timeline", case, "", "--limit", "1000", "--json"]));
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Creates a report and waits for it; returns its JSON description.
fn create(api: &Server, case: &str, extra: &[&str]) -> serde_json::Value {
    let id = reports::create(api, case, extra);
    reports::wait_ready(api, case, &id)
}

fn scenario(deployment: &Deployment, work: &std::path::Path) {
    let api = deployment.api();
    let rule = work.join("logons.yml");
    std::fs::write(
        &rule,
        casescope_e2e::logon_rule("6e1d8b2f-3a5c-4d9e-8f7b-2c4e6a8b0d31"),
    )
    .unwrap();
    assert!(
        api.cli(&["rules", "import", rule.to_str().unwrap()])
            .status
            .success()
    );
    let evidence = work.join("report.evtx");
    casescope_e2e::synth_evtx(&evidence, EVENTS, 23);
    let case = stdout(&api.cli(&["case", "create", &format!("Report {HOSTILE}")]))
        .trim()
        .to_string();
    let uploaded = json(api.cli(&["upload", &case, evidence.to_str().unwrap(), "--json"]));
    let file_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let sha256 = uploaded[0]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let record = casescope_e2e::wait_until_processed(
        api,
        &case,
        &file_id,
        Duration::from_secs(180),
        deployment.ingest(),
    );
    assert_eq!(record["events_indexed"], EVENTS, "{record}");
    let detections = casescope_e2e::wait_until_detected(api, deployment.detect(), &case, 1);
    assert!(detections > 0);

    // Annotations: 20 events tagged, 3 others starred, one commented with markup.
    let all = event_ids(api, &case);
    assert_eq!(all.len() as u64, EVENTS);
    let tagged: Vec<&String> = all[..100].iter().step_by(5).collect();
    let mut tag = vec!["tag", case.as_str(), "Lateral Movement"];
    for id in &tagged {
        tag.extend(["--event", id.as_str()]);
    }
    assert!(api.cli(&tag).status.success());
    let starred = [&all[300], &all[400], &all[500]];
    let mut star = vec!["star", case.as_str()];
    for id in starred {
        star.extend(["--event", id.as_str()]);
    }
    assert!(api.cli(&star).status.success());
    let comment = format!("seen on WS01\n{HOSTILE}");
    let commented = api.cli(&["comment", &case, tagged[0], &comment]);
    assert!(commented.status.success(), "{}", stderr(&commented));
    // A long comment (60,000 characters, under the cases service's 64 KiB limit) is cut
    // to the report's 2,000 characters and marked.
    let long = "A".repeat(60_000);
    let commented = api.cli(&["comment", &case, tagged[1], &long]);
    assert!(commented.status.success(), "{}", stderr(&commented));
    // A 10 MB comment is refused with the limit named, before anything is stored.
    let refused = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            let mut client = CasesServiceClient::new(api.grpc().await);
            client
                .add_comment(cases_pb::AddCommentRequest {
                    case_id: Some(CaseId {
                        value: case.clone(),
                    }),
                    event_id: Some(EventId {
                        value: tagged[2].clone(),
                    }),
                    body: "B".repeat(10 * 1024 * 1024),
                    parent_id: None,
                })
                .await
        })
        .expect_err("a 10 MB comment is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("a comment is at most 65536 bytes"),
        "the limit is named: {}",
        refused.message()
    );
    let notes = format!("# Findings\n```\n{HOSTILE}\n");
    let token = &[("CASESCOPE_TOKEN", api.token())];
    let edit = api.cli_with(token, &["notes", "edit", &case, "--version", "0"], &notes);
    assert!(edit.status.success(), "{}", stderr(&edit));

    // One report in three formats.
    let report = create(
        api,
        &case,
        &[
            "--format", "html", "--format", "md", "--format", "json", "--format", "pdf",
        ],
    );
    let id = report["id"].as_str().unwrap().to_string();
    let artefacts = report["artefacts"].as_array().unwrap();
    assert_eq!(artefacts.len(), 4, "{report}");
    for artefact in artefacts {
        assert_eq!(artefact["sha256"].as_str().unwrap().len(), 64);
    }
    let document: serde_json::Value =
        serde_json::from_str(&download(api, &case, &id, "json", work)).expect("valid JSON");
    assert_eq!(document["report"]["case_name"], format!("Report {HOSTILE}"));
    let members = document["report"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{document}");
    assert_eq!(members[0]["name"], "admin");
    assert_eq!(members[0]["role"], "case admin");
    assert_eq!(document["files_total"], 1);
    assert_eq!(document["files"][0]["events_indexed"], EVENTS);
    if !sha256.is_empty() {
        assert_eq!(document["files"][0]["sha256"], sha256);
    }
    assert_eq!(
        document["files"][0]["uploaded_by"], "admin",
        "the uploader is recorded"
    );
    assert_eq!(document["overview"]["events_indexed"], EVENTS);
    assert_eq!(document["overview"]["detections"], detections);
    assert_eq!(document["detections_by_rule"]["total"], detections);
    assert_eq!(document["overview"]["tagged_events"], 23);
    let events = document["timeline"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 23, "20 tagged + 3 starred");
    assert_eq!(document["timeline"]["left_out"], 0);
    let shown: BTreeSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = tagged
        .iter()
        .map(|s| s.as_str())
        .chain(starred.iter().map(|s| s.as_str()))
        .collect();
    assert_eq!(shown, expected);
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["datetime"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let with_comment = events
        .iter()
        .find(|e| e["event_id"] == tagged[0].as_str())
        .unwrap();
    assert_eq!(with_comment["comments"][0]["body"], comment);
    assert_eq!(with_comment["tags"][0], "lateral movement");
    assert_eq!(with_comment["comments"][0]["truncated"], false);
    let with_long = events
        .iter()
        .find(|e| e["event_id"] == tagged[1].as_str())
        .unwrap();
    let cut = &with_long["comments"][0];
    assert_eq!(cut["truncated"], true, "{cut}");
    assert_eq!(cut["body"].as_str().unwrap().chars().count(), 2_000);
    assert_eq!(document["notes"]["text"], notes);
    assert_eq!(document["notes"]["version"], 1);

    let html = download(api, &case, &id, "html", work);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "no live script in the HTML");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; **bold**"),
        "markup shown as text"
    );
    assert!(!html.contains("href="), "no link at all");
    assert!(html.contains(&file_id) || html.contains("report.evtx"));
    assert!(
        html.contains("<span class=\"muted\">[cut]</span>"),
        "the long comment is marked cut"
    );
    let markdown = download(api, &case, &id, "md", work);
    assert!(
        markdown.contains("\\<script\\>alert\\(1\\)\\</script\\> \\*\\*bold\\*\\*"),
        "{markdown}"
    );
    // Outside the notes' literal block, no Markdown link can form.
    let (body, notes_part) = markdown.split_once("## Analyst notes").unwrap();
    assert!(!body.contains("](javascript"), "no Markdown link");
    assert!(body.contains("\\[x\\]\\(javascript\\:alert"), "{body}");
    assert!(
        notes_part.contains("````text\n# Findings\n```\n"),
        "{notes_part}"
    );
    assert!(markdown.contains("lateral movement"));

    // The PDF: its pages rendered to images (Poppler), none blank, and its text read
    // back holds the markup as characters.
    let pdf = work.join(format!("{id}.pdf"));
    let saved = api.cli(&[
        "report",
        "download",
        &case,
        &id,
        "--format",
        "pdf",
        "--output",
        pdf.to_str().unwrap(),
    ]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let pages = casescope_e2e::pdf_pages(&pdf, &work.join("pages"));
    assert!(!pages.is_empty(), "at least one page");
    for (index, ink) in pages.iter().enumerate() {
        assert!(*ink > 0.002, "page {} is blank ({ink})", index + 1);
    }
    let text = casescope_e2e::pdf_text(&pdf);
    assert!(text.contains("Evidence and chain of custody"), "{text}");
    assert!(
        text.contains("<script>alert(1)</script>"),
        "markup drawn as text: {text}"
    );
    assert!(text.contains("lateral movement"), "{text}");
    assert!(text.contains("page 1 of"), "{text}");

    // In a cluster, SOC tooling sees the report.ready fact with the artefacts' digests.
    if let Some((url, namespace)) = &deployment.nats {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let facts = runtime.block_on(async {
            let mut options = casescope_bus::JetStreamOptions::new(url.clone());
            options.namespace = Some(namespace.clone());
            let bus = casescope_bus::JetStreamBus::connect(&options)
                .await
                .unwrap();
            bus.recent(&format!("casescope.v1.reports.{case}"), 10)
                .await
                .unwrap()
        });
        let ready: Vec<serde_json::Value> = facts
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .filter(|f: &serde_json::Value| f["report_id"] == id.as_str())
            .collect();
        assert_eq!(ready.len(), 1, "{ready:?}");
        assert_eq!(ready[0]["header"]["kind"], "report.ready");
        assert_eq!(ready[0]["header"]["producer"], "report");
        let digests: BTreeSet<&str> = ready[0]["artefacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["sha256"].as_str().unwrap())
            .collect();
        let recorded: BTreeSet<&str> = artefacts
            .iter()
            .map(|a| a["sha256"].as_str().unwrap())
            .collect();
        assert_eq!(digests, recorded);
    }

    // A tag filter narrows the timeline to those events.
    let narrowed = create(
        api,
        &case,
        &["--format", "json", "--tag", "LATERAL  movement"],
    );
    let narrowed_id = narrowed["id"].as_str().unwrap();
    let document: serde_json::Value =
        serde_json::from_str(&download(api, &case, narrowed_id, "json", work)).unwrap();
    assert_eq!(document["timeline"]["events"].as_array().unwrap().len(), 20);
    assert_eq!(document["report"]["timeline_tags"][0], "lateral movement");

    // Refusals, with the reason.
    let twice = api.cli(&[
        "report", "create", &case, "--format", "html", "--format", "html",
    ]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("already asked for"),
        "{}",
        stderr(&twice)
    );
    let ai = api.cli(&["report", "create", &case, "--ai"]);
    assert!(!ai.status.success());
    assert!(stderr(&ai).contains("CASESCOPE_LLM_URL"), "{}", stderr(&ai));
    let missing = api.cli(&[
        "report",
        "create",
        "00000000-0000-4000-8000-000000000000",
        "--format",
        "html",
    ]);
    assert!(!missing.status.success());

    // Listed newest first; deleting removes it and its artefacts.
    let listed = json(api.cli(&["report", "list", &case, "--json"]));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![narrowed_id, id.as_str()]);
    assert!(api.cli(&["report", "delete", &case, &id]).status.success());
    let gone = api.cli(&["report", "get", &case, &id]);
    assert!(!gone.status.success());
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));
}

#[test]
fn reports_all_in_one() {
    let work = tempfile::tempdir().unwrap();
    let deployment = Deployment::all_in_one(work.path(), &FAST);
    scenario(&deployment, work.path());
}

#[test]
fn reports_multi_process() {
    let work = tempfile::tempdir().unwrap();
    let Some(deployment) = Deployment::multi_process(work.path(), &FAST, "rp") else {
        return;
    };
    scenario(&deployment, work.path());
}
