//! Detections and the correlation inputs of each file.

use super::{DetectRepo, Filter, Param, bind_all};
use casescope_db::{DbError, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

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

impl DetectRepo {
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
                if table == "detections" {
                    // Their event rows first, found through the detections.
                    let sql = format!(
                        "DELETE FROM detection_events WHERE case_id = $1 AND detection_id IN \
                         (SELECT id FROM detections{})",
                        filter.where_sql()
                    );
                    bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &filter.params)
                        .execute(&mut **tx)
                        .await?;
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
        self.insert_detections(tx, std::slice::from_ref(row)).await
    }

    /// Inserts detections (an id already stored is left as it is) and their event rows,
    /// many rows per statement: a file's run can hold hundreds of thousands, and one
    /// statement per row kept the database busy for minutes.
    pub async fn insert_detections(
        &self,
        tx: &mut Tx<'_>,
        rows: &[DetectionRow],
    ) -> Result<(), DbError> {
        const COLUMNS: usize = 22;
        for chunk in rows.chunks(DETECTIONS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|n| {
                    let marks: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", n * COLUMNS + c))
                        .collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO detections (id, case_id, file_id, scope, rule_id, rule_content_sha256, rule_title, \
                 level, event_ts, computer, channel, event_code, record_id, event_ids, tactics, techniques, \
                 matched_fields, is_correlation, correlated_event_count, first_ts, ruleset_version, detected_at) \
                 VALUES {} ON CONFLICT (case_id, id) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
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
                    .bind(row.detected_at);
            }
            query.execute(&mut **tx).await?;
            let mut links = Vec::with_capacity(chunk.len());
            for row in chunk {
                let events: Vec<String> = serde_json::from_str(&row.event_ids).unwrap_or_default();
                links.extend(
                    events
                        .into_iter()
                        .map(|event| (row.case_id.as_str(), event, row.id.as_str())),
                );
            }
            insert_event_links(tx, &links).await?;
        }
        Ok(())
    }

    /// Inserts correlation inputs (one already stored is left as it is), many rows per
    /// statement: a rule a correlation reads can match most of a file's events.
    pub async fn insert_inputs(&self, tx: &mut Tx<'_>, rows: &[InputRow]) -> Result<(), DbError> {
        const COLUMNS: usize = 10;
        for chunk in rows.chunks(INPUTS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|n| {
                    let marks: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", n * COLUMNS + c))
                        .collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO detect_correlation_inputs (case_id, file_id, rule_id, event_id, event_ts, \
                 computer, channel, event_code, record_id, vals) VALUES {} ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                query = query
                    .bind(&row.case_id)
                    .bind(&row.file_id)
                    .bind(&row.rule_id)
                    .bind(&row.event_id)
                    .bind(row.event_ts)
                    .bind(&row.computer)
                    .bind(&row.channel)
                    .bind(row.event_code)
                    .bind(row.record_id)
                    .bind(&row.vals);
            }
            query.execute(&mut **tx).await?;
        }
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
        for statement in [
            "DELETE FROM detection_events WHERE case_id = $1 AND detection_id = $2",
            "DELETE FROM detections WHERE case_id = $1 AND id = $2",
        ] {
            sqlx::query(statement)
                .bind(case_id)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
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
}

/// Event rows inserted per statement (three parameters each).
const EVENT_ROWS_PER_STATEMENT: usize = 300;
/// Detections one INSERT writes (22 values each: 880 bound values, within every
/// backend's limit).
const DETECTIONS_PER_STATEMENT: usize = 40;
/// Correlation inputs one INSERT writes (10 values each).
const INPUTS_PER_STATEMENT: usize = 90;

/// Records that detection `detection_id` fired on `events` (the index behind the
/// event-id filter of `ListDetections`).
async fn insert_events(
    tx: &mut Tx<'_>,
    case_id: &str,
    detection_id: &str,
    events: &[String],
) -> Result<(), DbError> {
    let links: Vec<(&str, String, &str)> = events
        .iter()
        .map(|event| (case_id, event.clone(), detection_id))
        .collect();
    insert_event_links(tx, &links).await
}

/// Event rows (case, event, detection), many per statement.
async fn insert_event_links(
    tx: &mut Tx<'_>,
    links: &[(&str, String, &str)],
) -> Result<(), DbError> {
    for chunk in links.chunks(EVENT_ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3))
            .collect();
        let sql = format!(
            "INSERT INTO detection_events (case_id, event_id, detection_id) VALUES {} \
             ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (case_id, event, detection_id) in chunk {
            query = query
                .bind(*case_id)
                .bind(event.as_str())
                .bind(*detection_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Detections whose event rows one backfill transaction writes.
const BACKFILL_BATCH: i64 = 1_000;

impl DetectRepo {
    /// Fills `detection_events` for detections stored before it existed (migration 2
    /// queues the task), a batch per transaction from a saved position, so an
    /// interrupted backfill resumes; returns how many detections it visited.
    pub async fn backfill_detection_events(&self) -> Result<u64, DbError> {
        let mut visited = 0u64;
        loop {
            let mut tx = self.db.begin().await?;
            let Some(position) = sqlx::query(
                "SELECT cursor_case, cursor_id FROM detect_maintenance WHERE task = 'detection_events'",
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(visited);
            };
            let (case, id): (String, String) = (
                position.try_get("cursor_case")?,
                position.try_get("cursor_id")?,
            );
            let rows = sqlx::query(
                "SELECT case_id, id, event_ids FROM detections \
                 WHERE case_id > $1 OR (case_id = $2 AND id > $3) ORDER BY case_id, id LIMIT $4",
            )
            .bind(&case)
            .bind(&case)
            .bind(&id)
            .bind(BACKFILL_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let mut last = (case, id);
            for row in &rows {
                let (case_id, id, events): (String, String, String) = (
                    row.try_get("case_id")?,
                    row.try_get("id")?,
                    row.try_get("event_ids")?,
                );
                let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
                insert_events(&mut tx, &case_id, &id, &events).await?;
                last = (case_id, id);
            }
            visited += rows.len() as u64;
            if (rows.len() as i64) < BACKFILL_BATCH {
                sqlx::query("DELETE FROM detect_maintenance WHERE task = 'detection_events'")
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "UPDATE detect_maintenance SET cursor_case = $1, cursor_id = $2 \
                     WHERE task = 'detection_events'",
                )
                .bind(&last.0)
                .bind(&last.1)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }
}

#[cfg(test)]
mod tests;
