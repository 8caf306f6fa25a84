use super::*;

const HOSTILE: &str = "<script>alert(1)</script> **bold** [x](javascript:alert(1)) $\\frac{a}{b}$ | `tick` \u{202E}evil";

fn meta() -> Meta {
    Meta {
        id: "r1".into(),
        title: format!("Title {HOSTILE}"),
        case_id: "c1".into(),
        case_name: HOSTILE.into(),
        case_description: String::new(),
        case_state: "open".into(),
        case_created_at: "2026-01-01T00:00:00Z".into(),
        generated_at: "2026-01-02T00:00:00Z".into(),
        requested_by: "alice".into(),
        members: vec![],
        members_unavailable: String::new(),
        sections: vec!["timeline", "notes"],
        timeline_tags: vec![],
        version: "0.1.0",
    }
}

fn event() -> TimelineEntry {
    TimelineEntry {
        datetime: "2026-01-01T10:00:00Z".into(),
        event_id: "e1".into(),
        computer: "WS01".into(),
        channel: "Security".into(),
        provider: String::new(),
        event_code: Some(4624),
        record_id: Some(7),
        tags: vec!["lateral <movement>".into()],
        starred: true,
        comments: vec![Comment {
            author: "bob".into(),
            body: format!("line one\n{HOSTILE}"),
            truncated: false,
        }],
        fields: vec![Field {
            name: "CommandLine".into(),
            value: HOSTILE.into(),
        }],
        more_fields: 0,
    }
}

fn parts() -> Vec<Part> {
    let meta = Box::new(meta());
    vec![
        Part::Begin(meta.clone()),
        Part::TimelineBegin(1, vec![]),
        Part::TimelineEvent(Box::new(event())),
        Part::TimelineEnd(TimelineEnd {
            unavailable: String::new(),
            shown: 1,
            left_out: 0,
        }),
        Part::Notes(Box::new(Notes {
            unavailable: String::new(),
            text: format!("# notes\n```\n{HOSTILE}"),
            version: 2,
            updated_at: "2026-01-02T00:00:00Z".into(),
        })),
        Part::End(meta),
    ]
}

fn render_bytes(mut renderer: Renderer) -> Vec<u8> {
    let mut out = Vec::new();
    renderer.render(&parts(), &mut out).expect("renders");
    out
}

fn render(renderer: Renderer) -> String {
    String::from_utf8(render_bytes(renderer)).expect("UTF-8")
}

#[test]
fn html_shows_markup_as_text() {
    let html = render(Renderer::Html(Templates::builtin()));
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("href=\"javascript"), "{html}");
    assert!(html.contains("⟨U+202E⟩evil"), "bidi override shown: {html}");
    assert!(!html.contains('\u{202E}'));
    assert!(html.contains("lateral &lt;movement&gt;"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy"));
}

#[test]
fn markdown_shows_markup_as_text() {
    let md = render(Renderer::Markdown(Templates::builtin()));
    assert!(md.contains("\\<script\\>alert\\(1\\)\\</script\\>"), "{md}");
    assert!(md.contains("javascript\\:alert"), "{md}");
    assert!(md.contains("\\*\\*bold\\*\\*"), "{md}");
    assert!(
        md.contains("\\[x\\]\\(javascript\\:alert\\(1\\)\\)"),
        "{md}"
    );
    assert!(md.contains("\\$\\\\frac\\{a\\}\\{b\\}\\$"), "{md}");
    assert!(md.contains("line one<br>"), "{md}");
    assert!(!md.contains('\u{202E}'));
    // The notes are a literal block whose fence outgrows the backticks inside.
    assert!(md.contains("````text\n# notes\n```\n"), "{md}");
}

#[test]
fn json_carries_the_values_unchanged() {
    let json = render(Renderer::Json(JsonWriter::default()));
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["report"]["case_name"], HOSTILE);
    let events = value["timeline"]["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["fields"][0]["value"], HOSTILE);
    assert_eq!(value["timeline"]["shown"], 1);
    assert_eq!(value["notes"]["version"], 2);
}

#[test]
fn a_template_without_a_macro_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("report.md.j2"),
        "{% macro begin(r) %}x{% endmacro %}",
    )
    .unwrap();
    let error = Templates::from_dir(dir.path()).unwrap_err().to_string();
    assert!(error.contains("report.md.j2"), "{error}");
    assert!(error.contains("`ai_summary`"), "{error}");
}

#[test]
fn a_deployment_template_replaces_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = String::new();
    for name in MACROS {
        let args = match *name {
            "overview" => "a, b",
            "files_begin" => "",
            "timeline_begin" => "a, b",
            _ => "a",
        };
        source.push_str(&format!(
            "{{% macro {name}({args}) %}}[{name}]{{% endmacro %}}\n"
        ));
    }
    source = source.replace("[timeline_event]", "[event {{ a.fields[0].value }}]");
    std::fs::write(dir.path().join("report.md.j2"), source).unwrap();
    let templates = Templates::from_dir(dir.path()).unwrap();
    let md = render(Renderer::Markdown(templates));
    assert!(
        md.starts_with("[begin][timeline_begin][event \\<script\\>"),
        "{md}"
    );
}

#[test]
fn pdf_is_a_document_of_pages() {
    let Some(fonts) = PdfFonts::discover() else {
        eprintln!(
            "skipped: no DejaVu Sans or Liberation Sans here (apt-get install fonts-dejavu-core)"
        );
        return;
    };
    let pdf = render_bytes(Renderer::Pdf(Box::new(PdfWriter::new(fonts))));
    assert!(pdf.starts_with(b"%PDF-"), "a PDF header");
    assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"), "a complete PDF");
}

fn summary() -> AiSummary {
    AiSummary {
        status: "included".into(),
        model: "tiny".into(),
        sentences: vec![
            AiSentence {
                text: format!("{HOSTILE} ran."),
                citations: vec!["E1".into()],
                uncited: false,
            },
            AiSentence {
                text: "It was APT29.".into(),
                citations: vec![],
                uncited: true,
            },
        ],
        uncited: 1,
        invented_citations: vec!["E99".into()],
        sources: vec![AiSource {
            id: "E1".into(),
            kind: "event".into(),
            label: HOSTILE.into(),
            event_id: "e1".into(),
        }],
        events_given: 1,
        events_selected: 3,
        redactions: 2,
        ..Default::default()
    }
}

fn render_summary(mut renderer: Renderer, summary: AiSummary) -> Vec<u8> {
    let meta = Box::new(meta());
    let parts = vec![
        Part::Begin(meta.clone()),
        Part::AiSummary(Box::new(summary)),
        Part::End(meta),
    ];
    let mut out = Vec::new();
    renderer.render(&parts, &mut out).expect("renders");
    out
}

#[test]
fn the_ai_summary_shows_citations_flags_and_markup_as_text() {
    let html = String::from_utf8(render_summary(
        Renderer::Html(Templates::builtin()),
        summary(),
    ))
    .unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("<a href=\"#src-E1\">E1</a>"), "{html}");
    assert!(html.contains("<tr id=\"src-E1\">"), "{html}");
    assert!(
        html.contains("class=\"flag\""),
        "an uncited sentence is marked: {html}"
    );
    assert!(
        html.contains("<code>E99</code>"),
        "invented ids listed: {html}"
    );
    assert!(
        html.contains("1 of 2 sentences cite no evidence given"),
        "{html}"
    );

    let md = String::from_utf8(render_summary(
        Renderer::Markdown(Templates::builtin()),
        summary(),
    ))
    .unwrap();
    assert!(md.contains("\\<script\\>alert"), "{md}");
    assert!(md.contains("It was APT29. **\\[uncited\\]**"), "{md}");
    assert!(md.contains("ran. \\[E1\\]"), "{md}");
    assert!(md.contains("E99"), "{md}");

    let json = String::from_utf8(render_summary(
        Renderer::Json(JsonWriter::default()),
        summary(),
    ))
    .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(
        value["ai_summary"]["sentences"][0]["text"],
        format!("{HOSTILE} ran.")
    );
    assert_eq!(value["ai_summary"]["sentences"][1]["uncited"], true);
    assert_eq!(value["ai_summary"]["invented_citations"][0], "E99");

    let failed = AiSummary {
        status: "failed".into(),
        error: "the LLM endpoint sent no answer within 2 s (timeout)".into(),
        ..Default::default()
    };
    let html = String::from_utf8(render_summary(
        Renderer::Html(Templates::builtin()),
        failed.clone(),
    ))
    .unwrap();
    assert!(
        html.contains("Not included: the LLM endpoint sent no answer within 2 s (timeout)."),
        "{html}"
    );
    if let Some(fonts) = PdfFonts::discover() {
        let pdf = render_summary(
            Renderer::Pdf(Box::new(PdfWriter::new(fonts.clone()))),
            summary(),
        );
        assert!(pdf.starts_with(b"%PDF-"));
        let pdf = render_summary(Renderer::Pdf(Box::new(PdfWriter::new(fonts))), failed);
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
