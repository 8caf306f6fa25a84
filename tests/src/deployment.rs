//! One deployment of CaseScope for a scenario that must hold in both modes: all-in-one
//! (`casescope serve`: SQLite, tantivy, in-process bus) or multi-process (cases, ingest,
//! detect, ioc, report, integrations and the gateway as separate processes over a real
//! nats-server, PostgreSQL and OpenSearch), with where its data lives.

use crate::{Server, opensearch_or_skip};
use std::path::{Path, PathBuf};

/// A process's arguments and environment.
type StartedWith = (Vec<String>, Vec<(String, String)>);

/// The processes of one deployment and where its data lives.
pub struct Deployment {
    pub cases: Server,
    /// `None` in all-in-one mode (the `cases` process serves everything).
    pub ingest: Option<Server>,
    pub detect: Option<Server>,
    pub ioc: Option<Server>,
    pub report: Option<Server>,
    pub integrations: Option<Server>,
    /// How the integrations process was started (arguments, environment), to start it
    /// again after a kill.
    integrations_start: Option<StartedWith>,
    /// The one gateway in front of cases, ingest, detect and ioc (multi-process mode).
    pub gateway: Option<Server>,
    pub ingest_db: String,
    pub detect_db: String,
    pub ioc_db: String,
    /// The ingest service's data directory (`ingest/evidence/<case>/…`).
    pub ingest_data: PathBuf,
    /// (OpenSearch URL, index) in cluster mode.
    pub opensearch: Option<(String, String)>,
    /// (NATS URL, namespace) in cluster mode, to read the facts the services publish.
    pub nats: Option<(String, String)>,
}

impl Deployment {
    /// `casescope serve` on a fresh data directory under `work`, with `env`.
    pub fn all_in_one(work: &Path, env: &[(&str, &str)]) -> Deployment {
        let data = work.join("data");
        let server = Server::start(&["--data-dir", data.to_str().unwrap()], env);
        Deployment {
            cases: server,
            ingest: None,
            detect: None,
            ioc: None,
            report: None,
            integrations: None,
            integrations_start: None,
            gateway: None,
            ingest_db: format!(
                "sqlite://{}?mode=ro",
                data.join("db/ingest.sqlite").display()
            ),
            detect_db: format!(
                "sqlite://{}?mode=ro",
                data.join("db/detect.sqlite").display()
            ),
            ioc_db: format!("sqlite://{}?mode=ro", data.join("db/ioc.sqlite").display()),
            ingest_data: data,
            opensearch: None,
            nats: None,
        }
    }

    /// Cases, ingest and detect as separate processes over the test harness's
    /// nats-server, fresh PostgreSQL databases and a fresh OpenSearch index; `None`
    /// (with the harness's message) when OpenSearch is not installed outside CI.
    pub fn multi_process(work: &Path, env: &[(&str, &str)], prefix: &str) -> Option<Deployment> {
        Self::multi_process_on(work, env, prefix, &casescope_testkit::nats_url())
    }

    /// [`Deployment::multi_process`] over the nats-server at `nats`.
    pub fn multi_process_on(
        work: &Path,
        env: &[(&str, &str)],
        prefix: &str,
        nats: &str,
    ) -> Option<Deployment> {
        let opensearch = opensearch_or_skip()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let nats = nats.to_string();
        let [cases_db, ingest_db, detect_db, ioc_db] =
            [(); 4].map(|_| runtime.block_on(casescope_testkit::postgres_url()));
        drop(runtime);
        let (namespace, index) = crate::fresh_names(prefix);
        let ingest_data = work.join("ingest-data");
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.extend([
            ("CASESCOPE_EVENT_STORE", "opensearch"),
            ("CASESCOPE_OPENSEARCH_URL", opensearch.as_str()),
            ("CASESCOPE_OPENSEARCH_INDEX", index.as_str()),
            ("CASESCOPE_OPENSEARCH_SHARDS", "1"),
            ("CASESCOPE_OPENSEARCH_REPLICAS", "0"),
        ]);
        let common = |service: &'static str, db: &str| -> Vec<String> {
            [
                "--service",
                service,
                "--nats-url",
                &nats,
                "--database-url",
                db,
                "--nats-namespace",
                &namespace,
            ]
            .map(String::from)
            .to_vec()
        };
        let start = |args: Vec<String>| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Server::start(&args, &env)
        };
        // The cases service calls ingest and detect (the timeline), which start after it.
        let [ingest_port, detect_port] = [(); 2].map(|_| casescope_testkit::free_port());
        let peers = [
            format!("ingest=http://127.0.0.1:{ingest_port}"),
            format!("detect=http://127.0.0.1:{detect_port}"),
        ];
        let cases = crate::start_service(
            "cases",
            &nats,
            &cases_db,
            &namespace,
            &["--service-addr", &peers[0], "--service-addr", &peers[1]],
            &env,
        );
        let mut ingest_args = common("ingest", &ingest_db);
        ingest_args.extend([
            "--listen".into(),
            format!("127.0.0.1:{ingest_port}"),
            "--service-addr".into(),
            format!("cases={}", cases.address),
            "--data-dir".into(),
            ingest_data.display().to_string(),
        ]);
        let ingest = start(ingest_args);
        let mut detect_args = common("detect", &detect_db);
        detect_args.extend([
            "--listen".into(),
            format!("127.0.0.1:{detect_port}"),
            "--service-addr".into(),
            format!("ingest={}", ingest.address),
        ]);
        let detect = start(detect_args);
        let mut ioc_args = common("ioc", &ioc_db);
        ioc_args.extend([
            "--service-addr".into(),
            format!("ingest={}", ingest.address),
        ]);
        let ioc = start(ioc_args);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let gateway_db = runtime.block_on(casescope_testkit::postgres_url());
        let report_db = runtime.block_on(casescope_testkit::postgres_url());
        drop(runtime);
        // The report service reads case members from the gateway, which starts after it.
        let gateway_port = casescope_testkit::free_port();
        let mut report_args = common("report", &report_db);
        for (service, server) in [("cases", &cases), ("detect", &detect), ("ioc", &ioc)] {
            report_args.extend([
                "--service-addr".into(),
                format!("{service}={}", server.address),
            ]);
        }
        report_args.extend([
            "--service-addr".into(),
            format!("gateway=http://127.0.0.1:{gateway_port}"),
        ]);
        let report = start(report_args);
        let integrations_db = {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(casescope_testkit::postgres_url())
        };
        let mut integrations_args = common("integrations", &integrations_db);
        integrations_args.extend([
            "--listen".into(),
            format!("127.0.0.1:{}", casescope_testkit::free_port()),
        ]);
        for (service, server) in [("cases", &cases), ("ioc", &ioc)] {
            integrations_args.extend([
                "--service-addr".into(),
                format!("{service}={}", server.address),
            ]);
        }
        let integrations = start(integrations_args.clone());
        let mut gateway_args = common("gateway", &gateway_db);
        gateway_args.extend(["--listen".into(), format!("127.0.0.1:{gateway_port}")]);
        for (service, server) in [
            ("cases", &cases),
            ("ingest", &ingest),
            ("detect", &detect),
            ("ioc", &ioc),
            ("report", &report),
            ("integrations", &integrations),
        ] {
            gateway_args.extend([
                "--service-addr".into(),
                format!("{service}={}", server.address),
            ]);
        }
        let gateway = start(gateway_args);
        Some(Deployment {
            cases,
            ingest: Some(ingest),
            detect: Some(detect),
            ioc: Some(ioc),
            report: Some(report),
            integrations: Some(integrations),
            integrations_start: Some((
                integrations_args,
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )),
            gateway: Some(gateway),
            ingest_db,
            detect_db,
            ioc_db,
            ingest_data,
            opensearch: Some((opensearch, index)),
            nats: Some((nats, namespace)),
        })
    }

    /// The public endpoint: the gateway in front of every service (the all-in-one
    /// server serves it itself).
    pub fn api(&self) -> &Server {
        self.gateway.as_ref().unwrap_or(&self.cases)
    }

    pub fn ingest(&self) -> &Server {
        self.ingest.as_ref().unwrap_or(&self.cases)
    }

    pub fn detect(&self) -> &Server {
        self.detect.as_ref().unwrap_or(&self.cases)
    }

    pub fn ioc(&self) -> &Server {
        self.ioc.as_ref().unwrap_or(&self.cases)
    }

    /// Where the ingest service keeps the blobs of `case`.
    pub fn evidence_dir(&self, case: &str) -> PathBuf {
        self.ingest_data.join("ingest/evidence").join(case)
    }

    /// Where the ingest service keeps the archive of an archived `case`.
    pub fn archive_path(&self, case: &str) -> PathBuf {
        self.ingest_data
            .join("ingest/archives")
            .join(format!("{case}.zip"))
    }

    /// Kills the integrations process (SIGKILL) and starts it again, same address and
    /// database (multi-process mode).
    pub fn restart_integrations_after_kill(&mut self) {
        let (args, env) = self
            .integrations_start
            .clone()
            .expect("a multi-process deployment");
        if let Some(mut old) = self.integrations.take() {
            old.child.kill().unwrap();
            let _ = old.child.wait();
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.integrations = Some(Server::start(&args, &env));
    }

    /// Logs of every process, for a failure message.
    pub fn logs(&self) -> String {
        [
            Some(&self.cases),
            self.ingest.as_ref(),
            self.detect.as_ref(),
            self.ioc.as_ref(),
            self.report.as_ref(),
            self.integrations.as_ref(),
            self.gateway.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(Server::log_text)
        .collect::<Vec<_>>()
        .join("\n----\n")
    }
}

/// Rows of `case` in each of `selections` (`<table> WHERE [condition AND]`) of the
/// database at `url`.
pub fn rows(url: &str, selections: &[&str], case: &str) -> Vec<(String, i64)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let mut counts = Vec::new();
        for table in selections {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} case_id = $1");
            let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(case)
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("count {table}: {e}"));
            counts.push((table.to_string(), row.0));
        }
        counts
    })
}
