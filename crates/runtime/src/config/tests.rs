//! Tests of configuration resolution.

#[test]
fn debug_output_hides_url_passwords() {
    let settings = super::Settings {
        database_url: Some("postgres://cases:s3cret@db:5432/cases?sslmode=require".into()),
        nats_url: Some("nats://bus:n4ts@nats:4222".into()),
        ..Default::default()
    };
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("n4ts"),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://cases:***@db:5432/cases?sslmode=require"),
        "{shown}"
    );
    assert_eq!(
        super::redact_url_password("postgres://db/x"),
        "postgres://db/x"
    );
    assert_eq!(
        super::redact_url_password("nats://user@h:1"),
        "nats://user@h:1"
    );
    assert_eq!(super::redact_url_password("not a url"), "not a url");
}

use super::*;

#[test]
fn defaults_are_the_embedded_all_in_one_mode() {
    let config = Settings::default().resolve().unwrap();
    assert_eq!(config.mode, Mode::AllInOne);
    assert_eq!(config.listen.to_string(), "127.0.0.1:7700");
    assert_eq!(config.data_dir, PathBuf::from("./casescope-data"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let settings = Settings {
        service: Some("cases".into()),
        listen: Some("not-an-address".into()),
        lease_ttl_secs: Some("-3".into()),
        log_format: Some("yaml".into()),
        ..Settings::default()
    };
    let error = settings.resolve().unwrap_err();
    let text = error.to_string();
    for expected in [
        "listen",
        "lease_ttl_secs",
        "log_format",
        "database_url",
        "nats_url",
        "internal_key",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert_eq!(error.0.len(), 6, "{text}");
}

#[test]
fn a_logsource_mapping_file_is_read_from_the_environment_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mapping.toml");
    std::fs::write(&file, "[placeholders]\n").unwrap();
    let named = |path: &std::path::Path| {
        let path = path.display().to_string();
        Settings::from_env(|name| (name == "CASESCOPE_LOGSOURCE_MAPPING").then(|| path.clone()))
    };
    let config = named(&file).resolve().unwrap();
    assert_eq!(config.logsource_mapping.as_deref(), Some(file.as_path()));
    let missing = named(&dir.path().join("missing.toml"))
        .resolve()
        .unwrap_err();
    assert!(
        missing.to_string().contains("logsource_mapping")
            && missing.to_string().contains("missing.toml"),
        "{missing}"
    );
    assert_eq!(
        Settings::default().resolve().unwrap().logsource_mapping,
        None
    );
}

#[test]
fn flags_beat_env_beat_file() {
    let file = Settings {
        listen: Some("127.0.0.1:1".into()),
        log: Some("warn".into()),
        data_dir: Some("/file".into()),
        ..Settings::default()
    };
    let env = Settings::from_env(|name| match name {
        "CASESCOPE_LISTEN" => Some("127.0.0.1:2".into()),
        "CASESCOPE_LOG" => Some("debug".into()),
        _ => None,
    });
    let flags = Settings {
        listen: Some("127.0.0.1:3".into()),
        ..Settings::default()
    };
    let config = flags.over(env.over(file)).resolve().unwrap();
    assert_eq!(config.listen.port(), 3);
    assert_eq!(config.log_filter, "debug");
    assert_eq!(config.data_dir, PathBuf::from("/file"));
}

#[test]
fn every_variable_read_is_listed() {
    let read = std::sync::Mutex::new(Vec::new());
    let _ = Settings::from_env(|name| {
        read.lock().unwrap().push(name.to_string());
        None
    });
    let read = read.into_inner().unwrap();
    assert!(read.len() > 20, "{read:?}");
    for name in read {
        assert!(
            ENV_VARS.iter().any(|(listed, _)| *listed == name),
            "{name} is read but not in ENV_VARS"
        );
    }
}

#[test]
fn docs_list_every_variable() {
    // The directory at run time: a test binary reused from another checkout of the
    // same sources (a shared target directory) must read this checkout's docs.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let docs = std::fs::read_to_string(format!("{manifest}/../../docs/configuration.md"))
        .expect("docs/configuration.md exists");
    for (name, _) in ENV_VARS {
        assert!(
            docs.contains(name),
            "docs/configuration.md does not document {name}"
        );
    }
}
