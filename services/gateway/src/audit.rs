//! The audit log: append-only and hash-chained, so that editing, deleting or inserting
//! any record is detected.
//!
//! Each record's `hash` is SHA-256 over the previous record's hash and the record's own
//! fields (a fixed, length-prefixed encoding). A one-row head table holds the sequence
//! and hash of the newest record; appending bumps it first, inside the transaction that
//! inserts the record, so concurrent appends on any database are serialised and the
//! sequence has no gaps. [`AuditLog::verify`] walks the records in sequence order a page
//! at a time and names the first that breaks the chain (edited, missing, or out of
//! place), and compares the end with the head (the newest records deleted).
//!
//! Retention drops the oldest records but first writes a checkpoint: the sequence and
//! hash of the last dropped record, signed with the gateway's Ed25519 key. Verification
//! starts from the newest checkpoint whose signature holds, so the chain still verifies
//! after old records are gone — and a forged checkpoint does not.

use crate::tokens::KeySet;
use casescope_db::{Database, DbError, Migration, Migrations, now_micros};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::sync::Arc;
use std::time::Duration;

pub const AUDIT_MIGRATIONS: Migrations = Migrations {
    service: "gateway_audit",
    steps: &[Migration {
        version: 1,
        name: "hash-chained audit log",
        sql: "
CREATE TABLE gateway_audit (
    sequence BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_user_id TEXT NOT NULL,
    actor_username TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    api_token_id TEXT NOT NULL,
    method TEXT NOT NULL,
    case_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status_code BIGINT NOT NULL,
    client_address TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX gateway_audit_by_time ON gateway_audit (at);
CREATE TABLE gateway_audit_head (
    id BIGINT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO gateway_audit_head (id, sequence, hash) VALUES (1, 0, '');
CREATE TABLE gateway_audit_checkpoints (
    sequence BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL
);
",
    }],
};

/// One audit record (what is hashed, besides the previous hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// Microseconds since the epoch.
    pub at: i64,
    pub actor_user_id: String,
    pub actor_username: String,
    /// `session`, `api_token` or empty.
    pub auth_method: String,
    pub api_token_id: String,
    /// Full gRPC method, or an event such as `login`.
    pub method: String,
    pub case_id: String,
    /// `succeeded`, `unauthenticated`, `denied`, `failed`, `rate_limited`.
    pub outcome: String,
    pub status_code: i64,
    pub client_address: String,
    pub user_agent: String,
    pub trace_id: String,
}

/// The outcomes a record may have.
pub const OUTCOMES: &[&str] = &[
    "succeeded",
    "unauthenticated",
    "denied",
    "failed",
    "rate_limited",
];

/// Which records [`AuditLog::list`] returns (empty strings: any).
#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub actor_user_id: String,
    pub method: String,
    pub case_id: String,
    /// Any of these (empty: all).
    pub outcomes: Vec<String>,
    /// Microseconds, inclusive.
    pub from: i64,
    /// Microseconds, exclusive.
    pub to: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor_user_id: String::new(),
            method: String::new(),
            case_id: String::new(),
            outcomes: Vec::new(),
            from: 0,
            to: i64::MAX,
        }
    }
}

/// The wire form of a stored record.
pub fn entry_to_pb(entry: &AuditEntry) -> casescope_proto::gateway::v1::AuditEntry {
    use casescope_proto::common::v1::{CaseId, UserId};
    use casescope_proto::gateway::v1 as pb;
    let r = &entry.record;
    let outcome = match r.outcome.as_str() {
        "succeeded" => pb::AuditOutcome::Succeeded,
        "unauthenticated" => pb::AuditOutcome::Unauthenticated,
        "denied" => pb::AuditOutcome::Denied,
        "failed" => pb::AuditOutcome::Failed,
        "rate_limited" => pb::AuditOutcome::RateLimited,
        _ => pb::AuditOutcome::Unspecified,
    };
    let method = match r.auth_method.as_str() {
        "session" => pb::AuthMethod::Session,
        "api_token" => pb::AuthMethod::ApiToken,
        _ => pb::AuthMethod::Unspecified,
    };
    pb::AuditEntry {
        sequence: u64::try_from(entry.sequence).unwrap_or_default(),
        time: Some(casescope_proto::time::micros_to_timestamp(r.at)),
        actor_user_id: (!r.actor_user_id.is_empty()).then(|| UserId {
            value: r.actor_user_id.clone(),
        }),
        actor_username: r.actor_username.clone(),
        auth_method: method as i32,
        api_token_id: (!r.api_token_id.is_empty()).then(|| pb::ApiTokenId {
            value: r.api_token_id.clone(),
        }),
        method: r.method.clone(),
        case_id: (!r.case_id.is_empty()).then(|| CaseId {
            value: r.case_id.clone(),
        }),
        outcome: outcome as i32,
        status_code: u32::try_from(r.status_code).unwrap_or_default(),
        client_address: r.client_address.clone(),
        user_agent: r.user_agent.clone(),
        trace_id: r.trace_id.clone(),
    }
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub sequence: i64,
    pub record: AuditRecord,
    pub hash: String,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {sequence}: its content does not match its hash (edited)")]
    Edited { sequence: i64 },
    #[error("record {expected} is missing (the next present is {found}): deleted")]
    Missing { expected: i64, found: i64 },
    #[error("the newest records after {last} are missing (the log's head says {head})")]
    TailMissing { last: i64, head: i64 },
    #[error("checkpoint at record {sequence}: its signature does not verify")]
    BadCheckpoint { sequence: i64 },
    #[error("{0}")]
    Unreadable(String),
}

impl ChainBreak {
    /// The sequence number of the first broken record (0 when unknown).
    pub fn sequence(&self) -> i64 {
        match self {
            ChainBreak::Edited { sequence } | ChainBreak::BadCheckpoint { sequence } => *sequence,
            ChainBreak::Missing { expected, .. } => *expected,
            ChainBreak::TailMissing { last, .. } => last + 1,
            ChainBreak::Unreadable(_) => 0,
        }
    }
}

fn field(hasher: &mut Sha256, value: &str) {
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value.as_bytes());
}

/// The hash of `record` at `sequence` after `previous`.
pub fn chain_hash(previous: &str, sequence: i64, record: &AuditRecord) -> String {
    let mut hasher = Sha256::new();
    field(&mut hasher, "casescope-audit-v1");
    field(&mut hasher, previous);
    hasher.update(sequence.to_be_bytes());
    hasher.update(record.at.to_be_bytes());
    for value in [
        &record.actor_user_id,
        &record.actor_username,
        &record.auth_method,
        &record.api_token_id,
        &record.method,
        &record.case_id,
        &record.outcome,
    ] {
        field(&mut hasher, value);
    }
    hasher.update(record.status_code.to_be_bytes());
    for value in [&record.client_address, &record.user_agent, &record.trace_id] {
        field(&mut hasher, value);
    }
    hex::encode(hasher.finalize())
}

fn checkpoint_message(sequence: i64, hash: &str) -> Vec<u8> {
    format!("casescope-audit-checkpoint-v1|{sequence}|{hash}").into_bytes()
}

fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

fn entry_from(row: &AnyRow) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        sequence: row.try_get("sequence")?,
        hash: row.try_get("hash")?,
        record: AuditRecord {
            at: row.try_get("at")?,
            actor_user_id: row.try_get("actor_user_id")?,
            actor_username: row.try_get("actor_username")?,
            auth_method: row.try_get("auth_method")?,
            api_token_id: row.try_get("api_token_id")?,
            method: row.try_get("method")?,
            case_id: row.try_get("case_id")?,
            outcome: row.try_get("outcome")?,
            status_code: row.try_get("status_code")?,
            client_address: row.try_get("client_address")?,
            user_agent: row.try_get("user_agent")?,
            trace_id: row.try_get("trace_id")?,
        },
    })
}

/// Records read per page while verifying (bounded memory).
const VERIFY_PAGE: i64 = 1000;

#[derive(Clone)]
pub struct AuditLog {
    db: Database,
    keys: Arc<KeySet>,
}

impl AuditLog {
    pub fn new(db: Database, keys: Arc<KeySet>) -> Self {
        Self { db, keys }
    }

    /// Appends `record` (strings truncated to their documented lengths); its sequence.
    pub async fn append(&self, record: &AuditRecord) -> Result<i64, DbError> {
        let mut record = record.clone();
        record.actor_username = truncate(&record.actor_username, 64);
        record.user_agent = truncate(&record.user_agent, 256);
        record.method = truncate(&record.method, 256);
        record.client_address = truncate(&record.client_address, 128);
        let mut tx = self.db.begin().await?;
        // Bumping the head first serialises concurrent appends (a row lock on
        // PostgreSQL, the one connection on SQLite).
        sqlx::query("UPDATE gateway_audit_head SET sequence = sequence + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let head = sqlx::query("SELECT sequence, hash FROM gateway_audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let sequence: i64 = head.try_get("sequence")?;
        let previous: String = head.try_get("hash")?;
        let hash = chain_hash(&previous, sequence, &record);
        sqlx::query(
            "INSERT INTO gateway_audit (sequence, at, actor_user_id, actor_username, auth_method, \
             api_token_id, method, case_id, outcome, status_code, client_address, user_agent, \
             trace_id, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(sequence)
        .bind(record.at)
        .bind(&record.actor_user_id)
        .bind(&record.actor_username)
        .bind(&record.auth_method)
        .bind(&record.api_token_id)
        .bind(&record.method)
        .bind(&record.case_id)
        .bind(&record.outcome)
        .bind(record.status_code)
        .bind(&record.client_address)
        .bind(&record.user_agent)
        .bind(&record.trace_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE gateway_audit_head SET hash = $1 WHERE id = 1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sequence)
    }

    /// Newest first: at most `limit` records matching `filter` with a sequence below
    /// `before` (0: from the newest).
    pub async fn list(
        &self,
        filter: &AuditFilter,
        before: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let before = if before <= 0 { i64::MAX } else { before };
        // Outcomes are fixed words (never caller text), so they are written inline.
        let outcomes = if filter.outcomes.is_empty() {
            String::new()
        } else {
            let words: Vec<String> = filter
                .outcomes
                .iter()
                .filter(|o| OUTCOMES.contains(&o.as_str()))
                .map(|o| format!("'{o}'"))
                .collect();
            format!("AND outcome IN ({})", words.join(", "))
        };
        let sql = format!(
            "SELECT * FROM gateway_audit WHERE sequence < $1 \
             AND ($2 = '' OR actor_user_id = $2) AND ($3 = '' OR method = $3) \
             AND ($4 = '' OR case_id = $4) AND at >= $5 AND at < $6 {outcomes} \
             ORDER BY sequence DESC LIMIT $7"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .bind(&filter.actor_user_id)
            .bind(&filter.method)
            .bind(&filter.case_id)
            .bind(filter.from)
            .bind(filter.to)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(entry_from).collect()
    }

    /// Checks the whole chain; the number of records verified, or the first break.
    pub async fn verify(&self) -> Result<u64, ChainBreak> {
        let unreadable = |e: sqlx::Error| ChainBreak::Unreadable(DbError::from(e).to_string());
        // Start after the newest checkpoint (its signature must hold), else at the start.
        let checkpoint = sqlx::query(
            "SELECT sequence, hash, kid, signature FROM gateway_audit_checkpoints \
             ORDER BY sequence DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await
        .map_err(unreadable)?;
        let (mut last, mut previous) = match checkpoint {
            None => (0i64, String::new()),
            Some(row) => {
                let sequence: i64 = row.try_get("sequence").map_err(unreadable)?;
                let hash: String = row.try_get("hash").map_err(unreadable)?;
                let kid: String = row.try_get("kid").map_err(unreadable)?;
                let signature: String = row.try_get("signature").map_err(unreadable)?;
                if !self.keys.verify_signature(
                    &kid,
                    &checkpoint_message(sequence, &hash),
                    &signature,
                ) {
                    return Err(ChainBreak::BadCheckpoint { sequence });
                }
                (sequence, hash)
            }
        };
        let mut verified = 0u64;
        loop {
            let rows = sqlx::query(
                "SELECT * FROM gateway_audit WHERE sequence > $1 ORDER BY sequence LIMIT $2",
            )
            .bind(last)
            .bind(VERIFY_PAGE)
            .fetch_all(self.db.pool())
            .await
            .map_err(unreadable)?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = entry_from(row).map_err(|e| ChainBreak::Unreadable(e.to_string()))?;
                if entry.sequence != last + 1 {
                    return Err(ChainBreak::Missing {
                        expected: last + 1,
                        found: entry.sequence,
                    });
                }
                if chain_hash(&previous, entry.sequence, &entry.record) != entry.hash {
                    return Err(ChainBreak::Edited {
                        sequence: entry.sequence,
                    });
                }
                last = entry.sequence;
                previous = entry.hash;
                verified += 1;
            }
        }
        let head = sqlx::query("SELECT sequence, hash FROM gateway_audit_head WHERE id = 1")
            .fetch_one(self.db.pool())
            .await
            .map_err(unreadable)?;
        let head_sequence: i64 = head.try_get("sequence").map_err(unreadable)?;
        let head_hash: String = head.try_get("hash").map_err(unreadable)?;
        if head_sequence != last || head_hash != previous {
            return Err(ChainBreak::TailMissing {
                last,
                head: head_sequence,
            });
        }
        Ok(verified)
    }

    /// Drops records older than `keep`, after writing a signed checkpoint at the last
    /// one dropped; how many were dropped.
    pub async fn apply_retention(&self, keep: Duration) -> Result<u64, DbError> {
        let cutoff = now_micros() - i64::try_from(keep.as_micros()).unwrap_or(i64::MAX / 4);
        let newest_old = sqlx::query(
            "SELECT sequence, hash FROM gateway_audit WHERE at < $1 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(cutoff)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = newest_old else {
            return Ok(0);
        };
        let sequence: i64 = row.try_get("sequence")?;
        let hash: String = row.try_get("hash")?;
        let (kid, signature) = self.keys.sign(&checkpoint_message(sequence, &hash));
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO gateway_audit_checkpoints (sequence, hash, at, kid, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sequence) DO NOTHING",
        )
        .bind(sequence)
        .bind(&hash)
        .bind(now_micros())
        .bind(&kid)
        .bind(&signature)
        .execute(&mut *tx)
        .await?;
        let dropped = sqlx::query("DELETE FROM gateway_audit WHERE sequence <= $1")
            .bind(sequence)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Older checkpoints are superseded by this one.
        sqlx::query("DELETE FROM gateway_audit_checkpoints WHERE sequence < $1")
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(dropped)
    }
}
