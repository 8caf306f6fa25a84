//! The evidence store on both backends: files under the data directory, and a real
//! S3-compatible server (SeaweedFS, started by the test harness) through signed
//! requests. A blob larger than one upload part goes in and comes back byte for byte;
//! removal of one blob and of a case's directory; a missing blob is `NotFound`.

use casescope_ingest::{BlobError, BlobStore};
use casescope_runtime::config::{EvidenceStoreConfig, S3Config, Secret};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// 20 MiB and a bit: three parts of an S3 multipart upload, three ranged reads.
fn write_blob(path: &Path, seed: u8) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = (0..20 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    std::fs::write(path, &bytes).unwrap();
    hex::encode(Sha256::digest(&bytes))
}

async fn round_trip(store: &BlobStore, data: &Path) {
    let case_dir = data.join("evidence/case-1");
    let blob = case_dir.join("a.evtx");
    let other = case_dir.join("b.evtx");
    let sum = write_blob(&blob, 1);
    let other_sum = write_blob(&other, 2);
    store.place(&blob, false).await.unwrap();
    store.place(&other, true).await.unwrap();
    assert_eq!(
        blob.exists(),
        !store.is_remote(),
        "a placed blob's local copy goes when it is in a bucket"
    );
    assert!(other.exists(), "kept when asked");
    store.drop_local(&other).await;
    assert!(store.exists(&blob).await.unwrap());
    {
        let fetched = store.fetch(&blob).await.unwrap();
        assert_eq!(sha(fetched.path()), sum);
        let fetched = store.fetch(&other).await.unwrap();
        assert_eq!(sha(fetched.path()), other_sum);
    }
    let scratch = data.join("scratch");
    let left = std::fs::read_dir(&scratch)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "scratch copies are removed when dropped");

    store.remove(&blob).await.unwrap();
    assert!(!store.exists(&blob).await.unwrap());
    assert!(matches!(
        store.fetch(&blob).await,
        Err(BlobError::NotFound(_))
    ));
    store.remove(&blob).await.unwrap(); // absent is fine
    assert!(store.exists(&other).await.unwrap());
    store.remove_dir(&case_dir).await.unwrap();
    assert!(!store.exists(&other).await.unwrap());
    assert!(!case_dir.exists());

    // A path outside the data directory is refused, not mapped to some key.
    if store.is_remote() {
        let outside = tempfile::tempdir().unwrap();
        let stray = outside.path().join("x.evtx");
        std::fs::write(&stray, b"x").unwrap();
        assert!(matches!(
            store.place(&stray, false).await,
            Err(BlobError::Failed(_))
        ));
    }
}

#[tokio::test]
async fn local_blobs_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let store = BlobStore::local(data.path().to_path_buf());
    round_trip(&store, data.path()).await;
}

#[tokio::test]
async fn s3_blobs_round_trip() {
    let Some(server) = casescope_testkit::s3::s3_or_skip("s3_blobs_round_trip") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let config = EvidenceStoreConfig::S3(S3Config {
        bucket: format!("blobs-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        prefix: "casescope/test".into(),
        access_key_id: Some(server.access_key_id.into()),
        secret_access_key: Some(Secret::new(server.secret_access_key)),
        path_style: true,
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
    });
    let store = BlobStore::from_config(&config, data.path().to_path_buf()).unwrap();
    assert!(store.is_remote());
    round_trip(&store, data.path()).await;

    // Wrong credentials are refused by the server, and said so.
    let EvidenceStoreConfig::S3(mut wrong) = config else {
        unreachable!()
    };
    wrong.secret_access_key = Some(Secret::new("not-the-secret"));
    let store =
        BlobStore::from_config(&EvidenceStoreConfig::S3(wrong), data.path().to_path_buf()).unwrap();
    let blob = data.path().join("evidence/case-2/c.evtx");
    write_blob(&blob, 3);
    let refused = store.place(&blob, false).await;
    assert!(matches!(refused, Err(BlobError::Failed(_))), "{refused:?}");
}
