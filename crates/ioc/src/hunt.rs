//! Hunting every IOC of a case in one pass over the events.
//!
//! [`Hunter::new`] compiles the IOCs once: the values found *in text* go into one
//! Aho-Corasick automaton (ASCII case-insensitive, overlapping matches, so `evil.example`
//! and `a.evil.example` are both found); the values compared *as a field's whole value*
//! go into hash tables; address blocks (CIDRs, and single addresses) go into one hash
//! table per prefix length. [`Hunter::hunt`] then reads each field of an event once:
//! the automaton runs over the text, and a field whose name says it holds an address,
//! a user, a service or a pipe is looked up in its table. The cost per event does not
//! grow with the number of IOCs (the automaton's, per byte, does not; the tables are
//! hashed); docs/iocs.md has the field map.
//!
//! How each type is found:
//! - *token* types (ip, domain, hostname, email, hashes): anywhere in any field, where
//!   the text around the match is not part of a longer value (`10.0.0.5` does not match
//!   `110.0.0.50`; `evil.example` matches `a.evil.example` but not `evil.example.org`; a
//!   hostname also matches its FQDN; a hash preceded by `LABEL=`, as in Sysmon's
//!   `Hashes`, only when the label agrees with the hash type).
//! - *name* types (file name, process name, mutex): anywhere, as a whole path
//!   component or word (`evil.exe` matches `C:\x\evil.exe` and `"evil.exe" /c`, not
//!   `notevil.exe`).
//! - *substring* types (command line, file path, registry key, URL, user agent, other):
//!   anywhere, case-insensitively. A registry key is searched without its hive, so
//!   `HKLM\…`, `HKEY_LOCAL_MACHINE\…` and `\REGISTRY\MACHINE\…` all match (as do other
//!   hives with the same path).
//! - *field* types: ip and CIDR in address fields (parsed, so any IPv6 spelling and
//!   `::ffff:` mapped addresses match); user names in user fields (an IOC without a
//!   domain matches any domain; `CORP\alice` matches `CORP\alice`, `alice@corp…`, or
//!   `alice` whose paired domain field is `CORP`); service names in service fields;
//!   named pipes in pipe fields.

use crate::canon::{parse_block, pipe_name, split_hive, split_user, url_needle};
use crate::kind::IocType;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// An IOC as the hunter takes it: its type and canonical value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    pub ioc_type: IocType,
    /// As [`crate::canonicalize`] gives it.
    pub value: String,
}

/// One IOC found in one field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The IOC's index in the list the hunter was built from.
    pub ioc: u32,
    pub field: &'a str,
    /// The event's text that matched, as it is written in the event.
    pub matched: &'a str,
}

mod anchored;

/// Needles searched with one Aho-Corasick automaton at most; above, the anchored
/// search (`anchored.rs`), whose cost per byte does not grow with the needles.
const ANCHORED_ABOVE: usize = 2000;

/// How the text is searched for the needles.
enum Search {
    Automaton(AhoCorasick),
    Anchored(anchored::Anchored),
}

/// How the text around an automaton match must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    Substring,
    Ip,
    Domain,
    Hostname,
    Email,
    Hash(IocType),
    Name,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Address,
    User,
    Service,
    Pipe,
    Other,
}

/// Every IOC of a hunt, compiled. Shareable between threads.
pub struct Hunter {
    len: usize,
    automaton: Option<Search>,
    /// Per automaton pattern: the IOCs it stands for and how each is bounded.
    patterns: Vec<Vec<(u32, Boundary)>>,
    /// (prefix length, is IPv6, network) → IOCs: every ip and CIDR IOC.
    blocks: FxHashMap<(u8, bool, u128), Vec<u32>>,
    /// Prefix lengths present, longest first, per family (IPv4, IPv6).
    prefixes: [Vec<u8>; 2],
    /// Bare user name → (IOC, its domain if it has one).
    users: FxHashMap<String, Vec<(u32, Option<String>)>>,
    services: FxHashMap<String, Vec<u32>>,
    pipes: FxHashMap<String, Vec<u32>>,
}

impl Hunter {
    /// Compiles `iocs` (canonical values). A value that is not canonical for its type
    /// is hunted as well as it can be (e.g. an unparsable CIDR is skipped).
    pub fn new(iocs: &[Indicator]) -> Hunter {
        let mut needles: Vec<String> = Vec::new();
        let mut patterns: Vec<Vec<(u32, Boundary)>> = Vec::new();
        let mut by_needle: FxHashMap<String, usize> = FxHashMap::default();
        let mut add = |needle: &str, ioc: u32, boundary: Boundary| {
            let key = needle.to_ascii_lowercase();
            let index = *by_needle.entry(key.clone()).or_insert_with(|| {
                needles.push(key);
                patterns.push(Vec::new());
                patterns.len() - 1
            });
            patterns[index].push((ioc, boundary));
        };
        let mut blocks: FxHashMap<(u8, bool, u128), Vec<u32>> = FxHashMap::default();
        let mut users: FxHashMap<String, Vec<(u32, Option<String>)>> = FxHashMap::default();
        let mut services: FxHashMap<String, Vec<u32>> = FxHashMap::default();
        let mut pipes: FxHashMap<String, Vec<u32>> = FxHashMap::default();
        for (index, ioc) in iocs.iter().enumerate() {
            let id = index as u32;
            let value = ioc.value.as_str();
            match ioc.ioc_type {
                IocType::Ip => {
                    add(value, id, Boundary::Ip);
                    if let Ok(block) = parse_block(value) {
                        blocks
                            .entry((block.prefix, block.v6, block.first))
                            .or_default()
                            .push(id);
                    }
                }
                IocType::Cidr => {
                    if let Ok(block) = parse_block(value) {
                        blocks
                            .entry((block.prefix, block.v6, block.first))
                            .or_default()
                            .push(id);
                    }
                }
                IocType::Domain => add(value, id, Boundary::Domain),
                IocType::Hostname => add(value, id, Boundary::Hostname),
                IocType::Email => add(value, id, Boundary::Email),
                IocType::Md5
                | IocType::Sha1
                | IocType::Sha256
                | IocType::Sha512
                | IocType::Imphash => add(value, id, Boundary::Hash(ioc.ioc_type)),
                IocType::FileName | IocType::ProcessName | IocType::Mutex => {
                    add(value, id, Boundary::Name)
                }
                IocType::Url => add(url_needle(value), id, Boundary::Substring),
                IocType::RegistryKey => {
                    let lower = value.to_lowercase();
                    let (hive, rest) = split_hive(&lower);
                    let needle = if hive.is_some() && rest.len() > 1 {
                        rest
                    } else {
                        &lower
                    };
                    add(needle, id, Boundary::Substring)
                }
                IocType::CommandLine | IocType::FilePath | IocType::UserAgent | IocType::Other => {
                    add(value, id, Boundary::Substring)
                }
                IocType::UserName => {
                    let lower = value.to_lowercase();
                    let (domain, user) = split_user(&lower);
                    users
                        .entry(user.to_string())
                        .or_default()
                        .push((id, domain.map(str::to_string)));
                }
                IocType::ServiceName => services.entry(value.to_lowercase()).or_default().push(id),
                IocType::NamedPipe => pipes
                    .entry(pipe_name(&value.to_lowercase()).to_string())
                    .or_default()
                    .push(id),
            }
        }
        let automaton = if needles.is_empty() {
            None
        } else if needles.len() > ANCHORED_ABOVE {
            Some(Search::Anchored(anchored::Anchored::new(&needles)))
        } else {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&needles)
                .ok()
                .map(Search::Automaton)
        };
        let mut prefixes: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (prefix, v6, _) in blocks.keys() {
            let list = &mut prefixes[usize::from(*v6)];
            if !list.contains(prefix) {
                list.push(*prefix);
            }
        }
        for list in &mut prefixes {
            list.sort_unstable_by(|a, b| b.cmp(a));
        }
        Hunter {
            len: iocs.len(),
            automaton,
            patterns,
            blocks,
            prefixes,
            users,
            services,
            pipes,
        }
    }

    /// How many IOCs this hunter was built from.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The IOCs found in an event's fields (name, text), each (IOC, field) once,
    /// appended to `hits`.
    pub fn hunt<'a>(&self, fields: &[(&'a str, &'a str)], hits: &mut Vec<Hit<'a>>) {
        let start = hits.len();
        for &(name, text) in fields {
            if text.is_empty() {
                continue;
            }
            if let Some(search) = &self.automaton {
                let mut on_found = |(pattern, from, to): (usize, usize, usize)| {
                    for &(ioc, boundary) in &self.patterns[pattern] {
                        if bounded(text.as_bytes(), from, to, boundary) {
                            push(
                                hits,
                                start,
                                Hit {
                                    ioc,
                                    field: name,
                                    matched: &text[from..to],
                                },
                            );
                        }
                    }
                };
                match search {
                    Search::Automaton(automaton) => {
                        for found in automaton.find_overlapping_iter(text) {
                            on_found((found.pattern().as_usize(), found.start(), found.end()));
                        }
                    }
                    Search::Anchored(anchored) => anchored.find(text.as_bytes(), &mut on_found),
                }
            }
            match class_of(name) {
                Class::Address if !self.blocks.is_empty() => {
                    if let Some(address) = parse_address(text) {
                        self.lookup_address(address, name, text, hits, start);
                    }
                }
                Class::User if !self.users.is_empty() => {
                    self.lookup_user(fields, name, text, hits, start)
                }
                Class::Service if !self.services.is_empty() => {
                    if let Some(iocs) = self.services.get(&text.trim().to_lowercase()) {
                        for &ioc in iocs {
                            push(
                                hits,
                                start,
                                Hit {
                                    ioc,
                                    field: name,
                                    matched: text,
                                },
                            );
                        }
                    }
                }
                Class::Pipe if !self.pipes.is_empty() => {
                    let lower = text.trim().to_lowercase();
                    if let Some(iocs) = self.pipes.get(pipe_name(&lower)) {
                        for &ioc in iocs {
                            push(
                                hits,
                                start,
                                Hit {
                                    ioc,
                                    field: name,
                                    matched: text,
                                },
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn lookup_address<'a>(
        &self,
        address: IpAddr,
        name: &'a str,
        text: &'a str,
        hits: &mut Vec<Hit<'a>>,
        start: usize,
    ) {
        let (v6, number, bits) = match address {
            IpAddr::V4(v4) => (false, u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => (true, u128::from(v6), 128u32),
        };
        for &prefix in &self.prefixes[usize::from(v6)] {
            let host_bits = bits - u32::from(prefix);
            let network = if host_bits >= 128 {
                0
            } else {
                number & !((1u128 << host_bits) - 1)
            };
            if let Some(iocs) = self.blocks.get(&(prefix, v6, network)) {
                for &ioc in iocs {
                    push(
                        hits,
                        start,
                        Hit {
                            ioc,
                            field: name,
                            matched: text.trim(),
                        },
                    );
                }
            }
        }
    }

    fn lookup_user<'a>(
        &self,
        fields: &[(&'a str, &'a str)],
        name: &'a str,
        text: &'a str,
        hits: &mut Vec<Hit<'a>>,
        start: usize,
    ) {
        let lower = text.trim().to_lowercase();
        let (domain, user) = split_user(&lower);
        let Some(candidates) = self.users.get(user) else {
            return;
        };
        for (ioc, wanted) in candidates {
            let agrees = match (wanted, domain) {
                (None, _) => true,
                (Some(wanted), Some(domain)) => wanted == domain,
                (Some(wanted), None) => paired_domain(fields, name)
                    .is_some_and(|domain| domain.trim().eq_ignore_ascii_case(wanted)),
            };
            if agrees {
                push(
                    hits,
                    start,
                    Hit {
                        ioc: *ioc,
                        field: name,
                        matched: text,
                    },
                );
            }
        }
    }
}

/// Adds `hit` unless this event already has that (IOC, field).
fn push<'a>(hits: &mut Vec<Hit<'a>>, start: usize, hit: Hit<'a>) {
    if !hits[start..]
        .iter()
        .any(|h| h.ioc == hit.ioc && h.field == hit.field)
    {
        hits.push(hit);
    }
}

fn eq_ci(name: &[u8], wanted: &[u8]) -> bool {
    name.eq_ignore_ascii_case(wanted)
}

fn ends_ci(name: &[u8], suffix: &[u8]) -> bool {
    name.len() >= suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The field map: which fields hold addresses, users, services and pipes.
fn class_of(name: &str) -> Class {
    let n = name.as_bytes();
    if ends_ci(n, b"ip")
        || ends_ci(n, b"address")
        || ends_ci(n, b"addr")
        || ends_ci(n, b"ipaddress")
        || ends_ci(n, b"_ip")
        || eq_ci(n, b"src")
        || eq_ci(n, b"dst")
        || eq_ci(n, b"c-ip")
        || eq_ci(n, b"s-ip")
    {
        return Class::Address;
    }
    if ends_ci(n, b"username")
        || ends_ci(n, b"user")
        || ends_ci(n, b"accountname")
        || ends_ci(n, b"user_name")
        || eq_ci(n, b"account")
        || eq_ci(n, b"samaccountname")
        || eq_ci(n, b"cs-username")
    {
        return Class::User;
    }
    if ends_ci(n, b"servicename") || eq_ci(n, b"service") || ends_ci(n, b"service_name") {
        return Class::Service;
    }
    if ends_ci(n, b"pipename")
        || eq_ci(n, b"pipe")
        || ends_ci(n, b"pipe_name")
        || eq_ci(n, b"relativetargetname")
    {
        return Class::Pipe;
    }
    Class::Other
}

/// The domain field written next to a user field: `TargetUserName` → `TargetDomainName`,
/// `AccountName` → `AccountDomain`.
fn paired_domain<'a>(fields: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let wanted: Vec<String> = if let Some(prefix) = lower.strip_suffix("username") {
        vec![format!("{prefix}domainname"), format!("{prefix}domain")]
    } else if let Some(prefix) = lower.strip_suffix("accountname") {
        vec![
            format!("{prefix}accountdomain"),
            format!("{prefix}domainname"),
        ]
    } else if let Some(prefix) = lower.strip_suffix("user") {
        vec![format!("{prefix}domain"), format!("{prefix}domainname")]
    } else {
        vec!["domain".to_string(), "domainname".to_string()]
    };
    fields
        .iter()
        .find(|(field, _)| wanted.iter().any(|w| field.eq_ignore_ascii_case(w)))
        .map(|(_, value)| *value)
}

/// An address field's value as an address: `10.0.0.5`, `::ffff:10.0.0.5`, `[fe80::1]`,
/// `10.0.0.5:443`, `[fe80::1]:443`, `fe80::1%12`.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if text.is_empty() || text == "-" || text.len() > 64 {
        return None;
    }
    let bracketed = text
        .strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .map(|(a, _)| a);
    let candidate = bracketed.unwrap_or(text);
    let candidate = candidate.split_once('%').map_or(candidate, |(a, _)| a);
    let address = match candidate.parse::<IpAddr>() {
        Ok(address) => address,
        Err(_) => {
            // `a.b.c.d:port`
            let (host, port) = candidate.rsplit_once(':')?;
            if !port.bytes().all(|b| b.is_ascii_digit()) || host.contains(':') {
                return None;
            }
            host.parse().ok()?
        }
    };
    Some(match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$' | b'~') || b >= 0x80
}

/// Whether the match `text[from..to]` stands on its own as `boundary` requires.
fn bounded(text: &[u8], from: usize, to: usize, boundary: Boundary) -> bool {
    let before = from.checked_sub(1).map(|i| text[i]);
    let after = text.get(to).copied();
    let after2 = text.get(to + 1).copied();
    let continues_dotted = |ok: fn(u8) -> bool| after == Some(b'.') && after2.is_some_and(ok);
    match boundary {
        Boundary::Substring => true,
        Boundary::Ip => {
            let v6 = text[from..to].contains(&b':');
            let inside = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.')
                || after.is_some_and(|b| b.is_ascii_alphanumeric())
                || continues_dotted(|b| b.is_ascii_digit())
                // An IPv6 match inside a longer IPv6 address.
                || (v6 && after == Some(b':') && after2.is_some_and(|b| b.is_ascii_hexdigit()))
                || (v6 && before == Some(b':') && from >= 2 && text[from - 2].is_ascii_hexdigit());
            !inside
        }
        Boundary::Domain => {
            !before.is_some_and(is_word)
                && !after.is_some_and(is_word)
                && !continues_dotted(|b| b.is_ascii_alphanumeric())
        }
        Boundary::Hostname => !before.is_some_and(is_word) && !after.is_some_and(is_word),
        Boundary::Email => {
            !before.is_some_and(|b| is_word(b) || matches!(b, b'.' | b'+' | b'%'))
                && !after.is_some_and(is_word)
                && !continues_dotted(|b| b.is_ascii_alphanumeric())
        }
        Boundary::Hash(kind) => {
            if before.is_some_and(|b| b.is_ascii_alphanumeric())
                || after.is_some_and(|b| b.is_ascii_alphanumeric())
            {
                return false;
            }
            // `SHA256=…` (Sysmon's Hashes): the label must agree with the type.
            if before == Some(b'=') {
                let label_end = from - 1;
                let label_start = text[..label_end]
                    .iter()
                    .rposition(|b| !b.is_ascii_alphanumeric() && *b != b'-')
                    .map_or(0, |i| i + 1);
                let label = text[label_start..label_end].to_ascii_uppercase();
                let label_kind = match label.as_slice() {
                    b"MD5" => Some(IocType::Md5),
                    b"SHA1" | b"SHA-1" => Some(IocType::Sha1),
                    b"SHA256" | b"SHA-256" => Some(IocType::Sha256),
                    b"SHA512" | b"SHA-512" => Some(IocType::Sha512),
                    b"IMPHASH" => Some(IocType::Imphash),
                    _ => None,
                };
                if let Some(label_kind) = label_kind {
                    return label_kind == kind;
                }
            }
            true
        }
        Boundary::Name => !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char),
    }
}

#[cfg(test)]
mod tests;
