//! Hunter throughput on synthetic fields with few and many IOCs (a tuning aid; the
//! benchmark of record is `make bench-ioc`): `cargo run --release -p casescope-ioc
//! --example hunt_speed`.

use casescope_ioc::{Hunter, Indicator, IocType, canonicalize};
use std::time::Instant;

fn main() {
    let mut events: Vec<Vec<(String, String)>> = Vec::new();
    for i in 0..100_000u64 {
        events.push(vec![
            (
                "Image".into(),
                format!("C:\\Windows\\System32\\svchost{}.exe", i % 50),
            ),
            (
                "CommandLine".into(),
                format!("C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule{i}"),
            ),
            (
                "ParentImage".into(),
                "C:\\Windows\\System32\\services.exe".into(),
            ),
            ("User".into(), "NT AUTHORITY\\SYSTEM".into()),
            (
                "Hashes".into(),
                format!("SHA256={:064X},IMPHASH={:032X}", i * 7919, i * 31),
            ),
            (
                "ProcessGuid".into(),
                format!("{{{:08X}-1234-5678-9ABC-DEF012345678}}", i),
            ),
            (
                "UtcTime".into(),
                format!("2024-03-11 08:00:{:02}.913", i % 60),
            ),
            (
                "DestinationIp".into(),
                format!("10.0.{}.{}", (i / 256) % 256, i % 256),
            ),
            (
                "DestinationHostname".into(),
                format!("host{}.corp.example.com", i % 300),
            ),
            (
                "TargetObject".into(),
                format!("HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Item{i}"),
            ),
            ("Computer".into(), "WKSTN-042.corp.example.com".into()),
        ]);
    }
    let bytes: usize = events.iter().flatten().map(|(_, v)| v.len()).sum();
    for count in [0usize, 10, 10_000, 100_000] {
        let iocs: Vec<Indicator> = (0..count)
            .map(|i| {
                let (kind, value) = match i % 14 {
                    0 => (
                        IocType::Ip,
                        format!("100.{}.{}.{}", 64 + i % 64, (i >> 6) % 256, (i >> 14) % 256),
                    ),
                    1 => (
                        IocType::Cidr,
                        format!("100.{}.{}.0/24", 64 + i % 64, (i >> 6) % 256),
                    ),
                    2 => (IocType::Domain, format!("n{i}.bad-infra.example")),
                    3 => (IocType::Md5, format!("{:032x}", i * 104729 + 1)),
                    4 => (IocType::Sha1, format!("{:040x}", i * 104729 + 2)),
                    5 => (IocType::Sha256, format!("{:064x}", i * 104729 + 3)),
                    6 => (IocType::FileName, format!("tool{i}.exe")),
                    7 => (IocType::CommandLine, format!("-payload{i}x")),
                    8 => (IocType::RegistryKey, format!("HKLM\\Software\\Bad{i}\\Run")),
                    9 => (IocType::UserName, format!("baduser{i}")),
                    10 => (IocType::Url, format!("http://bad{i}.example/p")),
                    11 => (IocType::NamedPipe, format!("\\\\.\\pipe\\badpipe{i}")),
                    12 => (IocType::ServiceName, format!("badsvc{i}")),
                    _ => (IocType::Other, format!("marker-{i}-zz")),
                };
                Indicator {
                    ioc_type: kind,
                    value: canonicalize(kind, &value).unwrap(),
                }
            })
            .collect();
        let built = Instant::now();
        let hunter = Hunter::new(&iocs);
        let build = built.elapsed();
        let started = Instant::now();
        let mut found = 0;
        for event in &events {
            let fields: Vec<(&str, &str)> = event
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut hits = Vec::new();
            hunter.hunt(&fields, &mut hits);
            found += hits.len();
        }
        let took = started.elapsed();
        println!(
            "{count:>6} IOCs: build {:.3} s, hunt {:.3} s = {:.0} MB/s, {:.0} events/s, {found} hits",
            build.as_secs_f64(),
            took.as_secs_f64(),
            bytes as f64 / took.as_secs_f64() / 1e6,
            events.len() as f64 / took.as_secs_f64()
        );
    }
}
