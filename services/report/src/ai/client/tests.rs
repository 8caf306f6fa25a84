use super::*;

#[test]
fn openai_events_are_read() {
    let mut answer = Answer::default();
    let lines = [
        ": keep-alive",
        "event: message",
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#,
        r#"data: {"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
        "",
        r#"data:{"choices":[{"index":0,"delta":{"content":" [E1]."},"finish_reason":"stop"}]}"#,
        r#"data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#,
        "data: [DONE]",
    ];
    let mut got = Vec::new();
    for line in lines {
        got.push(sse_line(line, &mut answer).unwrap());
    }
    assert_eq!(
        got,
        vec![
            Line::Nothing,
            Line::Nothing,
            Line::Nothing,
            Line::Content("Hello".into()),
            Line::Nothing,
            Line::Content(" [E1].".into()),
            Line::Nothing,
            Line::Done
        ]
    );
    assert_eq!(answer.finish_reason, "stop");
    assert_eq!(answer.prompt_tokens, Some(12));
    assert_eq!(answer.completion_tokens, Some(3));
    let error = sse_line(
        r#"data: {"error":{"message":"context too long"}}"#,
        &mut answer,
    );
    assert_eq!(
        error,
        Err(LlmError::Stream(
            "it reported an error: context too long".into()
        ))
    );
    assert!(matches!(
        sse_line("data: {nope", &mut answer),
        Err(LlmError::Stream(_))
    ));
}

#[test]
fn ollama_lines_are_read() {
    let mut answer = Answer::default();
    assert_eq!(
        ndjson_line(
            r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            &mut answer
        )
        .unwrap(),
        Line::Content("Hi".into())
    );
    assert_eq!(
        ndjson_line(
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":9,"eval_count":4}"#,
            &mut answer
        )
        .unwrap(),
        Line::Done
    );
    assert_eq!(answer.finish_reason, "length");
    assert_eq!(answer.prompt_tokens, Some(9));
    assert_eq!(
        ndjson_line(r#"{"error":"model 'x' not found"}"#, &mut answer),
        Err(LlmError::Stream(
            "it reported an error: model 'x' not found".into()
        ))
    );
}

#[test]
fn answers_are_cut_on_a_character_boundary() {
    let mut answer = Answer::default();
    assert!(!append(&mut answer, "ab", 5));
    assert!(append(&mut answer, "cdé", 5));
    assert_eq!(answer.text, "abcd");
    assert!(answer.truncated);
}

// Against the scripted server: the wire format, timeouts and cancellation.

use casescope_testkit::llm::{Script, ScriptedLlm};
use std::time::Duration;

fn client(server: &ScriptedLlm, api: LlmApi, timeouts: LlmTimeouts) -> LlmClient {
    let url = match api {
        LlmApi::OpenAi => server.url("/v1"),
        LlmApi::Ollama => server.url(""),
    };
    LlmClient::new(
        LlmEndpoint {
            api,
            url,
            model: "scripted-model".into(),
            api_key: Some("sk-canary-4f1d".into()),
        },
        timeouts,
    )
    .expect("client")
}

fn quick() -> LlmTimeouts {
    LlmTimeouts {
        connect: Duration::from_secs(2),
        first_token: Duration::from_millis(800),
        stall: Duration::from_millis(500),
        total: Duration::from_secs(5),
    }
}

async fn ask(client: &LlmClient, max_bytes: usize) -> Result<Answer, LlmError> {
    client
        .chat(
            "instructions",
            "evidence",
            64,
            0.2,
            max_bytes,
            &CancellationToken::new(),
        )
        .await
}

#[tokio::test]
async fn an_openai_stream_is_read_whole() {
    let server = ScriptedLlm::start(Script::openai(&["Mimikatz ran ", "[E1]", "."])).await;
    let answer = ask(&client(&server, LlmApi::OpenAi, quick()), 4096)
        .await
        .unwrap();
    assert_eq!(answer.text, "Mimikatz ran [E1].");
    assert_eq!(answer.finish_reason, "stop");
    assert_eq!(answer.prompt_tokens, Some(100));
    assert!(!answer.truncated);
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(request.body["model"], "scripted-model");
    assert_eq!(request.body["stream"], true);
    assert_eq!(request.body["max_tokens"], 64);
    assert_eq!(request.body["messages"][0]["role"], "system");
    assert_eq!(request.body["messages"][0]["content"], "instructions");
    assert_eq!(request.body["messages"][1]["role"], "user");
    assert!(
        request
            .headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer sk-canary-4f1d")),
        "{:?}",
        request.headers
    );
}

#[tokio::test]
async fn an_ollama_stream_is_read_whole() {
    let server = ScriptedLlm::start(Script::ollama(&["Logons ", "[E2]."])).await;
    let answer = ask(&client(&server, LlmApi::Ollama, quick()), 4096)
        .await
        .unwrap();
    assert_eq!(answer.text, "Logons [E2].");
    assert_eq!(answer.completion_tokens, Some(12));
    let request = &server.requests()[0];
    assert_eq!(request.path, "/api/chat");
    assert_eq!(request.body["options"]["num_predict"], 64);
    assert!(request.body["options"]["num_ctx"].as_u64().unwrap() >= 64);
}

#[tokio::test]
async fn a_stalled_stream_times_out_and_is_closed() {
    let server = ScriptedLlm::start(Script::openai_stalling(&["The attacker "])).await;
    let started = std::time::Instant::now();
    let error = ask(&client(&server, LlmApi::OpenAi, quick()), 4096)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LlmError::Timeout(
            "stopped sending its answer (stalled stream)",
            Duration::from_millis(500)
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.wait_closed_early(Duration::from_secs(2)).await,
        "the connection was closed"
    );
    assert!(error.to_string().contains("within 500 ms"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = ScriptedLlm::start(Script::Silent).await;
    let error = ask(&client(&server, LlmApi::OpenAi, quick()), 4096)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LlmError::Timeout("sent no answer", Duration::from_millis(800))
    );
    assert!(server.wait_closed_early(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn an_http_error_is_reported_with_its_message() {
    let server = ScriptedLlm::start(Script::Status(
        500,
        r#"{"error":{"message":"model crashed","type":"server_error"}}"#.into(),
    ))
    .await;
    let error = ask(&client(&server, LlmApi::OpenAi, quick()), 4096)
        .await
        .unwrap_err();
    assert_eq!(error, LlmError::Status(500, "model crashed".into()));
    assert_eq!(
        error.to_string(),
        "the LLM endpoint answered HTTP 500: model crashed"
    );
    assert!(!error.to_string().contains("sk-canary"));
}

#[tokio::test]
async fn a_slow_trickle_meets_the_total_timeout() {
    let pieces: Vec<String> = (0..40).map(|n| format!("word{n} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server =
        ScriptedLlm::start(Script::openai_paced(&pieces, Duration::from_millis(200))).await;
    let timeouts = LlmTimeouts {
        total: Duration::from_millis(1500),
        ..quick()
    };
    let error = ask(&client(&server, LlmApi::OpenAi, timeouts), 4096)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        LlmError::Timeout("did not finish its answer", Duration::from_millis(1500))
    );
}

#[tokio::test]
async fn an_answer_is_cut_at_its_limit_and_the_stream_closed() {
    let pieces: Vec<String> = (0..200).map(|n| format!("sentence {n} [E1]. ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = ScriptedLlm::start(Script::openai_paced(&pieces, Duration::from_millis(5))).await;
    let answer = ask(&client(&server, LlmApi::OpenAi, quick()), 300)
        .await
        .unwrap();
    assert_eq!(answer.text.len(), 300);
    assert!(answer.truncated);
    assert!(server.wait_closed_early(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_cancelled_call_stops_and_closes_the_stream() {
    let pieces: Vec<String> = (0..100).map(|n| format!("w{n} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = ScriptedLlm::start(Script::openai_paced(&pieces, Duration::from_millis(50))).await;
    let client = client(&server, LlmApi::OpenAi, quick());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    let error = client
        .chat("i", "e", 64, 0.2, 4096, &cancel)
        .await
        .unwrap_err();
    assert_eq!(error, LlmError::Cancelled);
    assert!(server.wait_closed_early(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = LlmClient::new(
        LlmEndpoint {
            api: LlmApi::OpenAi,
            url: format!("http://user:secretpw@127.0.0.1:{port}/v1"),
            model: "m".into(),
            api_key: None,
        },
        quick(),
    )
    .unwrap();
    let error = ask(&client, 4096).await.unwrap_err();
    assert!(matches!(error, LlmError::Connect(_)), "{error:?}");
    assert!(!error.to_string().contains("secretpw"), "{error}");
}
