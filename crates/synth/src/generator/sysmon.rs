//! Sysmon events (provider Microsoft-Windows-Sysmon, schema 4.x field order): process
//! creation (1), network connection (3), file create (11), registry value set (13).

use super::{Events, file_sha256, fill, kv, sysmon_time};
use crate::SynthEvent;
use crate::profiles::{
    BENIGN_CONNECTIONS, BENIGN_LAUNCHES, DOMAIN, FILE_CREATES, Host, REGISTRY_SETS, SERVICE_USER,
    SUSPICIOUS_CONNECTIONS, SUSPICIOUS_FILES, SUSPICIOUS_LAUNCHES, SUSPICIOUS_REGISTRY, User,
};

const PROVIDER: &str = "Microsoft-Windows-Sysmon";
const PROVIDER_GUID: &str = "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}";
const CHANNEL: &str = "Microsoft-Windows-Sysmon/Operational";
const SYSTEM_ACCOUNT: &str = r"NT AUTHORITY\SYSTEM";
/// The `LogonId` of SYSTEM.
const SYSTEM_LOGON_ID: u64 = 0x3e7;

/// A process that does something: who runs it and its IDs.
struct Actor {
    user: Option<&'static User>,
    account: String,
    guid: String,
    pid: u32,
}

impl Events {
    fn sysmon(&mut self, host: &Host, event_id: u16, version: u8) -> SynthEvent {
        SynthEvent {
            record_id: 0,
            timestamp: self.now,
            provider: PROVIDER.into(),
            provider_guid: Some(PROVIDER_GUID.into()),
            event_id,
            version,
            level: 4,
            // Sysmon's task is its event ID.
            task: event_id,
            opcode: 0,
            keywords: 0x8000_0000_0000_0000,
            channel: CHANNEL.into(),
            computer: host.name.into(),
            // Sysmon runs as SYSTEM and says so.
            security_user_id: Some("S-1-5-18".into()),
            process_id: host.sysmon_pid,
            thread_id: self.thread(),
            data: Vec::new(),
        }
    }

    /// An interactive user: anyone but the service account.
    fn interactive_user(&mut self) -> &'static User {
        loop {
            let user = self.user();
            if user.rid != SERVICE_USER.rid {
                return user;
            }
        }
    }

    /// A process of `user` (`None`: SYSTEM) on `host`.
    fn actor(&mut self, host: &Host, user: Option<&'static User>) -> Actor {
        let account = match user {
            Some(user) => format!(r"{DOMAIN}\{}", user.name),
            None => SYSTEM_ACCOUNT.into(),
        };
        Actor {
            user,
            account,
            guid: self.process_guid(host),
            pid: self.pid(),
        }
    }

    fn fill_for(actor: &Actor, text: &str) -> String {
        match actor.user {
            Some(user) => fill(text, user),
            None => text.to_owned(),
        }
    }

    /// Sysmon 1, and (7 times in 10) the Security 4688 of the same start next.
    pub(super) fn process_start(&mut self, host: &'static Host) -> SynthEvent {
        let launch = if self.suspicious() {
            self.rng.pick(&SUSPICIOUS_LAUNCHES)
        } else {
            self.rng.pick(&BENIGN_LAUNCHES)
        };
        // What services and svchost start runs as SYSTEM.
        let by_system =
            launch.parent.ends_with(r"\services.exe") || launch.parent.ends_with(r"\svchost.exe");
        let user = if by_system {
            None
        } else {
            Some(self.interactive_user())
        };
        let child = self.actor(host, user);
        let parent = self.actor(host, user);
        let logon_id = match user {
            Some(_) => self.logon_id(),
            None => SYSTEM_LOGON_ID,
        };
        let (integrity, session) = match user {
            Some(user) if user.admin => ("High", "1"),
            Some(_) => ("Medium", "1"),
            None => ("System", "0"),
        };
        let logon_guid = format!(
            "{{{:08x}-{:04x}-65ee-0000-{:012x}}}",
            host.guid_prefix,
            self.rng.below(0x1_0000),
            logon_id
        );
        let mut event = self.sysmon(host, 1, 5);
        event.data = vec![
            kv("RuleName", "-"),
            kv("UtcTime", sysmon_time(self.now)),
            kv("ProcessGuid", child.guid.clone()),
            kv("ProcessId", child.pid.to_string()),
            kv("Image", launch.image),
            kv("FileVersion", launch.pe.file_version),
            kv("Description", launch.pe.description),
            kv("Product", launch.pe.product),
            kv("Company", launch.pe.company),
            kv("OriginalFileName", launch.pe.original_file_name),
            kv("CommandLine", Self::fill_for(&child, launch.command_line)),
            kv(
                "CurrentDirectory",
                Self::fill_for(&child, launch.current_directory),
            ),
            kv("User", child.account.clone()),
            kv("LogonGuid", logon_guid),
            kv("LogonId", format!("{logon_id:#x}")),
            kv("TerminalSessionId", session),
            kv("IntegrityLevel", integrity),
            kv("Hashes", file_sha256(launch.image)),
            kv("ParentProcessGuid", parent.guid.clone()),
            kv("ParentProcessId", parent.pid.to_string()),
            kv("ParentImage", launch.parent),
            kv(
                "ParentCommandLine",
                Self::fill_for(&parent, launch.parent_command_line),
            ),
            kv("ParentUser", parent.account),
        ];
        if self.rng.below(10) < 7 {
            let security =
                self.process_creation(host, launch, user, child.pid, parent.pid, logon_id);
            self.pending = Some(security);
        }
        event
    }

    /// Sysmon 3, an outgoing TCP or UDP connection.
    pub(super) fn network_connection(&mut self, host: &'static Host) -> SynthEvent {
        let (image, ip, name, port, port_name, protocol) = if self.suspicious() {
            *self.rng.pick(&SUSPICIOUS_CONNECTIONS)
        } else {
            *self.rng.pick(&BENIGN_CONNECTIONS)
        };
        let user = if image.contains(r"\svchost.exe") {
            None
        } else {
            Some(self.interactive_user())
        };
        let actor = self.actor(host, user);
        let mut event = self.sysmon(host, 3, 5);
        event.data = vec![
            kv("RuleName", "-"),
            kv("UtcTime", sysmon_time(self.now)),
            kv("ProcessGuid", actor.guid),
            kv("ProcessId", actor.pid.to_string()),
            kv("Image", image),
            kv("User", actor.account),
            kv("Protocol", protocol),
            kv("Initiated", "true"),
            kv("SourceIsIpv6", "false"),
            kv("SourceIp", host.ip),
            kv("SourceHostname", host.name),
            kv("SourcePort", (49152 + self.rng.below(16000)).to_string()),
            kv("SourcePortName", "-"),
            kv("DestinationIsIpv6", "false"),
            kv("DestinationIp", ip),
            kv("DestinationHostname", name),
            kv("DestinationPort", port.to_string()),
            kv("DestinationPortName", port_name),
        ];
        event
    }

    /// Sysmon 11, a file was created.
    pub(super) fn file_create(&mut self, host: &'static Host) -> SynthEvent {
        let index = if self.suspicious() {
            SUSPICIOUS_FILES.start + self.rng.below(SUSPICIOUS_FILES.len() as u64) as usize
        } else {
            self.rng.below(SUSPICIOUS_FILES.start as u64) as usize
        };
        let (image, target) = FILE_CREATES[index.min(FILE_CREATES.len() - 1)];
        let user = if image.contains(r"\svchost.exe") {
            None
        } else {
            Some(self.interactive_user())
        };
        let actor = self.actor(host, user);
        let now = sysmon_time(self.now);
        let mut event = self.sysmon(host, 11, 2);
        event.data = vec![
            kv("RuleName", "-"),
            kv("UtcTime", now.clone()),
            kv("ProcessGuid", actor.guid.clone()),
            kv("ProcessId", actor.pid.to_string()),
            kv("Image", image),
            kv("TargetFilename", Self::fill_for(&actor, target)),
            kv("CreationUtcTime", now),
            kv("User", actor.account),
        ];
        event
    }

    /// Sysmon 13, a registry value was set.
    pub(super) fn registry_set(&mut self, host: &'static Host) -> SynthEvent {
        let index = if self.suspicious() {
            SUSPICIOUS_REGISTRY.start + self.rng.below(SUSPICIOUS_REGISTRY.len() as u64) as usize
        } else {
            self.rng.below(SUSPICIOUS_REGISTRY.start as u64) as usize
        };
        let (image, target, details) = REGISTRY_SETS[index.min(REGISTRY_SETS.len() - 1)];
        let by_system = image.contains(r"\svchost.exe") || image.contains("MsMpEng");
        // The key names the user whose hive it is, even when SYSTEM writes it.
        let owner = self.interactive_user();
        let actor = self.actor(host, if by_system { None } else { Some(owner) });
        let mut event = self.sysmon(host, 13, 2);
        event.data = vec![
            kv("RuleName", "-"),
            kv("EventType", "SetValue"),
            kv("UtcTime", sysmon_time(self.now)),
            kv("ProcessGuid", actor.guid),
            kv("ProcessId", actor.pid.to_string()),
            kv("Image", image),
            kv("TargetObject", fill(target, owner)),
            kv("Details", details),
            kv("User", actor.account),
        ];
        event
    }
}
