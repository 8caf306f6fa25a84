//! Validating and canonicalising IOC values: refanging (`hxxp`, `[.]`, `(.)`, `[@]`, …),
//! case folding where the type is case-insensitive, compressed IPv6, network-address
//! CIDRs, normalised URLs; and telling the type of a bare value.

use crate::kind::IocType;
use std::net::IpAddr;

/// Longest value accepted (bytes, after trimming). Longer values are refused: no
/// indicator is that long, and every value becomes a pattern of the hunt.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Shortest substring-type value (`command_line`, `other`, `file_path`): a two-letter
/// fragment would match nearly every event.
pub const MIN_SUBSTRING_BYTES: usize = 3;

/// A value's canonical form, or why it is refused.
pub type Canonical = Result<String, String>;

/// Undoes the usual defanging of network indicators: `hxxp(s)`, `[.]`, `(.)`, `{.}`,
/// `[dot]`, `[@]`, `[at]`, `[:]`, `[/]`.
pub fn refang(value: &str) -> String {
    let mut text = value.to_string();
    for (from, to) in [
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("[@]", "@"),
        ("(@)", "@"),
        ("[at]", "@"),
        ("[:]", ":"),
        ("[/]", "/"),
        ("[://]", "://"),
    ] {
        if text.contains(from) {
            text = text.replace(from, to);
        }
    }
    let lower = text.to_ascii_lowercase();
    for (from, to) in [("hxxps", "https"), ("hxxp", "http"), ("fxp", "ftp")] {
        if lower.starts_with(from) {
            text = format!("{to}{}", &text[from.len()..]);
            break;
        }
    }
    text
}

fn check_common(value: &str) -> Result<&str, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty value".into());
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value of {} bytes; at most {MAX_VALUE_BYTES} are accepted",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("control character U+{:04X} in the value", c as u32));
    }
    Ok(value)
}

/// The canonical form of `value` as a `kind`, or the reason it is not one.
pub fn canonicalize(kind: IocType, value: &str) -> Canonical {
    let value = check_common(value)?;
    match kind {
        IocType::Ip => ip(&refang(value)),
        IocType::Cidr => cidr(&refang(value)),
        IocType::Domain => domain(&refang(value), true),
        IocType::Hostname => domain(&refang(value), false),
        IocType::Url => url(&refang(value)),
        IocType::Email => email(&refang(value)),
        IocType::Md5 | IocType::Imphash => hex_hash(value, 32, kind),
        IocType::Sha1 => hex_hash(value, 40, kind),
        IocType::Sha256 => hex_hash(value, 64, kind),
        IocType::Sha512 => hex_hash(value, 128, kind),
        IocType::FileName | IocType::ProcessName => file_name(value),
        IocType::FilePath => substring(&value.replace('/', "\\").to_lowercase()),
        IocType::RegistryKey => registry_key(value),
        IocType::UserName => user_name(value),
        IocType::CommandLine => substring(&value.to_lowercase()),
        IocType::ServiceName => Ok(value.to_lowercase()),
        IocType::NamedPipe => named_pipe(value),
        IocType::Mutex => Ok(value.to_lowercase()),
        IocType::UserAgent => Ok(value.to_string()),
        IocType::Other => substring(value),
    }
}

fn substring(value: &str) -> Canonical {
    if value.len() < MIN_SUBSTRING_BYTES {
        return Err(format!(
            "a fragment of {} bytes would match nearly every event; at least {MIN_SUBSTRING_BYTES} are needed",
            value.len()
        ));
    }
    Ok(value.to_string())
}

fn ip(value: &str) -> Canonical {
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    match bare.parse::<IpAddr>() {
        Ok(address) => Ok(canonical_ip(address)),
        Err(_) if bare.contains('/') => Err("an address block: use the cidr type".into()),
        Err(_) => Err("not an IPv4 or IPv6 address".into()),
    }
}

/// IPv4 as dotted decimal; IPv6 compressed and lower-case; an IPv4-mapped IPv6
/// address as its IPv4 address (Windows logs write `::ffff:10.0.0.5`).
pub fn canonical_ip(address: IpAddr) -> String {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// A parsed address block: the network as a number, its prefix length and family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub v6: bool,
    pub first: u128,
    pub last: u128,
    pub prefix: u8,
}

/// `10.1.0.0/16` → its first and last address (IPv4 in the low 32 bits).
pub fn parse_block(value: &str) -> Result<Block, String> {
    let (address, prefix) = match value.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (value, None),
    };
    let address: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("{address:?} is not an IPv4 or IPv6 address"))?;
    let (bits, number, v6) = match address {
        IpAddr::V4(v4) => (32u8, u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (128u8, u128::from(v6), true),
    };
    let prefix = match prefix {
        None => bits,
        Some(text) => text
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("prefix length {text:?} is not a number from 0 to {bits}"))?,
    };
    let host_bits = u32::from(bits - prefix);
    let host_mask: u128 = if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let first = number & !host_mask;
    Ok(Block {
        v6,
        first,
        last: first | host_mask,
        prefix,
    })
}

fn cidr(value: &str) -> Canonical {
    let block = parse_block(value)?;
    let network = if block.v6 {
        IpAddr::V6(std::net::Ipv6Addr::from(block.first))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from(block.first as u32))
    };
    Ok(format!("{network}/{}", block.prefix))
}

/// A domain (at least two labels) or a host name (one label is enough): lower-case,
/// without a trailing dot, international names in their ASCII (punycode) form.
fn domain(value: &str, needs_dot: bool) -> Canonical {
    let value = value.trim_end_matches('.');
    let ascii = if value.is_ascii() {
        value.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(value).map_err(|_| "not a valid international domain name")?
    };
    if ascii.len() > 253 {
        return Err("longer than the 253 characters a domain name can have".into());
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if needs_dot && labels.len() < 2 {
        return Err("a domain needs at least two labels (use hostname for a single name)".into());
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "label {label:?} is empty or longer than 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label {label:?} has characters a host name cannot have"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with a hyphen"));
        }
    }
    if needs_dot
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("an IP address is not a domain: use the ip type".into());
    }
    Ok(ascii)
}

fn url(value: &str) -> Canonical {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let parsed = url::Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("a URL needs a host".into());
    }
    if !matches!(
        parsed.scheme(),
        "http" | "https" | "ftp" | "ftps" | "ws" | "wss" | "smb" | "file"
    ) {
        return Err(format!("unsupported URL scheme {:?}", parsed.scheme()));
    }
    Ok(parsed.to_string())
}

/// The text a URL is searched as: its canonical form without a bare trailing `/`
/// (`http://evil.example/` is written `http://evil.example` in most logs).
pub fn url_needle(canonical: &str) -> &str {
    match url::Url::parse(canonical) {
        Ok(parsed)
            if parsed.path() == "/" && parsed.query().is_none() && parsed.fragment().is_none() =>
        {
            canonical.strip_suffix('/').unwrap_or(canonical)
        }
        _ => canonical,
    }
}

fn email(value: &str) -> Canonical {
    let (local, host) = value
        .rsplit_once('@')
        .ok_or("an e-mail address needs an @")?;
    if local.is_empty() || local.len() > 64 || local.contains(char::is_whitespace) {
        return Err("the part before @ is empty, too long or has spaces".into());
    }
    let host = domain(host, true)?;
    Ok(format!("{}@{host}", local.to_lowercase()))
}

fn hex_hash(value: &str, digits: usize, kind: IocType) -> Canonical {
    if value.len() != digits || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} is {digits} hexadecimal digits; this is {} characters{}",
            kind.name(),
            value.chars().count(),
            if value.bytes().all(|b| b.is_ascii_hexdigit()) {
                ""
            } else {
                " with non-hexadecimal ones"
            }
        ));
    }
    Ok(value.to_ascii_lowercase())
}

fn file_name(value: &str) -> Canonical {
    let value = value.trim_matches('"');
    if value.contains(['\\', '/']) {
        return Err("a file name has no directory: use file_path for a path".into());
    }
    if value.contains(['<', '>', '|', '*', '?', ':']) {
        return Err("a file name cannot contain < > | * ? or :".into());
    }
    if value.is_empty() {
        return Err("empty value".into());
    }
    Ok(value.to_lowercase())
}

/// Hive names in their short form: `HKEY_LOCAL_MACHINE\…` → `hklm\…`; also the
/// kernel form Security events use (`\REGISTRY\MACHINE\…`).
fn registry_key(value: &str) -> Canonical {
    let lower = value.trim_matches('"').replace('/', "\\").to_lowercase();
    let lower = lower.trim_end_matches('\\');
    let (hive, rest) = split_hive(lower);
    let key = match hive {
        Some(hive) => format!("{hive}{rest}"),
        None => lower.to_string(),
    };
    substring(&key)
}

/// (short hive with no trailing `\`, the path after it starting with `\`) of a
/// lower-case registry path.
pub fn split_hive(lower: &str) -> (Option<&'static str>, &str) {
    const HIVES: [(&str, &str); 12] = [
        ("hkey_local_machine", "hklm"),
        ("hkey_current_user", "hkcu"),
        ("hkey_users", "hku"),
        ("hkey_classes_root", "hkcr"),
        ("hkey_current_config", "hkcc"),
        ("\\registry\\machine", "hklm"),
        ("\\registry\\user", "hku"),
        ("hklm", "hklm"),
        ("hkcu", "hkcu"),
        ("hku", "hku"),
        ("hkcr", "hkcr"),
        ("hkcc", "hkcc"),
    ];
    for (long, short) in HIVES {
        if let Some(rest) = lower.strip_prefix(long)
            && (rest.is_empty() || rest.starts_with('\\'))
        {
            return (Some(short), rest);
        }
    }
    (None, lower)
}

/// `DOMAIN\user` → `domain\user`; `user@domain` → `domain\user`; `user` → `user`.
fn user_name(value: &str) -> Canonical {
    let lower = value.to_lowercase();
    let (domain, user) = split_user(&lower);
    if user.is_empty() {
        return Err("no user name".into());
    }
    if user.contains([
        '"', '/', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
    ]) {
        return Err("a user name cannot contain \" / [ ] : ; | = , + * ? < >".into());
    }
    Ok(match domain {
        Some(domain) if !domain.is_empty() => format!("{domain}\\{user}"),
        _ => user.to_string(),
    })
}

/// (domain, user) of `domain\user`, `user@domain` or `user`.
pub fn split_user(value: &str) -> (Option<&str>, &str) {
    if let Some((domain, user)) = value.split_once('\\') {
        return (Some(domain), user);
    }
    if let Some((user, domain)) = value.rsplit_once('@') {
        // The NetBIOS name is the first label of a DNS domain.
        let netbios = domain.split('.').next().unwrap_or(domain);
        return (Some(netbios), user);
    }
    (None, value)
}

/// `\\.\pipe\name`, `\\host\pipe\name`, `\name` and `name` → `\name`.
fn named_pipe(value: &str) -> Canonical {
    let lower = value.to_lowercase();
    Ok(format!("\\{}", pipe_name(&lower)))
}

/// A pipe's name without any `\\host\pipe\` prefix or leading `\`.
pub fn pipe_name(lower: &str) -> &str {
    let mut rest = lower;
    if let Some(after) = rest.strip_prefix("\\\\")
        && let Some((_, tail)) = after.split_once('\\')
    {
        rest = tail.strip_prefix("pipe\\").unwrap_or(tail);
    }
    rest.trim_start_matches('\\')
}

/// File extensions that make `name.ext` a file name rather than a domain when a
/// value's type is guessed.
const FILE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "sys", "ps1", "psm1", "bat", "cmd", "vbs", "vbe", "js", "jse", "hta", "scr",
    "msi", "lnk", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "pdf", "rtf", "iso",
    "img", "vhd", "vhdx", "7z", "rar", "tmp", "dat", "bin", "ocx", "cpl", "jar", "py", "sh", "elf",
    "so", "txt", "log", "csv", "cab", "wsf", "inf", "reg", "one", "chm",
];

/// The type and canonical form of a bare value (a plain list), or why it cannot tell.
pub fn detect(value: &str) -> Result<(IocType, String), String> {
    let trimmed = check_common(value)?;
    let refanged = refang(trimmed);
    let bytes = refanged.as_bytes();
    if bytes.iter().all(u8::is_ascii_hexdigit) {
        let kind = match bytes.len() {
            32 => Some(IocType::Md5),
            40 => Some(IocType::Sha1),
            64 => Some(IocType::Sha256),
            128 => Some(IocType::Sha512),
            _ => None,
        };
        if let Some(kind) = kind {
            return canonicalize(kind, &refanged).map(|c| (kind, c));
        }
    }
    if let Ok(c) = ip(&refanged) {
        return Ok((IocType::Ip, c));
    }
    if refanged.contains('/')
        && !refanged.contains("://")
        && let Ok(c) = cidr(&refanged)
    {
        return Ok((IocType::Cidr, c));
    }
    if refanged.contains("://") {
        return url(&refanged).map(|c| (IocType::Url, c));
    }
    let lower = refanged.to_ascii_lowercase();
    if split_hive(&lower).0.is_some() && lower.contains('\\') {
        return registry_key(&refanged).map(|c| (IocType::RegistryKey, c));
    }
    if lower.starts_with("\\\\.\\pipe\\") {
        return named_pipe(&refanged).map(|c| (IocType::NamedPipe, c));
    }
    if lower.contains('\\') || lower.starts_with('/') {
        return canonicalize(IocType::FilePath, trimmed).map(|c| (IocType::FilePath, c));
    }
    if !refanged.contains(char::is_whitespace) && refanged.contains('@') {
        return email(&refanged).map(|c| (IocType::Email, c));
    }
    if let Some((_, extension)) = lower.rsplit_once('.')
        && FILE_EXTENSIONS.contains(&extension)
        && !lower.contains(char::is_whitespace)
    {
        return file_name(trimmed).map(|c| (IocType::FileName, c));
    }
    if refanged.contains('.')
        && !refanged.contains(char::is_whitespace)
        && let Ok(c) = domain(&refanged, true)
    {
        return Ok((IocType::Domain, c));
    }
    Err("cannot tell this value's type; give it in a CSV with a type column".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(kind: IocType, value: &str) -> String {
        canonicalize(kind, value).unwrap_or_else(|e| panic!("{kind} {value:?}: {e}"))
    }

    #[test]
    fn network_values_are_refanged_and_canonical() {
        assert_eq!(canon(IocType::Ip, " 10[.]0[.]0[.]5 "), "10.0.0.5");
        assert_eq!(canon(IocType::Ip, "2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
        assert_eq!(canon(IocType::Ip, "::ffff:10.0.0.5"), "10.0.0.5");
        assert_eq!(canon(IocType::Cidr, "10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(canon(IocType::Cidr, "2001:db8::1/32"), "2001:db8::/32");
        assert_eq!(
            canon(IocType::Domain, "Evil(.)Example[.]COM."),
            "evil.example.com"
        );
        assert_eq!(
            canon(IocType::Domain, "bücher.example"),
            "xn--bcher-kva.example"
        );
        assert_eq!(canon(IocType::Hostname, "WKSTN-01"), "wkstn-01");
        assert_eq!(
            canon(IocType::Url, "hxxps://Evil[.]Example:443/a/B?x=1"),
            "https://evil.example/a/B?x=1"
        );
        assert_eq!(
            url_needle(&canon(IocType::Url, "hxxp://evil[.]example")),
            "http://evil.example"
        );
        assert_eq!(
            canon(IocType::Email, "Bob[@]Evil[.]Example"),
            "bob@evil.example"
        );
    }

    #[test]
    fn host_values_are_canonical() {
        assert_eq!(canon(IocType::Sha256, &"AB".repeat(32)), "ab".repeat(32));
        assert_eq!(canon(IocType::FileName, "Mimikatz.EXE"), "mimikatz.exe");
        assert_eq!(
            canon(IocType::FilePath, "C:/Users/Public/x.ps1"),
            "c:\\users\\public\\x.ps1"
        );
        assert_eq!(
            canon(IocType::RegistryKey, "HKEY_LOCAL_MACHINE\\Software\\Run\\"),
            "hklm\\software\\run"
        );
        assert_eq!(
            canon(IocType::RegistryKey, "\\REGISTRY\\MACHINE\\SYSTEM\\x"),
            "hklm\\system\\x"
        );
        assert_eq!(canon(IocType::UserName, "CORP\\Alice"), "corp\\alice");
        assert_eq!(
            canon(IocType::UserName, "alice@corp.example"),
            "corp\\alice"
        );
        assert_eq!(
            canon(IocType::NamedPipe, "\\\\.\\pipe\\MSAgent_12"),
            "\\msagent_12"
        );
        assert_eq!(canon(IocType::NamedPipe, "msagent_12"), "\\msagent_12");
        assert_eq!(canon(IocType::Other, "Keep Case"), "Keep Case");
    }

    #[test]
    fn bad_values_are_refused_with_reasons() {
        for (kind, value, reason) in [
            (IocType::Ip, "10.0.0.256", "not an IPv4"),
            (IocType::Ip, "10.0.0.0/8", "cidr"),
            (IocType::Cidr, "10.0.0.0/33", "prefix length"),
            (IocType::Domain, "localhost", "two labels"),
            (IocType::Domain, "10.0.0.1", "ip type"),
            (IocType::Domain, "ev il.com", "characters"),
            (IocType::Md5, "abc", "32 hexadecimal"),
            (IocType::Sha256, &"zz".repeat(32), "non-hexadecimal"),
            (IocType::FileName, "c:\\x.exe", "file_path"),
            (IocType::CommandLine, "/c", "at least 3"),
            (IocType::Url, "ldap://x.example", "scheme"),
            (IocType::Other, "a\nb", "control character"),
            (IocType::Other, "   ", "empty"),
        ] {
            let error = canonicalize(kind, value).expect_err(value);
            assert!(error.contains(reason), "{kind} {value:?}: {error}");
        }
        let huge = "a".repeat(1 << 20);
        assert!(
            canonicalize(IocType::Other, &huge)
                .unwrap_err()
                .contains("at most 4096")
        );
    }

    #[test]
    fn bare_values_get_their_types() {
        for (value, kind) in [
            ("10.0.0.5", IocType::Ip),
            ("fe80::1", IocType::Ip),
            ("10.0.0.0/8", IocType::Cidr),
            ("evil[.]example", IocType::Domain),
            ("hxxp://evil.example/x", IocType::Url),
            ("bob@evil.example", IocType::Email),
            (&"a".repeat(32), IocType::Md5),
            (&"a".repeat(40), IocType::Sha1),
            (&"a".repeat(64), IocType::Sha256),
            (&"a".repeat(128), IocType::Sha512),
            ("HKLM\\Software\\Evil", IocType::RegistryKey),
            ("C:\\Windows\\Temp\\x.exe", IocType::FilePath),
            ("mimikatz.exe", IocType::FileName),
            ("\\\\.\\pipe\\evil", IocType::NamedPipe),
        ] {
            assert_eq!(detect(value).map(|(k, _)| k), Ok(kind), "{value}");
        }
        assert!(detect("just some words").is_err());
        assert!(detect("(a|b)+.*").is_err());
    }

    #[test]
    fn blocks_cover_their_addresses() {
        let block = parse_block("192.168.0.0/16").unwrap();
        assert_eq!(
            block.first,
            u128::from(u32::from(std::net::Ipv4Addr::new(192, 168, 0, 0)))
        );
        assert_eq!(
            block.last,
            u128::from(u32::from(std::net::Ipv4Addr::new(192, 168, 255, 255)))
        );
        let all = parse_block("::/0").unwrap();
        assert_eq!((all.first, all.last), (0, u128::MAX));
    }
}
