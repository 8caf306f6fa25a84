//! Artefacts stored as they grow: each format's output is cut into chunks of
//! [`CHUNK_BYTES`], each written in its own lease-fenced transaction (a worker that
//! lost its lease writes nothing), with the SHA-256 computed on the way. At most one
//! chunk per format is in memory.

use crate::CHUNK_BYTES;
use casescope_db::{Lease, LeaseError, LeaseStore, Tx};
use casescope_proto::report::v1::ReportFormat;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Why writing stopped.
#[derive(Debug)]
pub enum WriteError {
    /// The lease was lost: another worker has the job.
    Fenced,
    /// The report was deleted meanwhile.
    Cancelled,
    /// The artefact outgrew the configured maximum.
    TooLarge(String),
    Db(String),
}

impl From<LeaseError> for WriteError {
    fn from(error: LeaseError) -> Self {
        match error {
            LeaseError::Fenced { .. } => WriteError::Fenced,
            other => WriteError::Db(other.to_string()),
        }
    }
}

fn db(error: impl std::fmt::Display) -> WriteError {
    WriteError::Db(error.to_string())
}

/// File name, content type of a format.
pub fn describe(format: ReportFormat) -> (&'static str, &'static str, &'static str) {
    match format {
        ReportFormat::Html => ("html", "case-report.html", "text/html; charset=utf-8"),
        ReportFormat::Markdown => ("markdown", "case-report.md", "text/markdown; charset=utf-8"),
        ReportFormat::Json => ("json", "case-report.json", "application/json"),
        ReportFormat::Pdf => ("pdf", "case-report.pdf", "application/pdf"),
        ReportFormat::Unspecified => ("unspecified", "case-report", "application/octet-stream"),
    }
}

/// Opens a fenced transaction in which the report still exists (else `Cancelled`).
pub async fn fenced_tx(
    leases: &LeaseStore,
    lease: &Lease,
    report_id: &str,
) -> Result<Tx<'static>, WriteError> {
    let mut tx = leases.fenced(lease).await?;
    let exists = sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE id = $1")
        .bind(report_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?
        .try_get::<i64, _>("n")
        .map_err(db)?;
    if exists == 0 {
        return Err(WriteError::Cancelled);
    }
    Ok(tx)
}

pub struct ArtefactWriter {
    pub format: ReportFormat,
    /// Output not stored yet (less than a chunk after each flush).
    pub pending: Vec<u8>,
    hasher: Sha256,
    size: u64,
    seq: i64,
    max_bytes: u64,
}

impl ArtefactWriter {
    pub fn new(format: ReportFormat, max_bytes: u64) -> Self {
        Self {
            format,
            pending: Vec::with_capacity(CHUNK_BYTES),
            hasher: Sha256::new(),
            size: 0,
            seq: 0,
            max_bytes,
        }
    }

    async fn store(
        &mut self,
        leases: &LeaseStore,
        lease: &Lease,
        report_id: &str,
        data: &[u8],
    ) -> Result<(), WriteError> {
        self.size += data.len() as u64;
        if self.size > self.max_bytes {
            return Err(WriteError::TooLarge(format!(
                "the {} artefact outgrew the largest allowed ({} bytes); narrow the report \
                 (fewer timeline tags, fewer sections)",
                describe(self.format).0,
                self.max_bytes
            )));
        }
        self.hasher.update(data);
        let mut tx = fenced_tx(leases, lease, report_id).await?;
        sqlx::query(
            "INSERT INTO report_chunks (report_id, format, seq, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(report_id)
        .bind(self.format as i64)
        .bind(self.seq)
        .bind(data.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.seq += 1;
        Ok(())
    }

    /// Stores every whole chunk of the pending output.
    pub async fn flush(
        &mut self,
        leases: &LeaseStore,
        lease: &Lease,
        report_id: &str,
    ) -> Result<(), WriteError> {
        if self.pending.len() < CHUNK_BYTES {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut rest = pending.as_slice();
        while rest.len() >= CHUNK_BYTES {
            let (chunk, tail) = rest.split_at(CHUNK_BYTES);
            self.store(leases, lease, report_id, chunk).await?;
            rest = tail;
        }
        self.pending = Vec::with_capacity(CHUNK_BYTES);
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// Stores the rest and records the artefact; returns (size, sha256).
    pub async fn finish(
        mut self,
        leases: &LeaseStore,
        lease: &Lease,
        report_id: &str,
    ) -> Result<(u64, String), WriteError> {
        self.flush(leases, lease, report_id).await?;
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.store(leases, lease, report_id, &rest).await?;
        }
        let sha256 = hex::encode(self.hasher.clone().finalize());
        let (_, file_name, content_type) = describe(self.format);
        let mut tx = fenced_tx(leases, lease, report_id).await?;
        sqlx::query(
            "INSERT INTO report_artefacts (report_id, format, file_name, content_type, \
             size_bytes, sha256, chunks) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(report_id)
        .bind(self.format as i64)
        .bind(file_name)
        .bind(content_type)
        .bind(i64::try_from(self.size).unwrap_or(i64::MAX))
        .bind(&sha256)
        .bind(self.seq)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((self.size, sha256))
    }
}
