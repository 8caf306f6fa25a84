//! Rules, the ruleset version and its change log.

use super::{DetectRepo, Filter, Param, bind_all};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleRow {
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub description: String,
    pub status: String,
    pub level: String,
    /// JSON arrays.
    pub tags: String,
    pub tactics: String,
    pub techniques: String,
    pub author: String,
    pub refs: String,
    pub falsepositives: String,
    pub ls_product: String,
    pub ls_category: String,
    pub ls_service: String,
    pub content_sha256: String,
    pub enabled: bool,
    pub refusal_reason: String,
    pub is_correlation: bool,
    pub correlation_type: String,
    /// JSON array of referenced rule ids/names (correlations).
    pub correlated: String,
    pub source_path: String,
    pub source_label: String,
    pub rule_date: String,
    pub rule_modified: String,
    pub yaml: String,
    pub imported_at: i64,
    pub updated_at: i64,
}

fn rule_from(row: &AnyRow) -> Result<RuleRow, DbError> {
    Ok(RuleRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        level: row.try_get("level")?,
        tags: row.try_get("tags")?,
        tactics: row.try_get("tactics")?,
        techniques: row.try_get("techniques")?,
        author: row.try_get("author")?,
        refs: row.try_get("refs")?,
        falsepositives: row.try_get("falsepositives")?,
        ls_product: row.try_get("ls_product")?,
        ls_category: row.try_get("ls_category")?,
        ls_service: row.try_get("ls_service")?,
        content_sha256: row.try_get("content_sha256")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        refusal_reason: row.try_get("refusal_reason")?,
        is_correlation: row.try_get::<i64, _>("is_correlation")? != 0,
        correlation_type: row.try_get("correlation_type")?,
        correlated: row.try_get("correlated")?,
        source_path: row.try_get("source_path")?,
        source_label: row.try_get("source_label")?,
        rule_date: row.try_get("rule_date")?,
        rule_modified: row.try_get("rule_modified")?,
        yaml: row.try_get("yaml")?,
        imported_at: row.try_get("imported_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl DetectRepo {
    pub async fn rule(&self, id: &str) -> Result<Option<RuleRow>, DbError> {
        let row = sqlx::query("SELECT * FROM detect_rules WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(rule_from).transpose()
    }

    pub async fn rule_count(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM detect_rules")
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Every rule, without YAML (metadata for detections and counts).
    pub async fn all_rules(&self, with_yaml: bool) -> Result<Vec<RuleRow>, DbError> {
        let sql = if with_yaml {
            "SELECT * FROM detect_rules ORDER BY id"
        } else {
            "SELECT id, name, title, description, status, level, tags, tactics, techniques, author, refs, \
             falsepositives, ls_product, ls_category, ls_service, content_sha256, enabled, refusal_reason, \
             is_correlation, correlation_type, correlated, source_path, source_label, rule_date, rule_modified, \
             '' AS yaml, imported_at, updated_at FROM detect_rules ORDER BY id"
        };
        let rows = sqlx::query(sql).fetch_all(self.db.pool()).await?;
        rows.iter().map(rule_from).collect()
    }

    pub async fn upsert_rule(&self, tx: &mut Tx<'_>, rule: &RuleRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detect_rules (id, name, title, description, status, level, tags, tactics, techniques, \
             author, refs, falsepositives, ls_product, ls_category, ls_service, content_sha256, enabled, \
             refusal_reason, is_correlation, correlation_type, correlated, source_path, source_label, rule_date, \
             rule_modified, yaml, imported_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, title = excluded.title, \
             description = excluded.description, status = excluded.status, level = excluded.level, \
             tags = excluded.tags, tactics = excluded.tactics, techniques = excluded.techniques, \
             author = excluded.author, refs = excluded.refs, falsepositives = excluded.falsepositives, \
             ls_product = excluded.ls_product, ls_category = excluded.ls_category, \
             ls_service = excluded.ls_service, content_sha256 = excluded.content_sha256, \
             enabled = excluded.enabled, refusal_reason = excluded.refusal_reason, \
             is_correlation = excluded.is_correlation, correlation_type = excluded.correlation_type, \
             correlated = excluded.correlated, source_path = excluded.source_path, \
             source_label = excluded.source_label, rule_date = excluded.rule_date, \
             rule_modified = excluded.rule_modified, yaml = excluded.yaml, updated_at = excluded.updated_at",
        )
        .bind(&rule.id)
        .bind(&rule.name)
        .bind(&rule.title)
        .bind(&rule.description)
        .bind(&rule.status)
        .bind(&rule.level)
        .bind(&rule.tags)
        .bind(&rule.tactics)
        .bind(&rule.techniques)
        .bind(&rule.author)
        .bind(&rule.refs)
        .bind(&rule.falsepositives)
        .bind(&rule.ls_product)
        .bind(&rule.ls_category)
        .bind(&rule.ls_service)
        .bind(&rule.content_sha256)
        .bind(i64::from(rule.enabled))
        .bind(&rule.refusal_reason)
        .bind(i64::from(rule.is_correlation))
        .bind(&rule.correlation_type)
        .bind(&rule.correlated)
        .bind(&rule.source_path)
        .bind(&rule.source_label)
        .bind(&rule.rule_date)
        .bind(&rule.rule_modified)
        .bind(&rule.yaml)
        .bind(rule.imported_at)
        .bind(rule.updated_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn set_enabled(
        &self,
        tx: &mut Tx<'_>,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE detect_rules SET enabled = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(i64::from(enabled))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Rules matching `filter`, a page ordered by (title, id) after `after`.
    pub async fn list_rules(
        &self,
        filter: &Filter,
        after: Option<(String, String)>,
        limit: i64,
    ) -> Result<(Vec<RuleRow>, i64), DbError> {
        let total_sql = format!(
            "SELECT COUNT(*) AS n FROM detect_rules{}",
            filter.where_sql()
        );
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(total_sql)), &filter.params)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let mut page = filter.clone();
        if let Some((title, id)) = after {
            let t = page.bind(Param::Text(title.clone()));
            let t2 = page.bind(Param::Text(title));
            let i = page.bind(Param::Text(id));
            page.push(format!("(title > {t} OR (title = {t2} AND id > {i}))"));
        }
        let l = page.bind(Param::Int(limit));
        let sql = format!(
            "SELECT id, name, title, description, status, level, tags, tactics, techniques, author, refs, \
             falsepositives, ls_product, ls_category, ls_service, content_sha256, enabled, refusal_reason, \
             is_correlation, correlation_type, correlated, source_path, source_label, rule_date, rule_modified, \
             '' AS yaml, imported_at, updated_at FROM detect_rules{} ORDER BY title, id LIMIT {l}",
            page.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &page.params)
            .fetch_all(self.db.pool())
            .await?;
        Ok((rows.iter().map(rule_from).collect::<Result<_, _>>()?, total))
    }

    pub async fn ruleset_version(&self) -> Result<(i64, i64), DbError> {
        let row = sqlx::query("SELECT version, updated_at FROM detect_ruleset WHERE singleton = 1")
            .fetch_one(self.db.pool())
            .await?;
        Ok((row.try_get("version")?, row.try_get("updated_at")?))
    }

    /// Bumps the ruleset version (row-locked on PostgreSQL by the UPDATE) and logs the
    /// changed rules under the new version; prunes log entries older than `keep`
    /// versions. Returns the new version.
    pub async fn bump_version(
        &self,
        tx: &mut Tx<'_>,
        changed: &[String],
        keep: i64,
        now: i64,
    ) -> Result<i64, DbError> {
        let row = sqlx::query(
            "UPDATE detect_ruleset SET version = version + 1, updated_at = $1 WHERE singleton = 1 RETURNING version",
        )
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        let version: i64 = row.try_get("version")?;
        for id in changed {
            sqlx::query(
                "INSERT INTO detect_rule_changes (version, rule_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(version)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query("DELETE FROM detect_rule_changes WHERE version <= $1")
            .bind(version - keep)
            .execute(&mut **tx)
            .await?;
        Ok(version)
    }

    /// Rules changed after `since` up to `until`; `None` when the log no longer reaches
    /// back to `since` (the caller then evaluates every rule).
    pub async fn changes_between(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Option<Vec<String>>, DbError> {
        if since == 0 {
            return Ok(None);
        }
        let oldest: Option<i64> = sqlx::query("SELECT MIN(version) AS v FROM detect_rule_changes")
            .fetch_one(self.db.pool())
            .await?
            .try_get("v")?;
        // Every version after `since` must still be logged (a version with no change
        // rows is impossible: bumps always log at least one rule).
        match oldest {
            Some(oldest) if oldest <= since + 1 => {}
            _ => return Ok(None),
        }
        let rows = sqlx::query(
            "SELECT DISTINCT rule_id FROM detect_rule_changes WHERE version > $1 AND version <= $2 ORDER BY rule_id",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.db.pool())
        .await?;
        Ok(Some(
            rows.iter()
                .map(|r| r.try_get::<String, _>("rule_id"))
                .collect::<Result<_, _>>()?,
        ))
    }
}
