//! Every IOC type that Windows logs carry, hunted in real events of
//! EVTX-ATTACK-SAMPLES (../shared/data), with values taken from those logs: the hunt
//! finds each in the field it is in, and nothing in files that do not hold it.

use casescope_evidence::{Context, Format, Outcome, parse_file};
use casescope_ioc::{Hunter, Indicator, IocType, canonicalize};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

fn samples() -> Option<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let dir = Path::new(&manifest).join("../../../shared/data/evtx-attack-samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} not present (the shared EVTX-ATTACK-SAMPLES)",
            dir.display()
        );
        None
    }
}

type Found = Vec<Vec<(String, String, Option<u32>)>>;

/// (field, matched text, event code) of every hit of `iocs` in `file`, per IOC.
fn hunt(file: &Path, iocs: &[(IocType, &str)]) -> Found {
    let list: Vec<Indicator> = iocs
        .iter()
        .map(|(kind, value)| Indicator {
            ioc_type: *kind,
            value: canonicalize(*kind, value).unwrap_or_else(|e| panic!("{value}: {e}")),
        })
        .collect();
    let hunter = Hunter::new(&list);
    let context = Context {
        case_id: "c".into(),
        file_id: "f".into(),
        evidence_sha256: String::new(),
        timestamp_field: None,
        limits: Default::default(),
        keep_raw: false,
    };
    let mut found = vec![Vec::new(); iocs.len()];
    parse_file(file, Format::Evtx, &context, &mut |outcome| {
        if let Outcome::Event(event) = outcome {
            let mut fields: Vec<(&str, &str)> = event
                .fields
                .iter()
                .filter_map(|(name, value)| value.as_str().map(|text| (name.as_str(), text)))
                .collect();
            if let Some(computer) = event.computer.as_deref() {
                fields.push(("Computer", computer));
            }
            let mut hits = Vec::new();
            hunter.hunt(&fields, &mut hits);
            for hit in hits {
                found[hit.ioc as usize].push((
                    hit.field.to_string(),
                    hit.matched.to_string(),
                    event.event_code,
                ));
            }
        }
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    found
}

/// (file, IOC type, value as an analyst would enter it, field, matched text, event code)
type Case = (
    &'static str,
    IocType,
    &'static str,
    &'static str,
    &'static str,
    u32,
);

const CASES: &[Case] = &[
    // A source address of a network logon (Security 4624).
    (
        "LM_WMI_4624_4688_TargetHost.evtx",
        IocType::Ip,
        "10.0.2[.]17",
        "IpAddress",
        "10.0.2.17",
        4624,
    ),
    (
        "smbmap_upload_exec_sysmon.evtx",
        IocType::Cidr,
        "10.0.2.0/24",
        "DestinationIp",
        "10.0.2.18",
        3,
    ),
    // Hashes out of Sysmon's `Hashes`, each by its own label.
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::Sha256,
        "EBE94E294D86C714BED13EF018E70F75C37F8D8259144C0C847637EDC0222ECB",
        "Hashes",
        "EBE94E294D86C714BED13EF018E70F75C37F8D8259144C0C847637EDC0222ECB",
        1,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::Md5,
        "116d463d2f5dbf76f7e2f5c6d8b5d3bb",
        "Hashes",
        "116D463D2F5DBF76F7E2F5C6D8B5D3BB",
        1,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::Sha1,
        "B71C1331AC5FA214076E5CD5C885712447057B96",
        "Hashes",
        "B71C1331AC5FA214076E5CD5C885712447057B96",
        1,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::Imphash,
        "461A33302E82ED68F1A74C083E27BD02",
        "Hashes",
        "461A33302E82ED68F1A74C083E27BD02",
        1,
    ),
    // A resolved destination host (Sysmon 3; the samples hold no DNS query events): the
    // registered domain matches its subdomain.
    (
        "exec_wmic_xsl_internet_sysmon_3_1_11.evtx",
        IocType::Domain,
        "afterburst[.]com",
        "DestinationHostname",
        "afterburst.com",
        3,
    ),
    (
        "DE_RDP_Tunneling_4624.evtx",
        IocType::Hostname,
        "pc02",
        "Computer",
        "PC02",
        4624,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::UserName,
        "insecurebank\\Administrator",
        "User",
        "insecurebank\\Administrator",
        1,
    ),
    (
        "DE_UAC_Disabled_Sysmon_12_13.evtx",
        IocType::RegistryKey,
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\EnableLUA",
        "TargetObject",
        "\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\policies\\system\\EnableLUA",
        13,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::CommandLine,
        "+h NBTSCAN.exe",
        "CommandLine",
        "+h nbtscan.exe",
        1,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::ProcessName,
        "ATTRIB.EXE",
        "Image",
        "attrib.exe",
        1,
    ),
    (
        "de_hiding_files_via_attrib_cmdlet.evtx",
        IocType::FileName,
        "nbtscan.exe",
        "CommandLine",
        "nbtscan.exe",
        1,
    ),
    (
        "DE_renamed_psexec_service_sysmon_17_18.evtx",
        IocType::FilePath,
        "c:/windows/system32/psexec.exe",
        "Image",
        "C:\\Windows\\system32\\PsExec.exe",
        18,
    ),
    (
        "DE_renamed_psexec_service_sysmon_17_18.evtx",
        IocType::NamedPipe,
        "\\\\.\\pipe\\svchost-MSEDGEWIN10-8116-stdin",
        "PipeName",
        "\\svchost-MSEDGEWIN10-8116-stdin",
        18,
    ),
    (
        "LM_Remote_Service02_7045.evtx",
        IocType::ServiceName,
        "REMOTESVC",
        "ServiceName",
        "remotesvc",
        7045,
    ),
    (
        "windows_bits_4_59_60_lolbas desktopimgdownldr.evtx",
        IocType::Url,
        "hxxps://a.uguu[.]se/Hv0bgvgHGNeH_Bin.7z",
        "url",
        "https://a.uguu.se/Hv0bgvgHGNeH_Bin.7z",
        59,
    ),
];

#[test]
fn each_ioc_type_is_found_where_the_logs_hold_it() {
    let Some(root) = samples() else { return };
    let files = walk(&root);
    for (name, kind, value, field, matched, code) in CASES {
        let path = files
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in {}", root.display()));
        let found = hunt(path, &[(*kind, value)]);
        let hits = &found[0];
        assert!(
            hits.iter().any(|(f, m, c)| f == field
                && m.eq_ignore_ascii_case(matched)
                && *c == Some(*code)),
            "{kind} {value} in {name}: expected {field}={matched} (event {code}), found {hits:?}"
        );
    }
}

#[test]
fn values_absent_from_a_file_are_not_found_in_it() {
    let Some(root) = samples() else { return };
    let file = root.join("Defense Evasion/de_hiding_files_via_attrib_cmdlet.evtx");
    let found = hunt(
        &file,
        &[
            // The MD5 given as an IMPHASH: the `IMPHASH=` label does not agree.
            (IocType::Imphash, "116d463d2f5dbf76f7e2f5c6d8b5d3bb"),
            (IocType::Ip, "10.0.2.17"),
            (IocType::Domain, "uguu.se"),
            (IocType::ProcessName, "trib.exe"),
            (IocType::UserName, "otherdomain\\Administrator"),
        ],
    );
    for (index, hits) in found.iter().enumerate() {
        assert!(hits.is_empty(), "IOC {index} found: {hits:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
