//! Global IOC lists in all-in-one mode, on EVTX-ATTACK-SAMPLES files, driven through
//! the CLI (`casescope ioc lists …`, `ioc import list:<name>`):
//! - a list used by every case finds in each case exactly what the same IOCs find as
//!   a case's own IOCs (a control case holds them too: its own and the list's find the
//!   same);
//! - a list used by chosen cases: a case that gains it is hunted with its IOCs, a case
//!   that loses it loses exactly those matches (every other match byte-identical);
//! - deleting a list removes its matches from every case and nothing else;
//! - every file ends `ready`.

use casescope_e2e::{Server, stderr, stdout};
use casescope_proto::common::v1::{CaseId, PageRequest};
use casescope_proto::ioc::v1 as pb;
use casescope_proto::ioc::v1::ioc_service_client::IocServiceClient;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Client = IocServiceClient<casescope_proto::channel::GrpcChannel>;

const FILES: &[&str] = &[
    "LM_WMI_4624_4688_TargetHost.evtx",
    "DE_renamed_psexec_service_sysmon_17_18.evtx",
];

/// The shared feed: values found in the files above.
const FEED: &str = "type,value,description\n\
ip,10.0.2[.]17,lateral movement source\n\
process_name,PsExec.exe,psexec\n\
other,wmic,lolbin\n";

/// The chosen cases' list.
const APT: &str = "type,value\nhostname,MSEDGEWIN10\n";

fn corpus() -> Option<PathBuf> {
    let corpus = casescope_testkit::shared_data_dir()?.join("evtx-attack-samples");
    corpus.is_dir().then_some(corpus)
}

fn find(root: &Path, name: &str) -> PathBuf {
    walkdir(root)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("{name} not in {}", root.display()))
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn ok(server: &Server, args: &[&str]) -> String {
    let output = server.cli(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

fn json(server: &Server, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(server, args)).unwrap()
}

/// Every match of a case: id → (the match, its encoding).
async fn matches(client: &mut Client, case: &str) -> BTreeMap<String, (pb::IocMatch, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_matches(pb::ListMatchesRequest {
                case_id: Some(CaseId { value: case.into() }),
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
            let bytes = m.encode_to_vec();
            out.insert(m.id.clone().unwrap().value, (m, bytes));
        }
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            return out;
        }
    }
}

/// What a match found, independent of the case and of which IOC record found it.
type Finding = (String, i64, String, String, i32, String);

fn findings<'a>(
    found: impl Iterator<Item = &'a pb::IocMatch>,
    sha_of: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = found
        .map(|m| {
            (
                sha_of[&m.file_id.clone().unwrap().value].clone(),
                casescope_proto::time::timestamp_to_micros(m.timestamp.as_ref().unwrap()),
                m.field.clone(),
                m.matched_value.clone(),
                m.ioc_type,
                m.ioc_value.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until every file of the case is hunted at its IOC version and `ready`.
fn wait_ready(server: &Server, case: &str, files: usize) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let states = json(server, &["ioc", "states", case, "--json"]);
        let hunted = states["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "done" && s["hunted_version"] == states["case_version"])
            .count();
        let listed = json(server, &["files", case, "--json"]);
        let ready = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["status"] == "ready")
            .count();
        if hunted == files && ready == files {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "case {case} not hunted: {states}\n{listed}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn global_lists_hunt_where_they_apply_and_leave_the_rest_untouched() {
    let Some(corpus) = corpus() else {
        eprintln!("skipped: ../shared/data/evtx-attack-samples is not present");
        return;
    };
    let server = Server::start(
        &[],
        &[
            ("CASESCOPE_RECONCILE_PERIOD_SECS", "1"),
            ("CASESCOPE_LEASE_TTL_SECS", "10"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let (feed_csv, apt_csv) = (write("feed.csv", FEED), write("apt.csv", APT));

    // The shared feed, before any case: every case uses it.
    let feed = json(
        &server,
        &["ioc", "lists", "create", "feed", "--all-cases", "--json"],
    );
    assert_eq!(feed["all_cases"], true, "{feed}");
    let imported = json(
        &server,
        &["ioc", "import", "list:feed", &feed_csv, "--json"],
    );
    assert_eq!(
        (imported["created"].as_u64(), imported["rejected"].as_u64()),
        (Some(3), Some(0))
    );
    let listed = json(&server, &["ioc", "list", "list:FEED", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // Cases a and b use the feed; the control case holds the same IOCs as its own.
    let case = |name: &str| ok(&server, &["case", "create", name]).trim().to_string();
    let (a, b, control) = (case("a"), case("b"), case("control"));
    let own = json(&server, &["ioc", "import", &control, &feed_csv, "--json"]);
    assert_eq!(own["created"], 3);
    let paths: Vec<String> = FILES
        .iter()
        .map(|name| find(&corpus, name).display().to_string())
        .collect();
    let mut sha_of = BTreeMap::new();
    for case in [&a, &b, &control] {
        let mut args = vec!["upload", case.as_str()];
        args.extend(paths.iter().map(String::as_str));
        ok(&server, &args);
        for f in json(&server, &["files", case, "--json"])
            .as_array()
            .unwrap()
        {
            sha_of.insert(
                f["file_id"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            );
        }
    }
    for case in [&a, &b, &control] {
        wait_ready(&server, case, FILES.len());
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = IocServiceClient::new(server.grpc().await);
        let in_a = matches(&mut client, &a).await;
        let in_b = matches(&mut client, &b).await;
        let in_control = matches(&mut client, &control).await;
        let feed_iocs: Vec<String> = json(&server, &["ioc", "list", "list:feed", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let of_feed = |m: &pb::IocMatch| feed_iocs.contains(&m.ioc_id.as_ref().unwrap().value);
        let expected = findings(
            in_control.values().map(|(m, _)| m).filter(|m| !of_feed(m)),
            &sha_of,
        );
        assert!(
            expected.len() >= 3,
            "the feed finds too little: {expected:?}"
        );
        assert_eq!(
            findings(
                in_control.values().map(|(m, _)| m).filter(|m| of_feed(m)),
                &sha_of
            ),
            expected,
            "the list's IOCs and the case's own find different things"
        );
        assert_eq!(findings(in_a.values().map(|(m, _)| m), &sha_of), expected);
        assert_eq!(findings(in_b.values().map(|(m, _)| m), &sha_of), expected);

        // A chosen list for b only: a's matches are untouched, b gains the list's.
        let apt = json(
            &server,
            &["ioc", "lists", "create", "apt", "--case", &b, "--json"],
        );
        assert_eq!(apt["case_ids"], serde_json::json!([b]));
        let imported = json(&server, &["ioc", "import", "list:apt", &apt_csv, "--json"]);
        assert_eq!(imported["created"], 1);
        wait_ready(&server, &b, FILES.len());
        let shown = json(&server, &["ioc", "lists", "show", "--case", &a, "--json"]);
        assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
        let apt_ioc = json(&server, &["ioc", "list", "list:apt", "--json"])[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let of_apt = |found: &BTreeMap<String, (pb::IocMatch, Vec<u8>)>| {
            found
                .values()
                .filter(|(m, _)| m.ioc_id.as_ref().unwrap().value == apt_ioc)
                .count()
        };
        let b_with_apt = matches(&mut client, &b).await;
        let apt_found = of_apt(&b_with_apt);
        assert!(apt_found > 0, "the apt list found nothing in b");
        assert_eq!(b_with_apt.len(), in_b.len() + apt_found);
        for (id, found) in &in_b {
            assert_eq!(b_with_apt.get(id), Some(found), "b's match {id} changed");
        }
        assert_eq!(matches(&mut client, &a).await, in_a, "a changed");

        // Moving the list from b to a: b loses exactly its matches, a gains them.
        ok(&server, &["ioc", "lists", "update", "apt", "--case", &a]);
        wait_ready(&server, &a, FILES.len());
        wait_ready(&server, &b, FILES.len());
        assert_eq!(matches(&mut client, &b).await, in_b, "b kept other matches");
        let a_with_apt = matches(&mut client, &a).await;
        assert_eq!(of_apt(&a_with_apt), apt_found);
        assert_eq!(a_with_apt.len(), in_a.len() + apt_found);

        // Deleting the feed: its matches go from every case; the control case's own and
        // the apt list's matches stay.
        let deleted = ok(&server, &["ioc", "lists", "delete", "feed"]);
        assert!(deleted.contains("3 IOCs"), "{deleted}");
        for case in [&a, &b] {
            wait_ready(&server, case, FILES.len());
        }
        let a_after = matches(&mut client, &a).await;
        assert_eq!(a_after.len(), apt_found, "{a_after:?}");
        assert!(matches(&mut client, &b).await.is_empty());
        wait_ready(&server, &control, FILES.len());
        let own: BTreeMap<_, _> = in_control
            .into_iter()
            .filter(|(_, (m, _))| !of_feed(m))
            .collect();
        assert_eq!(matches(&mut client, &control).await, own);
        let gone = server.cli(&["ioc", "list", "list:feed"]);
        assert!(!gone.status.success());
        assert!(stderr(&gone).contains("no IOC list"), "{}", stderr(&gone));
    });
}
