//! Hostile archives: zip bomb, zip slip, absolute paths, links, lies about sizes.

use casescope_evidence::archive::{ArchiveError, ArchiveLimits, extract};
use std::io::Write;
use zip::write::SimpleFileOptions;

fn build(path: &std::path::Path, members: &[(&str, Vec<u8>)], links: &[(&str, &str)]) {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    for (name, target) in links {
        writer.add_symlink(*name, *target, options).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn only_safe_members_are_extracted_and_only_inside_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let dest = dir.path().join("inside/dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let zip_path = dir.path().join("evidence.zip");
    let good = b"{\"timestamp\": 1700000000}\n".to_vec();
    build(
        &zip_path,
        &[
            ("logs/good.jsonl", good.clone()),
            ("../../outside/slip.jsonl", good.clone()),
            ("/etc/abs.jsonl", good.clone()),
            ("tool.exe", b"MZ".to_vec()),
            ("inner.zip", b"PK\x03\x04".to_vec()),
            ("fake.evtx", b"not an evtx".to_vec()),
            ("bomb.csv", vec![b'a'; 20 * 1024 * 1024]),
        ],
        &[("link.jsonl", "/etc/passwd")],
    );
    let extraction = extract(&zip_path, &dest, &ArchiveLimits::default()).unwrap();
    assert_eq!(extraction.members.len(), 1, "{extraction:#?}");
    let member = &extraction.members[0];
    assert_eq!(member.name, "logs/good.jsonl");
    assert_eq!(member.path.parent().unwrap(), dest);
    assert_eq!(std::fs::read(&member.path).unwrap(), good);
    assert_eq!(member.size, good.len() as u64);
    let mut reasons: Vec<(&str, &str)> = extraction
        .refused
        .iter()
        .map(|r| (r.name.as_str(), r.reason))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("../../outside/slip.jsonl", "unsafe_path"),
            ("/etc/abs.jsonl", "unsafe_path"),
            ("bomb.csv", "compression_ratio"),
            ("fake.evtx", "unsupported_format"),
            ("inner.zip", "nested_archive"),
            ("link.jsonl", "link"),
            ("tool.exe", "unsupported_format"),
        ]
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    let written: Vec<_> = std::fs::read_dir(&dest).unwrap().collect();
    assert_eq!(written.len(), 1, "refused members leave no file behind");
}

#[test]
fn archive_wide_limits_are_checked_before_extracting() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("many.zip");
    let members: Vec<(String, Vec<u8>)> = (0..20)
        .map(|n| (format!("f{n}.jsonl"), b"{}\n".to_vec()))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    build(&zip_path, &refs, &[]);
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let limits = ArchiveLimits {
        max_entries: 10,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        extract(&zip_path, &dest, &limits),
        Err(ArchiveError::TooManyEntries { count: 20, max: 10 })
    ));
    let limits = ArchiveLimits {
        max_total_bytes: 30,
        ..ArchiveLimits::default()
    };
    assert!(matches!(
        extract(&zip_path, &dest, &limits),
        Err(ArchiveError::TooLarge { .. })
    ));
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);

    let not_zip = dir.path().join("not.zip");
    std::fs::write(&not_zip, b"PK\x03\x04garbage").unwrap();
    assert!(matches!(
        extract(&not_zip, &dest, &ArchiveLimits::default()),
        Err(ArchiveError::Unreadable(_))
    ));
}
