//! Annotation jobs: tag, untag, star or unstar every event a timeline query selects.
//! The job is a row (state, resume cursor, counts) and runs under a lease, batch by
//! batch: each batch's annotations, facts, cursor and counts commit together, so a job
//! interrupted anywhere (process killed, lease lost) resumes after its last committed
//! batch — in this process or another replica — without doing any batch twice. A failed
//! job keeps its error, visible through `GetAnnotationJob`.

use crate::annotations::store::{self, EventKey};
use crate::annotations::{Actor, FactDetail};
use crate::service::{CasesApi, db_error};
use crate::timeline::{call, peer_error};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casescope_db::{LeaseKey, LeaseStore};
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{CaseId, SortOrder};
use casescope_proto::error::ApiError;
use casescope_proto::ingest::v1 as ingest;
use casescope_proto::time::micros_to_timestamp;
use prost::Message;
use sqlx::Row;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most events one job may change.
pub const MAX_JOB_EVENTS: u64 = 1_000_000;
/// Events per committed batch.
const BATCH: u32 = 5_000;
const LEASE_TTL: Duration = Duration::from_secs(60);
const STAGE: &str = "annotation_job";

pub const MIGRATION: &str = "
CREATE TABLE annotation_jobs (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    tag TEXT NOT NULL,
    query TEXT NOT NULL,
    state TEXT NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    matched BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX annotation_jobs_by_state ON annotation_jobs (state, created_at);
CREATE INDEX annotation_jobs_by_case ON annotation_jobs (case_id, created_at);
";

/// What a job does to each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Tag,
    Untag,
    Star,
    Unstar,
}

impl JobKind {
    fn as_str(self) -> &'static str {
        match self {
            JobKind::Tag => "tag",
            JobKind::Untag => "untag",
            JobKind::Star => "star",
            JobKind::Unstar => "unstar",
        }
    }

    fn parse(text: &str) -> Option<JobKind> {
        Some(match text {
            "tag" => JobKind::Tag,
            "untag" => JobKind::Untag,
            "star" => JobKind::Star,
            "unstar" => JobKind::Unstar,
            _ => return None,
        })
    }

    fn fact(self) -> &'static str {
        match self {
            JobKind::Tag => "event.tagged",
            JobKind::Untag => "event.untagged",
            JobKind::Star => "event.starred",
            JobKind::Unstar => "event.unstarred",
        }
    }
}

fn job_to_pb(row: &sqlx::any::AnyRow) -> Result<pb::AnnotationJob, sqlx::Error> {
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
    };
    let query: String = row.try_get("query")?;
    Ok(pb::AnnotationJob {
        id: row.try_get("id")?,
        case_id: Some(CaseId {
            value: row.try_get("case_id")?,
        }),
        kind: row.try_get("kind")?,
        tag: row.try_get("tag")?,
        query: STANDARD
            .decode(query)
            .ok()
            .and_then(|bytes| pb::TimelineQuery::decode(bytes.as_slice()).ok()),
        state: row.try_get("state")?,
        matched: count("matched")?,
        changed: count("changed")?,
        total: count("total")?,
        error: row.try_get("error")?,
        created_at: Some(micros_to_timestamp(row.try_get("created_at")?)),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(micros_to_timestamp),
    })
}

impl CasesApi {
    /// Records a job changing every event `query` selects; returns its id.
    pub(crate) async fn start_job(
        &self,
        actor: &Actor,
        case_id: Option<&CaseId>,
        kind: JobKind,
        tag: &str,
        query: pb::TimelineQuery,
    ) -> Result<String, ApiError> {
        // Validated now (and its annotation sets resolved): a bad query fails here.
        let selection = self.selection(case_id, Some(&query), "matching").await?;
        let case = self.require_case(&selection.case_id).await?;
        crate::service::require_open(&case, "changing its annotations")?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = casescope_db::now_micros();
        sqlx::query(
            "INSERT INTO annotation_jobs (id, case_id, kind, tag, query, state, actor_id, \
             actor_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8)",
        )
        .bind(&id)
        .bind(&selection.case_id)
        .bind(kind.as_str())
        .bind(tag)
        .bind(STANDARD.encode(query.encode_to_vec()))
        .bind(&actor.id)
        .bind(&actor.name)
        .bind(now)
        .execute(self.repo.db().pool())
        .await
        .map_err(|e| db_error(e.into()))?;
        self.jobs_wake.notify_one();
        Ok(id)
    }

    pub(crate) async fn get_job_now(
        &self,
        request: pb::GetAnnotationJobRequest,
    ) -> Result<pb::AnnotationJob, ApiError> {
        let case_id = crate::validate::case_id(request.case_id.as_ref(), "case_id")?;
        let row = sqlx::query("SELECT * FROM annotation_jobs WHERE case_id = $1 AND id = $2")
            .bind(&case_id)
            .bind(&request.job_id)
            .fetch_optional(self.repo.db().pool())
            .await
            .map_err(|e| db_error(e.into()))?
            .ok_or_else(|| {
                ApiError::not_found(
                    "JOB_NOT_FOUND",
                    format!("job {:?} does not exist in this case", request.job_id),
                )
            })?;
        job_to_pb(&row).map_err(|e| db_error(e.into()))
    }

    /// Runs annotation jobs until `shutdown`: whenever one is recorded, and every few
    /// seconds for those another process left (its lease expired).
    pub async fn run_annotation_jobs(self, shutdown: CancellationToken) {
        let holder = format!("cases-{}", uuid::Uuid::now_v7());
        let leases = LeaseStore::new(self.repo.db().clone());
        loop {
            match self.runnable_jobs().await {
                Ok(jobs) => {
                    for id in jobs {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        self.run_job(&leases, &holder, &id).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read the annotation jobs"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.jobs_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    async fn runnable_jobs(&self) -> Result<Vec<String>, ApiError> {
        let rows = sqlx::query(
            "SELECT id FROM annotation_jobs WHERE state IN ('pending', 'running') \
             ORDER BY created_at LIMIT 20",
        )
        .fetch_all(self.repo.db().pool())
        .await
        .map_err(|e| db_error(e.into()))?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(|e| db_error(e.into())))
            .collect()
    }

    async fn run_job(&self, leases: &LeaseStore, holder: &str, id: &str) {
        let key = LeaseKey::new(id, STAGE);
        let lease = match leases.acquire(&key, holder, LEASE_TTL).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, job = id, "cannot take an annotation job's lease");
                return;
            }
        };
        let outcome = self.work_job(leases, lease.clone(), id).await;
        let now = casescope_db::now_micros();
        let finish = match outcome {
            Ok(()) => sqlx::query(
                "UPDATE annotation_jobs SET state = 'done', finished_at = $2, updated_at = $2 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now),
            Err(JobError::Fenced) => return,
            Err(JobError::Failed(message)) => {
                tracing::warn!(job = id, %message, "annotation job failed");
                sqlx::query(
                    "UPDATE annotation_jobs SET state = 'failed', error = $3, finished_at = $2, \
                     updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(message)
            }
        };
        if let Err(error) = finish.execute(self.repo.db().pool()).await {
            tracing::warn!(%error, job = id, "cannot record how an annotation job ended");
        }
        let _ = leases.release(&lease).await;
    }

    async fn work_job(
        &self,
        leases: &LeaseStore,
        mut lease: casescope_db::Lease,
        id: &str,
    ) -> Result<(), JobError> {
        let failed = |e: &dyn std::fmt::Display| JobError::Failed(e.to_string());
        let row = sqlx::query("SELECT * FROM annotation_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(self.repo.db().pool())
            .await
            .map_err(|e| failed(&e))?;
        let job = job_to_pb(&row).map_err(|e| failed(&e))?;
        let kind = JobKind::parse(&job.kind).ok_or_else(|| failed(&"unknown job kind"))?;
        let cursor: String = row.try_get("cursor").map_err(|e| failed(&e))?;
        let actor = Actor {
            id: row.try_get("actor_id").map_err(|e| failed(&e))?,
            name: row.try_get("actor_name").map_err(|e| failed(&e))?,
        };
        let selection = self
            .selection(job.case_id.as_ref(), job.query.as_ref(), "matching")
            .await
            .map_err(|e| failed(&e))?;
        let case_id = selection.case_id.clone();
        let sort = job
            .query
            .as_ref()
            .map_or(SortOrder::Ascending, |q| q.sort());
        let mut events = self.peers().map_err(|e| failed(&e))?.events.clone();
        let mut stream = events
            .stream_events(call(ingest::StreamEventsRequest {
                case_id: Some(CaseId {
                    value: case_id.clone(),
                }),
                query: Some(selection.query),
                sort: sort as i32,
                resume_cursor: cursor,
                batch_size: BATCH,
                include_raw: false,
            }))
            .await
            .map_err(|status| failed(&peer_error("ingest", status)))?
            .into_inner();
        let mut first = true;
        while let Some(batch) = stream
            .message()
            .await
            .map_err(|status| failed(&peer_error("ingest", status)))?
        {
            if first && job.matched == 0 {
                if batch.total_hits > MAX_JOB_EVENTS {
                    return Err(JobError::Failed(format!(
                        "the query selects {} events; a job changes at most {MAX_JOB_EVENTS} \
                         (narrow the query)",
                        batch.total_hits
                    )));
                }
                sqlx::query(
                    "UPDATE annotation_jobs SET total = $2, state = 'running' WHERE id = $1",
                )
                .bind(id)
                .bind(i64::try_from(batch.total_hits).unwrap_or(i64::MAX))
                .execute(self.repo.db().pool())
                .await
                .map_err(|e| failed(&e))?;
            }
            first = false;
            if batch.events.is_empty() {
                continue;
            }
            let keys: Vec<EventKey> = batch
                .events
                .iter()
                .filter_map(|e| e.event_id.as_ref().map(|i| EventKey::new(i.value.clone())))
                .collect();
            self.apply_batch(
                &lease,
                id,
                &case_id,
                kind,
                &job.tag,
                &actor,
                &keys,
                &batch.cursor,
            )
            .await?;
            lease = leases
                .renew(&lease, LEASE_TTL)
                .await
                .map_err(|_| JobError::Fenced)?;
        }
        Ok(())
    }

    /// One batch: annotations, facts, cursor and counts in one transaction, fenced by
    /// the job's lease.
    #[allow(clippy::too_many_arguments)]
    async fn apply_batch(
        &self,
        lease: &casescope_db::Lease,
        id: &str,
        case_id: &str,
        kind: JobKind,
        tag: &str,
        actor: &Actor,
        keys: &[EventKey],
        cursor: &str,
    ) -> Result<(), JobError> {
        let failed = |e: &dyn std::fmt::Display| JobError::Failed(e.to_string());
        let now = casescope_db::now_micros();
        let mut tx = self.begin().await.map_err(|e| failed(&e))?;
        let case = self.load(&mut tx, case_id).await.map_err(|e| failed(&e))?;
        crate::service::require_open(&case, "changing its annotations").map_err(|e| failed(&e))?;
        let changed = match kind {
            JobKind::Tag => {
                let full = store::at_tag_limit(
                    &mut tx,
                    case_id,
                    tag,
                    keys,
                    crate::annotations::MAX_TAGS_PER_EVENT,
                )
                .await
                .map_err(|e| failed(&e))?;
                let room: Vec<EventKey> = keys
                    .iter()
                    .filter(|k| !full.contains(&k.id))
                    .cloned()
                    .collect();
                store::tag(&mut tx, case_id, tag, &room, &actor.id, now).await
            }
            JobKind::Untag => store::untag(&mut tx, case_id, tag, keys, now).await,
            JobKind::Star | JobKind::Unstar => {
                store::star(
                    &mut tx,
                    case_id,
                    keys,
                    kind == JobKind::Star,
                    &actor.id,
                    now,
                )
                .await
            }
        }
        .map_err(|e| failed(&e))?;
        if changed > 0 {
            let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
            self.record_annotation(
                &mut tx,
                case_id,
                kind.fact(),
                actor,
                &ids,
                FactDetail {
                    tag: tag.to_string(),
                    ..FactDetail::default()
                },
            )
            .await
            .map_err(|e| failed(&e))?;
        }
        let progressed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE annotation_jobs SET cursor = $6, matched = matched + $7, changed = changed + $8, \
             state = 'running', updated_at = $5 WHERE id = $9 AND EXISTS ({})",
            LeaseStore::FENCE_PREDICATE
        )))
        .bind(&lease.key.resource)
        .bind(&lease.key.stage)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(now)
        .bind(cursor)
        .bind(keys.len() as i64)
        .bind(i64::try_from(changed).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| failed(&e))?;
        if progressed.rows_affected() != 1 {
            // Another holder took the job over: this batch is theirs to do.
            return Err(JobError::Fenced);
        }
        self.commit_change(tx).await.map_err(|e| failed(&e))?;
        Ok(())
    }
}

enum JobError {
    /// The lease went to another holder: stop without touching the job.
    Fenced,
    Failed(String),
}
