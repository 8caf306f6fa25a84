//! Archiving and restoring a case's data in the ingest service.
//!
//! The cases service owns the case's state; its facts say what is wanted
//! (`case.archived`: archive; `case.restore_requested`: restore) and the
//! `case_archives` table records it, with what the stores hold now. The consumer of
//! case facts records the wish and makes one attempt; the reconciler drives every case
//! whose stores differ from the wish until they agree, so a crash, a lost message or a
//! busy file only delays the work. Everything runs under the case's archive lease (one
//! replica at a time), and the last, short part of each under the ingest lease of every
//! file of the case (no worker can be parsing one meanwhile).
//!
//! Archive: every blob of the case goes into one ZIP with a manifest of SHA-256 sums
//! (`<data>/archives/<case>.zip`, written beside the blobs on the same storage; see
//! `casescope_evidence::case_archive`), checked against the sums recorded at upload.
//! Blobs are named by their SHA-256 and never change, so the ZIP is written before the
//! files are fenced; an archive already in place with the same files is kept (a pass
//! that stopped after writing it). Then the case's events leave the event store, the
//! blobs leave storage, and one fenced transaction marks every file `archived` (a new
//! generation: a late message of the old one does nothing) and queues a detect job per
//! indexed file, whose evaluation finds no events and so drops the file's detections
//! (and the correlation pass the case's). The counts of each file are kept, and so are
//! the case's de-duplication fingerprints: a restore then marks the same records as
//! duplicates as before. A finished archive is swept once more after two lease TTLs
//! (events a stalled worker could still have written).
//!
//! Restore: every sum of the archive is verified before anything is written; a damaged
//! or missing archive is refused, naming the file, and the case goes back to archived
//! with that reason. Otherwise the blobs go back to their paths, every file is queued
//! for ingestion again (same file ids, so the same event ids, detection ids and
//! counts), the archive is removed, and the cases service is told (`FinishRestore`):
//! the case is open again while its files are re-indexed.

use crate::cases_client::CasesClient;
use crate::repo::{FileRow, IngestRepo, stage};
use crate::{BlobError, IngestSettings, STAGE};
use casescope_bus::Outbox;
use casescope_bus::facts::CaseFactInfo;
use casescope_db::{DbError, LeaseKey, LeaseStore, PurgeLeases, PurgeLeasing};
use casescope_eventstore::{EventQuery, EventStore, parse_query};
use casescope_evidence::case_archive::{self, ArchivedFile, CaseArchiveError, Manifest};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// The lease stage of a case's archive or restore.
const ARCHIVE_STAGE: &str = "ingest-archive";
/// Cases looked at per reconciler pass.
const CASES_PER_PASS: i64 = 20;

const TARGET_ARCHIVED: &str = "archived";
const TARGET_OPEN: &str = "open";

fn db(error: impl Into<DbError>) -> String {
    error.into().to_string()
}

fn joined(error: tokio::task::JoinError) -> String {
    format!("the archive task stopped: {error}")
}

/// One row of `case_archives`.
#[derive(Debug)]
struct ArchiveRow {
    target: String,
    state: String,
    error: Option<String>,
    report_pending: bool,
    swept: bool,
    updated_at: i64,
}

#[derive(Clone)]
pub struct CaseArchiver {
    repo: IngestRepo,
    leases: LeaseStore,
    store: Arc<dyn EventStore>,
    settings: IngestSettings,
    outbox: Outbox,
    cases: CasesClient,
    holder: String,
}

impl CaseArchiver {
    pub(crate) fn new(
        repo: IngestRepo,
        store: Arc<dyn EventStore>,
        settings: IngestSettings,
        outbox: Outbox,
        cases: CasesClient,
    ) -> Self {
        Self {
            leases: LeaseStore::new(repo.db().clone()),
            repo,
            store,
            settings,
            outbox,
            cases,
            holder: format!("ingest-archive-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Where the archive of `case_id` lives (storage every replica reaches).
    pub fn archive_path(&self, case_id: &str) -> PathBuf {
        self.settings.archive_path(case_id)
    }

    /// Records what a case fact asks for (a newer fact of the case wins) and makes
    /// one attempt; the reconciler finishes what this cannot.
    pub async fn on_fact(&self, fact: &CaseFactInfo) -> Result<(), String> {
        let target = match fact.kind.as_str() {
            "case.archived" => TARGET_ARCHIVED,
            "case.restore_requested" => TARGET_OPEN,
            _ => return Ok(()),
        };
        let now = casescope_db::now_micros();
        sqlx::query(
            "INSERT INTO case_archives (case_id, target, case_version, state, report_pending, \
               requested_at, updated_at) VALUES ($1, $2, $3, 'open', $4, $5, $5) \
             ON CONFLICT (case_id) DO UPDATE SET target = excluded.target, \
               case_version = excluded.case_version, report_pending = excluded.report_pending, \
               updated_at = excluded.updated_at \
             WHERE excluded.case_version > case_archives.case_version",
        )
        .bind(&fact.case_id)
        .bind(target)
        .bind(fact.version)
        .bind(i64::from(target == TARGET_OPEN))
        .bind(now)
        .execute(self.repo.db().pool())
        .await
        .map_err(db)?;
        tracing::info!(case_id = %fact.case_id, target, "case archive state requested");
        match self.step(&fact.case_id).await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                tracing::info!(case_id = %fact.case_id, reason, "case archive work waits; the reconciler finishes it")
            }
            Err(error) => {
                tracing::warn!(case_id = %fact.case_id, %error, "case archive work failed; the reconciler retries")
            }
        }
        Ok(())
    }

    /// One reconciler pass over the cases whose stores differ from what was asked for,
    /// whose restore outcome is not yet reported, or whose archive is due its sweep.
    /// Returns how many were brought in line.
    pub async fn pass(&self) -> Result<usize, String> {
        let settle = casescope_db::now_micros()
            - i64::try_from((self.settings.lease_ttl * 2).as_micros()).unwrap_or(i64::MAX / 2);
        let rows = sqlx::query(
            "SELECT case_id FROM case_archives WHERE target <> state OR report_pending = 1 \
             OR (state = 'archived' AND swept = 0 AND updated_at <= $1) \
             ORDER BY updated_at LIMIT $2",
        )
        .bind(settle)
        .bind(CASES_PER_PASS)
        .fetch_all(self.repo.db().pool())
        .await
        .map_err(db)?;
        let mut done = 0;
        for row in rows {
            let case_id: String = row.try_get("case_id").map_err(db)?;
            match self.step(&case_id).await {
                Ok(None) => done += 1,
                Ok(Some(reason)) => tracing::info!(case_id, reason, "case archive work waits"),
                Err(error) => tracing::warn!(case_id, %error, "case archive work failed"),
            }
        }
        Ok(done)
    }

    async fn row(&self, case_id: &str) -> Result<Option<ArchiveRow>, String> {
        let row = sqlx::query(
            "SELECT target, state, error, report_pending, swept, updated_at \
             FROM case_archives WHERE case_id = $1",
        )
        .bind(case_id)
        .fetch_optional(self.repo.db().pool())
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok(ArchiveRow {
                target: row.try_get("target")?,
                state: row.try_get("state")?,
                error: row.try_get("error")?,
                report_pending: row.try_get::<i64, _>("report_pending")? != 0,
                swept: row.try_get::<i64, _>("swept")? != 0,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| db(e))
    }

    /// Brings one case in line under its archive lease; `Some(reason)` when it waits.
    async fn step(&self, case_id: &str) -> Result<Option<String>, String> {
        let leasing = PurgeLeases::acquire(
            &self.leases,
            case_id,
            ARCHIVE_STAGE,
            &[],
            &self.holder,
            self.settings.lease_ttl,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut held = match leasing {
            PurgeLeasing::Held(held) => held,
            PurgeLeasing::Busy(_) => {
                return Ok(Some("another replica archives or restores the case".into()));
            }
        };
        let outcome = self.step_leased(case_id, &mut held).await;
        held.release().await;
        let outcome = outcome?;
        if outcome.is_none() {
            self.report(case_id).await?;
        }
        Ok(outcome)
    }

    async fn step_leased(
        &self,
        case_id: &str,
        held: &mut PurgeLeases,
    ) -> Result<Option<String>, String> {
        let Some(row) = self.row(case_id).await? else {
            return Ok(None);
        };
        match (row.target.as_str(), row.state.as_str()) {
            (TARGET_ARCHIVED, "open") => self.archive(case_id, held).await,
            (TARGET_OPEN, "archived") => self.restore(case_id, held).await,
            (TARGET_ARCHIVED, "archived") if !row.swept => {
                let settle = i64::try_from((self.settings.lease_ttl * 2).as_micros())
                    .unwrap_or(i64::MAX / 2);
                if casescope_db::now_micros() - row.updated_at < settle {
                    return Ok(None);
                }
                self.sweep(case_id).await
            }
            _ => Ok(None),
        }
    }

    async fn files(&self, case_id: &str) -> Result<Vec<FileRow>, String> {
        self.repo.files_of_case(case_id).await.map_err(db)
    }

    async fn archive(
        &self,
        case_id: &str,
        held: &mut PurgeLeases,
    ) -> Result<Option<String>, String> {
        let files: Vec<FileRow> = self
            .files(case_id)
            .await?
            .into_iter()
            .filter(|f| f.stage_status != stage::ARCHIVED)
            .collect();
        // Each blob as a local file (S3: scratch copies, removed when `locals` drops).
        let blobs = &self.settings.blobs;
        let mut locals = Vec::with_capacity(files.len());
        for file in &files {
            match blobs.fetch(&self.settings.blob_file(&file.blob_path)).await {
                Ok(local) => locals.push(Some(local)),
                // Gone: only an archive already holding it lets this pass go on.
                Err(BlobError::NotFound(_)) => locals.push(None),
                Err(error) => return Err(error.to_string()),
            }
        }
        let wanted: Vec<(ArchivedFile, PathBuf)> = files
            .iter()
            .zip(&locals)
            .map(|(f, local)| {
                (
                    ArchivedFile {
                        file_id: f.id.clone(),
                        name: f.name.clone(),
                        sha256: f.sha256.clone(),
                        size_bytes: u64::try_from(f.size_bytes).unwrap_or_default(),
                    },
                    local.as_ref().map_or_else(
                        || self.settings.blob_file(&f.blob_path),
                        |l| l.path().to_path_buf(),
                    ),
                )
            })
            .collect();
        let dest = self.archive_path(case_id);
        let existing = if blobs.exists(&dest).await.map_err(|e| e.to_string())? {
            Some(blobs.fetch(&dest).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let case = case_id.to_string();
        let target = dest.clone();
        let existing_path = existing.as_ref().map(|l| l.path().to_path_buf());
        let written = tokio::task::spawn_blocking(move || {
            write_or_keep(&case, &wanted, existing_path.as_deref(), &target)
        })
        .await
        .map_err(joined)?;
        drop(existing);
        drop(locals);
        let written = match written {
            Ok((manifest, true)) => {
                blobs
                    .place(&dest, false)
                    .await
                    .map(|()| manifest)
                    .map_err(|e| CaseArchiveError::Io {
                        what: "cannot store the archive",
                        path: dest.clone(),
                        message: e.to_string(),
                    })
            }
            Ok((manifest, false)) => Ok(manifest),
            Err(error) => Err(error),
        };
        let manifest = match written {
            Ok(manifest) => manifest,
            Err(error) => {
                let reason = format!("cannot archive case {case_id}: {error}");
                self.note_error(case_id, &reason).await?;
                return Ok(Some(reason));
            }
        };

        // The short part: every file of the case fenced.
        let items: Vec<LeaseKey> = files.iter().map(|f| LeaseKey::new(&f.id, STAGE)).collect();
        if let Some(reason) = held.also(&items).await.map_err(|e| e.to_string())? {
            return Ok(Some(reason));
        }
        let now_files: BTreeSet<String> = self
            .files(case_id)
            .await?
            .into_iter()
            .filter(|f| f.stage_status != stage::ARCHIVED)
            .map(|f| f.id)
            .collect();
        let archived: BTreeSet<String> = manifest.files.iter().map(|f| f.file_id.clone()).collect();
        if now_files != archived {
            return Ok(Some(
                "evidence arrived while the archive was written; archiving again".into(),
            ));
        }
        if let Some(reason) = self.delete_events(case_id).await? {
            return Ok(Some(reason));
        }
        for file in &files {
            blobs
                .remove(&self.settings.blob_file(&file.blob_path))
                .await
                .map_err(|e| e.to_string())?;
        }
        blobs
            .remove_dir(&self.settings.evidence_dir(case_id))
            .await
            .map_err(|e| e.to_string())?;

        let mut tx = match held.fenced().await {
            Ok(tx) => tx,
            Err(error) => return Ok(Some(error.to_string())),
        };
        let now = casescope_db::now_micros();
        sqlx::query(
            "UPDATE evidence_files SET archived_stage = stage_status, stage_status = 'archived', \
             generation = generation + 1, status_sequence = status_sequence + 1, \
             status_synced = 0, updated_at = $2 WHERE case_id = $1 AND stage_status <> 'archived'",
        )
        .bind(case_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // The downstream stages find no events for these any more: their findings go.
        for file in files.iter().filter(|f| f.stage_status == stage::DONE) {
            let mut archived = file.clone();
            archived.generation += 1;
            crate::stage::publish_indexed_fact(&self.outbox, &mut tx, &archived, "file.archived")
                .await?;
        }
        let bytes: u64 = manifest.files.iter().map(|f| f.size_bytes).sum();
        sqlx::query(
            "UPDATE case_archives SET state = 'archived', files = $2, bytes = $3, error = NULL, \
             swept = 0, updated_at = $4 WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(i64::try_from(manifest.files.len()).unwrap_or(i64::MAX))
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.outbox.nudge();
        self.sync_statuses(case_id).await;
        tracing::info!(
            case_id,
            files = manifest.files.len(),
            bytes,
            "case archived: evidence in its archive, events and findings out of the hot stores"
        );
        Ok(None)
    }

    /// Deletes the case's events from the store; `Some(reason)` if some are left.
    async fn delete_events(&self, case_id: &str) -> Result<Option<String>, String> {
        self.store
            .delete_case(case_id)
            .await
            .map_err(|e| e.to_string())?;
        self.store.flush().await.map_err(|e| e.to_string())?;
        let everything = EventQuery::new(case_id, parse_query("").map_err(|e| e.to_string())?);
        let left = self
            .store
            .count(&everything)
            .await
            .map_err(|e| e.to_string())?;
        Ok((left != 0).then(|| format!("{left} events of the case are still searchable")))
    }

    /// The archive's second pass: events a stalled worker could still have written.
    async fn sweep(&self, case_id: &str) -> Result<Option<String>, String> {
        if let Some(reason) = self.delete_events(case_id).await? {
            return Ok(Some(reason));
        }
        sqlx::query("UPDATE case_archives SET swept = 1 WHERE case_id = $1")
            .bind(case_id)
            .execute(self.repo.db().pool())
            .await
            .map_err(db)?;
        Ok(None)
    }

    async fn restore(
        &self,
        case_id: &str,
        held: &mut PurgeLeases,
    ) -> Result<Option<String>, String> {
        let files = self.files(case_id).await?;
        let path = self.archive_path(case_id);
        let blobs = &self.settings.blobs;
        let archive = match blobs.fetch(&path).await {
            Ok(archive) => archive,
            Err(BlobError::NotFound(_)) => {
                return self
                    .refuse(
                        case_id,
                        &format!(
                            "the archive of case {case_id} is missing (expected at {})",
                            path.display()
                        ),
                    )
                    .await;
            }
            Err(error) => return Err(error.to_string()),
        };
        // Every archived file must be in it, before anything is written.
        let manifest = match case_archive::manifest(archive.path(), case_id) {
            Ok(manifest) => manifest,
            Err(error) if error.is_damage() => {
                return self
                    .refuse(case_id, &format!("the archive is refused: {error}"))
                    .await;
            }
            Err(error) => return Err(error.to_string()),
        };
        let in_archive: BTreeSet<&str> =
            manifest.files.iter().map(|f| f.file_id.as_str()).collect();
        if let Some(missing) = files
            .iter()
            .find(|f| f.stage_status == stage::ARCHIVED && !in_archive.contains(f.id.as_str()))
        {
            return self
                .refuse(
                    case_id,
                    &format!(
                        "the archive is refused: file {:?} ({}) is not in it",
                        missing.name, missing.id
                    ),
                )
                .await;
        }
        let targets: HashMap<String, PathBuf> = files
            .iter()
            .map(|f| (f.id.clone(), self.settings.blob_file(&f.blob_path)))
            .collect();
        let fallback = self.settings.evidence_dir(case_id);
        let case = case_id.to_string();
        let archive_file = archive.path().to_path_buf();
        let restored = tokio::task::spawn_blocking(move || {
            let manifest = case_archive::restore(&archive_file, &case, |file| {
                target_of(&targets, &fallback, file)
            })?;
            let placed: Vec<PathBuf> = manifest
                .files
                .iter()
                .map(|file| target_of(&targets, &fallback, file))
                .collect();
            Ok::<_, CaseArchiveError>((manifest, placed))
        })
        .await
        .map_err(joined)?;
        drop(archive);
        let (manifest, placed) = match restored {
            Ok(restored) => restored,
            Err(error) if error.is_damage() => {
                return self
                    .refuse(case_id, &format!("the archive is refused: {error}"))
                    .await;
            }
            Err(error) => return Err(error.to_string()),
        };
        for blob in &placed {
            blobs.place(blob, false).await.map_err(|e| e.to_string())?;
        }

        let items: Vec<LeaseKey> = files.iter().map(|f| LeaseKey::new(&f.id, STAGE)).collect();
        if let Some(reason) = held.also(&items).await.map_err(|e| e.to_string())? {
            return Ok(Some(reason));
        }
        let mut tx = match held.fenced().await {
            Ok(tx) => tx,
            Err(error) => return Ok(Some(error.to_string())),
        };
        let now = casescope_db::now_micros();
        sqlx::query(
            "UPDATE evidence_files SET \
               stage_status = CASE WHEN archived_stage = 'container' THEN 'container' ELSE 'pending' END, \
               archived_stage = NULL, generation = generation + 1, attempts = 0, \
               status_sequence = status_sequence + 1, status_synced = 0, updated_at = $2 \
             WHERE case_id = $1 AND stage_status = 'archived'",
        )
        .bind(case_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let queued = sqlx::query(
            "SELECT id FROM evidence_files WHERE case_id = $1 AND stage_status = 'pending'",
        )
        .bind(case_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut requeued = 0;
        for row in &queued {
            let id: String = row.try_get("id").map_err(db)?;
            let file = sqlx::query("SELECT * FROM evidence_files WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let file = crate::repo::file_from(&file).map_err(db)?;
            crate::stage::enqueue_job(&self.outbox, &mut tx, &file, "restore", None).await?;
            requeued += 1;
        }
        sqlx::query(
            "UPDATE case_archives SET state = 'open', error = NULL, report_pending = 1, \
             updated_at = $2 WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.outbox.nudge();
        if let Err(error) = blobs.remove(&path).await {
            tracing::warn!(%error, path = %path.display(), "cannot remove the restored case's archive");
        }
        self.sync_statuses(case_id).await;
        tracing::info!(
            case_id,
            files = manifest.files.len(),
            requeued,
            "case restored: every sum verified, evidence queued for ingestion"
        );
        Ok(None)
    }

    /// Refuses a restore: the case stays archived, with `reason` for the analyst.
    async fn refuse(&self, case_id: &str, reason: &str) -> Result<Option<String>, String> {
        tracing::warn!(case_id, reason, "restore refused");
        sqlx::query(
            "UPDATE case_archives SET target = 'archived', error = $2, report_pending = 1, \
             updated_at = $3 WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(reason)
        .bind(casescope_db::now_micros())
        .execute(self.repo.db().pool())
        .await
        .map_err(db)?;
        Ok(None)
    }

    async fn note_error(&self, case_id: &str, reason: &str) -> Result<(), String> {
        tracing::warn!(case_id, reason, "case archive failed; retried");
        sqlx::query("UPDATE case_archives SET error = $2 WHERE case_id = $1")
            .bind(case_id)
            .bind(reason)
            .execute(self.repo.db().pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Tells the cases service how a restore ended (until it has heard it).
    async fn report(&self, case_id: &str) -> Result<(), String> {
        let Some(row) = self.row(case_id).await? else {
            return Ok(());
        };
        if !row.report_pending || row.target != row.state {
            return Ok(());
        }
        let restored = row.state == TARGET_OPEN;
        let refusal = if restored {
            String::new()
        } else {
            row.error.unwrap_or_default()
        };
        match self.cases.finish_restore(case_id, restored, &refusal).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(format!(
                    "cannot tell the cases service how the restore ended: {}",
                    status.message()
                ));
            }
        }
        sqlx::query("UPDATE case_archives SET report_pending = 0 WHERE case_id = $1")
            .bind(case_id)
            .execute(self.repo.db().pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn sync_statuses(&self, case_id: &str) {
        match self.files(case_id).await {
            Ok(files) => {
                for file in &files {
                    crate::stage::sync_status(&self.repo, &self.cases, file).await;
                }
            }
            Err(error) => {
                tracing::warn!(case_id, %error, "file statuses not sent now; the reconciler sends them")
            }
        }
    }
}

/// Where a restored file goes: its blob path, or (a file the case no longer lists) a
/// name of its own in the case's evidence directory.
fn target_of(
    targets: &HashMap<String, PathBuf>,
    fallback: &std::path::Path,
    file: &ArchivedFile,
) -> PathBuf {
    targets
        .get(&file.file_id)
        .cloned()
        .unwrap_or_else(|| fallback.join(format!("restored-{}", file.file_id)))
}

/// Keeps the archive `existing` (a local copy) if it holds exactly these files, else
/// writes a new one at `dest`; the manifest, and whether it was written.
fn write_or_keep(
    case_id: &str,
    files: &[(ArchivedFile, PathBuf)],
    existing: Option<&std::path::Path>,
    dest: &std::path::Path,
) -> Result<(Manifest, bool), CaseArchiveError> {
    if let Some(existing) = existing
        && let Ok(manifest) = case_archive::manifest(existing, case_id)
    {
        let mut have: Vec<&ArchivedFile> = manifest.files.iter().collect();
        let mut want: Vec<&ArchivedFile> = files.iter().map(|(f, _)| f).collect();
        have.sort_by(|a, b| a.file_id.cmp(&b.file_id));
        want.sort_by(|a, b| a.file_id.cmp(&b.file_id));
        if have == want {
            return Ok((manifest, false));
        }
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|error| CaseArchiveError::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
            message: error.to_string(),
        })?;
    }
    case_archive::write(case_id, files, dest).map(|manifest| (manifest, true))
}

pub(crate) async fn remove_file(path: &std::path::Path) -> Result<(), String> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("cannot remove {}: {error}", path.display())),
    }
}
