//! AI report summaries against a real OpenAI-compatible server: llama.cpp's
//! `llama-server` (built from PyPI's llama-cpp-python sdist by
//! `scripts/install-llama-server.sh`) serving a tiny model with random weights that the
//! test makes with the `gguf` package (`tests/llm/make_tiny_model.py`). What a real
//! server proves that a scripted one cannot: the request is one it accepts, the
//! streamed answer is read as it sends it, a timeout closes the stream and the server
//! stops generating, and deleting a report mid-answer does too.
//!
//! The random model writes gibberish with no citation, so its summary is "included"
//! with every sentence marked uncited — which is what the report must say of it.
//!
//! Without the server the test skips, saying so; `CASESCOPE_TEST_REQUIRE_LLAMA=1` (CI)
//! makes that a failure.

use casescope_e2e::deployment::Deployment;
use casescope_e2e::reports::{self, annotate_first, case_with_events};
use casescope_e2e::{Server, json, stderr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "tiny-random";

/// The built llama-server, or why there is none.
fn llama_server() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("CASESCOPE_LLAMA_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let dir = std::env::var("CASESCOPE_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/casescope-llama")
        });
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/llama-server"))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "no llama-server under {} (scripts/install-llama-server.sh)",
                dir.display()
            )
        })
}

/// A running llama-server (killed when dropped) and its log.
struct Llama {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Llama {
    fn start(binary: &Path, work: &Path) -> Llama {
        let model = work.join("tiny.gguf");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let made = Command::new("python3")
            .arg(root.join("tests/llm/make_tiny_model.py"))
            .arg(&model)
            .args(["--seed", "7"])
            .output()
            .expect("python3 runs");
        assert!(
            made.status.success(),
            "the tiny model was not made: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = work.join("llama.log");
        let child = Command::new(binary)
            .arg("-m")
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "-c",
                "4096",
                "--threads",
                "1",
                "--threads-batch",
                "1",
                "-np",
                "1",
            ])
            .args(["--no-warmup", "--no-webui", "--offline", "--alias", MODEL])
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("llama-server starts");
        let llama = Llama { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while casescope_e2e::http_get(port, "/health").is_none_or(|(code, _)| code != 200) {
            assert!(
                Instant::now() < deadline,
                "llama-server not ready: {}",
                llama.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        llama
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `count` times.
    fn wait_log(&self, needle: &str, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log_text().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// A case with 40 tagged events; returns the case id.
fn tagged_case(deployment: &Deployment, work: &Path) -> String {
    let case = case_with_events(deployment, work, "Real LLM", 120, 17);
    annotate_first(deployment.api(), &case, 40, &["tag", &case, "suspicious"]);
    case
}

/// Queues a JSON report with the AI summary; its id.
fn create(api: &Server, case: &str) -> String {
    reports::create(api, case, &["--format", "json", "--ai"])
}

/// The AI summary of the ready report.
fn wait_ready(api: &Server, case: &str, id: &str, work: &Path) -> serde_json::Value {
    reports::wait_ready(api, case, id);
    let document: serde_json::Value =
        serde_json::from_str(&reports::download(api, case, id, "json", work)).unwrap();
    document["ai_summary"].clone()
}

#[test]
fn ai_summaries_with_llama_cpp() {
    let binary = match llama_server() {
        Ok(binary) => binary,
        Err(why) if std::env::var("CASESCOPE_TEST_REQUIRE_LLAMA").is_ok_and(|v| v == "1") => {
            panic!("CASESCOPE_TEST_REQUIRE_LLAMA=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let llama = Llama::start(&binary, work.path());
    let url = llama.url();

    // 1. A summary streamed from the real server: the prompt within the model's
    // context (the byte-level tokenizer: ~1 token per byte), the answer to its limit.
    let base = [
        ("CASESCOPE_LLM_URL", url.as_str()),
        ("CASESCOPE_LLM_MODEL", MODEL),
        ("CASESCOPE_LLM_PROMPT_TOKENS", "1000"),
    ];
    let one = tempfile::tempdir().unwrap();
    let mut env = base.to_vec();
    env.push(("CASESCOPE_LLM_ANSWER_TOKENS", "96"));
    let deployment = Deployment::all_in_one(one.path(), &env);
    let api = deployment.api();
    let case = tagged_case(&deployment, one.path());
    let started = Instant::now();
    let id = create(api, &case);
    let ai = wait_ready(api, &case, &id, one.path());
    eprintln!("real LLM summary in {:?}: {ai}", started.elapsed());
    assert_eq!(ai["status"], "included", "{ai}");
    assert_eq!(ai["model"], MODEL);
    assert_eq!(
        ai["finish_reason"], "length",
        "the random model runs to max_tokens"
    );
    assert_eq!(
        ai["answer_tokens"], 96,
        "usage from the stream's last chunk: {ai}"
    );
    let prompt_tokens = ai["prompt_tokens"].as_u64().expect("usage reported");
    assert!(
        prompt_tokens > 500 && prompt_tokens < 4000,
        "{prompt_tokens}"
    );
    let given = ai["events_given"].as_u64().unwrap();
    assert!(
        given > 0 && given < 40,
        "the budget cut the 40 events: {given}"
    );
    assert_eq!(ai["events_selected"], 40);
    let sentences = ai["sentences"].as_array().unwrap();
    assert!(!sentences.is_empty());
    assert_eq!(
        ai["uncited"].as_u64().unwrap() as usize,
        sentences.iter().filter(|s| s["uncited"] == true).count()
    );
    assert!(
        llama.log_text().contains("processing task"),
        "the server served it"
    );
    drop(deployment);

    // 2. A first-token timeout shorter than the server's prompt processing: the report
    // says so, and the server is told (the connection closes).
    let two = tempfile::tempdir().unwrap();
    let mut env = base.to_vec();
    env.push(("CASESCOPE_LLM_FIRST_TOKEN_TIMEOUT_SECS", "0.05"));
    let deployment = Deployment::all_in_one(two.path(), &env);
    let api = deployment.api();
    let case = tagged_case(&deployment, two.path());
    let cancels = llama.log_text().matches("cancel task").count();
    let id = create(api, &case);
    let ai = wait_ready(api, &case, &id, two.path());
    assert_eq!(ai["status"], "failed", "{ai}");
    assert_eq!(
        ai["error"], "the LLM endpoint sent no answer within 50 ms (timeout)",
        "{ai}"
    );
    assert!(
        llama.wait_log("cancel task", cancels + 1, Duration::from_secs(10)),
        "the server stopped the task: {}",
        llama.log_text()
    );
    drop(deployment);

    // 3. Deleting a report while the server generates a long answer stops it.
    let three = tempfile::tempdir().unwrap();
    // A short prompt leaves ~2,500 tokens of context to generate (some seconds).
    let env = [
        ("CASESCOPE_LLM_URL", url.as_str()),
        ("CASESCOPE_LLM_MODEL", MODEL),
        ("CASESCOPE_LLM_PROMPT_TOKENS", "500"),
        ("CASESCOPE_LLM_ANSWER_TOKENS", "4000"),
    ];
    let deployment = Deployment::all_in_one(three.path(), &env);
    let api = deployment.api();
    let case = tagged_case(&deployment, three.path());
    let cancels = llama.log_text().matches("cancel task").count();
    let tasks = llama.log_text().matches("processing task").count();
    let id = create(api, &case);
    assert!(
        llama.wait_log("processing task", tasks + 1, Duration::from_secs(60)),
        "the summary was never asked for"
    );
    let deleted = api.cli(&["report", "delete", &case, &id]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        llama.wait_log("cancel task", cancels + 1, Duration::from_secs(10)),
        "the server stopped generating when the report was deleted: {}",
        llama.log_text()
    );
    let log = llama.log_text();
    let stopped = log
        .lines()
        .rev()
        .find_map(|line| line.split("stop processing: n_tokens = ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("the server logged where it stopped");
    assert!(
        stopped < 4000,
        "stopped before the end of the answer: {stopped} tokens"
    );
    let listed = json(api.cli(&["report", "list", &case, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
}
