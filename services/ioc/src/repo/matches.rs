//! IOC matches.

use super::{Filter, IocRepo, Owner, Param, bind_all};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRow {
    pub case_id: String,
    pub id: String,
    pub ioc_id: String,
    pub file_id: String,
    pub event_id: String,
    pub field: String,
    pub matched_value: String,
    pub event_ts: i64,
    pub ioc_type: String,
    pub ioc_value: String,
    pub matched_at: i64,
}

fn match_from(row: &AnyRow) -> Result<MatchRow, DbError> {
    Ok(MatchRow {
        case_id: row.try_get("case_id")?,
        id: row.try_get("id")?,
        ioc_id: row.try_get("ioc_id")?,
        file_id: row.try_get("file_id")?,
        event_id: row.try_get("event_id")?,
        field: row.try_get("field")?,
        matched_value: row.try_get("matched_value")?,
        event_ts: row.try_get("event_ts")?,
        ioc_type: row.try_get("ioc_type")?,
        ioc_value: row.try_get("ioc_value")?,
        matched_at: row.try_get("matched_at")?,
    })
}

/// Match rows written per statement (11 parameters each).
const MATCHES_PER_INSERT: usize = 80;

/// What a count of matches gives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MatchCounts {
    pub total: i64,
    pub distinct_events: i64,
    /// (IOC id, type, value, count), highest first.
    pub by_ioc: Vec<(String, String, String, i64)>,
    pub by_ioc_truncated: bool,
    pub by_type: Vec<(String, i64)>,
}

/// The scope of a file's matches a run replaces: all of them, or those of the IOCs
/// changed in versions (from, to].
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    Changed(i64, i64),
}

impl Scope {
    fn sql(self) -> &'static str {
        match self {
            Scope::All => "",
            Scope::Changed(..) => {
                " AND ioc_id IN (SELECT ioc_id FROM ioc_changes WHERE case_id = $1 AND version > $3 AND version <= $4)"
            }
        }
    }
}

impl IocRepo {
    /// Ids of the file's matches in `scope`.
    pub async fn file_match_ids(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        scope: Scope,
    ) -> Result<HashSet<String>, DbError> {
        let sql = format!(
            "SELECT id FROM ioc_matches WHERE case_id = $1 AND file_id = $2{}",
            scope.sql()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(case_id)
            .bind(file_id);
        if let Scope::Changed(from, to) = scope {
            query = query.bind(from).bind(to);
        }
        let rows = query.fetch_all(&mut **tx).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(DbError::from))
            .collect()
    }

    pub async fn delete_file_matches(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        scope: Scope,
    ) -> Result<u64, DbError> {
        let sql = format!(
            "DELETE FROM ioc_matches WHERE case_id = $1 AND file_id = $2{}",
            scope.sql()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(case_id)
            .bind(file_id);
        if let Scope::Changed(from, to) = scope {
            query = query.bind(from).bind(to);
        }
        Ok(query.execute(&mut **tx).await?.rows_affected())
    }

    /// Deletes an IOC's matches in every case (a list's IOC matches in many).
    pub async fn delete_ioc_matches(&self, tx: &mut Tx<'_>, ioc_id: &str) -> Result<u64, DbError> {
        Ok(sqlx::query("DELETE FROM ioc_matches WHERE ioc_id = $1")
            .bind(ioc_id)
            .execute(&mut **tx)
            .await?
            .rows_affected())
    }

    pub async fn insert_matches(&self, tx: &mut Tx<'_>, rows: &[MatchRow]) -> Result<(), DbError> {
        for chunk in rows.chunks(MATCHES_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO ioc_matches (case_id, id, ioc_id, file_id, event_id, field, matched_value, \
                 event_ts, ioc_type, ioc_value, matched_at) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 11;
                sql.push('(');
                for k in 1..=11 {
                    if k > 1 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", b + k));
                }
                sql.push(')');
            }
            // A match found twice in one run (the same IOC, event and field) is one.
            sql.push_str(" ON CONFLICT (case_id, id) DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(row.case_id.as_str())
                    .bind(row.id.as_str())
                    .bind(row.ioc_id.as_str())
                    .bind(row.file_id.as_str())
                    .bind(row.event_id.as_str())
                    .bind(row.field.as_str())
                    .bind(row.matched_value.as_str())
                    .bind(row.event_ts)
                    .bind(row.ioc_type.as_str())
                    .bind(row.ioc_value.as_str())
                    .bind(row.matched_at);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Matches of `filter` (its first clause is the case) by event time then id, after
    /// (ts, id); with the total.
    pub async fn list_matches(
        &self,
        filter: &Filter,
        descending: bool,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<(Vec<MatchRow>, i64), DbError> {
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM ioc_matches{}",
            filter.where_sql()
        );
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &filter.params)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let mut page = filter.clone();
        if let Some((ts, id)) = after {
            let a = page.bind(Param::Int(ts));
            let b = page.bind(Param::Text(id));
            let op = if descending { "<" } else { ">" };
            page.push(format!(
                "(event_ts {op} {a} OR (event_ts = {a} AND id {op} {b}))"
            ));
        }
        let order = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT * FROM ioc_matches{} ORDER BY event_ts {order}, id {order} LIMIT {limit}",
            page.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &page.params)
            .fetch_all(self.db.pool())
            .await?;
        Ok((
            rows.iter().map(match_from).collect::<Result<_, _>>()?,
            total,
        ))
    }

    pub async fn count_matches(&self, filter: &Filter, top: i64) -> Result<MatchCounts, DbError> {
        let pool = self.db.pool();
        let where_sql = filter.where_sql();
        let totals = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS e FROM ioc_matches{where_sql}"
            ))),
            &filter.params,
        )
        .fetch_one(pool)
        .await?;
        let by_ioc = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT ioc_id, MIN(ioc_type) AS t, MIN(ioc_value) AS v, COUNT(*) AS n FROM ioc_matches{where_sql} \
                 GROUP BY ioc_id ORDER BY n DESC, ioc_id LIMIT {}",
                top + 1
            ))),
            &filter.params,
        )
        .fetch_all(pool)
        .await?;
        let by_type = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT ioc_type, COUNT(*) AS n FROM ioc_matches{where_sql} GROUP BY ioc_type ORDER BY n DESC, ioc_type"
            ))),
            &filter.params,
        )
        .fetch_all(pool)
        .await?;
        let mut counts = MatchCounts {
            total: totals.try_get("n")?,
            distinct_events: totals.try_get("e")?,
            ..MatchCounts::default()
        };
        for row in &by_ioc {
            counts.by_ioc.push((
                row.try_get("ioc_id")?,
                row.try_get("t")?,
                row.try_get("v")?,
                row.try_get("n")?,
            ));
        }
        if counts.by_ioc.len() as i64 > top {
            counts.by_ioc.truncate(top as usize);
            counts.by_ioc_truncated = true;
        }
        for row in &by_type {
            counts
                .by_type
                .push((row.try_get("ioc_type")?, row.try_get("n")?));
        }
        Ok(counts)
    }

    /// Matches per IOC for these IOCs of an owner: in the case, or (a list's) in every
    /// case.
    pub async fn match_counts_of(
        &self,
        owner: &Owner,
        ioc_ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, DbError> {
        let mut out = std::collections::HashMap::new();
        if ioc_ids.is_empty() {
            return Ok(out);
        }
        let mut filter = Filter::default();
        if let Owner::Case(case_id) = owner {
            let c = filter.bind(Param::Text(case_id.to_string()));
            filter.push(format!("case_id = {c}"));
        }
        filter.any_text("ioc_id", ioc_ids);
        let sql = format!(
            "SELECT ioc_id, COUNT(*) AS n FROM ioc_matches{} GROUP BY ioc_id",
            filter.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
            .fetch_all(self.db.pool())
            .await?;
        for row in rows {
            out.insert(row.try_get("ioc_id")?, row.try_get("n")?);
        }
        Ok(out)
    }
}
