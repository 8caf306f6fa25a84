//! The annotation tables and every SQL statement on them (SQLite and PostgreSQL alike).
//! Rows are keyed by (case, event id); each also keeps the event's tie-breaker (the
//! first 64 bits of its id, as a signed integer) so that the set of events an
//! annotation clause names is one indexed read. Every change bumps the case's
//! `annotations_version`, which keys the cache of those sets.

use casescope_db::{Database, DbError, Tx};
use casescope_query::Annotation;
use sqlx::Row;
use std::collections::HashMap;

pub const MIGRATION: &str = "
CREATE TABLE case_tags (
    case_id TEXT NOT NULL,
    name TEXT NOT NULL,
    colour TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    event_count BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, name)
);
CREATE TABLE event_tags (
    case_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tiebreak BIGINT NOT NULL,
    tagged_by TEXT NOT NULL,
    tagged_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, tag, event_id)
);
CREATE INDEX event_tags_members ON event_tags (case_id, tag, tiebreak);
CREATE INDEX event_tags_by_event ON event_tags (case_id, event_id);
CREATE TABLE event_stars (
    case_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tiebreak BIGINT NOT NULL,
    starred_by TEXT NOT NULL,
    starred_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, event_id)
);
CREATE TABLE event_comments (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tiebreak BIGINT NOT NULL,
    parent_id TEXT,
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    revision BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX event_comments_by_event ON event_comments (case_id, event_id, created_at, id);
CREATE INDEX event_comments_by_case ON event_comments (case_id, created_at, id);
CREATE TABLE comment_revisions (
    comment_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL,
    editor_id TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (comment_id, revision)
);
ALTER TABLE cases ADD COLUMN annotations_version BIGINT NOT NULL DEFAULT 0;
";

/// Rows per multi-row statement (6 parameters each: well under SQLite's 32,766).
const CHUNK: usize = 500;

/// An event as annotations key it: its id and tie-breaker (as stored: signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    pub id: String,
    pub tiebreak: i64,
}

impl EventKey {
    pub fn new(id: String) -> Self {
        let tiebreak = casescope_query::tiebreak_of(&id) as i64;
        Self { id, tiebreak }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub name: String,
    pub colour: String,
    pub description: String,
    pub event_count: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub id: String,
    pub case_id: String,
    pub event_id: String,
    pub parent_id: Option<String>,
    pub author_id: String,
    pub author_name: String,
    pub body: String,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub revision: i64,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRow {
    pub revision: i64,
    pub body: String,
    pub editor_id: String,
    pub written_at: i64,
}

/// What one event carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventAnnotations {
    pub tags: Vec<String>,
    pub starred: bool,
    pub comment_count: u32,
}

fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks a change of the case's annotations (keys the set cache).
pub async fn bump_version(tx: &mut Tx<'_>, case_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE cases SET annotations_version = annotations_version + 1 WHERE id = $1")
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The case's annotation version, `None` when the case does not exist.
pub async fn version(db: &Database, case_id: &str) -> Result<Option<i64>, DbError> {
    let row = sqlx::query("SELECT annotations_version FROM cases WHERE id = $1")
        .bind(case_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|row| row.try_get::<i64, _>(0).map_err(DbError::from))
        .transpose()
}

/// Of `events`, those that already carry `limit` tags or more (other than `tag`).
pub async fn at_tag_limit(
    tx: &mut Tx<'_>,
    case_id: &str,
    tag: &str,
    events: &[EventKey],
    limit: i64,
) -> Result<Vec<String>, DbError> {
    let mut full = Vec::new();
    for chunk in events.chunks(CHUNK) {
        let sql = format!(
            "SELECT event_id FROM event_tags WHERE case_id = $1 AND tag <> $2 AND event_id IN ({}) \
             GROUP BY event_id HAVING COUNT(*) >= $3",
            placeholders(4, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(case_id)
            .bind(tag)
            .bind(limit);
        for event in chunk {
            query = query.bind(&event.id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            full.push(row.try_get::<String, _>(0)?);
        }
    }
    Ok(full)
}

/// Tags `events` (those already tagged are left alone); returns how many were not.
pub async fn tag(
    tx: &mut Tx<'_>,
    case_id: &str,
    tag: &str,
    events: &[EventKey],
    actor: &str,
    now: i64,
) -> Result<u64, DbError> {
    let mut changed = 0;
    for chunk in events.chunks(CHUNK) {
        let rows = (0..chunk.len())
            .map(|n| {
                let base = 4 + n * 2;
                format!("($1, $2, ${base}, ${}, $3, {now})", base + 1)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO event_tags (case_id, tag, event_id, tiebreak, tagged_by, tagged_at) \
             VALUES {rows} ON CONFLICT (case_id, tag, event_id) DO NOTHING"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(case_id)
            .bind(tag)
            .bind(actor);
        for event in chunk {
            query = query.bind(&event.id).bind(event.tiebreak);
        }
        changed += query.execute(&mut **tx).await?.rows_affected();
    }
    adjust_tag_count(tx, case_id, tag, changed as i64, now).await?;
    Ok(changed)
}

/// Removes `tag` from `events`; returns how many carried it.
pub async fn untag(
    tx: &mut Tx<'_>,
    case_id: &str,
    tag: &str,
    events: &[EventKey],
    now: i64,
) -> Result<u64, DbError> {
    let mut changed = 0;
    for chunk in events.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM event_tags WHERE case_id = $1 AND tag = $2 AND event_id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(case_id)
            .bind(tag);
        for event in chunk {
            query = query.bind(&event.id);
        }
        changed += query.execute(&mut **tx).await?.rows_affected();
    }
    if changed > 0 {
        adjust_tag_count(tx, case_id, tag, -(changed as i64), now).await?;
    }
    Ok(changed)
}

async fn adjust_tag_count(
    tx: &mut Tx<'_>,
    case_id: &str,
    tag: &str,
    delta: i64,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO case_tags (case_id, name, event_count, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (case_id, name) DO UPDATE SET event_count = case_tags.event_count + $3",
    )
    .bind(case_id)
    .bind(tag)
    .bind(delta)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn tag_from_row(row: &sqlx::any::AnyRow) -> Result<TagRow, DbError> {
    Ok(TagRow {
        name: row.try_get("name")?,
        colour: row.try_get("colour")?,
        description: row.try_get("description")?,
        event_count: row.try_get("event_count")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Creates or updates a tag's colour and description.
pub async fn upsert_tag(
    tx: &mut Tx<'_>,
    case_id: &str,
    name: &str,
    colour: &str,
    description: &str,
    now: i64,
) -> Result<TagRow, DbError> {
    sqlx::query(
        "INSERT INTO case_tags (case_id, name, colour, description, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (case_id, name) DO UPDATE SET colour = $3, description = $4, updated_at = $5",
    )
    .bind(case_id)
    .bind(name)
    .bind(colour)
    .bind(description)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let row = sqlx::query("SELECT * FROM case_tags WHERE case_id = $1 AND name = $2")
        .bind(case_id)
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    tag_from_row(&row)
}

/// The case's tags by name, `limit` after `after`.
pub async fn list_tags(
    db: &Database,
    case_id: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<TagRow>, DbError> {
    let rows = sqlx::query(
        "SELECT * FROM case_tags WHERE case_id = $1 AND name > $2 ORDER BY name LIMIT $3",
    )
    .bind(case_id)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(tag_from_row).collect()
}

/// Stars (or unstars) `events`; returns how many changed.
pub async fn star(
    tx: &mut Tx<'_>,
    case_id: &str,
    events: &[EventKey],
    starred: bool,
    actor: &str,
    now: i64,
) -> Result<u64, DbError> {
    let mut changed = 0;
    for chunk in events.chunks(CHUNK) {
        let mut query = if starred {
            let rows = (0..chunk.len())
                .map(|n| {
                    let base = 3 + n * 2;
                    format!("($1, ${base}, ${}, $2, {now})", base + 1)
                })
                .collect::<Vec<_>>()
                .join(", ");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO event_stars (case_id, event_id, tiebreak, starred_by, starred_at) \
                 VALUES {rows} ON CONFLICT (case_id, event_id) DO NOTHING"
            )))
            .bind(case_id)
            .bind(actor)
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM event_stars WHERE case_id = $1 AND event_id IN ({})",
                placeholders(2, chunk.len())
            )))
            .bind(case_id)
        };
        for event in chunk {
            query = query.bind(&event.id);
            if starred {
                query = query.bind(event.tiebreak);
            }
        }
        changed += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(changed)
}

const COMMENT_COLUMNS: &str = "id, case_id, event_id, parent_id, author_id, author_name, body, \
    created_at, edited_at, revision, deleted";

fn comment_from_row(row: &sqlx::any::AnyRow) -> Result<CommentRow, DbError> {
    Ok(CommentRow {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        event_id: row.try_get("event_id")?,
        parent_id: row.try_get("parent_id")?,
        author_id: row.try_get("author_id")?,
        author_name: row.try_get("author_name")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        revision: row.try_get("revision")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
    })
}

pub async fn insert_comment(tx: &mut Tx<'_>, comment: &CommentRow) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO event_comments (id, case_id, event_id, tiebreak, parent_id, author_id, \
         author_name, body, created_at, edited_at, revision, deleted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&comment.id)
    .bind(&comment.case_id)
    .bind(&comment.event_id)
    .bind(casescope_query::tiebreak_of(&comment.event_id) as i64)
    .bind(&comment.parent_id)
    .bind(&comment.author_id)
    .bind(&comment.author_name)
    .bind(&comment.body)
    .bind(comment.created_at)
    .bind(comment.edited_at)
    .bind(comment.revision)
    .bind(i64::from(comment.deleted))
    .execute(&mut **tx)
    .await?;
    insert_revision(
        tx,
        &comment.id,
        &RevisionRow {
            revision: comment.revision,
            body: comment.body.clone(),
            editor_id: comment.author_id.clone(),
            written_at: comment.created_at,
        },
    )
    .await
}

async fn insert_revision(
    tx: &mut Tx<'_>,
    comment_id: &str,
    revision: &RevisionRow,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO comment_revisions (comment_id, revision, body, editor_id, written_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(comment_id)
    .bind(revision.revision)
    .bind(&revision.body)
    .bind(&revision.editor_id)
    .bind(revision.written_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get_comment(
    tx: &mut Tx<'_>,
    case_id: &str,
    id: &str,
) -> Result<Option<CommentRow>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMENT_COLUMNS} FROM event_comments WHERE case_id = $1 AND id = $2"
    )))
    .bind(case_id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(comment_from_row).transpose()
}

/// Writes a new body (or the tombstone) if the comment is still at `comment.revision - 1`;
/// false when it changed meanwhile.
pub async fn rewrite_comment(
    tx: &mut Tx<'_>,
    comment: &CommentRow,
    editor_id: &str,
) -> Result<bool, DbError> {
    let edited_at = comment.edited_at.unwrap_or(comment.created_at);
    let result = sqlx::query(
        "UPDATE event_comments SET body = $3, edited_at = $4, revision = $5, deleted = $6 \
         WHERE case_id = $1 AND id = $2 AND revision = $7",
    )
    .bind(&comment.case_id)
    .bind(&comment.id)
    .bind(&comment.body)
    .bind(edited_at)
    .bind(comment.revision)
    .bind(i64::from(comment.deleted))
    .bind(comment.revision - 1)
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() != 1 {
        return Ok(false);
    }
    insert_revision(
        tx,
        &comment.id,
        &RevisionRow {
            revision: comment.revision,
            body: comment.body.clone(),
            editor_id: editor_id.to_string(),
            written_at: edited_at,
        },
    )
    .await?;
    Ok(true)
}

/// Comments oldest first (on one event when `event_id` is not empty), `limit` after
/// (`after_at`, `after_id`).
/// Comments of a case (or of one event), oldest first — or newest first — after the
/// position `after` in that order.
pub async fn list_comments(
    db: &Database,
    case_id: &str,
    event_id: &str,
    after: Option<(i64, String)>,
    limit: u32,
    newest_first: bool,
) -> Result<Vec<CommentRow>, DbError> {
    let (at, id) = match after {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    let (seek, order) = if newest_first {
        (
            "($3 IS NULL OR created_at < $3 OR (created_at = $3 AND id < $4))",
            "created_at DESC, id DESC",
        )
    } else {
        (
            "($3 IS NULL OR created_at > $3 OR (created_at = $3 AND id > $4))",
            "created_at, id",
        )
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMENT_COLUMNS} FROM event_comments WHERE case_id = $1 \
           AND ($2 = '' OR event_id = $2) AND {seek} \
         ORDER BY {order} LIMIT $5"
    )))
    .bind(case_id)
    .bind(event_id)
    .bind(at)
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(comment_from_row).collect()
}

pub async fn list_revisions(db: &Database, comment_id: &str) -> Result<Vec<RevisionRow>, DbError> {
    let rows = sqlx::query(
        "SELECT revision, body, editor_id, written_at FROM comment_revisions \
         WHERE comment_id = $1 ORDER BY revision",
    )
    .bind(comment_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RevisionRow {
                revision: row.try_get("revision")?,
                body: row.try_get("body")?,
                editor_id: row.try_get("editor_id")?,
                written_at: row.try_get("written_at")?,
            })
        })
        .collect()
}

/// The annotations of `event_ids` (at most a page of them), for those that have any.
pub async fn of_events(
    db: &Database,
    case_id: &str,
    event_ids: &[String],
) -> Result<HashMap<String, EventAnnotations>, DbError> {
    let mut out: HashMap<String, EventAnnotations> = HashMap::new();
    for chunk in event_ids.chunks(CHUNK) {
        let list = placeholders(2, chunk.len());
        let bind_all = |sql: String| {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(case_id.to_string());
            for id in chunk {
                query = query.bind(id.clone());
            }
            query
        };
        let tags = bind_all(format!(
            "SELECT event_id, tag FROM event_tags WHERE case_id = $1 AND event_id IN ({list}) \
             ORDER BY event_id, tag"
        ))
        .fetch_all(db.pool())
        .await?;
        for row in tags {
            let event: String = row.try_get(0)?;
            out.entry(event).or_default().tags.push(row.try_get(1)?);
        }
        let stars = bind_all(format!(
            "SELECT event_id FROM event_stars WHERE case_id = $1 AND event_id IN ({list})"
        ))
        .fetch_all(db.pool())
        .await?;
        for row in stars {
            out.entry(row.try_get(0)?).or_default().starred = true;
        }
        let comments = bind_all(format!(
            "SELECT event_id, COUNT(*) FROM event_comments WHERE case_id = $1 AND deleted = 0 \
             AND event_id IN ({list}) GROUP BY event_id"
        ))
        .fetch_all(db.pool())
        .await?;
        for row in comments {
            let count: i64 = row.try_get(1)?;
            out.entry(row.try_get(0)?).or_default().comment_count =
                u32::try_from(count).unwrap_or(u32::MAX);
        }
    }
    Ok(out)
}

/// The tie-breakers of the events `annotation` names, at most `limit` + 1 of them (so
/// a caller can tell it went over).
pub async fn members(
    db: &Database,
    case_id: &str,
    annotation: &Annotation,
    limit: usize,
) -> Result<Vec<u64>, DbError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let rows = match annotation {
        Annotation::Tag(tag) => {
            sqlx::query("SELECT tiebreak FROM event_tags WHERE case_id = $1 AND tag = $2 LIMIT $3")
                .bind(case_id)
                .bind(tag)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        Annotation::TagLike(_) => {
            let names: Vec<String> = sqlx::query("SELECT name FROM case_tags WHERE case_id = $1")
                .bind(case_id)
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            let names: Vec<String> = names
                .into_iter()
                .filter(|name| annotation.matches_tag(name))
                .collect();
            let mut rows = Vec::new();
            for chunk in names.chunks(CHUNK) {
                let sql = format!(
                    "SELECT DISTINCT tiebreak FROM event_tags WHERE case_id = $1 AND tag IN ({}) \
                     LIMIT $2",
                    placeholders(3, chunk.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(case_id)
                    .bind(limit);
                for name in chunk {
                    query = query.bind(name);
                }
                rows.extend(query.fetch_all(db.pool()).await?);
            }
            rows
        }
        Annotation::Starred => {
            sqlx::query("SELECT tiebreak FROM event_stars WHERE case_id = $1 LIMIT $2")
                .bind(case_id)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        Annotation::Commented => {
            sqlx::query(
                "SELECT DISTINCT tiebreak FROM event_comments WHERE case_id = $1 AND deleted = 0 \
                 LIMIT $2",
            )
            .bind(case_id)
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
    };
    rows.iter()
        .map(|row| Ok(row.try_get::<i64, _>(0)? as u64))
        .collect()
}

/// Everything annotated in one case (with the case itself).
pub async fn delete_case(tx: &mut Tx<'_>, case_id: &str) -> Result<(), DbError> {
    sqlx::query(
        "DELETE FROM comment_revisions WHERE comment_id IN \
         (SELECT id FROM event_comments WHERE case_id = $1)",
    )
    .bind(case_id)
    .execute(&mut **tx)
    .await?;
    for table in ["event_comments", "event_stars", "event_tags", "case_tags"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE case_id = $1"
        )))
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The bodies (with their authors' names) of the live comments on `event_ids`, oldest
/// first per event.
pub async fn comment_texts(
    db: &Database,
    case_id: &str,
    event_ids: &[String],
) -> Result<HashMap<String, Vec<(String, String)>>, DbError> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for chunk in event_ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT event_id, author_name, body FROM event_comments WHERE case_id = $1 \
             AND deleted = 0 AND event_id IN ({}) ORDER BY created_at, id",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(case_id);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(db.pool()).await? {
            out.entry(row.try_get(0)?)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(out)
}

/// Event ids carrying `tag` (or starred, when `tag` is None) after `after`, by id.
pub async fn event_ids_page(
    db: &Database,
    case_id: &str,
    tag: Option<&str>,
    after: &str,
    limit: u32,
) -> Result<Vec<String>, DbError> {
    let rows =
        match tag {
            Some(tag) => sqlx::query(
                "SELECT event_id FROM event_tags WHERE case_id = $1 AND tag = $2 AND event_id > $3 \
                 ORDER BY event_id LIMIT $4",
            )
            .bind(case_id)
            .bind(tag)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(db.pool())
            .await?,
            None => {
                sqlx::query(
                    "SELECT event_id FROM event_stars WHERE case_id = $1 AND event_id > $2 \
                 ORDER BY event_id LIMIT $3",
                )
                .bind(case_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(db.pool())
                .await?
            }
        };
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).map_err(DbError::from))
        .collect()
}
