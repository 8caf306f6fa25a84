//! The engine only evaluates a rule when the event can match it: by the event IDs its
//! detection requires, and by literals found in the fields they belong to (regex
//! prefixes included). These tests check that nothing a rule matches is skipped on the
//! way, however the event writes the value.

use casescope_sigma::{EventRef, LogsourceMapping, RuleSet};
use serde_json::{Value, json};

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";
const DEFENDER: &str = "Microsoft-Windows-Windows Defender/Operational";

fn rules(yaml: &str) -> RuleSet {
    let set = RuleSet::from_documents(
        &[("test.yml".to_string(), yaml.to_string())],
        &LogsourceMapping::built_in(),
    );
    assert!(set.refused.is_empty(), "refused: {:?}", set.refused);
    set
}

/// Titles of the rules `event` fires, sorted.
fn fired(set: &RuleSet, channel: &str, code: Option<u32>, fields: Value) -> Vec<String> {
    let mut fields = fields.as_object().cloned().unwrap_or_default();
    fields.insert("Channel".into(), json!(channel));
    let event = EventRef {
        channel: Some(channel),
        event_code: code,
        fields: (&fields).into(),
    };
    let mut titles: Vec<String> = set
        .evaluate(&event)
        .into_iter()
        .map(|i| set.rules[i].meta.title.clone())
        .collect();
    titles.sort();
    titles
}

const BY_EVENT_ID: &str = r#"
title: A sysmon 27
logsource: {product: windows, service: sysmon}
detection:
    selection:
        EventID: 27
    condition: selection
---
title: B network logon
logsource: {product: windows, service: security}
detection:
    selection:
        EventID: [4624, 4625]
        LogonType: 3
    condition: selection
---
title: C either
logsource: {product: windows, service: security}
detection:
    created:
        EventID: 4720
    machine:
        TargetUserName|endswith: '$'
    condition: created or machine
---
title: D not a logon
logsource: {product: windows, service: security}
detection:
    logon:
        EventID: 4624
    condition: not logon
---
title: E log cleared anywhere
logsource: {product: windows}
detection:
    selection:
        EventID: '1102'
    condition: selection
---
title: F all of two
logsource: {product: windows, service: security}
detection:
    one:
        EventID: [4688, 4689]
    two:
        EventID: [4689, 4690]
    condition: all of them
"#;

#[test]
fn rules_selected_by_event_id_fire_however_the_event_writes_it() {
    let set = rules(BY_EVENT_ID);
    // The value as a number, a decimal string, a hexadecimal string or in a list; the
    // event's own event code is not what the rules read.
    for value in [json!(27), json!("27"), json!("0x1B"), json!([26, 27])] {
        assert_eq!(
            fired(&set, SYSMON, None, json!({ "EventID": value })),
            ["A sysmon 27"],
            "EventID {value}"
        );
    }
    assert!(fired(&set, SYSMON, Some(27), json!({"EventID": 1})).is_empty());
    assert!(fired(&set, SYSMON, Some(27), json!({})).is_empty());
    assert!(fired(&set, SYSMON, Some(27), json!({"EventID": 27.5})).is_empty());

    let security = |code: u32, more: Value| {
        let mut fields = more;
        fields["EventID"] = json!(code);
        fired(&set, "Security", Some(code), fields)
    };
    assert_eq!(
        security(4625, json!({"LogonType": 3})),
        ["B network logon", "D not a logon"]
    );
    assert_eq!(security(4624, json!({"LogonType": 3})), ["B network logon"]);
    assert_eq!(security(4634, json!({"LogonType": 3})), ["D not a logon"]);
    // Not restricted: one alternative does not name an event ID.
    assert_eq!(
        security(4738, json!({"TargetUserName": "PC01$"})),
        ["C either", "D not a logon"]
    );
    assert_eq!(security(4720, json!({})), ["C either", "D not a logon"]);
    // Both selections: only the ID in both lists.
    assert_eq!(security(4689, json!({})), ["D not a logon", "F all of two"]);
    assert_eq!(security(4688, json!({})), ["D not a logon"]);
    assert_eq!(security(4690, json!({})), ["D not a logon"]);
    // A rule for every Windows event, on a channel no mapping names.
    assert_eq!(
        fired(&set, "Other", Some(1102), json!({"EventID": 1102})),
        ["E log cleared anywhere"]
    );
    assert!(fired(&set, "Other", Some(1101), json!({"EventID": 1101})).is_empty());
}

const REGEXES: &str = r#"
title: Case-sensitive regex
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|re: 'ipconfig\s+/all'
    condition: selection
---
title: Regex with the i modifier
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|re|i: 'net\s+stop'
    condition: selection
---
title: Regex with an inline flag
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|re: '(?i)who(ami|is)'
    condition: selection
---
title: Regex with no literal
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|re: '^[A-Z0-9]{4}$'
    condition: selection
"#;

#[test]
fn regex_rules_are_prefiltered_by_their_prefixes_and_match_as_written() {
    let set = rules(REGEXES);
    let groups = |title: &str| {
        set.rules
            .iter()
            .find(|rule| rule.meta.title == title)
            .map(|rule| rule.literal_groups_len())
    };
    assert_eq!(groups("Case-sensitive regex"), Some(1));
    assert_eq!(groups("Regex with the i modifier"), Some(1));
    assert_eq!(groups("Regex with an inline flag"), Some(1));
    assert_eq!(groups("Regex with no literal"), Some(0));
    let run = |command: &str| {
        fired(
            &set,
            SYSMON,
            Some(1),
            json!({"EventID": 1, "CommandLine": command, "Image": "C:\\x.exe"}),
        )
    };
    assert_eq!(run("cmd /c ipconfig   /all"), ["Case-sensitive regex"]);
    assert!(run("cmd /c IPCONFIG /all").is_empty());
    assert_eq!(run("NET  STOP spooler"), ["Regex with the i modifier"]);
    assert_eq!(run("WhoIs x"), ["Regex with an inline flag"]);
    // Case-insensitive `s` matches the long s too; the prefilter must not lose it.
    assert_eq!(run("whoiſ"), ["Regex with an inline flag"]);
    assert_eq!(run("AB12"), ["Regex with no literal"]);
    assert!(run("ab12").is_empty());
}

const FIELDS: &str = r#"
title: Whoami image
logsource: {product: windows, category: process_creation}
detection:
    selection:
        Image|endswith: '\whoami.exe'
    condition: selection
---
title: Long path
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|contains: 'C:\Windows\System32\Tasks\EvilTask'
    condition: selection
---
title: Threat by name
logsource: {product: windows, service: windefend}
detection:
    selection:
        ThreatName|contains: 'mimikatz'
    condition: selection
---
title: Keyword anywhere
logsource: {product: windows, service: security}
detection:
    keywords:
        - 'sekurlsa'
    condition: keywords
---
title: Symbols
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|contains: '®'
    condition: selection
"#;

#[test]
fn literals_count_in_their_own_field_its_aliases_and_other_names() {
    let set = rules(FIELDS);
    let sysmon = |fields: Value| fired(&set, SYSMON, Some(1), fields);
    assert_eq!(
        sysmon(json!({"EventID": 1, "Image": "C:\\Windows\\System32\\WHOAMI.EXE"})),
        ["Whoami image"]
    );
    // The literal in another field does not make the rule match.
    assert!(
        sysmon(json!({"EventID": 1, "Image": "C:\\x.exe", "CommandLine": "whoami.exe"})).is_empty()
    );
    // Security 4688 names the image NewProcessName: the logsource's alias.
    assert_eq!(
        fired(
            &set,
            "Security",
            Some(4688),
            json!({"EventID": 4688, "NewProcessName": "C:\\Windows\\System32\\whoami.exe"})
        ),
        ["Whoami image"]
    );
    // Long literals: a value sharing only its end (the part searched for) is tested and
    // refused by the rule itself; the whole literal fires.
    assert!(
        sysmon(json!({"EventID": 1, "CommandLine": "schtasks /run C:\\Temp\\EvilTask"})).is_empty()
    );
    assert_eq!(
        sysmon(json!({"EventID": 1, "CommandLine": "x c:\\windows\\system32\\tasks\\eviltask y"})),
        ["Long path"]
    );
    // A field whose event name has a space, read by the rule without it.
    assert_eq!(
        fired(
            &set,
            DEFENDER,
            Some(1116),
            json!({"EventID": 1116, "Threat Name": "HackTool:Win32/Mimikatz"})
        ),
        ["Threat by name"]
    );
    // A keyword in any value, of any field.
    assert_eq!(
        fired(
            &set,
            "Security",
            Some(4688),
            json!({"EventID": 4688, "Whatever": "run SEKURLSA::logonpasswords"})
        ),
        ["Keyword anywhere"]
    );
    // A one-character non-ASCII literal is searched for too.
    assert_eq!(
        sysmon(json!({"EventID": 1, "CommandLine": "a ® b"})),
        ["Symbols"]
    );
    assert!(sysmon(json!({"EventID": 1, "CommandLine": "a (R) b"})).is_empty());
}

const ALTERNATIVES: &str = r#"
title: Tool by name and extension, or by hash
logsource: {product: windows, category: process_creation}
detection:
    selection_img:
        Image|contains: ['\EDR-Freeze', '\EDRFreeze']
        Image|endswith: '.exe'
    selection_hash:
        Hashes|contains: 'IMPHASH=1195F7935954A2CD09157390C33F8E8C'
    condition: 1 of selection_*
---
title: Either pair
logsource: {product: windows, category: process_creation}
detection:
    first:
        CommandLine|contains: 'alpha-one'
        ParentImage|endswith: '\beta.exe'
    second:
        CommandLine|contains: 'gamma-two'
    condition: first or second
---
title: Carets
logsource: {product: windows, category: process_creation}
detection:
    selection:
        CommandLine|contains: ['^^', ',;,']
    condition: selection
"#;

/// `(A and B) or C` requires `A or C` and `B or C`: every combination is kept, so a
/// common literal (`.exe`) alone never makes the rule a candidate, and each way the rule
/// can match still fires it.
#[test]
fn alternatives_require_every_combination_and_fire_each_way() {
    let set = rules(ALTERNATIVES);
    let by_title = |title: &str| {
        set.rules
            .iter()
            .find(|rule| rule.meta.title == title)
            .unwrap_or_else(|| panic!("no rule {title}"))
    };
    assert_eq!(
        by_title("Tool by name and extension, or by hash").literal_groups_len(),
        2
    );
    assert_eq!(by_title("Either pair").literal_groups_len(), 2);
    // Two punctuation characters are a literal worth searching for.
    assert_eq!(by_title("Carets").literal_groups_len(), 1);
    let sysmon = |fields: Value| fired(&set, SYSMON, Some(1), fields);
    assert_eq!(
        sysmon(json!({"EventID": 1, "Image": "C:\\Tools\\EDRFreeze.exe"})),
        ["Tool by name and extension, or by hash"]
    );
    assert_eq!(
        sysmon(json!({"EventID": 1, "Image": "C:\\x.bin",
            "Hashes": "SHA1=00,IMPHASH=1195F7935954A2CD09157390C33F8E8C"})),
        ["Tool by name and extension, or by hash"]
    );
    assert!(sysmon(json!({"EventID": 1, "Image": "C:\\Windows\\cmd.exe"})).is_empty());
    assert!(sysmon(json!({"EventID": 1, "Image": "C:\\Tools\\EDRFreeze.dll"})).is_empty());
    assert_eq!(
        sysmon(json!({"EventID": 1, "CommandLine": "run ALPHA-ONE now",
            "ParentImage": "C:\\beta.exe"})),
        ["Either pair"]
    );
    assert_eq!(
        sysmon(json!({"EventID": 1, "CommandLine": "gamma-two"})),
        ["Either pair"]
    );
    assert!(sysmon(json!({"EventID": 1, "CommandLine": "alpha-one"})).is_empty());
    assert_eq!(
        sysmon(json!({"EventID": 1, "CommandLine": "c^^m^^d /c x"})),
        ["Carets"]
    );
    assert!(sysmon(json!({"EventID": 1, "CommandLine": "c^m^d /c x"})).is_empty());
}

/// Keyword (field-less) literals are only searched when a packed search finds one of
/// the candidate rules' keywords in the event: a rule for every Windows event, one for
/// a channel, and one with more keywords than a packed search takes (always searched)
/// each fire on their keywords wherever the value holds them, and not otherwise.
#[test]
fn keyword_rules_fire_through_the_keyword_gate() {
    let many: Vec<String> = (0..200)
        .map(|n| format!("        - 'kw{n:03}marker'"))
        .collect();
    let yaml = format!(
        r#"
title: K everywhere
logsource: {{product: windows}}
detection:
    keywords:
        - 'sekurlsa::'
        - 'mimidrv.sys'
    filter:
        EventID: 15
    condition: keywords and not filter
---
title: L system channel
logsource: {{product: windows, service: system}}
detection:
    keywords:
        - 'evil service'
    condition: keywords
---
title: M many keywords
logsource: {{product: windows, service: application}}
detection:
    keywords:
{}
    condition: keywords
"#,
        many.join("\n")
    );
    let set = rules(&yaml);
    let cases: Vec<(&str, Option<u32>, Value, Vec<&str>)> = vec![
        (
            SYSMON,
            Some(1),
            json!({"CommandLine": "x.exe sekurlsa::logonpasswords"}),
            vec!["K everywhere"],
        ),
        (
            SYSMON,
            Some(1),
            json!({"CommandLine": "x.exe SEKURLSA::logonpasswords"}),
            vec!["K everywhere"],
        ),
        (
            SYSMON,
            Some(15),
            json!({"EventID": 15, "TargetFilename": "C:\\mimidrv.sys"}),
            vec![],
        ),
        (
            SYSMON,
            Some(11),
            json!({"TargetFilename": "C:\\mimidrv.sys"}),
            vec!["K everywhere"],
        ),
        (
            SYSMON,
            Some(1),
            json!({"CommandLine": "sekurlsa:logon"}),
            vec![],
        ),
        (
            "System",
            Some(7045),
            json!({"ServiceName": "An Evil Service here"}),
            vec!["L system channel"],
        ),
        (
            "System",
            Some(7045),
            json!({"ServiceName": "evil  service"}),
            vec![],
        ),
        (
            "System",
            Some(7045),
            json!({"a": "evil service", "b": "mimidrv.sys"}),
            vec!["K everywhere", "L system channel"],
        ),
        ("Security", Some(4624), json!({"a": "evil service"}), vec![]),
        (
            "Application",
            Some(1),
            json!({"Data": "prefix KW150MARKER suffix"}),
            vec!["M many keywords"],
        ),
        (
            "Application",
            Some(1),
            json!({"Data": "kw150marke"}),
            vec![],
        ),
        (
            "Application",
            Some(1),
            json!({"Data": ["x", "kw007marker"]}),
            vec!["M many keywords"],
        ),
    ];
    for (channel, code, fields, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|t| t.to_string()).collect();
        let got = fired(&set, channel, code, fields.clone());
        assert_eq!(got, expected, "{channel} {code:?} {fields}");
    }
}
