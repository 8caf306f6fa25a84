//! Where evidence blobs and case archives live, for every ingest replica to reach:
//!
//! - `local`: files under the data directory (`evidence/<case>/<sha256>.<ext>`,
//!   `archives/<case>.zip`). With several replicas the directory is a volume they all
//!   mount (ReadWriteMany).
//! - `s3`: an S3-compatible bucket, through `object_store`. Every blob is written and
//!   read under the same paths relative to the data directory, as keys (after an
//!   optional prefix); the data directory then only holds scratch copies: a blob being
//!   placed (uploaded, then its local copy removed), a blob being parsed (downloaded by
//!   ranges into `scratch/`, removed when dropped), and upload parts.
//!
//! The rest of the service keeps working with paths (`evidence_files.blob_path`); this
//! module says where the bytes of a path are. Every S3 request has a timeout; reads go
//! by bounded ranges and writes by bounded parts, so memory per transfer is bounded.

use casescope_runtime::config::{EvidenceStoreConfig, S3Config};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes of one ranged read (memory per download).
const READ_RANGE: u64 = 8 * 1024 * 1024;
/// Bytes of one part of a multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0} is not in the evidence store")]
    NotFound(String),
    #[error("evidence store: {0}")]
    Failed(String),
}

/// A local file holding a blob's bytes; a scratch copy is removed when dropped.
#[derive(Debug)]
pub struct LocalBlob {
    path: PathBuf,
    scratch: Option<PathBuf>,
}

impl LocalBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalBlob {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[derive(Clone)]
struct S3 {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    label: String,
}

/// Where the blobs of one ingest service live (see the module docs).
#[derive(Clone)]
pub struct BlobStore {
    data_dir: PathBuf,
    s3: Option<S3>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.s3 {
            None => write!(f, "local:{}", self.data_dir.display()),
            Some(s3) => write!(f, "{}", s3.label),
        }
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> BlobError {
    BlobError::Failed(format!("{what}: {error}"))
}

impl BlobStore {
    /// Files under `data_dir`.
    pub fn local(data_dir: PathBuf) -> Self {
        Self { data_dir, s3: None }
    }

    /// The store `config` names; paths are taken relative to `data_dir`.
    pub fn from_config(config: &EvidenceStoreConfig, data_dir: PathBuf) -> Result<Self, String> {
        match config {
            EvidenceStoreConfig::Local => Ok(Self::local(data_dir)),
            EvidenceStoreConfig::S3(s3) => Ok(Self {
                data_dir,
                s3: Some(build_s3(s3)?),
            }),
        }
    }

    /// Whether blobs live in a bucket (the data directory holds only scratch copies).
    pub fn is_remote(&self) -> bool {
        self.s3.is_some()
    }

    fn key(&self, s3: &S3, path: &Path) -> Result<ObjectPath, BlobError> {
        let relative = path.strip_prefix(&self.data_dir).map_err(|_| {
            BlobError::Failed(format!(
                "{} is outside the data directory {}",
                path.display(),
                self.data_dir.display()
            ))
        })?;
        let mut key = s3.prefix.clone();
        for part in relative.components() {
            let std::path::Component::Normal(part) = part else {
                return Err(BlobError::Failed(format!(
                    "{} is not a plain relative path",
                    relative.display()
                )));
            };
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&part.to_string_lossy());
        }
        Ok(ObjectPath::from(key))
    }

    /// Makes the blob written at `path` reachable by every replica: nothing to do for
    /// local files; for S3, the file is uploaded in parts and its local copy removed
    /// unless `keep_local` (the caller still reads it, then calls [`Self::drop_local`]).
    pub async fn place(&self, path: &Path, keep_local: bool) -> Result<(), BlobError> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        let key = self.key(s3, path)?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| failed(&format!("cannot read {}", path.display()), e))?;
        let upload = s3
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| failed(&format!("cannot start the upload of {key}"), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buffer = vec![0u8; PART_SIZE];
        loop {
            let read = file
                .read(&mut buffer)
                .await
                .map_err(|e| failed(&format!("cannot read {}", path.display()), e))?;
            if read == 0 {
                break;
            }
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(failed(&format!("cannot upload {key}"), error));
            }
            writer.write(&buffer[..read]);
        }
        writer
            .finish()
            .await
            .map_err(|e| failed(&format!("cannot upload {key}"), e))?;
        if !keep_local {
            self.drop_local(path).await;
        }
        Ok(())
    }

    /// Removes the local copy of a placed blob (S3 only; a local blob is the blob).
    pub async fn drop_local(&self, path: &Path) {
        if self.s3.is_some()
            && let Err(error) = tokio::fs::remove_file(path).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %path.display(), "cannot remove a placed blob's local copy");
        }
    }

    /// A local file with the bytes of the blob at `path`: the file itself, or (S3) a
    /// scratch copy downloaded by ranges, removed when the returned value is dropped.
    pub async fn fetch(&self, path: &Path) -> Result<LocalBlob, BlobError> {
        let Some(s3) = &self.s3 else {
            return match tokio::fs::try_exists(path).await {
                Ok(true) => Ok(LocalBlob {
                    path: path.to_path_buf(),
                    scratch: None,
                }),
                Ok(false) => Err(BlobError::NotFound(path.display().to_string())),
                Err(error) => Err(failed(&format!("cannot read {}", path.display()), error)),
            };
        };
        let key = self.key(s3, path)?;
        let size = match s3.store.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::NotFound(key.to_string()));
            }
            Err(error) => return Err(failed(&format!("cannot look up {key}"), error)),
        };
        let scratch = self
            .data_dir
            .join("scratch")
            .join(uuid::Uuid::new_v4().to_string());
        tokio::fs::create_dir_all(&scratch)
            .await
            .map_err(|e| failed(&format!("cannot create {}", scratch.display()), e))?;
        let name = path.file_name().unwrap_or_else(|| "blob".as_ref());
        let local = LocalBlob {
            path: scratch.join(name),
            scratch: Some(scratch),
        };
        let mut out = tokio::fs::File::create(&local.path)
            .await
            .map_err(|e| failed(&format!("cannot create {}", local.path.display()), e))?;
        let mut offset = 0;
        while offset < size {
            let end = (offset + READ_RANGE).min(size);
            let bytes = s3
                .store
                .get_range(&key, offset..end)
                .await
                .map_err(|e| failed(&format!("cannot download {key}"), e))?;
            out.write_all(&bytes)
                .await
                .map_err(|e| failed(&format!("cannot write {}", local.path.display()), e))?;
            offset = end;
        }
        out.sync_all()
            .await
            .map_err(|e| failed(&format!("cannot write {}", local.path.display()), e))?;
        Ok(local)
    }

    /// Whether the blob at `path` exists.
    pub async fn exists(&self, path: &Path) -> Result<bool, BlobError> {
        let Some(s3) = &self.s3 else {
            return tokio::fs::try_exists(path)
                .await
                .map_err(|e| failed(&format!("cannot read {}", path.display()), e));
        };
        let key = self.key(s3, path)?;
        match s3.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(failed(&format!("cannot look up {key}"), error)),
        }
    }

    /// Removes the blob at `path` (and any local copy); absent is fine.
    pub async fn remove(&self, path: &Path) -> Result<(), BlobError> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(&format!("cannot remove {}", path.display()), error)),
        }
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        let key = self.key(s3, path)?;
        match s3.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(failed(&format!("cannot delete {key}"), error)),
        }
    }

    /// Removes every blob under the directory `dir` (and the local directory).
    pub async fn remove_dir(&self, dir: &Path) -> Result<(), BlobError> {
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(&format!("cannot remove {}", dir.display()), error)),
        }
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        let prefix = self.key(s3, dir)?;
        let mut listing = s3.store.list(Some(&prefix));
        use futures::StreamExt;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| failed(&format!("cannot list {prefix}"), e))?;
            match s3.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    return Err(failed(&format!("cannot delete {}", meta.location), error));
                }
            }
        }
        Ok(())
    }
}

fn build_s3(config: &S3Config) -> Result<S3, String> {
    // Both ring and aws-lc-rs are in the tree: rustls needs the process default chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = ClientOptions::new()
        .with_timeout(config.request_timeout)
        .with_connect_timeout(config.connect_timeout)
        .with_allow_http(
            config
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        );
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_client_options(options)
        .with_virtual_hosted_style_request(!config.path_style);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose());
    }
    let store = builder
        .build()
        .map_err(|e| format!("s3 evidence store: {e}"))?;
    let label = format!(
        "s3://{}/{}{}",
        config.bucket,
        config.prefix,
        config
            .endpoint
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default()
    );
    Ok(S3 {
        store: Arc::new(store),
        prefix: config.prefix.clone(),
        label,
    })
}
