//! A deterministic, seeded stream of realistic Security and Sysmon events.
//!
//! The estate is in [`crate::profiles`]; what each event holds is in [`security`] and
//! [`sysmon`]. All randomness comes from a SplitMix64 generator written here, so a seed gives
//! the same events whatever the version of any dependency.

mod security;
mod sysmon;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

use crate::SynthEvent;
use crate::profiles::{HOSTS, Host, USERS, User};

/// 2024-03-11T08:00:00Z, where [`Scenario::new`] starts.
const DEFAULT_START_UNIX_NANOS: i64 = 1_710_144_000 * 1_000_000_000;

/// What to generate. [`Scenario::new`] gives the defaults; change fields to vary them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Seeds every choice: the same scenario gives the same events.
    pub seed: u64,
    /// Time of the first event (truncated to the 100 ns EVTX keeps).
    pub start: DateTime<Utc>,
    /// Events are 1 ms to this many milliseconds apart (uniformly, plus sub-millisecond
    /// ticks), so timestamps always increase.
    pub max_gap_ms: u32,
    /// Out of 1000 process starts, connections, file and registry writes, how many are the
    /// suspicious kind (encoded PowerShell, `certutil -urlcache`, `whoami /all`, Run keys…).
    pub suspicious_per_mille: u32,
}

impl Scenario {
    /// The defaults: start 2024-03-11T08:00:00Z, up to 1.5 s between events, 3 % suspicious.
    pub fn new(seed: u64) -> Self {
        Scenario {
            seed,
            start: DateTime::from_timestamp_nanos(DEFAULT_START_UNIX_NANOS),
            max_gap_ms: 1500,
            suspicious_per_mille: 30,
        }
    }

    /// `count` events, record IDs 1 to `count`.
    pub fn events(&self, count: u64) -> Events {
        let nanos = self.start.nanosecond();
        let start = self.start.with_nanosecond(nanos - nanos % 100);
        Events {
            rng: Rng(self.seed),
            now: start.unwrap_or(self.start),
            first: true,
            max_gap_ticks: u64::from(self.max_gap_ms.max(1)) * 10_000,
            suspicious_per_mille: self.suspicious_per_mille,
            emitted: 0,
            count,
            pending: None,
            next_logon_id: 0x1_2a3f0,
            next_process: 0x1000,
            next_account: 0,
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new(0)
    }
}

/// `count` realistic events from `seed`: [`Scenario::new(seed)`](Scenario::new)`.events(count)`.
pub fn realistic_events(count: u64, seed: u64) -> Events {
    Scenario::new(seed).events(count)
}

/// The events of a [`Scenario`], in time order. Made one at a time: any count takes no memory.
#[derive(Debug, Clone)]
pub struct Events {
    rng: Rng,
    now: DateTime<Utc>,
    first: bool,
    max_gap_ticks: u64,
    suspicious_per_mille: u32,
    emitted: u64,
    count: u64,
    /// The event that follows the last one (the Security 4688 of a process Sysmon logged, the
    /// 4732 of an account just created), given its time when it comes out.
    pending: Option<SynthEvent>,
    next_logon_id: u64,
    next_process: u64,
    next_account: u32,
}

impl Iterator for Events {
    type Item = SynthEvent;

    fn next(&mut self) -> Option<SynthEvent> {
        if self.emitted >= self.count {
            return None;
        }
        self.advance_clock();
        let mut event = match self.pending.take() {
            Some(event) => event,
            None => self.generate(),
        };
        self.emitted += 1;
        event.record_id = self.emitted;
        event.timestamp = self.now;
        Some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.count - self.emitted).ok();
        (left.unwrap_or(usize::MAX), left)
    }
}

impl Events {
    fn advance_clock(&mut self) {
        if std::mem::take(&mut self.first) {
            return;
        }
        let ticks = 1 + self.rng.below(self.max_gap_ticks);
        // 100 ns ticks; `ticks` is at most 2^32 ms, far inside an i64 of nanoseconds.
        let gap = TimeDelta::nanoseconds((ticks * 100) as i64);
        // Past chrono's last date the clock stops rather than fail.
        self.now = self.now.checked_add_signed(gap).unwrap_or(self.now);
    }

    /// A new event of a kind drawn from the mix.
    fn generate(&mut self) -> SynthEvent {
        let host = self.rng.pick(&HOSTS);
        match self.rng.below(1000) {
            0..215 => self.logon(host),
            215..285 => self.failed_logon(host),
            285..485 => self.process_start(host),
            485..685 => self.network_connection(host),
            685..835 => self.file_create(host),
            835..985 => self.registry_set(host),
            _ => self.account_created(),
        }
    }

    fn suspicious(&mut self) -> bool {
        self.rng.below(1000) < u64::from(self.suspicious_per_mille)
    }

    /// A user of the domain; `andré` and `ольга` as often as the others.
    fn user(&mut self) -> &'static User {
        self.rng.pick(&USERS)
    }

    fn logon_id(&mut self) -> u64 {
        self.next_logon_id += 1 + self.rng.below(0x400);
        self.next_logon_id
    }

    /// A process ID as Windows hands them out: a multiple of 4.
    fn pid(&mut self) -> u32 {
        4 * (200 + self.rng.below(4800) as u32)
    }

    /// A Sysmon process GUID: the host's prefix, then random and sequential parts.
    fn process_guid(&mut self, host: &Host) -> String {
        self.next_process += 1 + self.rng.below(8);
        format!(
            "{{{:08x}-{:04x}-{:04x}-{:04x}-{:012x}}}",
            host.guid_prefix,
            self.rng.below(0x1_0000),
            0x65ee + self.rng.below(3),
            self.rng.below(0x1_0000),
            self.next_process
        )
    }

    /// A logon GUID (Kerberos logons have one).
    fn random_guid(&mut self) -> String {
        let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
        format!(
            "{{{:08x}-{:04x}-{:04x}-{:04x}-{:012x}}}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// A thread ID for `Execution`.
    fn thread(&mut self) -> u32 {
        4 * (25 + self.rng.below(5000) as u32)
    }
}

/// The short (NetBIOS) name of a host.
fn short_name(host: &Host) -> &'static str {
    host.name.split('.').next().unwrap_or(host.name)
}

fn user_sid(user: &User) -> String {
    format!("{}-{}", crate::profiles::DOMAIN_SID, user.rid)
}

/// `{user}` and `{sid}` in a profile's text, for `user`.
fn fill(template: &str, user: &User) -> String {
    let text = template.replace("{user}", user.name);
    if text.contains("{sid}") {
        text.replace("{sid}", &user_sid(user))
    } else {
        text
    }
}

/// An `EventData` pair.
fn kv(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// SplitMix64: small, fast, and fixed forever, so seeds keep their events.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 for `n == 0`), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An item of a non-empty table.
    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }
}

/// A made-up but stable SHA-256 for an image path: the same file always hashes the same.
fn file_sha256(path: &str) -> String {
    // FNV-1a of the path seeds a SplitMix64 stream of 256 bits.
    let seed = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng(seed);
    let words = [
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64(),
    ];
    format!(
        "SHA256={:016X}{:016X}{:016X}{:016X}",
        words[0], words[1], words[2], words[3]
    )
}

/// Sysmon's `UtcTime`: `2024-03-11 08:00:01.123`.
fn sysmon_time(time: DateTime<Utc>) -> String {
    // By hand: chrono's `format` parses its pattern on every call.
    let (date, clock) = (time.date_naive(), time.time());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        date.year(),
        date.month(),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second(),
        clock.nanosecond() / 1_000_000 % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_fixed() {
        // SplitMix64 from 0: the reference sequence.
        let mut rng = Rng(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn same_seed_same_events_and_time_increases() {
        let a: Vec<_> = realistic_events(2000, 7).collect();
        let b: Vec<_> = realistic_events(2000, 7).collect();
        assert_eq!(a, b);
        assert_ne!(a, realistic_events(2000, 8).collect::<Vec<_>>());
        assert_eq!(a.len(), 2000);
        assert!(a.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert!(
            a.iter()
                .enumerate()
                .all(|(i, e)| e.record_id == i as u64 + 1)
        );
        assert_eq!(a[0].timestamp, Scenario::new(7).start);
    }

    #[test]
    fn sysmon_time_has_milliseconds() {
        let time = DateTime::from_timestamp_nanos(DEFAULT_START_UNIX_NANOS + 7_654_321);
        assert_eq!(sysmon_time(time), "2024-03-11 08:00:00.007");
    }

    #[test]
    fn mix_covers_every_kind() {
        let events: Vec<_> = realistic_events(5000, 1).collect();
        for (provider, id) in [
            ("Microsoft-Windows-Security-Auditing", 4624),
            ("Microsoft-Windows-Security-Auditing", 4625),
            ("Microsoft-Windows-Security-Auditing", 4688),
            ("Microsoft-Windows-Security-Auditing", 4720),
            ("Microsoft-Windows-Security-Auditing", 4732),
            ("Microsoft-Windows-Sysmon", 1),
            ("Microsoft-Windows-Sysmon", 3),
            ("Microsoft-Windows-Sysmon", 11),
            ("Microsoft-Windows-Sysmon", 13),
        ] {
            assert!(
                events
                    .iter()
                    .any(|e| e.provider == provider && e.event_id == id),
                "{provider} {id}"
            );
        }
        let text = |needle: &str| {
            events
                .iter()
                .any(|e| e.data.iter().any(|(_, v)| v.contains(needle)))
        };
        for needle in ["-EncodedCommand", "-urlcache", "whoami /all", "é", "Отчёт"] {
            assert!(text(needle), "{needle}");
        }
        // Names are unique within each event, as EventData keys must be.
        for event in &events {
            let mut names: Vec<_> = event.data.iter().map(|(n, _)| n).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), event.data.len(), "{event:?}");
        }
    }
}
