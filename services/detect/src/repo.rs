//! The detect service's tables: rules and the ruleset version with its change log, the
//! detect stage state per file, correlation inputs, per-case correlation state and the
//! detections themselves. SQL is the common subset of SQLite and PostgreSQL.

use casescope_db::{Database, DbError, Migration, Migrations, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

pub const MIGRATIONS: Migrations = Migrations {
    service: "detect",
    steps: &[Migration {
        version: 1,
        name: "rules, ruleset, detect stage, detections",
        sql: "
CREATE TABLE detect_rules (
    id TEXT PRIMARY KEY,
    name TEXT,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    level TEXT NOT NULL,
    tags TEXT NOT NULL,
    tactics TEXT NOT NULL,
    techniques TEXT NOT NULL,
    author TEXT NOT NULL,
    refs TEXT NOT NULL,
    falsepositives TEXT NOT NULL,
    ls_product TEXT NOT NULL,
    ls_category TEXT NOT NULL,
    ls_service TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    refusal_reason TEXT NOT NULL,
    is_correlation BIGINT NOT NULL,
    correlation_type TEXT NOT NULL,
    correlated TEXT NOT NULL,
    source_path TEXT NOT NULL,
    source_label TEXT NOT NULL,
    rule_date TEXT NOT NULL,
    rule_modified TEXT NOT NULL,
    yaml TEXT NOT NULL,
    imported_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX detect_rules_by_title ON detect_rules (title, id);
CREATE TABLE detect_ruleset (
    singleton BIGINT PRIMARY KEY,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO detect_ruleset (singleton, version, updated_at) VALUES (1, 0, 0);
CREATE TABLE detect_rule_changes (
    version BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (version, rule_id)
);
CREATE TABLE detect_files (
    file_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    generation BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    requested_version BIGINT NOT NULL DEFAULT 0,
    evaluated_version BIGINT NOT NULL DEFAULT 0,
    last_mode TEXT NOT NULL DEFAULT '',
    events_scanned BIGINT NOT NULL DEFAULT 0,
    detections BIGINT NOT NULL DEFAULT 0,
    completed_runs BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX detect_files_by_case ON detect_files (case_id, file_id);
CREATE INDEX detect_files_by_status ON detect_files (status, updated_at);
CREATE TABLE detect_cases (
    case_id TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    correlated_generation BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE TABLE detect_correlation_inputs (
    case_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_ts BIGINT NOT NULL,
    computer TEXT NOT NULL,
    channel TEXT NOT NULL,
    event_code BIGINT,
    record_id BIGINT,
    vals TEXT NOT NULL,
    PRIMARY KEY (case_id, file_id, rule_id, event_id)
);
CREATE TABLE detections (
    id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    rule_content_sha256 TEXT NOT NULL,
    rule_title TEXT NOT NULL,
    level BIGINT NOT NULL,
    event_ts BIGINT NOT NULL,
    computer TEXT NOT NULL,
    channel TEXT NOT NULL,
    event_code BIGINT,
    record_id BIGINT,
    event_ids TEXT NOT NULL,
    tactics TEXT NOT NULL,
    techniques TEXT NOT NULL,
    matched_fields TEXT NOT NULL,
    is_correlation BIGINT NOT NULL,
    correlated_event_count BIGINT NOT NULL,
    first_ts BIGINT NOT NULL,
    ruleset_version BIGINT NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, id)
);
CREATE INDEX detections_by_time ON detections (case_id, event_ts, id);
CREATE INDEX detections_by_file ON detections (case_id, file_id, rule_id);
CREATE INDEX detections_by_rule ON detections (case_id, rule_id);
",
    }],
};

/// Detect stage states of a file.
pub mod status {
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
}

/// Where a detection row belongs: a file's run, or the case's correlation pass.
pub mod scope {
    pub const FILE: &str = "file";
    pub const CASE: &str = "case";
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub file_id: String,
    pub case_id: String,
    pub generation: i64,
    pub status: String,
    pub attempts: i64,
    /// The ruleset version the next run must reach.
    pub requested_version: i64,
    /// The ruleset version the file's detections reflect (0: never evaluated).
    pub evaluated_version: i64,
    pub last_mode: String,
    pub events_scanned: i64,
    pub detections: i64,
    pub completed_runs: i64,
    pub error: Option<String>,
    pub updated_at: i64,
}

fn file_from(row: &AnyRow) -> Result<FileRow, DbError> {
    Ok(FileRow {
        file_id: row.try_get("file_id")?,
        case_id: row.try_get("case_id")?,
        generation: row.try_get("generation")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        requested_version: row.try_get("requested_version")?,
        evaluated_version: row.try_get("evaluated_version")?,
        last_mode: row.try_get("last_mode")?,
        events_scanned: row.try_get("events_scanned")?,
        detections: row.try_get("detections")?,
        completed_runs: row.try_get("completed_runs")?,
        error: row.try_get("error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionRow {
    pub id: String,
    pub case_id: String,
    pub file_id: String,
    pub scope: String,
    pub rule_id: String,
    pub rule_content_sha256: String,
    pub rule_title: String,
    pub level: i64,
    pub event_ts: i64,
    pub computer: String,
    pub channel: String,
    pub event_code: Option<i64>,
    pub record_id: Option<i64>,
    /// JSON array of event ids.
    pub event_ids: String,
    /// `,a,b,` so one tactic is found with LIKE '%,a,%'.
    pub tactics: String,
    pub techniques: String,
    /// JSON array of [field, value].
    pub matched_fields: String,
    pub is_correlation: bool,
    pub correlated_event_count: i64,
    pub first_ts: i64,
    pub ruleset_version: i64,
    pub detected_at: i64,
}

fn detection_from(row: &AnyRow) -> Result<DetectionRow, DbError> {
    Ok(DetectionRow {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        file_id: row.try_get("file_id")?,
        scope: row.try_get("scope")?,
        rule_id: row.try_get("rule_id")?,
        rule_content_sha256: row.try_get("rule_content_sha256")?,
        rule_title: row.try_get("rule_title")?,
        level: row.try_get("level")?,
        event_ts: row.try_get("event_ts")?,
        computer: row.try_get("computer")?,
        channel: row.try_get("channel")?,
        event_code: row.try_get("event_code")?,
        record_id: row.try_get("record_id")?,
        event_ids: row.try_get("event_ids")?,
        tactics: row.try_get("tactics")?,
        techniques: row.try_get("techniques")?,
        matched_fields: row.try_get("matched_fields")?,
        is_correlation: row.try_get::<i64, _>("is_correlation")? != 0,
        correlated_event_count: row.try_get("correlated_event_count")?,
        first_ts: row.try_get("first_ts")?,
        ruleset_version: row.try_get("ruleset_version")?,
        detected_at: row.try_get("detected_at")?,
    })
}

/// One match of a correlated rule, kept per file for the case's correlation pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRow {
    pub case_id: String,
    pub file_id: String,
    pub rule_id: String,
    pub event_id: String,
    pub event_ts: i64,
    pub computer: String,
    pub channel: String,
    pub event_code: Option<i64>,
    pub record_id: Option<i64>,
    /// JSON object: field → value text, for the fields correlations read.
    pub vals: String,
}

fn input_from(row: &AnyRow) -> Result<InputRow, DbError> {
    Ok(InputRow {
        case_id: row.try_get("case_id")?,
        file_id: row.try_get("file_id")?,
        rule_id: row.try_get("rule_id")?,
        event_id: row.try_get("event_id")?,
        event_ts: row.try_get("event_ts")?,
        computer: row.try_get("computer")?,
        channel: row.try_get("channel")?,
        event_code: row.try_get("event_code")?,
        record_id: row.try_get("record_id")?,
        vals: row.try_get("vals")?,
    })
}

/// A SQL `WHERE` fragment with its parameters (text or integer). Clauses are built only
/// from constant SQL and `$n` placeholders; every value is bound, so the dynamic SQL
/// these produce is safe (`AssertSqlSafe` below).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub clauses: Vec<String>,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl Filter {
    /// The next placeholder (`$n`) for a new parameter.
    pub fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    pub fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `col IN ($a, $b, …)` over text values; nothing when `values` is empty.
    pub fn any_text(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let marks: Vec<String> = values
            .iter()
            .map(|v| self.bind(Param::Text(v.clone())))
            .collect();
        self.clauses
            .push(format!("{column} IN ({})", marks.join(", ")));
    }

    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text.as_str()),
            Param::Int(n) => query.bind(*n),
        };
    }
    query
}

#[derive(Debug, Clone)]
pub struct DetectRepo {
    db: Database,
}

impl DetectRepo {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    // ---- rules and the ruleset --------------------------------------------------------

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

    // ---- the detect stage per file ---------------------------------------------------

    pub async fn file(&self, file_id: &str) -> Result<Option<FileRow>, DbError> {
        let row = sqlx::query("SELECT * FROM detect_files WHERE file_id = $1")
            .bind(file_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    /// Records that `file` needs evaluation at `version` for ingest `generation`:
    /// inserts it, or raises its request (a newer generation resets attempts).
    pub async fn request_file(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        generation: i64,
        version: i64,
        now: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detect_files (file_id, case_id, generation, status, requested_version, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5) \
             ON CONFLICT (file_id) DO UPDATE SET \
               attempts = CASE WHEN excluded.generation > detect_files.generation THEN 0 ELSE detect_files.attempts END, \
               evaluated_version = CASE WHEN excluded.generation > detect_files.generation THEN 0 \
                                   ELSE detect_files.evaluated_version END, \
               generation = CASE WHEN excluded.generation > detect_files.generation THEN excluded.generation \
                            ELSE detect_files.generation END, \
               requested_version = CASE WHEN excluded.requested_version > detect_files.requested_version \
                                   THEN excluded.requested_version ELSE detect_files.requested_version END, \
               status = 'pending', updated_at = excluded.updated_at",
        )
        .bind(file_id)
        .bind(case_id)
        .bind(generation)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Forces a full evaluation of `file_id` (a re-run on request) at `version`.
    pub async fn request_full_rerun(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        version: i64,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE detect_files SET evaluated_version = 0, attempts = 0, status = 'pending', \
             requested_version = CASE WHEN requested_version > $2 THEN requested_version ELSE $2 END, \
             updated_at = $3 WHERE file_id = $1",
        )
        .bind(file_id)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn start_run(&self, tx: &mut Tx<'_>, file_id: &str) -> Result<FileRow, DbError> {
        let row = sqlx::query(
            "UPDATE detect_files SET status = 'running', attempts = attempts + 1, error = NULL, updated_at = $2 \
             WHERE file_id = $1 RETURNING *",
        )
        .bind(file_id)
        .bind(casescope_db::now_micros())
        .fetch_one(&mut **tx)
        .await?;
        file_from(&row)
    }

    /// Ends a run. `done` keeps the file pending when a newer version was requested in
    /// the meantime (the reconciler runs it again).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        tx: &mut Tx<'_>,
        file_id: &str,
        evaluated_version: Option<i64>,
        mode: &str,
        events_scanned: i64,
        error: Option<&str>,
        max_attempts: i64,
    ) -> Result<(), DbError> {
        let now = casescope_db::now_micros();
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM detections WHERE case_id = (SELECT case_id FROM detect_files WHERE file_id = $1) \
             AND file_id = $1 AND scope = 'file'",
        )
        .bind(file_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        match evaluated_version {
            Some(version) => {
                sqlx::query(
                    "UPDATE detect_files SET evaluated_version = $2, last_mode = $3, events_scanned = $4, \
                     detections = $5, error = NULL, attempts = 0, updated_at = $6, completed_runs = completed_runs + 1, \
                     status = CASE WHEN requested_version > $2 THEN 'pending' ELSE 'done' END WHERE file_id = $1",
                )
                .bind(file_id)
                .bind(version)
                .bind(mode)
                .bind(events_scanned)
                .bind(count)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE detect_files SET error = $2, updated_at = $3, \
                     status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END WHERE file_id = $1",
                )
                .bind(file_id)
                .bind(error)
                .bind(now)
                .bind(max_attempts)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Files whose detections are behind `version` or still pending, oldest first.
    pub async fn files_needing_run(
        &self,
        version: i64,
        updated_before: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM detect_files WHERE status <> 'failed' AND \
             (status = 'pending' OR evaluated_version < $1 OR (status = 'running' AND updated_at < $2)) \
             ORDER BY updated_at LIMIT $3",
        )
        .bind(version)
        .bind(updated_before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    /// Marks every file behind `version` as requested at it.
    pub async fn request_all(
        &self,
        tx: &mut Tx<'_>,
        version: i64,
        now: i64,
    ) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE detect_files SET requested_version = $1, status = CASE WHEN status = 'running' THEN status \
             ELSE 'pending' END, attempts = 0, updated_at = $2 WHERE requested_version < $1",
        )
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Files of a case by id, after `after`.
    pub async fn case_files(
        &self,
        case_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<FileRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM detect_files WHERE case_id = $1 AND file_id > $2 ORDER BY file_id LIMIT $3",
        )
        .bind(case_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    // ---- detections -------------------------------------------------------------------

    /// Ids of the stored detections of one file (optionally only of `rules`).
    pub async fn file_detection_ids(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        rules: Option<&[String]>,
    ) -> Result<Vec<String>, DbError> {
        let mut filter = Filter::default();
        let c = filter.bind(Param::Text(case_id.into()));
        let f = filter.bind(Param::Text(file_id.into()));
        filter.push(format!(
            "case_id = {c} AND file_id = {f} AND scope = 'file'"
        ));
        if let Some(rules) = rules {
            filter.any_text("rule_id", rules);
        }
        let sql = format!("SELECT id FROM detections{}", filter.where_sql());
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(DbError::from))
            .collect()
    }

    /// Deletes one file's detections (all, or of `detection_rules`) and correlation
    /// inputs (all, or of `input_rules`).
    pub async fn delete_file_rows(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        file_id: &str,
        detection_rules: Option<&[String]>,
        input_rules: Option<&[String]>,
    ) -> Result<(), DbError> {
        for (table, extra, rules) in [
            ("detections", " AND scope = 'file'", detection_rules),
            ("detect_correlation_inputs", "", input_rules),
        ] {
            let all: Vec<String>;
            let chunks: Vec<Option<&[String]>> = match rules {
                None => vec![None],
                Some(rules) => {
                    all = rules.to_vec();
                    all.chunks(500).map(Some).collect()
                }
            };
            for chunk in chunks {
                let mut filter = Filter::default();
                let c = filter.bind(Param::Text(case_id.into()));
                let f = filter.bind(Param::Text(file_id.into()));
                filter.push(format!("case_id = {c} AND file_id = {f}{extra}"));
                if let Some(rules) = chunk {
                    filter.any_text("rule_id", rules);
                }
                let sql = format!("DELETE FROM {table}{}", filter.where_sql());
                bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn insert_detection(
        &self,
        tx: &mut Tx<'_>,
        row: &DetectionRow,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detections (id, case_id, file_id, scope, rule_id, rule_content_sha256, rule_title, level, \
             event_ts, computer, channel, event_code, record_id, event_ids, tactics, techniques, matched_fields, \
             is_correlation, correlated_event_count, first_ts, ruleset_version, detected_at) VALUES ($1, $2, $3, \
             $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
             ON CONFLICT (case_id, id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.case_id)
        .bind(&row.file_id)
        .bind(&row.scope)
        .bind(&row.rule_id)
        .bind(&row.rule_content_sha256)
        .bind(&row.rule_title)
        .bind(row.level)
        .bind(row.event_ts)
        .bind(&row.computer)
        .bind(&row.channel)
        .bind(row.event_code)
        .bind(row.record_id)
        .bind(&row.event_ids)
        .bind(&row.tactics)
        .bind(&row.techniques)
        .bind(&row.matched_fields)
        .bind(i64::from(row.is_correlation))
        .bind(row.correlated_event_count)
        .bind(row.first_ts)
        .bind(row.ruleset_version)
        .bind(row.detected_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn insert_input(&self, tx: &mut Tx<'_>, row: &InputRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detect_correlation_inputs (case_id, file_id, rule_id, event_id, event_ts, computer, \
             channel, event_code, record_id, vals) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&row.case_id)
        .bind(&row.file_id)
        .bind(&row.rule_id)
        .bind(&row.event_id)
        .bind(row.event_ts)
        .bind(&row.computer)
        .bind(&row.channel)
        .bind(row.event_code)
        .bind(row.record_id)
        .bind(&row.vals)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Correlation inputs of a case, at most `limit` (the caller refuses more).
    pub async fn case_inputs(&self, case_id: &str, limit: i64) -> Result<Vec<InputRow>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM detect_correlation_inputs WHERE case_id = $1 ORDER BY event_ts, file_id, event_id LIMIT $2",
        )
        .bind(case_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(input_from).collect()
    }

    /// The case-scope (correlation) detections of a case.
    pub async fn case_detection_ids(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
    ) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM detections WHERE case_id = $1 AND scope = 'case'")
            .bind(case_id)
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(DbError::from))
            .collect()
    }

    pub async fn delete_detection(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        id: &str,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM detections WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub async fn detection(
        &self,
        case_id: &str,
        id: &str,
    ) -> Result<Option<DetectionRow>, DbError> {
        let row = sqlx::query("SELECT * FROM detections WHERE case_id = $1 AND id = $2")
            .bind(case_id)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(detection_from).transpose()
    }

    /// A page of detections matching `filter` (which must constrain `case_id`), by
    /// (event time, id) in `descending` order after `after`.
    pub async fn list_detections(
        &self,
        filter: &Filter,
        descending: bool,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<(Vec<DetectionRow>, i64), DbError> {
        let total_sql = format!("SELECT COUNT(*) AS n FROM detections{}", filter.where_sql());
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(total_sql)), &filter.params)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let mut page = filter.clone();
        let op = if descending { "<" } else { ">" };
        if let Some((ts, id)) = after {
            let t = page.bind(Param::Int(ts));
            let t2 = page.bind(Param::Int(ts));
            let i = page.bind(Param::Text(id));
            page.push(format!(
                "(event_ts {op} {t} OR (event_ts = {t2} AND id {op} {i}))"
            ));
        }
        let l = page.bind(Param::Int(limit));
        let order = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT * FROM detections{} ORDER BY event_ts {order}, id {order} LIMIT {l}",
            page.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &page.params)
            .fetch_all(self.db.pool())
            .await?;
        Ok((
            rows.iter().map(detection_from).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// (rule id, title, level, count) of detections matching `filter`.
    pub async fn count_by_rule(
        &self,
        filter: &Filter,
    ) -> Result<Vec<(String, String, i64, i64)>, DbError> {
        let sql = format!(
            "SELECT rule_id, MAX(rule_title) AS title, MAX(level) AS level, COUNT(*) AS n FROM detections{} \
             GROUP BY rule_id ORDER BY n DESC, rule_id",
            filter.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("rule_id")?,
                    r.try_get("title")?,
                    r.try_get("level")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// (tactics, techniques, count) groups of detections matching `filter`.
    pub async fn count_by_attack(
        &self,
        filter: &Filter,
    ) -> Result<Vec<(String, String, i64)>, DbError> {
        let sql = format!(
            "SELECT tactics, techniques, COUNT(*) AS n FROM detections{} GROUP BY tactics, techniques",
            filter.where_sql()
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("tactics")?,
                    r.try_get("techniques")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    // ---- per-case correlation state ---------------------------------------------------

    /// Notes that the case's correlation inputs changed.
    pub async fn touch_case(&self, tx: &mut Tx<'_>, case_id: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO detect_cases (case_id, generation, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (case_id) DO UPDATE SET generation = detect_cases.generation + 1, updated_at = $2",
        )
        .bind(case_id)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every case whose correlation is behind its inputs.
    pub async fn cases_to_correlate(&self, limit: i64) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT case_id, generation FROM detect_cases WHERE correlated_generation < generation \
             ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("case_id")?, r.try_get("generation")?)))
            .collect()
    }

    pub async fn case_generation(&self, case_id: &str) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT generation FROM detect_cases WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| r.try_get("generation").map_err(DbError::from))
            .transpose()
    }

    pub async fn mark_correlated(
        &self,
        tx: &mut Tx<'_>,
        case_id: &str,
        generation: i64,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE detect_cases SET correlated_generation = CASE WHEN correlated_generation > $2 \
             THEN correlated_generation ELSE $2 END, error = $3, updated_at = $4 WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(generation)
        .bind(error)
        .bind(casescope_db::now_micros())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks every case with correlation state for a new pass (a ruleset change that
    /// touched correlations).
    pub async fn touch_all_cases(&self, tx: &mut Tx<'_>) -> Result<(), DbError> {
        sqlx::query("UPDATE detect_cases SET generation = generation + 1, updated_at = $1")
            .bind(casescope_db::now_micros())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
