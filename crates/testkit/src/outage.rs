//! Private servers that a test stops and starts again, for outage tests: a nats-server,
//! a PostgreSQL and an OpenSearch node of the test's own (never the shared ones), each
//! restarted on the same port and the same data, as after a crash or a restart of the
//! real thing. Stopped on drop, scratch directory removed.

use crate::{
    PostgresSetup, free_port, installed_opensearch, java, nats_command, opensearch_command,
    scratch_dir, spawn_dying_with_us, stop, wait_for_opensearch, wait_for_port,
};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;

enum Kind {
    /// With a user and password clients must present, if given.
    Nats(Option<(String, String)>),
    Postgres(PostgresSetup),
    OpenSearch {
        java: PathBuf,
        install: PathBuf,
    },
}

pub struct StoppableServer {
    kind: Kind,
    dir: PathBuf,
    port: u16,
    /// The URL clients use (the same after a restart).
    pub url: String,
    child: Mutex<Option<Child>>,
}

impl StoppableServer {
    /// A nats-server with JetStream (its store survives restarts).
    pub fn nats() -> Result<StoppableServer, String> {
        Self::nats_with(None)
    }

    /// A nats-server with JetStream that admits only `user` with `password`; its `url`
    /// carries them (`nats://user:password@…`).
    pub fn nats_with_password(user: &str, password: &str) -> Result<StoppableServer, String> {
        Self::nats_with(Some((user.to_string(), password.to_string())))
    }

    fn nats_with(credentials: Option<(String, String)>) -> Result<StoppableServer, String> {
        let dir = scratch_dir("casescope-nats-")?;
        let port = free_port();
        let userinfo = credentials
            .as_ref()
            .map(|(user, password)| format!("{user}:{password}@"))
            .unwrap_or_default();
        let server = StoppableServer {
            kind: Kind::Nats(credentials),
            url: format!("nats://{userinfo}127.0.0.1:{port}"),
            dir,
            port,
            child: Mutex::new(None),
        };
        server.start()?;
        Ok(server)
    }

    /// A PostgreSQL server; [`crate::create_database`] makes databases on `url`.
    pub fn postgres() -> Result<StoppableServer, String> {
        let setup = PostgresSetup::init()?;
        let server = StoppableServer {
            url: setup.url(),
            dir: setup.dir.clone(),
            port: setup.port,
            kind: Kind::Postgres(setup),
            child: Mutex::new(None),
        };
        server.start()?;
        Ok(server)
    }

    /// An OpenSearch node, or `None` when none is installed here.
    pub fn opensearch() -> Option<Result<StoppableServer, String>> {
        let install = installed_opensearch()?;
        Some((|| {
            let java = java()?;
            let dir = scratch_dir("casescope-os-")?;
            let port = free_port();
            let server = StoppableServer {
                kind: Kind::OpenSearch { java, install },
                url: format!("http://127.0.0.1:{port}"),
                dir,
                port,
                child: Mutex::new(None),
            };
            server.start()?;
            Ok(server)
        })())
    }

    fn command(&self) -> Result<Command, String> {
        match &self.kind {
            Kind::Nats(credentials) => {
                let mut command = nats_command(&self.dir, self.port)?;
                if let Some((user, password)) = credentials {
                    command.args(["--user", user, "--pass", password]);
                }
                Ok(command)
            }
            Kind::Postgres(setup) => setup.command(),
            Kind::OpenSearch { java, install } => {
                let _ = std::fs::remove_file(self.dir.join("home/logs/http.ports"));
                opensearch_command(java, install, &self.dir, self.port)
            }
        }
    }

    /// Starts it (again) and waits until it serves.
    pub fn start(&self) -> Result<(), String> {
        let mut slot = self.child.lock().unwrap();
        if slot.is_some() {
            return Ok(());
        }
        let death_signal = match self.kind {
            Kind::Postgres(_) => libc::SIGQUIT,
            _ => libc::SIGKILL,
        };
        let mut child = spawn_dying_with_us(self.command()?, death_signal)
            .map_err(|e| format!("start {}: {e}", self.name()))?;
        match &self.kind {
            Kind::Nats(_) => wait_for_port(
                self.port,
                "nats-server",
                &mut child,
                &self.dir.join("nats.log"),
            )?,
            Kind::Postgres(setup) => wait_for_port(self.port, "postgres", &mut child, &setup.log)?,
            Kind::OpenSearch { .. } => {
                wait_for_opensearch(&mut child, &self.dir)?;
            }
        }
        *slot = Some(child);
        Ok(())
    }

    /// Stops it as a crash would (PostgreSQL: immediate shutdown; the others: SIGKILL),
    /// and waits until it is gone.
    pub fn stop(&self) {
        if let Some(child) = self.child.lock().unwrap().take() {
            let signal = match self.kind {
                Kind::Postgres(_) => libc::SIGQUIT,
                _ => libc::SIGKILL,
            };
            stop(child.id() as i32, signal);
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Nats(_) => "nats-server",
            Kind::Postgres(_) => "postgres",
            Kind::OpenSearch { .. } => "OpenSearch",
        }
    }
}

impl Drop for StoppableServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
