//! IOCs, and each case's IOC version with its change log.

use super::{Filter, IocRepo, bind_all, flag};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IocRow {
    pub id: String,
    pub case_id: String,
    pub ioc_type: String,
    pub value: String,
    pub normalized: String,
    pub description: String,
    pub source: String,
    pub tlp: String,
    pub confidence: i64,
    pub enabled: bool,
    /// JSON list.
    pub labels: String,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub expires_at: Option<i64>,
    pub enrichment_json: String,
    pub enriched_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

impl IocRow {
    /// Whether a hunt at `now` uses it.
    pub fn hunted(&self, now: i64) -> bool {
        self.enabled && self.expires_at.is_none_or(|t| t > now)
    }
}

fn ioc_from(row: &AnyRow) -> Result<IocRow, DbError> {
    Ok(IocRow {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        ioc_type: row.try_get("ioc_type")?,
        value: row.try_get("value")?,
        normalized: row.try_get("normalized")?,
        description: row.try_get("description")?,
        source: row.try_get("source")?,
        tlp: row.try_get("tlp")?,
        confidence: row.try_get("confidence")?,
        enabled: flag(row, "enabled")?,
        labels: row.try_get("labels")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        expires_at: row.try_get("expires_at")?,
        enrichment_json: row.try_get("enrichment_json")?,
        enriched_at: row.try_get("enriched_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

/// An IOC as a hunt needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunted {
    pub id: String,
    pub ioc_type: String,
    pub normalized: String,
}

/// Change-log rows written per statement.
const CHANGES_PER_INSERT: usize = 200;

/// IOCs one version logs at most: a larger change (a big import, a list joining a case)
/// is not logged and the case's files get full hunts instead, which cost about the same
/// (a hunt's cost is its pass over the events, whatever the number of IOCs).
pub const MAX_LOGGED_CHANGES: usize = 10_000;

impl IocRepo {
    /// Inserts `row` unless the case has its (type, value): `false` then.
    pub async fn insert_ioc(&self, tx: &mut Tx<'_>, row: &IocRow) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO iocs (id, case_id, ioc_type, value, normalized, description, source, tlp, confidence, \
             enabled, labels, first_seen, last_seen, expires_at, enrichment_json, enriched_at, created_by, \
             created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
             ON CONFLICT (case_id, ioc_type, normalized) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.case_id)
        .bind(&row.ioc_type)
        .bind(&row.value)
        .bind(&row.normalized)
        .bind(&row.description)
        .bind(&row.source)
        .bind(&row.tlp)
        .bind(row.confidence)
        .bind(i64::from(row.enabled))
        .bind(&row.labels)
        .bind(row.first_seen)
        .bind(row.last_seen)
        .bind(row.expires_at)
        .bind(&row.enrichment_json)
        .bind(row.enriched_at)
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.version)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn ioc(&self, case_id: &str, id: &str) -> Result<Option<IocRow>, DbError> {
        let row = sqlx::query("SELECT * FROM iocs WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(ioc_from).transpose()
    }

    pub async fn ioc_by_value(
        &self,
        case_id: &str,
        ioc_type: &str,
        normalized: &str,
    ) -> Result<Option<IocRow>, DbError> {
        let row = sqlx::query(
            "SELECT * FROM iocs WHERE case_id = $1 AND ioc_type = $2 AND normalized = $3",
        )
        .bind(case_id)
        .bind(ioc_type)
        .bind(normalized)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(ioc_from).transpose()
    }

    /// IOCs matching `filter` (its first clause is the case), newest first, after
    /// (created_at, id); with the total.
    pub async fn list_iocs(
        &self,
        filter: &Filter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<(Vec<IocRow>, i64), DbError> {
        let count_sql = format!("SELECT COUNT(*) AS n FROM iocs{}", filter.where_sql());
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &filter.params)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let mut page = filter.clone();
        if let Some((at, id)) = after {
            let a = page.bind(super::Param::Int(at));
            let b = page.bind(super::Param::Text(id));
            page.push(format!(
                "(created_at < {a} OR (created_at = {a} AND id < {b}))"
            ));
        }
        let sql = format!(
            "SELECT * FROM iocs{} ORDER BY created_at DESC, id DESC LIMIT {limit}",
            page.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &page.params)
            .fetch_all(self.db.pool())
            .await?;
        Ok((rows.iter().map(ioc_from).collect::<Result<_, _>>()?, total))
    }

    /// Every IOC matching `filter`, in creation order, a page at a time after `after`.
    pub async fn iocs_page(
        &self,
        filter: &Filter,
        after: &str,
        limit: i64,
    ) -> Result<Vec<IocRow>, DbError> {
        let mut page = filter.clone();
        let a = page.bind(super::Param::Text(after.to_string()));
        page.push(format!("id > {a}"));
        let sql = format!(
            "SELECT * FROM iocs{} ORDER BY id LIMIT {limit}",
            page.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &page.params)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(ioc_from).collect()
    }

    /// Writes `row` (found at `row.version - 1`); `false` when it changed meanwhile.
    pub async fn update_ioc(&self, tx: &mut Tx<'_>, row: &IocRow) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE iocs SET description = $3, source = $4, tlp = $5, confidence = $6, enabled = $7, \
             labels = $8, expires_at = $9, updated_at = $10, version = $11 \
             WHERE case_id = $1 AND id = $2 AND version = $12",
        )
        .bind(&row.case_id)
        .bind(&row.id)
        .bind(&row.description)
        .bind(&row.source)
        .bind(&row.tlp)
        .bind(row.confidence)
        .bind(i64::from(row.enabled))
        .bind(&row.labels)
        .bind(row.expires_at)
        .bind(row.updated_at)
        .bind(row.version)
        .bind(row.version - 1)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_ioc(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        id: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM iocs WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn count_iocs(&self, case_id: &str) -> Result<i64, DbError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM iocs WHERE case_id = $1")
                .bind(case_id)
                .fetch_one(self.db.pool())
                .await?
                .try_get("n")?,
        )
    }

    /// The IOCs a hunt of the case uses at `now` (its own and those of the lists it
    /// uses): every one, or only those changed in versions (from, to].
    pub async fn hunted_iocs(
        &self,
        case_id: &str,
        now: i64,
        changed: Option<(i64, i64)>,
    ) -> Result<Vec<Hunted>, DbError> {
        let base = format!(
            "SELECT id, ioc_type, normalized FROM iocs WHERE (case_id = $1 OR case_id IN ({})) \
             AND enabled = 1 AND (expires_at IS NULL OR expires_at > $2)",
            super::lists::LIST_OWNERS_OF_CASE
        );
        let rows = match changed {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{base} ORDER BY id")))
                    .bind(case_id)
                    .bind(now)
                    .fetch_all(self.db.pool())
                    .await?
            }
            Some((from, to)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} AND id IN (SELECT ioc_id FROM ioc_changes WHERE case_id = $1 \
                     AND version > $3 AND version <= $4) ORDER BY id"
                )))
                .bind(case_id)
                .bind(now)
                .bind(from)
                .bind(to)
                .fetch_all(self.db.pool())
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Hunted {
                    id: r.try_get("id")?,
                    ioc_type: r.try_get("ioc_type")?,
                    normalized: r.try_get("normalized")?,
                })
            })
            .collect()
    }

    /// The case's IOC version and the lowest version its change log still holds whole.
    pub async fn case_version(&self, case_id: &str) -> Result<(i64, i64), DbError> {
        let row =
            sqlx::query("SELECT version, log_floor FROM ioc_case_versions WHERE case_id = $1")
                .bind(case_id)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            Some(row) => Ok((row.try_get("version")?, row.try_get("log_floor")?)),
            None => Ok((0, 1)),
        }
    }

    /// A new IOC version of the case in which `changed` IOCs changed; every file of the
    /// case is asked to reach it. Returns the version.
    pub async fn bump_version(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        changed: &[String],
        now: i64,
    ) -> Result<i64, DbError> {
        let version: i64 = sqlx::query(
            "INSERT INTO ioc_case_versions (case_id, version, log_floor, updated_at) VALUES ($1, 1, 1, $2) \
             ON CONFLICT (case_id) DO UPDATE SET version = ioc_case_versions.version + 1, updated_at = $2 \
             RETURNING version",
        )
        .bind(case_id)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?
        .try_get("version")?;
        if changed.len() > MAX_LOGGED_CHANGES {
            // Every file behind this version gets a full hunt (docs/iocs.md).
            sqlx::query("UPDATE ioc_case_versions SET log_floor = $2 WHERE case_id = $1")
                .bind(case_id)
                .bind(version + 1)
                .execute(&mut **tx)
                .await?;
        }
        let logged = if changed.len() > MAX_LOGGED_CHANGES {
            &[][..]
        } else {
            changed
        };
        for chunk in logged.chunks(CHANGES_PER_INSERT) {
            let mut sql =
                String::from("INSERT INTO ioc_changes (case_id, version, ioc_id) VALUES ");
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, $2, ${})", i + 3));
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(case_id)
                .bind(version);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            query.execute(&mut **tx).await?;
        }
        sqlx::query(
            "UPDATE ioc_files SET requested_version = $2, attempts = 0, updated_at = $3, \
             status = CASE WHEN status = 'running' THEN status ELSE 'pending' END \
             WHERE case_id = $1 AND requested_version < $2",
        )
        .bind(case_id)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(version)
    }

    /// Drops change-log versions more than `keep` behind each case's version; the
    /// files further behind get full hunts. Returns the rows dropped.
    pub async fn trim_changes(&self, keep: i64) -> Result<u64, DbError> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE ioc_case_versions SET log_floor = version - $1 + 1 WHERE log_floor < version - $1 + 1",
        )
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "DELETE FROM ioc_changes WHERE version < (SELECT log_floor FROM ioc_case_versions v \
             WHERE v.case_id = ioc_changes.case_id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(done.rows_affected())
    }
}
