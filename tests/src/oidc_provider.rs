//! The OpenID Connect provider of the sign-in tests (panva/node-oidc-provider, OpenID
//! Certified, from the npm registry: scripts/oidc-provider), run with Node.js on a free
//! port for one test and stopped on drop. Its users: alice (dfir-admins, staff), carol
//! (dfir), dave@example.org (dfir-auditors), mallory (marketing); each user's password
//! is `<name>-idp-password`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The provider, on a free port; stopped on drop.
pub struct Provider {
    child: Child,
    pub port: u16,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/oidc-provider")
}

impl Provider {
    pub fn start() -> Provider {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID Connect provider is not installed: run scripts/install-test-deps.sh \
             (npm ci in scripts/oidc-provider)"
        );
        let port = casescope_testkit::free_port();
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (the OIDC provider)");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening"), "the provider said {line:?}");
        // It prints notices later; a closed pipe would kill it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Provider { child, port }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
