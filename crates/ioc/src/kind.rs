//! The IOC types, their names (ours, and the ones DFIR-IRIS, MISP and STIX use), and
//! Traffic Light Protocol levels.

use std::fmt;

/// What an indicator is. The hunting rule of each type is in [`crate::hunt`] and
/// docs/iocs.md ("Field map").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IocType {
    /// An IPv4 or IPv6 address (IPv6 written compressed).
    Ip,
    /// An address block, written as its network address and prefix length.
    Cidr,
    Domain,
    /// A host name, with or without a domain (NetBIOS names included).
    Hostname,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
    Sha512,
    /// The import hash of a PE file (an MD5 of its imports), as Sysmon's `IMPHASH=`.
    Imphash,
    /// A file's name without a directory.
    FileName,
    /// A file's path (or the end of one).
    FilePath,
    /// A registry key path, or a key path and a value name.
    RegistryKey,
    /// `user`, `DOMAIN\user` or `user@domain`.
    UserName,
    /// A fragment of a command line.
    CommandLine,
    /// An executable's name, e.g. `mimikatz.exe`.
    ProcessName,
    ServiceName,
    NamedPipe,
    Mutex,
    UserAgent,
    /// A plain substring, searched in every field.
    Other,
}

impl IocType {
    pub const ALL: [IocType; 22] = [
        IocType::Ip,
        IocType::Cidr,
        IocType::Domain,
        IocType::Hostname,
        IocType::Url,
        IocType::Email,
        IocType::Md5,
        IocType::Sha1,
        IocType::Sha256,
        IocType::Sha512,
        IocType::Imphash,
        IocType::FileName,
        IocType::FilePath,
        IocType::RegistryKey,
        IocType::UserName,
        IocType::CommandLine,
        IocType::ProcessName,
        IocType::ServiceName,
        IocType::NamedPipe,
        IocType::Mutex,
        IocType::UserAgent,
        IocType::Other,
    ];

    /// Our name of the type (as the CLI, CSV and the database spell it).
    pub fn name(self) -> &'static str {
        match self {
            IocType::Ip => "ip",
            IocType::Cidr => "cidr",
            IocType::Domain => "domain",
            IocType::Hostname => "hostname",
            IocType::Url => "url",
            IocType::Email => "email",
            IocType::Md5 => "md5",
            IocType::Sha1 => "sha1",
            IocType::Sha256 => "sha256",
            IocType::Sha512 => "sha512",
            IocType::Imphash => "imphash",
            IocType::FileName => "file_name",
            IocType::FilePath => "file_path",
            IocType::RegistryKey => "registry_key",
            IocType::UserName => "user_name",
            IocType::CommandLine => "command_line",
            IocType::ProcessName => "process_name",
            IocType::ServiceName => "service_name",
            IocType::NamedPipe => "named_pipe",
            IocType::Mutex => "mutex",
            IocType::UserAgent => "user_agent",
            IocType::Other => "other",
        }
    }

    /// The type a name stands for: ours (case-insensitive, `-` or `_`), or a DFIR-IRIS
    /// or MISP attribute type. Composite MISP types (`filename|sha256`) are split by
    /// [`composite`], not here.
    pub fn from_name(name: &str) -> Option<IocType> {
        let lower = name.trim().to_ascii_lowercase().replace('-', "_");
        Some(match lower.as_str() {
            "ip" | "ipv4" | "ipv6" | "ip_dst" | "ip_src" | "ip_address" | "ipaddress"
            | "ipv4_addr" | "ipv6_addr" => IocType::Ip,
            "cidr" | "ip_range" | "subnet" | "network" => IocType::Cidr,
            "domain" | "domain_name" | "fqdn" => IocType::Domain,
            "hostname" | "host" | "computer" => IocType::Hostname,
            "url" | "uri" | "link" => IocType::Url,
            "email"
            | "email_src"
            | "email_dst"
            | "email_addr"
            | "email_address"
            | "target_email"
            | "whois_registrant_email" => IocType::Email,
            "md5" | "hash_md5" => IocType::Md5,
            "sha1" | "sha_1" | "hash_sha1" => IocType::Sha1,
            "sha256" | "sha_256" | "hash_sha256" => IocType::Sha256,
            "sha512" | "sha_512" | "hash_sha512" => IocType::Sha512,
            "imphash" => IocType::Imphash,
            "filename" | "file_name" | "file" => IocType::FileName,
            "file_path" | "filepath" | "path" | "full_path" => IocType::FilePath,
            "regkey"
            | "registry_key"
            | "registry"
            | "windows_registry_key"
            | "registry_value"
            | "regkey_value" => IocType::RegistryKey,
            "user_name" | "username" | "account" | "user" | "user_account" | "target_user"
            | "user_id" => IocType::UserName,
            "command_line" | "commandline" | "cmdline" | "command" => IocType::CommandLine,
            "process_name" | "process" | "image" => IocType::ProcessName,
            "service_name" | "windows_service_name" | "windows_service_displayname" | "service" => {
                IocType::ServiceName
            }
            "named_pipe" | "named pipe" | "pipe" | "pipename" => IocType::NamedPipe,
            "mutex" | "mutant" => IocType::Mutex,
            "user_agent" | "useragent" | "http_user_agent" => IocType::UserAgent,
            "other" | "text" | "string" | "pattern_in_file" | "pattern_in_memory" => IocType::Other,
            _ => return None,
        })
    }

    /// Whether values of this type compare without regard to case (every type but URL
    /// paths and `other` is; those compare ASCII-case-insensitively while hunting too,
    /// but keep their case as entered).
    pub fn keeps_case(self) -> bool {
        matches!(self, IocType::Other | IocType::UserAgent)
    }

    /// The MISP attribute type of this type, for exports.
    pub fn misp_type(self) -> &'static str {
        match self {
            IocType::Ip => "ip-dst",
            IocType::Cidr => "ip-dst",
            IocType::Domain => "domain",
            IocType::Hostname => "hostname",
            IocType::Url => "url",
            IocType::Email => "email",
            IocType::Md5 => "md5",
            IocType::Sha1 => "sha1",
            IocType::Sha256 => "sha256",
            IocType::Sha512 => "sha512",
            IocType::Imphash => "imphash",
            IocType::FileName => "filename",
            IocType::FilePath => "filename",
            IocType::RegistryKey => "regkey",
            IocType::UserName => "target-user",
            IocType::CommandLine => "text",
            IocType::ProcessName => "filename",
            IocType::ServiceName => "windows-service-name",
            IocType::NamedPipe => "named pipe",
            IocType::Mutex => "mutex",
            IocType::UserAgent => "user-agent",
            IocType::Other => "text",
        }
    }
}

impl fmt::Display for IocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The IOC types a MISP or DFIR-IRIS composite type names, in the order of its
/// `|`-separated parts (`None` for a part that is not an indicator, e.g. a port).
pub fn composite(name: &str) -> Option<Vec<Option<IocType>>> {
    let lower = name.trim().to_ascii_lowercase();
    if !lower.contains('|') {
        return None;
    }
    Some(
        lower
            .split('|')
            .map(|part| match part {
                "port" => None,
                "value" | "data" => None,
                other => IocType::from_name(other),
            })
            .collect(),
    )
}

/// Traffic Light Protocol 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tlp {
    Clear,
    Green,
    Amber,
    AmberStrict,
    Red,
}

impl Tlp {
    pub fn name(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Red => "red",
        }
    }

    /// `amber`, `TLP:AMBER`, `tlp:amber+strict`, `white` (TLP 1.0 for clear), …
    pub fn parse(text: &str) -> Option<Tlp> {
        let lower = text.trim().to_ascii_lowercase();
        let lower = lower.strip_prefix("tlp:").unwrap_or(&lower).trim();
        Some(match lower {
            "clear" | "white" => Tlp::Clear,
            "green" => Tlp::Green,
            "amber" => Tlp::Amber,
            "amber+strict" | "amber_strict" | "amber-strict" => Tlp::AmberStrict,
            "red" => Tlp::Red,
            _ => return None,
        })
    }

    /// The STIX 2.1 marking definition id of this level (TLP 2.0 definitions).
    pub fn stix_marking(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        }
    }

    /// The level of a STIX marking definition id (TLP 1.0 and 2.0 definitions).
    pub fn from_stix_marking(id: &str) -> Option<Tlp> {
        const TLP1: [(&str, Tlp); 4] = [
            (
                "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
                Tlp::Clear,
            ),
            (
                "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
                Tlp::Green,
            ),
            (
                "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
                Tlp::Amber,
            ),
            (
                "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
                Tlp::Red,
            ),
        ];
        for (known, tlp) in TLP1 {
            if known == id {
                return Some(tlp);
            }
        }
        [
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red,
        ]
        .into_iter()
        .find(|tlp| tlp.stix_marking() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_peer_names_map() {
        for kind in IocType::ALL {
            assert_eq!(IocType::from_name(kind.name()), Some(kind), "{kind}");
        }
        assert_eq!(IocType::from_name("ip-dst"), Some(IocType::Ip));
        assert_eq!(IocType::from_name("IP-SRC"), Some(IocType::Ip));
        assert_eq!(IocType::from_name("filename"), Some(IocType::FileName));
        assert_eq!(IocType::from_name("regkey"), Some(IocType::RegistryKey));
        assert_eq!(
            IocType::from_name("windows-service-name"),
            Some(IocType::ServiceName)
        );
        assert_eq!(IocType::from_name("AS"), None);
        assert_eq!(
            composite("filename|sha256"),
            Some(vec![Some(IocType::FileName), Some(IocType::Sha256)])
        );
        assert_eq!(
            composite("ip-dst|port"),
            Some(vec![Some(IocType::Ip), None])
        );
        assert_eq!(composite("sha256"), None);
    }

    #[test]
    fn tlp_levels_parse_and_map_to_stix() {
        assert_eq!(Tlp::parse("TLP:AMBER+STRICT"), Some(Tlp::AmberStrict));
        assert_eq!(Tlp::parse("white"), Some(Tlp::Clear));
        assert_eq!(Tlp::parse("purple"), None);
        for tlp in [
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red,
        ] {
            assert_eq!(Tlp::from_stix_marking(tlp.stix_marking()), Some(tlp));
        }
        assert_eq!(
            Tlp::from_stix_marking("marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"),
            Some(Tlp::Amber)
        );
    }
}
