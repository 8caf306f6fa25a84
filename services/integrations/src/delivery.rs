//! The delivery log: every push, enrichment, import and webhook call is a row — its
//! state, attempts, last error and outcome — that doubles as the job queue the workers
//! take under a lease (docs/integrations.md "Deliveries").

use casescope_db::{Database, DbError, Tx};
use casescope_proto::common::v1::{CaseId, IntegrationId, UserId};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::time::micros_to_timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

/// The lease stage of a delivery.
pub const STAGE: &str = "delivery";

/// Delivery states as stored (the proto's numbers).
pub mod status {
    pub const QUEUED: i64 = 1;
    pub const IN_PROGRESS: i64 = 2;
    pub const RETRY_SCHEDULED: i64 = 3;
    pub const SUCCEEDED: i64 = 4;
    pub const FAILED: i64 = 5;
}

/// One delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub integration_id: String,
    pub integration_kind: i32,
    pub kind: i32,
    /// Empty for deliveries not tied to a case.
    pub case_id: String,
    pub target: String,
    pub status: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: String,
    pub last_http_status: i64,
    pub items_total: i64,
    pub items_succeeded: i64,
    pub items_failed: i64,
    pub remote_reference: String,
    pub requested_by: String,
    /// What to do: the request, base64 protobuf of the kind's request message.
    pub request: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub completed_at: Option<i64>,
}

impl DeliveryRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            integration_id: row.try_get("integration_id")?,
            integration_kind: row.try_get::<i64, _>("integration_kind")? as i32,
            kind: row.try_get::<i64, _>("kind")? as i32,
            case_id: row.try_get("case_id")?,
            target: row.try_get("target")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            last_error: row.try_get("last_error")?,
            last_http_status: row.try_get("last_http_status")?,
            items_total: row.try_get("items_total")?,
            items_succeeded: row.try_get("items_succeeded")?,
            items_failed: row.try_get("items_failed")?,
            remote_reference: row.try_get("remote_reference")?,
            requested_by: row.try_get("requested_by")?,
            request: row.try_get("request")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            completed_at: row.try_get("completed_at")?,
        })
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.status, status::SUCCEEDED | status::FAILED)
    }

    pub fn to_pb(&self) -> pb::Delivery {
        pb::Delivery {
            id: Some(pb::DeliveryId {
                value: self.id.clone(),
            }),
            integration_id: Some(IntegrationId {
                value: self.integration_id.clone(),
            }),
            integration_kind: self.integration_kind,
            kind: self.kind,
            case_id: (!self.case_id.is_empty()).then(|| CaseId {
                value: self.case_id.clone(),
            }),
            target: self.target.clone(),
            status: self.status as i32,
            attempts: self.attempts as u32,
            max_attempts: self.max_attempts as u32,
            last_error: self.last_error.clone(),
            last_http_status: self.last_http_status as u32,
            items_total: self.items_total as u64,
            items_succeeded: self.items_succeeded as u64,
            items_failed: self.items_failed as u64,
            remote_reference: self.remote_reference.clone(),
            requested_by: (!self.requested_by.is_empty()).then(|| UserId {
                value: self.requested_by.clone(),
            }),
            created_at: Some(micros_to_timestamp(self.created_at)),
            updated_at: Some(micros_to_timestamp(self.updated_at)),
            last_attempt_at: self.last_attempt_at.map(micros_to_timestamp),
            next_attempt_at: self.next_attempt_at.map(micros_to_timestamp),
            completed_at: self.completed_at.map(micros_to_timestamp),
        }
    }
}

/// `kind` as a word of facts and logs.
pub fn delivery_word(kind: i32) -> &'static str {
    match pb::DeliveryKind::try_from(kind) {
        Ok(pb::DeliveryKind::IrisPush) => "iris_push",
        Ok(pb::DeliveryKind::OpenctiEnrich) => "opencti_enrich",
        Ok(pb::DeliveryKind::OpenctiImport) => "opencti_import",
        Ok(pb::DeliveryKind::Webhook) => "webhook",
        Ok(pb::DeliveryKind::NatsExport) => "nats_export",
        _ => "unknown",
    }
}

pub fn status_word(status: i64) -> &'static str {
    match status {
        status::QUEUED => "queued",
        status::IN_PROGRESS => "in_progress",
        status::RETRY_SCHEDULED => "retry_scheduled",
        status::SUCCEEDED => "succeeded",
        status::FAILED => "failed",
        _ => "unknown",
    }
}

/// What selects deliveries in a list.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub integration_id: Option<String>,
    pub case_id: Option<String>,
    pub statuses: Vec<i64>,
    pub kinds: Vec<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The counts of a delivery's items as it goes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Items {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
}

#[derive(Clone)]
pub struct DeliveryRepo {
    db: Database,
}

impl DeliveryRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Inserts `row` unless a delivery of its id exists (a fact handed over twice).
    pub async fn insert(tx: &mut Tx<'_>, row: &DeliveryRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO integration_deliveries (id, integration_id, integration_kind, kind, \
             case_id, target, status, attempts, max_attempts, last_error, last_http_status, \
             items_total, items_succeeded, items_failed, remote_reference, requested_by, \
             request, created_at, updated_at, last_attempt_at, next_attempt_at, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, '', 0, 0, 0, 0, '', $9, $10, $11, $11, \
             NULL, $11, NULL) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.integration_id)
        .bind(i64::from(row.integration_kind))
        .bind(i64::from(row.kind))
        .bind(&row.case_id)
        .bind(&row.target)
        .bind(row.status)
        .bind(row.max_attempts)
        .bind(&row.requested_by)
        .bind(&row.request)
        .bind(row.created_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<DeliveryRow>, DbError> {
        let row = sqlx::query("SELECT * FROM integration_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(DeliveryRow::from_row).transpose()?)
    }

    /// Deliveries queued or active for one case and integration (for the per-case bound).
    pub async fn active(&self, integration_id: &str, case_id: &str) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM integration_deliveries WHERE integration_id = $1 \
             AND case_id = $2 AND status IN (1, 2, 3)",
        )
        .bind(integration_id)
        .bind(case_id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// A page, newest first, after `(created_at, id)`.
    pub async fn list(
        &self,
        filter: &DeliveryFilter,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, DbError> {
        let in_list = |values: &[i64]| {
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = String::from(
            "SELECT * FROM integration_deliveries WHERE ($1 = '' OR integration_id = $1) \
             AND ($2 = '' OR case_id = $2) AND created_at >= $3 AND created_at < $4 \
             AND (created_at < $5 OR (created_at = $5 AND id < $6))",
        );
        // Numbers only (checked enums): safe to inline.
        if !filter.statuses.is_empty() {
            sql.push_str(&format!(" AND status IN ({})", in_list(&filter.statuses)));
        }
        if !filter.kinds.is_empty() {
            sql.push_str(&format!(" AND kind IN ({})", in_list(&filter.kinds)));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $7");
        let (after_at, after_id) = after.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.integration_id.as_deref().unwrap_or(""))
            .bind(filter.case_id.as_deref().unwrap_or(""))
            .bind(filter.from.unwrap_or(i64::MIN))
            .bind(filter.to.unwrap_or(i64::MAX))
            .bind(after_at)
            .bind(if after.is_some() {
                after_id
            } else {
                "\u{10FFFF}"
            })
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .iter()
            .map(DeliveryRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Deliveries due now: queued, or scheduled for a retry whose time came, or in
    /// progress under a lease that expired (their worker died). Oldest first.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT d.id FROM integration_deliveries d LEFT JOIN leases l \
             ON l.resource = d.id AND l.stage = $1 \
             WHERE (d.status IN (1, 3) AND d.next_attempt_at <= $2) \
             OR (d.status = 2 AND (l.holder IS NULL OR l.expires_at <= $2)) \
             ORDER BY d.next_attempt_at, d.id LIMIT $3",
        )
        .bind(STAGE)
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?)
    }

    /// The attempt starts: IN_PROGRESS, one more attempt.
    pub async fn start(tx: &mut Tx<'_>, id: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE integration_deliveries SET status = 2, attempts = attempts + 1, \
             last_attempt_at = $2, next_attempt_at = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Progress: the item counts and the remote reference so far.
    pub async fn progress(
        tx: &mut Tx<'_>,
        id: &str,
        items: Items,
        remote_reference: &str,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE integration_deliveries SET items_total = $2, items_succeeded = $3, \
             items_failed = $4, remote_reference = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(items.total)
        .bind(items.succeeded)
        .bind(items.failed)
        .bind(remote_reference)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The attempt ended in `status` (RETRY_SCHEDULED with `next_attempt_at`).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        tx: &mut Tx<'_>,
        id: &str,
        status: i64,
        error: &str,
        http_status: u32,
        next_attempt_at: Option<i64>,
        now: i64,
    ) -> Result<(), DbError> {
        let completed = matches!(status, status::SUCCEEDED | status::FAILED).then_some(now);
        sqlx::query(
            "UPDATE integration_deliveries SET status = $2, last_error = $3, \
             last_http_status = $4, next_attempt_at = $5, completed_at = $6, updated_at = $7 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(i64::from(http_status))
        .bind(next_attempt_at)
        .bind(completed)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Re-queues a FAILED delivery (attempts from zero); false when it is not FAILED.
    pub async fn requeue(&self, id: &str, now: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE integration_deliveries SET status = 1, attempts = 0, next_attempt_at = $2, \
             completed_at = NULL, updated_at = $2 WHERE id = $1 AND status = 5",
        )
        .bind(id)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes finished deliveries completed before `before`, at most `limit`.
    pub async fn purge_finished(&self, before: i64, limit: i64) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM integration_deliveries WHERE id IN (SELECT id FROM \
             integration_deliveries WHERE status IN (4, 5) AND completed_at < $1 \
             ORDER BY completed_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
