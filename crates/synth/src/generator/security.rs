//! Security log events (provider Microsoft-Windows-Security-Auditing), with the fields and
//! field order Windows 10 writes.

use super::{Events, fill, kv, short_name, user_sid};
use crate::SynthEvent;
use crate::profiles::{
    ADMIN_USER, DOMAIN, DOMAIN_CONTROLLER, DOMAIN_SID, EXTERNAL_IPS, HOSTS, Host, Launch,
    SERVICE_USER, SPRAYED_NAMES, User,
};

const PROVIDER: &str = "Microsoft-Windows-Security-Auditing";
const PROVIDER_GUID: &str = "{54849625-5478-4994-a5ba-3e3b0328c30d}";
/// Audit Success / Audit Failure.
const SUCCESS: u64 = 0x8020_0000_0000_0000;
const FAILURE: u64 = 0x8010_0000_0000_0000;
const TASK_LOGON: u16 = 12544;
const TASK_PROCESS_CREATION: u16 = 13312;
const TASK_USER_ACCOUNT_MANAGEMENT: u16 = 13824;
const TASK_SECURITY_GROUP_MANAGEMENT: u16 = 13826;
const SYSTEM_SID: &str = "S-1-5-18";
const NULL_SID: &str = "S-1-0-0";
const WINLOGON: &str = r"C:\Windows\System32\winlogon.exe";

/// Names made for new accounts, one per 4720.
const NEW_ACCOUNTS: [&str; 4] = ["svc_update", "helpdesk2", "jérôme.leroy", "tmp_admin"];

impl Events {
    fn security(
        &mut self,
        host: &Host,
        event_id: u16,
        version: u8,
        task: u16,
        keywords: u64,
        process_id: u32,
    ) -> SynthEvent {
        SynthEvent {
            record_id: 0,
            timestamp: self.now,
            provider: PROVIDER.into(),
            provider_guid: Some(PROVIDER_GUID.into()),
            event_id,
            version,
            level: 0,
            task,
            opcode: 0,
            keywords,
            channel: "Security".into(),
            computer: host.name.into(),
            security_user_id: None,
            process_id,
            thread_id: self.thread(),
            data: Vec::new(),
        }
    }

    /// 4624, an account logged on: interactive, network, service, unlock, RDP or cached.
    pub(super) fn logon(&mut self, host: &'static Host) -> SynthEvent {
        let user = self.user();
        let logon_type = *self.rng.pick(&[2u8, 3, 3, 3, 3, 5, 7, 10, 11]);
        let peer = self.rng.pick(&HOSTS);
        let remote_ip = if logon_type == 10 && self.rng.below(4) == 0 {
            *self.rng.pick(&EXTERNAL_IPS)
        } else {
            peer.ip
        };
        let port = (49152 + self.rng.below(16000)).to_string();
        let kerberos = logon_type == 3 && self.rng.below(2) == 0;
        // (logon process, package, workstation, ip, port, process) as Windows fills them in.
        let (process, package, workstation, ip, ip_port, process_name) = match logon_type {
            3 if kerberos => ("Kerberos", "Kerberos", "-", remote_ip, port, "-"),
            3 => ("NtLmSsp ", "NTLM", short_name(peer), remote_ip, port, "-"),
            5 => (
                "Advapi  ",
                "Negotiate",
                "-",
                "-",
                "-".into(),
                r"C:\Windows\System32\services.exe",
            ),
            10 => (
                "User32 ",
                "Negotiate",
                short_name(host),
                remote_ip,
                port,
                WINLOGON,
            ),
            _ => (
                "User32 ",
                "Negotiate",
                short_name(host),
                "127.0.0.1",
                "0".into(),
                WINLOGON,
            ),
        };
        let user = if logon_type == 5 { SERVICE_USER } else { user };
        let local = process_name != "-";
        let (subject_sid, subject_name, subject_domain, subject_logon) = if local {
            (
                SYSTEM_SID,
                format!("{}$", short_name(host)),
                DOMAIN,
                "0x3e7",
            )
        } else {
            (NULL_SID, "-".into(), "-", "0x0")
        };
        let logon_guid = if kerberos {
            self.random_guid()
        } else {
            "{00000000-0000-0000-0000-000000000000}".into()
        };
        let ntlm = package == "NTLM";
        let mut event = self.security(host, 4624, 2, TASK_LOGON, SUCCESS, host.lsass_pid);
        let process_id = if local {
            format!("{:#x}", 500 + 4 * (logon_type as u32))
        } else {
            "0x0".into()
        };
        let yes_no = |yes: bool| if yes { "%%1842" } else { "%%1843" };
        event.data = vec![
            kv("SubjectUserSid", subject_sid),
            kv("SubjectUserName", subject_name),
            kv("SubjectDomainName", subject_domain),
            kv("SubjectLogonId", subject_logon),
            kv("TargetUserSid", user_sid(user)),
            kv("TargetUserName", user.name),
            kv("TargetDomainName", DOMAIN),
            kv("TargetLogonId", format!("{:#x}", self.logon_id())),
            kv("LogonType", logon_type.to_string()),
            kv("LogonProcessName", process),
            kv("AuthenticationPackageName", package),
            kv("WorkstationName", workstation),
            kv("LogonGuid", logon_guid),
            kv("TransmittedServices", "-"),
            kv("LmPackageName", if ntlm { "NTLM V2" } else { "-" }),
            kv("KeyLength", if ntlm { "128" } else { "0" }),
            kv("ProcessId", process_id),
            kv("ProcessName", process_name),
            kv("IpAddress", ip),
            kv("IpPort", ip_port),
            kv("ImpersonationLevel", "%%1833"),
            kv(
                "RestrictedAdminMode",
                if logon_type == 10 { "%%1843" } else { "-" },
            ),
            kv("TargetOutboundUserName", "-"),
            kv("TargetOutboundDomainName", "-"),
            kv("VirtualAccount", "%%1843"),
            kv("TargetLinkedLogonId", "0x0"),
            kv("ElevatedToken", yes_no(user.admin)),
        ];
        event
    }

    /// 4625, a failed logon: mostly password spraying from outside, sometimes a typo.
    pub(super) fn failed_logon(&mut self, host: &'static Host) -> SynthEvent {
        let spray = self.rng.below(4) != 0;
        let (name, logon_type, ip, port, sub_status) = if spray {
            let name = *self.rng.pick(&SPRAYED_NAMES);
            let known = name == "administrator" || name == "alice.martin";
            let sub_status = if known { "0xc000006a" } else { "0xc0000064" };
            let ip = *self.rng.pick(&EXTERNAL_IPS);
            (
                name,
                3u8,
                ip,
                (1024 + self.rng.below(60000)).to_string(),
                sub_status,
            )
        } else {
            let user = self.user();
            (user.name, 2, "127.0.0.1", "0".to_owned(), "0xc000006a")
        };
        let mut event = self.security(host, 4625, 0, TASK_LOGON, FAILURE, host.lsass_pid);
        let network = logon_type == 3;
        event.data = vec![
            kv(
                "SubjectUserSid",
                if network { NULL_SID } else { SYSTEM_SID },
            ),
            kv(
                "SubjectUserName",
                if network {
                    "-".into()
                } else {
                    format!("{}$", short_name(host))
                },
            ),
            kv("SubjectDomainName", if network { "-" } else { DOMAIN }),
            kv("SubjectLogonId", if network { "0x0" } else { "0x3e7" }),
            kv("TargetUserSid", NULL_SID),
            kv("TargetUserName", name),
            kv("TargetDomainName", if network { "" } else { DOMAIN }),
            kv("Status", "0xc000006d"),
            kv("FailureReason", "%%2313"),
            kv("SubStatus", sub_status),
            kv("LogonType", logon_type.to_string()),
            kv(
                "LogonProcessName",
                if network { "NtLmSsp " } else { "User32 " },
            ),
            kv(
                "AuthenticationPackageName",
                if network { "NTLM" } else { "Negotiate" },
            ),
            kv(
                "WorkstationName",
                if network { "-" } else { short_name(host) },
            ),
            kv("TransmittedServices", "-"),
            kv("LmPackageName", "-"),
            kv("KeyLength", "0"),
            kv(
                "ProcessId",
                if network {
                    "0x0".into()
                } else {
                    format!("{:#x}", 0x2c4)
                },
            ),
            kv("ProcessName", if network { "-" } else { WINLOGON }),
            kv("IpAddress", ip),
            kv("IpPort", port),
        ];
        event
    }

    /// 4688, a process was created: the Security log's view of a start Sysmon logged too.
    pub(super) fn process_creation(
        &mut self,
        host: &'static Host,
        launch: &Launch,
        user: Option<&User>,
        pid: u32,
        parent_pid: u32,
        logon_id: u64,
    ) -> SynthEvent {
        let mut event = self.security(host, 4688, 2, TASK_PROCESS_CREATION, SUCCESS, 4);
        let (sid, name, elevation, label) = match user {
            Some(user) if user.admin => (
                user_sid(user),
                user.name.to_owned(),
                "%%1937",
                "S-1-16-12288",
            ),
            Some(user) => (
                user_sid(user),
                user.name.to_owned(),
                "%%1938",
                "S-1-16-8192",
            ),
            None => (
                SYSTEM_SID.into(),
                format!("{}$", short_name(host)),
                "%%1936",
                "S-1-16-16384",
            ),
        };
        let command_line = match user {
            Some(user) => fill(launch.command_line, user),
            None => launch.command_line.to_owned(),
        };
        event.data = vec![
            kv("SubjectUserSid", sid),
            kv("SubjectUserName", name),
            kv("SubjectDomainName", DOMAIN),
            kv("SubjectLogonId", format!("{logon_id:#x}")),
            kv("NewProcessId", format!("{pid:#x}")),
            kv("NewProcessName", launch.image),
            kv("TokenElevationType", elevation),
            kv("ProcessId", format!("{parent_pid:#x}")),
            kv("CommandLine", command_line),
            kv("TargetUserSid", NULL_SID),
            kv("TargetUserName", "-"),
            kv("TargetDomainName", "-"),
            kv("TargetLogonId", "0x0"),
            kv("ParentProcessName", launch.parent),
            kv("MandatoryLabel", label),
        ];
        event
    }

    /// 4720, an account was created on the domain controller; the 4732 adding it to a local
    /// group follows as the next event.
    pub(super) fn account_created(&mut self) -> SynthEvent {
        let dc = DOMAIN_CONTROLLER;
        let admin = ADMIN_USER;
        let name = NEW_ACCOUNTS[self.next_account as usize % NEW_ACCOUNTS.len()];
        self.next_account = self.next_account.wrapping_add(1);
        let sid = format!("{DOMAIN_SID}-{}", 1300 + u64::from(self.next_account));
        let admin_logon = format!("{:#x}", self.logon_id());
        let subject = [
            kv("SubjectUserSid", user_sid(admin)),
            kv("SubjectUserName", admin.name),
            kv("SubjectDomainName", DOMAIN),
            kv("SubjectLogonId", admin_logon),
        ];
        let mut created = self.security(
            dc,
            4720,
            0,
            TASK_USER_ACCOUNT_MANAGEMENT,
            SUCCESS,
            dc.lsass_pid,
        );
        created.data = vec![
            kv("TargetUserName", name),
            kv("TargetDomainName", DOMAIN),
            kv("TargetSid", sid.clone()),
        ];
        created.data.extend(subject.iter().cloned());
        created.data.extend([
            kv("PrivilegeList", "-"),
            kv("SamAccountName", name),
            kv("DisplayName", "%%1793"),
            kv("UserPrincipalName", "-"),
            kv("HomeDirectory", "%%1793"),
            kv("HomePath", "%%1793"),
            kv("ScriptPath", "%%1793"),
            kv("ProfilePath", "%%1793"),
            kv("UserWorkstations", "%%1793"),
            kv("PasswordLastSet", "%%1794"),
            kv("AccountExpires", "%%1794"),
            kv("PrimaryGroupId", "513"),
            kv("AllowedToDelegateTo", "-"),
            kv("OldUacValue", "0x0"),
            kv("NewUacValue", "0x15"),
            // Windows really writes these line breaks and tabs.
            kv(
                "UserAccountControl",
                "\r\n\t\t%%2080\r\n\t\t%%2082\r\n\t\t%%2084",
            ),
            kv("UserParameters", "%%1793"),
            kv("SidHistory", "-"),
            kv("LogonHours", "%%1797"),
        ]);

        let (group, group_sid) = if self.rng.below(3) == 0 {
            ("Remote Desktop Users", "S-1-5-32-555")
        } else {
            ("Administrators", "S-1-5-32-544")
        };
        let mut added = self.security(
            dc,
            4732,
            0,
            TASK_SECURITY_GROUP_MANAGEMENT,
            SUCCESS,
            dc.lsass_pid,
        );
        added.data = vec![
            kv("MemberName", "-"),
            kv("MemberSid", sid),
            kv("TargetUserName", group),
            kv("TargetDomainName", "Builtin"),
            kv("TargetSid", group_sid),
        ];
        added.data.extend(subject);
        added.data.push(kv("PrivilegeList", "-"));
        self.pending = Some(added);
        created
    }
}
