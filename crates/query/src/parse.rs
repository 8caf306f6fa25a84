//! The query language analysts type, parsed once into [`Query`] and translated by each
//! backend (tantivy, OpenSearch) so both answer the same way. Lucene-style:
//!
//! - `mimikatz` — a word anywhere in the event; `"net user"` — a phrase
//! - `CommandLine:whoami`, `TargetUserName:"Administrator"` — in one field
//! - `TargetUserName:admin*`, `Image:*\\powershell.exe`, `a?c` — wildcards (`*`, `?`)
//! - `EventID:4624`, `EventID:[4624 TO 4634]`, `LogonType:{2 TO *]` — values and ranges
//! - `CommandLine:*` — the field exists
//! - `AND`, `OR`, `NOT` (also `&&`, `||`, `!`, `-term`, `+term`) and parentheses;
//!   adjacent clauses are joined with AND (documented; unlike Lucene's default OR)
//! - `field:(a OR b)` — a group applied to one field
//! - backslash escapes a special character: `Image:C\:\\Windows\\*`
//!
//! - `tag:lateral-movement`, `tag:lat*`, `tag:*`, `starred:true`, `commented:true` —
//!   annotations (see [`crate::Annotation`]); the caller resolves them to event sets
//! - `*` alone (and any run of `*`) matches every event, like the empty query
//!
//! Matching is case-insensitive. Bounded: at most [`MAX_QUERY_LEN`] characters and
//! [`MAX_CLAUSES`] clauses; errors say where the problem is.

use crate::annotation::{Annotation, annotation_field};
use std::ops::Bound;

pub const MAX_QUERY_LEN: usize = 4096;
pub const MAX_CLAUSES: usize = 256;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Matches every event (the empty query).
    All,
    And(Vec<Query>),
    Or(Vec<Query>),
    Not(Box<Query>),
    /// A word (or number) in `field`, or anywhere when `field` is `None`.
    Term {
        field: Option<String>,
        value: String,
    },
    Phrase {
        field: Option<String>,
        value: String,
    },
    /// A pattern with `*` and `?` wildcards.
    Wildcard {
        field: Option<String>,
        pattern: String,
    },
    Range {
        field: String,
        lower: Bound<String>,
        upper: Bound<String>,
    },
    Exists {
        field: String,
    },
    /// An analyst's annotation (tag, star, comment): the events the caller names as
    /// its members (the event store itself holds none).
    Annotation(Annotation),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at character {position}: {message}")]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word { text: String, wildcard: bool },
    Phrase(String),
    Field(String),
    LParen,
    RParen,
    LBracket(bool),
    RBracket(bool),
    And,
    Or,
    Not,
    Plus,
}

fn is_special(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '"' | ':' | '\\') || c.is_whitespace()
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::LParen
            }
            ')' => {
                i += 1;
                Token::RParen
            }
            '[' | '{' => {
                i += 1;
                Token::LBracket(c == '[')
            }
            ']' | '}' => {
                i += 1;
                Token::RBracket(c == ']')
            }
            '"' => {
                i += 1;
                let mut text = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(QueryError {
                                position: start,
                                message: "unclosed quote".into(),
                            });
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if i + 1 < chars.len() => {
                            text.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(other) => {
                            text.push(*other);
                            i += 1;
                        }
                    }
                }
                Token::Phrase(text)
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                i += 2;
                Token::And
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                i += 2;
                Token::Or
            }
            '!' => {
                i += 1;
                Token::Not
            }
            '-' if tokens
                .last()
                .is_none_or(|(_, t)| !matches!(t, Token::Field(_))) =>
            {
                i += 1;
                Token::Not
            }
            '+' => {
                i += 1;
                Token::Plus
            }
            _ => {
                let mut text = String::new();
                let mut wildcard = false;
                while i < chars.len() {
                    let c = chars[i];
                    if c == '\\' {
                        match chars.get(i + 1) {
                            Some(next) => {
                                text.push(*next);
                                i += 2;
                                continue;
                            }
                            None => {
                                return Err(QueryError {
                                    position: i,
                                    message: "a backslash must be followed by a character".into(),
                                });
                            }
                        }
                    }
                    if is_special(c) {
                        break;
                    }
                    if c == '*' || c == '?' {
                        wildcard = true;
                    }
                    text.push(c);
                    i += 1;
                }
                if chars.get(i) == Some(&':') {
                    i += 1;
                    Token::Field(text)
                } else {
                    match text.as_str() {
                        "AND" if !wildcard => Token::And,
                        "OR" if !wildcard => Token::Or,
                        "NOT" if !wildcard => Token::Not,
                        _ => Token::Word { text, wildcard },
                    }
                }
            }
        };
        if i == start {
            return Err(QueryError {
                position: start,
                message: format!("unexpected {c:?}"),
            });
        }
        tokens.push((start, token));
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    clauses: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(p, _)| *p)
    }

    fn error(&self, message: impl Into<String>) -> QueryError {
        QueryError {
            position: self.position(),
            message: message.into(),
        }
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, t)| t.clone());
        self.next += 1;
        token
    }

    fn clause(&mut self, query: Query) -> Result<Query, QueryError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(self.error(format!("more than {MAX_CLAUSES} clauses")));
        }
        Ok(query)
    }

    fn or_expr(&mut self, field: Option<&str>, depth: usize) -> Result<Query, QueryError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut alternatives = vec![self.and_expr(field, depth)?];
        while self.peek() == Some(&Token::Or) {
            self.bump();
            alternatives.push(self.and_expr(field, depth)?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            Query::Or(alternatives)
        })
    }

    fn and_expr(&mut self, field: Option<&str>, depth: usize) -> Result<Query, QueryError> {
        let mut parts = vec![self.unary(field, depth)?];
        loop {
            match self.peek() {
                None | Some(Token::Or) | Some(Token::RParen) => break,
                Some(Token::And) => {
                    self.bump();
                }
                Some(_) => {}
            }
            parts.push(self.unary(field, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn unary(&mut self, field: Option<&str>, depth: usize) -> Result<Query, QueryError> {
        match self.peek() {
            Some(Token::Not) => {
                self.bump();
                Ok(Query::Not(Box::new(self.unary(field, depth + 1)?)))
            }
            Some(Token::Plus) => {
                self.bump();
                self.unary(field, depth + 1)
            }
            _ => self.primary(field, depth),
        }
    }

    fn primary(&mut self, field: Option<&str>, depth: usize) -> Result<Query, QueryError> {
        match self.bump() {
            Some(Token::LParen) => {
                let inner = self.or_expr(field, depth + 1)?;
                if self.bump() != Some(Token::RParen) {
                    self.next = self.next.saturating_sub(1);
                    return Err(self.error("missing closing parenthesis"));
                }
                Ok(inner)
            }
            Some(Token::Field(name)) => {
                if field.is_some() {
                    self.next -= 1;
                    return Err(self.error("a field inside a field group"));
                }
                if name.is_empty() {
                    self.next -= 1;
                    return Err(self.error("empty field name before ':'"));
                }
                match self.peek() {
                    Some(Token::LBracket(_)) if annotation_field(&name) => {
                        Err(self.error(format!("ranges do not apply to {name}")))
                    }
                    Some(Token::LBracket(_)) => self.range(name),
                    Some(Token::LParen) => {
                        self.bump();
                        let inner = self.or_expr(Some(&name), depth + 1)?;
                        if self.bump() != Some(Token::RParen) {
                            self.next = self.next.saturating_sub(1);
                            return Err(self.error("missing closing parenthesis"));
                        }
                        Ok(inner)
                    }
                    Some(Token::Word { text, .. })
                        if is_all_stars(text) && !annotation_field(&name) =>
                    {
                        self.bump();
                        self.clause(Query::Exists { field: name })
                    }
                    Some(Token::Word { .. }) | Some(Token::Phrase(_)) => self.value(Some(name)),
                    _ => Err(self.error(format!("a value must follow '{name}:'"))),
                }
            }
            Some(Token::Word { .. }) | Some(Token::Phrase(_)) => {
                self.next -= 1;
                self.value(field.map(str::to_string))
            }
            Some(Token::RParen) => {
                self.next -= 1;
                Err(self.error("unexpected ')'"))
            }
            Some(Token::And) | Some(Token::Or) => {
                self.next -= 1;
                Err(self.error("AND/OR needs a clause on both sides"))
            }
            Some(_) => {
                self.next -= 1;
                Err(self.error("unexpected token"))
            }
            None => Err(self.error("the query ends where a clause was expected")),
        }
    }

    fn value(&mut self, field: Option<String>) -> Result<Query, QueryError> {
        if let Some(name) = field.as_deref().filter(|name| annotation_field(name)) {
            let position = self.position();
            let annotation = match self.bump() {
                Some(Token::Word { text, wildcard }) => Annotation::parse(name, &text, wildcard),
                Some(Token::Phrase(text)) => Annotation::parse(name, &text, false),
                _ => return Err(self.error("a value was expected")),
            };
            let query = annotation.map_err(|message| QueryError { position, message })?;
            return self.clause(query);
        }
        let query = match self.bump() {
            // `*` alone asks for everything: the same as the empty query, never a walk
            // over every term of every field.
            Some(Token::Word { text, .. }) if field.is_none() && is_all_stars(&text) => Query::All,
            Some(Token::Word {
                text,
                wildcard: true,
            }) => Query::Wildcard {
                field,
                pattern: text,
            },
            Some(Token::Word { text, .. }) => Query::Term { field, value: text },
            Some(Token::Phrase(text)) => Query::Phrase { field, value: text },
            _ => return Err(self.error("a value was expected")),
        };
        self.clause(query)
    }

    fn range(&mut self, field: String) -> Result<Query, QueryError> {
        let Some(Token::LBracket(inclusive_lower)) = self.bump() else {
            return Err(self.error("'[' or '{' expected"));
        };
        let bound = |parser: &mut Parser, inclusive: bool| match parser.bump() {
            Some(Token::Word { text, .. }) if text == "*" => Ok(Bound::Unbounded),
            Some(Token::Word { text, .. }) | Some(Token::Phrase(text)) => Ok(if inclusive {
                Bound::Included(text)
            } else {
                Bound::Excluded(text)
            }),
            _ => {
                parser.next = parser.next.saturating_sub(1);
                Err(parser.error("a range bound (a value or *) was expected"))
            }
        };
        let lower = bound(self, inclusive_lower)?;
        match self.bump() {
            Some(Token::Word { text, .. }) if text == "TO" => {}
            _ => {
                self.next = self.next.saturating_sub(1);
                return Err(self.error("ranges are written [lower TO upper]"));
            }
        }
        let closing = self.tokens.get(self.next + 1).map(|(_, t)| t.clone());
        let Some(Token::RBracket(inclusive_upper)) = closing else {
            self.next += 1;
            return Err(self.error("a range must end with ']' or '}'"));
        };
        let upper = bound(self, inclusive_upper)?;
        self.bump();
        self.clause(Query::Range {
            field,
            lower,
            upper,
        })
    }
}

fn is_all_stars(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c == '*')
}

/// Parses a query string. Empty (or whitespace) means [`Query::All`].
pub fn parse_query(input: &str) -> Result<Query, QueryError> {
    if input.chars().count() > MAX_QUERY_LEN {
        return Err(QueryError {
            position: MAX_QUERY_LEN,
            message: format!("longer than {MAX_QUERY_LEN} characters"),
        });
    }
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Ok(Query::All);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        clauses: 0,
        end: input.chars().count(),
    };
    let query = parser.or_expr(None, 0)?;
    if parser.next < parser.tokens.len() {
        return Err(parser.error("unexpected ')'"));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(field: &str, value: &str) -> Query {
        Query::Term {
            field: Some(field.into()),
            value: value.into(),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        assert_eq!(
            parse_query("EventID:4624 AND TargetUserName:admin*").unwrap(),
            Query::And(vec![
                term("EventID", "4624"),
                Query::Wildcard {
                    field: Some("TargetUserName".into()),
                    pattern: "admin*".into()
                }
            ])
        );
    }

    #[test]
    fn operators_groups_phrases_ranges() {
        let query = parse_query(r#"(mimikatz OR "sekurlsa::logonpasswords") -Computer:DC01 EventID:[4624 TO 4634} CommandLine:*"#)
            .unwrap();
        assert_eq!(
            query,
            Query::And(vec![
                Query::Or(vec![
                    Query::Term {
                        field: None,
                        value: "mimikatz".into()
                    },
                    Query::Phrase {
                        field: None,
                        value: "sekurlsa::logonpasswords".into()
                    },
                ]),
                Query::Not(Box::new(term("Computer", "DC01"))),
                Query::Range {
                    field: "EventID".into(),
                    lower: Bound::Included("4624".into()),
                    upper: Bound::Excluded("4634".into())
                },
                Query::Exists {
                    field: "CommandLine".into()
                },
            ])
        );
        assert_eq!(
            parse_query("Channel:(Security OR System)").unwrap(),
            Query::Or(vec![term("Channel", "Security"), term("Channel", "System")])
        );
        assert_eq!(
            parse_query(r"Image:C\:\\Windows\\*").unwrap(),
            Query::Wildcard {
                field: Some("Image".into()),
                pattern: r"C:\Windows\*".into()
            }
        );
        assert_eq!(parse_query("   ").unwrap(), Query::All);
        assert_eq!(
            parse_query("LogonType:{2 TO *]").unwrap(),
            Query::Range {
                field: "LogonType".into(),
                lower: Bound::Excluded("2".into()),
                upper: Bound::Unbounded
            }
        );
        assert_eq!(
            parse_query("a OR b AND c").unwrap(),
            Query::Or(vec![
                Query::Term {
                    field: None,
                    value: "a".into()
                },
                Query::And(vec![
                    Query::Term {
                        field: None,
                        value: "b".into()
                    },
                    Query::Term {
                        field: None,
                        value: "c".into()
                    }
                ]),
            ])
        );
    }

    #[test]
    fn errors_say_where() {
        for (input, position) in [
            ("\"open", 0),
            ("(a OR b", 7),
            ("a)", 1),
            ("AND a", 0),
            ("field:", 6),
            ("x:[1 TO", 7),
            ("x:[1 2]", 5),
            ("a \\", 2),
        ] {
            let error = parse_query(input).unwrap_err();
            assert_eq!(error.position, position, "{input}: {error}");
        }
        let long = "a ".repeat(3000);
        assert!(parse_query(&long).is_err());
        let many = "a ".repeat(300);
        assert!(parse_query(&many).unwrap_err().message.contains("clauses"));
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_query(&deep).unwrap_err().message.contains("nested"));
    }
}
