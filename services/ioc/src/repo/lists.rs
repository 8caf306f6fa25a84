//! Global IOC lists: IOCs kept once (owner `list:<id>` in `iocs`) and hunted in every
//! case or in chosen cases. A change of a list's IOCs is logged in the IOC version of
//! every case using the list, so each case's files re-hunt that delta as for the case's
//! own IOCs.
//!
//! The cases "every case" means are the ones the service knows (with an IOC version or
//! a hunted file). A case's first file and a change of a list both take the one row of
//! `ioc_list_lock` first, so the change either sees the new case or commits before the
//! case's first hunt reads its IOCs.

use super::{IocRepo, flag};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

pub(super) const MIGRATION: &str = "
CREATE TABLE ioc_lists (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT NOT NULL,
    all_cases BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE UNIQUE INDEX ioc_lists_by_name ON ioc_lists (name_key);
CREATE TABLE ioc_list_cases (
    list_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    PRIMARY KEY (list_id, case_id)
);
CREATE INDEX ioc_list_cases_by_case ON ioc_list_cases (case_id, list_id);
CREATE TABLE ioc_list_lock (
    id BIGINT PRIMARY KEY,
    changes BIGINT NOT NULL
);
INSERT INTO ioc_list_lock (id, changes) VALUES (1, 0);
CREATE INDEX ioc_matches_by_ioc_id ON ioc_matches (ioc_id);
";

/// Who an IOC belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Case(String),
    List(String),
}

impl Owner {
    /// The value of the `case_id` column of its IOCs.
    pub fn key(&self) -> String {
        match self {
            Owner::Case(case) => case.clone(),
            Owner::List(list) => format!("list:{list}"),
        }
    }

    /// The owner of an IOC row.
    pub fn of_key(key: &str) -> Owner {
        match key.strip_prefix("list:") {
            Some(list) => Owner::List(list.to_string()),
            None => Owner::Case(key.to_string()),
        }
    }

    /// "case X" / "list X", for messages.
    pub fn describe(&self) -> String {
        match self {
            Owner::Case(case) => format!("case {case}"),
            Owner::List(list) => format!("list {list}"),
        }
    }
}

/// SQL (with `$1` the case id) selecting the owner keys of the lists a case uses.
pub(super) const LIST_OWNERS_OF_CASE: &str = "SELECT 'list:' || id FROM ioc_lists \
     WHERE all_cases = 1 OR id IN (SELECT list_id FROM ioc_list_cases WHERE case_id = $1)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub all_cases: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

fn list_from(row: &AnyRow) -> Result<ListRow, DbError> {
    Ok(ListRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        all_cases: flag(row, "all_cases")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

/// The comparison key of a list name.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl IocRepo {
    /// Serialises, until `tx` ends, changes of lists with the first file of a case.
    pub async fn lock_lists(&self, tx: &mut Tx<'_>) -> Result<(), DbError> {
        sqlx::query("UPDATE ioc_list_lock SET changes = changes + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Inserts `row` with its chosen cases; `false` when the name is taken.
    pub async fn insert_list(
        &self,
        tx: &mut Tx<'_>,
        row: &ListRow,
        cases: &[String],
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO ioc_lists (id, name, name_key, description, all_cases, created_by, created_at, \
             updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(name_key(&row.name))
        .bind(&row.description)
        .bind(i64::from(row.all_cases))
        .bind(&row.created_by)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.version)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.set_list_cases(tx, &row.id, cases).await?;
        Ok(true)
    }

    /// Writes `row` (found at `row.version - 1`); `Ok(None)` when it changed meanwhile,
    /// `Ok(Some(false))` when the new name is taken.
    pub async fn update_list(
        &self,
        tx: &mut Tx<'_>,
        row: &ListRow,
    ) -> Result<Option<bool>, DbError> {
        let taken = sqlx::query("SELECT id FROM ioc_lists WHERE name_key = $1 AND id <> $2")
            .bind(name_key(&row.name))
            .bind(&row.id)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Ok(Some(false));
        }
        let done = sqlx::query(
            "UPDATE ioc_lists SET name = $2, name_key = $3, description = $4, all_cases = $5, \
             updated_at = $6, version = $7 WHERE id = $1 AND version = $8",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(name_key(&row.name))
        .bind(&row.description)
        .bind(i64::from(row.all_cases))
        .bind(row.updated_at)
        .bind(row.version)
        .bind(row.version - 1)
        .execute(&mut **tx)
        .await?;
        Ok((done.rows_affected() == 1).then_some(true))
    }

    /// Replaces the chosen cases of a list.
    pub async fn set_list_cases(
        &self,
        tx: &mut Tx<'_>,
        list_id: &str,
        cases: &[String],
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM ioc_list_cases WHERE list_id = $1")
            .bind(list_id)
            .execute(&mut **tx)
            .await?;
        for case in cases {
            sqlx::query(
                "INSERT INTO ioc_list_cases (list_id, case_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(list_id)
            .bind(case)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// The list with this id or (case-insensitive) name.
    pub async fn list_by_id_or_name(&self, key: &str) -> Result<Option<ListRow>, DbError> {
        let row = sqlx::query("SELECT * FROM ioc_lists WHERE id = $1 OR name_key = $2")
            .bind(key)
            .bind(name_key(key))
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(list_from).transpose()
    }

    /// Lists by name after `after` (a name key); only those `case` uses when given.
    pub async fn lists_page(
        &self,
        case: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ListRow>, DbError> {
        let rows =
            match case {
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT * FROM ioc_lists WHERE name_key > $1 ORDER BY name_key LIMIT {limit}"
                )))
                .bind(after)
                .fetch_all(self.db.pool())
                .await?,
                Some(case) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT * FROM ioc_lists WHERE name_key > $2 AND (all_cases = 1 OR id IN \
                     (SELECT list_id FROM ioc_list_cases WHERE case_id = $1)) \
                     ORDER BY name_key LIMIT {limit}"
                    )))
                    .bind(case)
                    .bind(after)
                    .fetch_all(self.db.pool())
                    .await?
                }
            };
        rows.iter().map(list_from).collect()
    }

    /// The chosen cases of a list, in order.
    pub async fn list_cases(&self, list_id: &str) -> Result<Vec<String>, DbError> {
        let rows =
            sqlx::query("SELECT case_id FROM ioc_list_cases WHERE list_id = $1 ORDER BY case_id")
                .bind(list_id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| r.try_get("case_id").map_err(DbError::from))
            .collect()
    }

    /// The cases a list applies to, read in `tx` (under [`IocRepo::lock_lists`]): the
    /// chosen ones, or every case the service knows; none when the list is gone.
    pub async fn cases_using(
        &self,
        tx: &mut Tx<'_>,
        list_id: &str,
    ) -> Result<Vec<String>, DbError> {
        let all_cases = match sqlx::query("SELECT all_cases FROM ioc_lists WHERE id = $1")
            .bind(list_id)
            .fetch_optional(&mut **tx)
            .await?
        {
            None => return Ok(Vec::new()),
            Some(row) => flag(&row, "all_cases")?,
        };
        let rows = if all_cases {
            sqlx::query(
                "SELECT case_id FROM ioc_case_versions UNION SELECT case_id FROM ioc_files \
                 ORDER BY case_id",
            )
            .fetch_all(&mut **tx)
            .await?
        } else {
            sqlx::query("SELECT case_id FROM ioc_list_cases WHERE list_id = $1 ORDER BY case_id")
                .bind(list_id)
                .fetch_all(&mut **tx)
                .await?
        };
        rows.iter()
            .map(|r| r.try_get("case_id").map_err(DbError::from))
            .collect()
    }

    /// The ids of every IOC of `owner` (enabled or not), read in `tx`.
    pub async fn owner_ioc_ids(
        &self,
        tx: &mut Tx<'_>,
        owner: &Owner,
    ) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM iocs WHERE case_id = $1 ORDER BY id")
            .bind(owner.key())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(DbError::from))
            .collect()
    }

    /// Deletes the matches of a list's IOCs in one case; returns how many.
    pub async fn delete_list_matches_in(
        &self,
        tx: &mut Tx<'_>,
        list_id: &str,
        case_id: &str,
    ) -> Result<u64, DbError> {
        let done = sqlx::query(
            "DELETE FROM ioc_matches WHERE case_id = $1 AND ioc_id IN \
             (SELECT id FROM iocs WHERE case_id = $2)",
        )
        .bind(case_id)
        .bind(Owner::List(list_id.to_string()).key())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes a list, its IOCs and their remaining matches; returns (IOCs, matches).
    pub async fn delete_list(&self, tx: &mut Tx<'_>, list_id: &str) -> Result<(u64, u64), DbError> {
        let owner = Owner::List(list_id.to_string()).key();
        let matches = sqlx::query(
            "DELETE FROM ioc_matches WHERE ioc_id IN (SELECT id FROM iocs WHERE case_id = $1)",
        )
        .bind(&owner)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let iocs = sqlx::query("DELETE FROM iocs WHERE case_id = $1")
            .bind(&owner)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM ioc_list_cases WHERE list_id = $1",
            "DELETE FROM ioc_lists WHERE id = $1",
        ] {
            sqlx::query(sql).bind(list_id).execute(&mut **tx).await?;
        }
        Ok((iocs, matches))
    }
}
