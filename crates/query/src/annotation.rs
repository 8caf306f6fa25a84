//! Annotations in the query language: what analysts add to events (tags, stars,
//! comments) and can search by. The event store holds events only (they are
//! immutable); the cases service owns annotations, resolves each [`Annotation`] of a
//! query to the set of events it names, and hands those sets to the event store with
//! the query ([`Annotation::key`] names a set).
//!
//! - `tag:lateral-movement`, `tag:"lateral movement"` — events with that tag (tags are
//!   normalised: see [`normalise_tag`]);
//! - `tag:lat*`, `tag:*` — events with a tag matching the pattern (`*` = any tag);
//! - `starred:true` / `starred:false`, `commented:true` / `commented:false`.
//!
//! These field names are reserved: an event field of the same name is not searchable
//! by it.

use crate::parse::Query;

/// Longest tag, in characters (after normalisation).
pub const MAX_TAG_CHARS: usize = 100;

/// One annotation clause of a query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Annotation {
    /// Events carrying this tag (normalised).
    Tag(String),
    /// Events carrying a tag that matches this pattern (`*`, `?`; lower-cased).
    TagLike(String),
    /// Starred events.
    Starred,
    /// Events with at least one comment.
    Commented,
}

/// Whether `field` is an annotation field of the query language.
pub fn annotation_field(field: &str) -> bool {
    matches!(field, "tag" | "starred" | "commented")
}

/// A tag as stored and compared: surrounding white space removed, inner runs of white
/// space as one space, lower-cased. Everything else (markup, punctuation, other
/// control characters) is kept as text. Empty or longer than [`MAX_TAG_CHARS`]: an
/// error saying so.
pub fn normalise_tag(text: &str) -> Result<String, String> {
    let normal = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if normal.is_empty() {
        return Err("a tag cannot be empty".into());
    }
    let length = normal.chars().count();
    if length > MAX_TAG_CHARS {
        return Err(format!(
            "a tag is at most {MAX_TAG_CHARS} characters (this one has {length})"
        ));
    }
    Ok(normal)
}

fn flag(field: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{field} takes true or false, not {value:?}")),
    }
}

impl Annotation {
    /// The clause `field:value` (`wildcard`: the value holds `*` or `?`).
    pub(crate) fn parse(field: &str, value: &str, wildcard: bool) -> Result<Query, String> {
        let annotation = match field {
            "tag" if wildcard => {
                let pattern = value
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                if pattern.chars().count() > MAX_TAG_CHARS {
                    return Err(format!(
                        "a tag pattern is at most {MAX_TAG_CHARS} characters"
                    ));
                }
                Annotation::TagLike(pattern)
            }
            "tag" => Annotation::Tag(normalise_tag(value)?),
            "starred" | "commented" => {
                let set = if field == "starred" {
                    Annotation::Starred
                } else {
                    Annotation::Commented
                };
                return Ok(if flag(field, value)? {
                    Query::Annotation(set)
                } else {
                    Query::Not(Box::new(Query::Annotation(set)))
                });
            }
            other => return Err(format!("{other} is not an annotation field")),
        };
        Ok(Query::Annotation(annotation))
    }

    /// The name of this clause's event set: `tag:<tag>`, `tag~<pattern>`, `starred`,
    /// `commented`.
    pub fn key(&self) -> String {
        match self {
            Annotation::Tag(tag) => format!("tag:{tag}"),
            Annotation::TagLike(pattern) => format!("tag~{pattern}"),
            Annotation::Starred => "starred".into(),
            Annotation::Commented => "commented".into(),
        }
    }

    /// Whether tag `tag` (normalised) satisfies this clause.
    pub fn matches_tag(&self, tag: &str) -> bool {
        match self {
            Annotation::Tag(wanted) => wanted == tag,
            Annotation::TagLike(pattern) => wildcard_match(pattern, tag),
            _ => false,
        }
    }
}

/// Every annotation clause of `query`, each once.
pub fn annotations(query: &Query) -> Vec<Annotation> {
    fn walk(query: &Query, out: &mut Vec<Annotation>) {
        match query {
            Query::And(parts) | Query::Or(parts) => parts.iter().for_each(|p| walk(p, out)),
            Query::Not(inner) => walk(inner, out),
            Query::Annotation(annotation) if !out.contains(annotation) => {
                out.push(annotation.clone());
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(query, &mut out);
    out
}

/// `*` (any run) and `?` (one character) over whole text; iterative, linear in practice.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_query;

    #[test]
    fn tags_stars_and_comments_parse_as_annotations() {
        assert_eq!(
            parse_query("tag:Lateral-Movement EventID:4624").unwrap(),
            Query::And(vec![
                Query::Annotation(Annotation::Tag("lateral-movement".into())),
                Query::Term {
                    field: Some("EventID".into()),
                    value: "4624".into()
                }
            ])
        );
        assert_eq!(
            parse_query("-tag:benign").unwrap(),
            Query::Not(Box::new(Query::Annotation(Annotation::Tag(
                "benign".into()
            ))))
        );
        assert_eq!(
            parse_query(r#"tag:"  Needs   Review ""#).unwrap(),
            Query::Annotation(Annotation::Tag("needs review".into()))
        );
        assert_eq!(
            parse_query("tag:*").unwrap(),
            Query::Annotation(Annotation::TagLike("*".into()))
        );
        assert_eq!(
            parse_query("starred:false").unwrap(),
            Query::Not(Box::new(Query::Annotation(Annotation::Starred)))
        );
        assert_eq!(
            parse_query("tag:(a OR b*)").unwrap(),
            Query::Or(vec![
                Query::Annotation(Annotation::Tag("a".into())),
                Query::Annotation(Annotation::TagLike("b*".into())),
            ])
        );
        let error = parse_query("x AND starred:maybe").unwrap_err();
        assert_eq!(error.position, 14, "{error}");
        assert!(error.message.contains("true or false"), "{error}");
        assert!(parse_query("tag:[a TO b]").is_err());
        let long = format!("tag:{}", "a".repeat(101));
        assert!(parse_query(&long).unwrap_err().message.contains("100"));
    }

    #[test]
    fn a_lone_star_is_everything() {
        assert_eq!(parse_query("*").unwrap(), Query::All);
        assert_eq!(parse_query("**").unwrap(), Query::All);
        assert_eq!(
            parse_query("* AND EventID:1").unwrap(),
            Query::And(vec![
                Query::All,
                Query::Term {
                    field: Some("EventID".into()),
                    value: "1".into()
                }
            ])
        );
        assert_eq!(
            parse_query("Image:**").unwrap(),
            Query::Exists {
                field: "Image".into()
            }
        );
    }

    #[test]
    fn keys_and_walks() {
        let query = parse_query("(tag:a OR starred:true) AND -tag:a AND commented:no").unwrap();
        let found = annotations(&query);
        assert_eq!(
            found,
            vec![
                Annotation::Tag("a".into()),
                Annotation::Starred,
                Annotation::Commented
            ]
        );
        assert_eq!(found[0].key(), "tag:a");
        assert_eq!(Annotation::TagLike("x*".into()).key(), "tag~x*");
    }

    #[test]
    fn tags_normalise_but_keep_their_text() {
        assert_eq!(
            normalise_tag(" <b>Bad</b>\u{7} ").unwrap(),
            "<b>bad</b>\u{7}"
        );
        assert!(normalise_tag(" \t ").is_err());
        assert!(wildcard_match("lat*", "lateral-movement"));
        assert!(wildcard_match("*move*", "lateral-movement"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "abbc"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("x*", "lateral"));
    }
}
