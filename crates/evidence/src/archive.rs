//! ZIP archives of evidence, extracted safely: limits on entry count, total and
//! per-entry uncompressed bytes and compression ratio are checked against the central
//! directory *before* anything is written, and actual bytes are counted while copying
//! (a bomb can lie about its sizes). Absolute paths, `..`, links, encrypted and nested
//! archives and disallowed extensions are refused member by member. Members are written
//! under generated names inside the destination directory only — never under the name
//! the archive gives them.

use crate::format::{Format, sniff_format};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ArchiveLimits {
    pub max_entries: usize,
    pub max_total_bytes: u64,
    pub max_entry_bytes: u64,
    /// Largest uncompressed/compressed ratio accepted for a member.
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 8 * 1024 * 1024 * 1024,
            max_entry_bytes: 4 * 1024 * 1024 * 1024,
            max_ratio: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedMember {
    /// Position in the archive's central directory.
    pub index: usize,
    /// The member's name in the archive (for display; never used as a path).
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMember {
    pub name: String,
    /// Stable reason: unsafe_path, link, encrypted, nested_archive, unsupported_format,
    /// compression_ratio, too_large, size_mismatch, unreadable.
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extraction {
    pub members: Vec<ExtractedMember>,
    pub refused: Vec<RefusedMember>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Unreadable(String),
    #[error("the archive has {count} entries; at most {max} are accepted")]
    TooManyEntries { count: usize, max: usize },
    #[error("the archive declares {declared} uncompressed bytes; at most {max} are accepted")]
    TooLarge { declared: u64, max: u64 },
    #[error("extracted data passed the limit of {max} bytes")]
    TotalExceeded { max: u64 },
    #[error("cannot write extracted member to {path}: {message}")]
    Write { path: String, message: String },
}

/// Display-safe member name: control characters replaced, length bounded.
fn display_name(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(300)
        .collect()
}

/// A file name made only of `[A-Za-z0-9._-]`, from the member's last path component.
fn safe_file_name(index: usize, raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("{index:05}-{}", cleaned.trim_start_matches('.'))
}

fn refuse(name: &str, reason: &'static str, detail: impl Into<String>) -> RefusedMember {
    RefusedMember {
        name: display_name(name),
        reason,
        detail: detail.into(),
    }
}

/// Extracts the acceptable members of `zip_path` into `dest_dir` (which must exist).
pub fn extract(
    zip_path: &Path,
    dest_dir: &Path,
    limits: &ArchiveLimits,
) -> Result<Extraction, ArchiveError> {
    let file = File::open(zip_path).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            count: archive.len(),
            max: limits.max_entries,
        });
    }
    let mut declared: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| ArchiveError::Unreadable(format!("entry {index}: {e}")))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_total_bytes {
        return Err(ArchiveError::TooLarge {
            declared,
            max: limits.max_total_bytes,
        });
    }

    let mut extraction = Extraction::default();
    let mut written_total: u64 = 0;
    for index in 0..archive.len() {
        let raw_name = archive
            .name_for_index(index)
            .unwrap_or_default()
            .to_string();
        let mut entry = match archive.by_index(index) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::UnsupportedArchive(message)) => {
                extraction
                    .refused
                    .push(refuse(&raw_name, "encrypted", message));
                continue;
            }
            Err(error) => {
                extraction
                    .refused
                    .push(refuse(&raw_name, "unreadable", error.to_string()));
                continue;
            }
        };
        let name = entry.name().to_string();
        if entry.is_dir() {
            continue;
        }
        if entry.is_symlink() {
            extraction
                .refused
                .push(refuse(&name, "link", "links are never extracted"));
            continue;
        }
        if entry.enclosed_name().is_none() || name.contains("..") || name.starts_with(['/', '\\']) {
            extraction.refused.push(refuse(
                &name,
                "unsafe_path",
                "absolute paths and '..' are refused",
            ));
            continue;
        }
        let Some(format) = Format::from_file_name(&name) else {
            extraction.refused.push(refuse(
                &name,
                "unsupported_format",
                format!("allowed: {}", crate::format::ALLOWED_EXTENSIONS),
            ));
            continue;
        };
        if format == Format::Zip {
            extraction.refused.push(refuse(
                &name,
                "nested_archive",
                "archives inside archives are not extracted",
            ));
            continue;
        }
        if entry.size() > limits.max_entry_bytes {
            extraction.refused.push(refuse(
                &name,
                "too_large",
                format!(
                    "{} bytes; at most {} per member",
                    entry.size(),
                    limits.max_entry_bytes
                ),
            ));
            continue;
        }
        let ratio = entry.size() / entry.compressed_size().max(1);
        if ratio > limits.max_ratio {
            extraction.refused.push(refuse(
                &name,
                "compression_ratio",
                format!(
                    "compression ratio {ratio}:1 is above {}:1 (zip bomb?)",
                    limits.max_ratio
                ),
            ));
            continue;
        }
        let path = dest_dir.join(safe_file_name(index, &name));
        let declared_size = entry.size();
        let written = copy_member(&mut entry, &path, declared_size)?;
        let Some((size, sha256, head)) = written else {
            let _ = std::fs::remove_file(&path);
            extraction.refused.push(refuse(
                &name,
                "size_mismatch",
                format!("holds more than the {declared_size} bytes it declares"),
            ));
            continue;
        };
        written_total += size;
        if written_total > limits.max_total_bytes {
            let _ = std::fs::remove_file(&path);
            return Err(ArchiveError::TotalExceeded {
                max: limits.max_total_bytes,
            });
        }
        if let Err(error) = sniff_format(&name, &head) {
            let _ = std::fs::remove_file(&path);
            extraction
                .refused
                .push(refuse(&name, "unsupported_format", error.to_string()));
            continue;
        }
        extraction.members.push(ExtractedMember {
            index,
            name: display_name(&name),
            path,
            size,
            sha256,
            format,
        });
    }
    Ok(extraction)
}

/// Copies at most `declared` bytes; `None` if the member holds more than it declares.
/// Returns (size, sha256 hex, first 64 KiB).
fn copy_member(
    entry: &mut impl Read,
    path: &Path,
    declared: u64,
) -> Result<Option<(u64, String, Vec<u8>)>, ArchiveError> {
    let write_error = |e: std::io::Error| ArchiveError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(write_error)?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut limited = entry.take(declared.saturating_add(1));
    loop {
        let read = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(ArchiveError::Unreadable(format!(
                    "{}: {error}",
                    path.display()
                )));
            }
        };
        size += read as u64;
        if size > declared {
            return Ok(None);
        }
        hasher.update(&buf[..read]);
        if head.len() < 64 * 1024 {
            let take = (64 * 1024 - head.len()).min(read);
            head.extend_from_slice(&buf[..take]);
        }
        out.write_all(&buf[..read]).map_err(write_error)?;
    }
    out.sync_all().map_err(write_error)?;
    Ok(Some((size, hex::encode(hasher.finalize()), head)))
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn generated_names_cannot_escape() {
        assert_eq!(
            safe_file_name(3, "../../etc/passwd.json"),
            "00003-passwd.json"
        );
        assert_eq!(safe_file_name(4, "C:\\Windows\\x y.evtx"), "00004-x_y.evtx");
        assert_eq!(safe_file_name(5, "...hidden.csv"), "00005-hidden.csv");
        assert_eq!(safe_file_name(6, "évil\u{202e}.json"), "00006-_vil_.json");
    }
}
