//! What a gateway needs at start-up: its signing keys and, on a fresh installation, the
//! first administrator.
//!
//! Keys: the active Ed25519 private key comes from a file (a mounted Kubernetes Secret,
//! or any path), else from `<data>/gateway/signing-key.pem`, created on first start
//! (owner-only permissions) — so an all-in-one installation needs nothing. The public
//! keys of earlier signing keys may be listed to keep verifying tokens they signed
//! while a rotation settles (one access-token lifetime).
//!
//! First administrator: when no user exists, `admin` is created with the password given
//! (automated installs), or a generated one, which is written once to
//! `<data>/gateway/initial-admin-password` (owner-only) and returned to be printed.

use crate::tokens::{KeySet, generate_private_pem};
use crate::users::{UserError, Users};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the signing keys come from.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// PKCS#8 PEM of the active key; `None`: the data directory's own key.
    pub signing_key_file: Option<PathBuf>,
    /// SPKI PEMs of earlier keys that still verify.
    pub verify_key_files: Vec<PathBuf>,
}

/// Writes `contents` to a new file at `path` readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// The key set of a gateway whose data directory is `data_dir`; also the path of a key
/// generated now (first start), if one was.
pub fn load_keys(
    sources: &KeySources,
    data_dir: &Path,
    issuer: &str,
    audience: &str,
) -> Result<(KeySet, Option<PathBuf>), String> {
    let (private, generated) = match &sources.signing_key_file {
        Some(path) => (read(path, "signing key")?, None),
        None => {
            let path = data_dir.join("gateway/signing-key.pem");
            match std::fs::read_to_string(&path) {
                Ok(pem) => (pem, None),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let pem = generate_private_pem();
                    match write_private(&path, &pem) {
                        Ok(()) => (pem, Some(path)),
                        // Another process created it first: use theirs.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            (read(&path, "signing key")?, None)
                        }
                        Err(e) => {
                            return Err(format!("cannot create {}: {e}", path.display()));
                        }
                    }
                }
                Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
            }
        }
    };
    let mut older = Vec::with_capacity(sources.verify_key_files.len());
    for path in &sources.verify_key_files {
        older.push(read(path, "verification key")?);
    }
    let keys = KeySet::new(issuer, audience, &private, &older).map_err(|e| {
        let from = sources
            .signing_key_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the data directory".into());
        format!("signing key from {from}: {e}")
    })?;
    Ok((keys, generated))
}

/// The outcome of [`ensure_first_admin`].
#[derive(Debug, PartialEq, Eq)]
pub enum FirstAdmin {
    /// Users exist already.
    Exists,
    /// Created with the configured password.
    Configured,
    /// Created with a generated password, also written to this file.
    Generated { password: String, file: PathBuf },
}

/// Creates the first administrator on a fresh installation (see the module docs).
pub async fn ensure_first_admin(
    users: &Users,
    configured_password: Option<&str>,
    data_dir: &Path,
) -> Result<FirstAdmin, String> {
    let created = users
        .ensure_first_admin(configured_password)
        .await
        .map_err(|e| match e {
            UserError::Password(problem) => {
                format!("the configured administrator password is refused: {problem}")
            }
            other => other.to_string(),
        })?;
    let Some(password) = created else {
        return Ok(FirstAdmin::Exists);
    };
    if configured_password.is_some() {
        return Ok(FirstAdmin::Configured);
    }
    let file = data_dir.join("gateway/initial-admin-password");
    let _ = std::fs::remove_file(&file);
    write_private(&file, &format!("{password}\n"))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(FirstAdmin::Generated { password, file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::public_of;

    #[test]
    fn a_key_is_created_once_owner_only_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) =
            load_keys(&KeySources::default(), dir.path(), "casescope", "casescope").unwrap();
        let path = generated.expect("created on first start");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, generated) =
            load_keys(&KeySources::default(), dir.path(), "casescope", "casescope").unwrap();
        assert_eq!(generated, None);
        assert_eq!(first.active_kid(), again.active_kid());
    }

    #[test]
    fn configured_keys_rotate_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let old = generate_private_pem();
        let new = generate_private_pem();
        let (_, old_public) = public_of(&old).unwrap();
        std::fs::write(dir.path().join("new.pem"), &new).unwrap();
        std::fs::write(dir.path().join("old.pub"), &old_public).unwrap();
        let old_keys = KeySet::new("casescope", "casescope", &old, &[]).unwrap();
        let (token, _) = old_keys
            .issue("u", "s", now(), std::time::Duration::from_secs(60))
            .unwrap();
        let sources = KeySources {
            signing_key_file: Some(dir.path().join("new.pem")),
            verify_key_files: vec![dir.path().join("old.pub")],
        };
        let (keys, generated) = load_keys(&sources, dir.path(), "casescope", "casescope").unwrap();
        assert_eq!(generated, None);
        assert!(
            keys.verify(&token).is_ok(),
            "the previous key still verifies"
        );

        std::fs::write(dir.path().join("junk.pem"), "not a key").unwrap();
        let junk = KeySources {
            signing_key_file: Some(dir.path().join("junk.pem")),
            ..KeySources::default()
        };
        let error = load_keys(&junk, dir.path(), "casescope", "casescope")
            .err()
            .unwrap();
        assert!(error.contains("junk.pem"), "{error}");
        let missing = KeySources {
            signing_key_file: Some(dir.path().join("missing.pem")),
            ..KeySources::default()
        };
        let error = load_keys(&missing, dir.path(), "casescope", "casescope")
            .err()
            .unwrap();
        assert!(error.contains("missing.pem"), "{error}");
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}
