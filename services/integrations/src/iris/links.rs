//! The map of our items to their DFIR-IRIS ids (`iris_links`), per integration and
//! case: what makes a second push update instead of duplicating. A creation is written
//! down as an *intent* (no remote id) before it is sent, so a push that dies between
//! IRIS's answer and our record knows to look for what it may have made.

use casescope_db::{DbError, Lease, LeaseError, LeaseStore};
use sqlx::Row;
use std::collections::HashMap;

/// Kinds of linked items.
pub mod item {
    pub const CASE: &str = "case";
    pub const IOC: &str = "ioc";
    pub const ASSET: &str = "asset";
    pub const EVENT: &str = "event";
}

/// One link: the remote id (`None` while a creation's outcome is unknown) and the
/// fingerprint of what was last sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub remote_id: Option<u64>,
    pub fingerprint: String,
}

/// The links of one (integration, case), read once per push and written as it goes,
/// every write fenced by the delivery's lease.
pub struct Links {
    leases: LeaseStore,
    lease: Lease,
    integration_id: String,
    case_id: String,
    known: HashMap<(String, String), Link>,
}

fn fenced(error: LeaseError) -> String {
    match error {
        LeaseError::Fenced { .. } => "the delivery's lease was lost".into(),
        LeaseError::Db(error) => format!("integrations database: {error}"),
    }
}

impl Links {
    /// Reads every link of the case (bounded by what a push writes: a case, its IOCs,
    /// hosts and pushed events).
    pub async fn load(
        leases: LeaseStore,
        lease: Lease,
        db: &casescope_db::Database,
        integration_id: &str,
        case_id: &str,
    ) -> Result<Self, DbError> {
        let rows = sqlx::query(
            "SELECT item_kind, local_key, remote_id, fingerprint FROM iris_links \
             WHERE integration_id = $1 AND case_id = $2",
        )
        .bind(integration_id)
        .bind(case_id)
        .fetch_all(db.pool())
        .await?;
        let mut known = HashMap::with_capacity(rows.len());
        for row in rows {
            let remote: Option<i64> = row.try_get("remote_id")?;
            known.insert(
                (row.try_get("item_kind")?, row.try_get("local_key")?),
                Link {
                    remote_id: remote.map(|id| id as u64),
                    fingerprint: row.try_get("fingerprint")?,
                },
            );
        }
        Ok(Self {
            leases,
            lease,
            integration_id: integration_id.to_string(),
            case_id: case_id.to_string(),
            known,
        })
    }

    pub fn get(&self, kind: &str, key: &str) -> Option<&Link> {
        self.known.get(&(kind.to_string(), key.to_string()))
    }

    /// Whether some creation of `kind` has an unknown outcome.
    pub fn any_uncertain(&self, kind: &str) -> bool {
        self.known
            .iter()
            .any(|((k, _), link)| k == kind && link.remote_id.is_none())
    }

    /// Records `link` for `(kind, key)` (an intent when its remote id is `None`).
    pub async fn set(&mut self, kind: &str, key: &str, link: Link) -> Result<(), String> {
        let mut tx = self.leases.fenced(&self.lease).await.map_err(fenced)?;
        sqlx::query(
            "INSERT INTO iris_links (integration_id, case_id, item_kind, local_key, remote_id, \
             fingerprint, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (integration_id, case_id, item_kind, local_key) DO UPDATE SET \
             remote_id = excluded.remote_id, fingerprint = excluded.fingerprint, \
             updated_at = excluded.updated_at",
        )
        .bind(&self.integration_id)
        .bind(&self.case_id)
        .bind(kind)
        .bind(key)
        .bind(link.remote_id.map(|id| id as i64))
        .bind(&link.fingerprint)
        .bind(casescope_db::now_micros())
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("integrations database: {e}"))?;
        tx.commit()
            .await
            .map_err(|e| format!("integrations database: {e}"))?;
        self.known.insert((kind.to_string(), key.to_string()), link);
        Ok(())
    }

    /// Forgets every item link but the case's (the case is linked to another IRIS
    /// case now: its items are pushed there afresh).
    pub async fn forget_items(&mut self) -> Result<(), String> {
        let mut tx = self.leases.fenced(&self.lease).await.map_err(fenced)?;
        sqlx::query(
            "DELETE FROM iris_links WHERE integration_id = $1 AND case_id = $2 \
             AND item_kind <> $3",
        )
        .bind(&self.integration_id)
        .bind(&self.case_id)
        .bind(item::CASE)
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("integrations database: {e}"))?;
        tx.commit()
            .await
            .map_err(|e| format!("integrations database: {e}"))?;
        self.known.retain(|(kind, _), _| kind == item::CASE);
        Ok(())
    }
}
