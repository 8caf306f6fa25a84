//! STIX 2.1 bundles: indicators whose pattern is a comparison, or comparisons joined by
//! AND/OR (also across observation expressions), on observables with an IOC type here;
//! and cyber observables (SCOs such as `ipv4-addr`) given as objects. The bundle is
//! read as a stream: one object in memory at a time.

use super::{Entry, ImportError, Record, Summary, entry, parse_time, refused};
use crate::kind::{IocType, Tlp};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;

/// The IOC type of a STIX object path (`ipv4-addr:value`, `file:hashes.'SHA-256'`).
fn path_type(path: &str) -> Option<IocType> {
    let lower = path.to_ascii_lowercase().replace(['\'', '"'], "");
    Some(match lower.as_str() {
        "ipv4-addr:value"
        | "ipv6-addr:value"
        | "network-traffic:dst_ref.value"
        | "network-traffic:src_ref.value" => IocType::Ip,
        "domain-name:value" => IocType::Domain,
        "url:value" => IocType::Url,
        "email-addr:value" | "email-message:from_ref.value" | "email-message:sender_ref.value" => {
            IocType::Email
        }
        "file:hashes.md5" => IocType::Md5,
        "file:hashes.sha-1" | "file:hashes.sha1" => IocType::Sha1,
        "file:hashes.sha-256" | "file:hashes.sha256" => IocType::Sha256,
        "file:hashes.sha-512" | "file:hashes.sha512" => IocType::Sha512,
        "file:extensions.windows-pebinary-ext.imphash" => IocType::Imphash,
        "file:name" | "process:binary_ref.name" | "process:image_ref.name" => IocType::FileName,
        "directory:path" | "x-casescope-file-path:value" => IocType::FilePath,
        "windows-registry-key:key" => IocType::RegistryKey,
        "user-account:user_id" | "user-account:account_login" => IocType::UserName,
        "process:command_line" => IocType::CommandLine,
        "process:name" => IocType::ProcessName,
        "mutex:name" => IocType::Mutex,
        "network-traffic:extensions.http-request-ext.request_header.user-agent" => {
            IocType::UserAgent
        }
        "x-casescope-hostname:value" => IocType::Hostname,
        "x-casescope-service-name:value" => IocType::ServiceName,
        "x-casescope-named-pipe:value" => IocType::NamedPipe,
        "x-casescope-other:value" => IocType::Other,
        _ => return None,
    })
}

/// The STIX pattern of an IOC (the inverse of [`path_type`]).
pub(crate) fn pattern_of(kind: IocType, value: &str) -> String {
    let path = match kind {
        IocType::Ip | IocType::Cidr => {
            if value.contains(':') {
                "ipv6-addr:value"
            } else {
                "ipv4-addr:value"
            }
        }
        IocType::Domain => "domain-name:value",
        IocType::Hostname => "x-casescope-hostname:value",
        IocType::Url => "url:value",
        IocType::Email => "email-addr:value",
        IocType::Md5 => "file:hashes.MD5",
        IocType::Sha1 => "file:hashes.'SHA-1'",
        IocType::Sha256 => "file:hashes.'SHA-256'",
        IocType::Sha512 => "file:hashes.'SHA-512'",
        IocType::Imphash => "file:extensions.'windows-pebinary-ext'.imphash",
        IocType::FileName => "file:name",
        IocType::FilePath => "x-casescope-file-path:value",
        IocType::RegistryKey => "windows-registry-key:key",
        IocType::UserName => "user-account:account_login",
        IocType::CommandLine => "process:command_line",
        IocType::ProcessName => "process:name",
        IocType::ServiceName => "x-casescope-service-name:value",
        IocType::NamedPipe => "x-casescope-named-pipe:value",
        IocType::Mutex => "mutex:name",
        IocType::UserAgent => {
            "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"
        }
        IocType::Other => "x-casescope-other:value",
    };
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("[{path} = '{escaped}']")
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    LParen,
    RParen,
    Comma,
    Word(String),
    Text(String),
    Op(String),
}

fn tokens(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '[' => {
                out.push(Token::Open);
                i += 1
            }
            ']' => {
                out.push(Token::Close);
                i += 1
            }
            '(' => {
                out.push(Token::LParen);
                i += 1
            }
            ')' => {
                out.push(Token::RParen);
                i += 1
            }
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a quoted value is not closed".into()),
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(next) => text.push(*next),
                                None => return Err("a quoted value ends in a backslash".into()),
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            text.push(*other);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Text(text));
            }
            '=' | '!' | '<' | '>' => {
                let mut op = c.to_string();
                if chars.get(i + 1) == Some(&'=') {
                    op.push('=');
                    i += 1;
                }
                out.push(Token::Op(op));
                i += 1;
            }
            _ => {
                // A word: an object path (with quoted parts, e.g. hashes.'SHA-256'),
                // a keyword, a number, or a t'…'/b'…' literal.
                let mut word = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch == '\'' && (word.ends_with('.') || word.is_empty()) {
                        // hashes.'SHA-256'
                        let end = chars[i + 1..]
                            .iter()
                            .position(|x| *x == '\'')
                            .ok_or("a quoted path part is not closed")?;
                        word.extend(&chars[i..i + 2 + end]);
                        i += end + 2;
                        continue;
                    }
                    if (word == "t" || word == "b" || word == "h") && ch == '\'' {
                        return Err("time, binary and hex literals are not IOC values".into());
                    }
                    if ch.is_whitespace()
                        || matches!(
                            ch,
                            '[' | ']' | '(' | ')' | ',' | '=' | '!' | '<' | '>' | '\''
                        )
                    {
                        break;
                    }
                    word.push(ch);
                    i += 1;
                }
                if word.is_empty() {
                    return Err(format!("unexpected character {c:?}"));
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// The (object path, value) comparisons of a pattern made of `=` or `IN` comparisons
/// joined by AND/OR, in brackets joined by AND/OR; anything else is refused with why.
pub fn parse_pattern(pattern: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = tokens(pattern)?;
    let mut out = Vec::new();
    let mut i = 0;
    let mut depth_brackets = 0;
    let mut expect_comparison = true;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open => {
                depth_brackets += 1;
                if depth_brackets > 1 {
                    return Err("nested observation expressions".into());
                }
                i += 1;
            }
            Token::Close => {
                depth_brackets -= 1;
                if depth_brackets < 0 {
                    return Err("a ] without its [".into());
                }
                i += 1;
            }
            Token::LParen | Token::RParen => i += 1,
            Token::Word(word) if !expect_comparison || depth_brackets == 0 => {
                let upper = word.to_ascii_uppercase();
                match upper.as_str() {
                    "AND" | "OR" => {
                        expect_comparison = true;
                        i += 1;
                    }
                    "FOLLOWEDBY" => {
                        return Err(
                            "FOLLOWEDBY (a sequence in time) cannot be hunted as single IOCs"
                                .into(),
                        );
                    }
                    "WITHIN" | "REPEATS" | "START" | "STOP" => {
                        return Err(format!(
                            "the {upper} qualifier cannot be hunted as single IOCs"
                        ));
                    }
                    _ => return Err(format!("unexpected {word:?}")),
                }
            }
            Token::Word(path) => {
                if path.eq_ignore_ascii_case("NOT") {
                    return Err("NOT comparisons cannot be hunted".into());
                }
                let op = match tokens.get(i + 1) {
                    Some(Token::Op(op)) => op.clone(),
                    Some(Token::Word(w)) => w.to_ascii_uppercase(),
                    _ => return Err(format!("no operator after {path}")),
                };
                match op.as_str() {
                    "=" => match tokens.get(i + 2) {
                        Some(Token::Text(value)) => {
                            out.push((path.clone(), value.clone()));
                            i += 3;
                        }
                        _ => return Err(format!("{path} = needs a quoted value")),
                    },
                    "IN" => {
                        if tokens.get(i + 2) != Some(&Token::LParen) {
                            return Err(format!("{path} IN needs a list"));
                        }
                        i += 3;
                        loop {
                            match tokens.get(i) {
                                Some(Token::Text(value)) => out.push((path.clone(), value.clone())),
                                Some(Token::Comma) => {}
                                Some(Token::RParen) => {
                                    i += 1;
                                    break;
                                }
                                _ => {
                                    return Err(format!(
                                        "{path} IN (…) holds something other than quoted values"
                                    ));
                                }
                            }
                            i += 1;
                        }
                    }
                    "LIKE" | "MATCHES" => {
                        return Err(format!(
                            "{op} (a wildcard or regular expression) cannot be hunted as an IOC value"
                        ));
                    }
                    "NOT" => return Err("NOT comparisons cannot be hunted".into()),
                    other => {
                        return Err(format!("operator {other} cannot be hunted (only = and IN)"));
                    }
                }
                expect_comparison = false;
            }
            Token::Text(_) | Token::Op(_) | Token::Comma => {
                return Err("a value without an object path".into());
            }
        }
    }
    if depth_brackets != 0 {
        return Err("a [ without its ]".into());
    }
    if out.is_empty() {
        return Err("no comparison in the pattern".into());
    }
    Ok(out)
}

fn text<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The metadata an indicator gives its IOCs.
fn base_record(object: &Value) -> Record {
    let name = text(object, "name");
    let description = text(object, "description");
    let description = match (name.is_empty(), description.is_empty()) {
        (false, false) => format!("{name}: {description}"),
        (false, true) => name.to_string(),
        _ => description.to_string(),
    };
    let mut labels: Vec<String> = Vec::new();
    for key in ["indicator_types", "labels"] {
        if let Some(list) = object.get(key).and_then(Value::as_array) {
            labels.extend(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.chars().take(128).collect::<String>()),
            );
        }
    }
    labels.dedup();
    let tlp = object
        .get("object_marking_refs")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .filter_map(Value::as_str)
                .find_map(Tlp::from_stix_marking)
        });
    Record {
        description: description.chars().take(4096).collect(),
        labels,
        tlp,
        confidence: object
            .get("confidence")
            .and_then(Value::as_u64)
            .map(|c| c.min(100) as u32),
        first_seen: parse_time(text(object, "valid_from")),
        expires_at: parse_time(text(object, "valid_until")),
        ..Record::default()
    }
}

/// The entries of one object of the bundle.
fn object_entries(
    index: usize,
    object: Value,
    summary: &mut Summary,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let locator = format!("objects[{index}]");
    let kind = text(&object, "type");
    match kind {
        "indicator" => {}
        "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" | "mutex" => {
            let property = if kind == "mutex" { "name" } else { "value" };
            let path = format!("{kind}:{property}");
            let value = text(&object, property);
            return emit(entry(locator, path_type(&path), value, Record::default()));
        }
        "file" => {
            let mut flow = ControlFlow::Continue(());
            let mut part = 0;
            if let Some(hashes) = object.get("hashes").and_then(Value::as_object) {
                for (algorithm, value) in hashes {
                    part += 1;
                    let path = format!("file:hashes.{algorithm}");
                    let value = value.as_str().unwrap_or("");
                    let entry = match path_type(&path) {
                        Some(kind) => entry(
                            format!("{locator}#{part}"),
                            Some(kind),
                            value,
                            Record::default(),
                        ),
                        None => refused(
                            format!("{locator}#{part}"),
                            value,
                            format!("hash algorithm {algorithm} has no IOC type here"),
                        ),
                    };
                    flow = emit(entry);
                    if flow.is_break() {
                        return flow;
                    }
                }
            }
            let name = text(&object, "name");
            if !name.is_empty() {
                part += 1;
                flow = emit(entry(
                    format!("{locator}#{part}"),
                    Some(IocType::FileName),
                    name,
                    Record::default(),
                ));
            }
            if part == 0 {
                summary.other_objects += 1;
            }
            return flow;
        }
        "windows-registry-key" => {
            return emit(entry(
                locator,
                Some(IocType::RegistryKey),
                text(&object, "key"),
                Record::default(),
            ));
        }
        "user-account" => {
            let login = text(&object, "account_login");
            let value = if login.is_empty() {
                text(&object, "user_id")
            } else {
                login
            };
            return emit(entry(
                locator,
                Some(IocType::UserName),
                value,
                Record::default(),
            ));
        }
        "process" => {
            let command_line = text(&object, "command_line");
            if command_line.is_empty() {
                summary.other_objects += 1;
                return ControlFlow::Continue(());
            }
            return emit(entry(
                locator,
                Some(IocType::CommandLine),
                command_line,
                Record::default(),
            ));
        }
        _ => {
            summary.other_objects += 1;
            return ControlFlow::Continue(());
        }
    }
    let pattern = text(&object, "pattern");
    if object.get("revoked").and_then(Value::as_bool) == Some(true) {
        return emit(refused(locator, pattern, "the indicator is revoked"));
    }
    let pattern_type = text(&object, "pattern_type");
    if !pattern_type.is_empty() && pattern_type != "stix" {
        return emit(refused(
            locator,
            pattern,
            format!("pattern type {pattern_type} is not hunted here (only stix)"),
        ));
    }
    let comparisons = match parse_pattern(pattern) {
        Ok(comparisons) => comparisons,
        Err(reason) => {
            return emit(refused(
                locator,
                pattern,
                format!("pattern not hunted: {reason}"),
            ));
        }
    };
    let base = base_record(&object);
    let many = comparisons.len() > 1;
    for (part, (path, value)) in comparisons.into_iter().enumerate() {
        let locator = if many {
            format!("{locator}#{}", part + 1)
        } else {
            locator.clone()
        };
        let entry = match path_type(&path) {
            Some(kind) => entry(locator, Some(kind), &value, base.clone()),
            None => refused(
                locator,
                &value,
                format!("no IOC type for the observable {path}"),
            ),
        };
        emit(entry)?;
    }
    ControlFlow::Continue(())
}

struct Bundle<'e> {
    emit: &'e mut dyn FnMut(Entry) -> ControlFlow<()>,
    summary: Summary,
    saw_objects: bool,
    kind: Option<String>,
    stopped: bool,
}

struct Objects<'b, 'e>(&'b mut Bundle<'e>);

impl<'de> DeserializeSeed<'de> for Objects<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Objects<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of STIX objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let bundle = self.0;
        let mut index = 0;
        while let Some(object) = seq.next_element::<Value>()? {
            if !bundle.stopped
                && object_entries(index, object, &mut bundle.summary, bundle.emit).is_break()
            {
                bundle.stopped = true;
            }
            index += 1;
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for &mut Bundle<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a STIX 2.1 bundle (a JSON object with type \"bundle\" and objects)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "objects" => {
                    self.saw_objects = true;
                    map.next_value_seed(Objects(&mut *self))?;
                }
                "type" => self.kind = Some(map.next_value::<String>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn read(
    input: impl Read,
    emit: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<Summary, ImportError> {
    let mut bundle = Bundle {
        emit,
        summary: Summary::default(),
        saw_objects: false,
        kind: None,
        stopped: false,
    };
    let mut deserializer =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, input));
    deserializer
        .deserialize_map(&mut bundle)
        .map_err(|e| ImportError::new(format!("not a readable STIX bundle: {e}")))?;
    deserializer
        .end()
        .map_err(|e| ImportError::new(format!("text after the STIX bundle: {e}")))?;
    if bundle.kind.as_deref() != Some("bundle") {
        return Err(ImportError::new(format!(
            "the JSON object's type is {:?}, not \"bundle\"",
            bundle.kind.unwrap_or_default()
        )));
    }
    if !bundle.saw_objects {
        return Err(ImportError::new("the bundle has no objects list"));
    }
    Ok(bundle.summary)
}
