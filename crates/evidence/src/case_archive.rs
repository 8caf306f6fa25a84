//! One archive per archived case: its evidence files in a single ZIP, with a manifest of
//! their SHA-256 sums, so that an archived case keeps its evidence while its events
//! and findings leave the hot stores, and a restore can prove that what comes back is
//! byte for byte what was archived.
//!
//! Layout: `evidence/<file id>` (stored, not compressed: evidence is often already
//! compressed, and a restore must be a plain copy) for each file, then `manifest.json`
//! last (an archive cut short has no manifest and is refused as incomplete). The archive
//! is written as `<dest>.partial`, flushed to disk, then renamed: `<dest>` only ever
//! holds a whole archive. Every byte is hashed on the way in and on the way out, with
//! a bounded buffer; each file is checked against the sum the case recorded, so a blob
//! damaged on disk is refused (naming the file) instead of being archived as if sound.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;
const MANIFEST_ENTRY: &str = "manifest.json";
const COPY_BUFFER: usize = 1024 * 1024;

/// One evidence file in an archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedFile {
    pub file_id: String,
    /// The name the analyst uploaded it under (for messages; never used as a path).
    pub name: String,
    /// Lower-case hex SHA-256 of its bytes.
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub case_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub files: Vec<ArchivedFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaseArchiveError {
    /// A file's bytes do not match the SHA-256 recorded for it.
    #[error(
        "file {name:?} ({file_id}) does not match its SHA-256: expected {expected}, found {found}"
    )]
    Mismatch {
        file_id: String,
        name: String,
        expected: String,
        found: String,
    },
    /// A file's entry cannot be read back (damaged: its CRC or its structure is wrong,
    /// or the disk failed), or the restored copy cannot be written.
    #[error("file {name:?} ({file_id}) cannot be read from the archive: {message}")]
    Unreadable {
        file_id: String,
        name: String,
        message: String,
    },
    /// A file named by the manifest is not in the archive.
    #[error("file {name:?} ({file_id}) is missing from the archive")]
    Missing { file_id: String, name: String },
    #[error("the archive has no readable manifest ({0}): it is incomplete or not a case archive")]
    NoManifest(String),
    #[error("the archive's manifest is format {0}; this version reads format {MANIFEST_FORMAT}")]
    Format(u32),
    #[error("the archive belongs to case {found}, not {expected}")]
    WrongCase { expected: String, found: String },
    #[error("{what} {path}: {message}")]
    Io {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl CaseArchiveError {
    /// Whether the archive itself is at fault (damaged, incomplete, not this case's):
    /// retrying cannot help, the restore is refused. Otherwise (a disk error while
    /// writing the restored copy) it may be retried.
    pub fn is_damage(&self) -> bool {
        !matches!(self, CaseArchiveError::Io { .. })
    }
}

/// The manifest of the archive at `path` (read without checking any file).
pub fn manifest(path: &Path, case_id: &str) -> Result<Manifest, CaseArchiveError> {
    open(path, case_id).map(|(_, manifest)| manifest)
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CaseArchiveError + 'a {
    move |error| CaseArchiveError::Io {
        what,
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn zip_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(zip::result::ZipError) -> CaseArchiveError + 'a {
    move |error| CaseArchiveError::Io {
        what,
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

fn entry_name(file_id: &str) -> String {
    format!("evidence/{file_id}")
}

/// Copies `reader` into `writer` while hashing; (bytes, hex SHA-256).
fn copy_hashed(reader: &mut impl Read, writer: &mut impl Write) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        writer.write_all(&buffer[..read])?;
        total += read as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Writes the archive of `case_id` at `dest` from `files` (each with the path of its
/// blob). Every blob is checked against its recorded SHA-256 while it is copied; the
/// first that does not match stops the archive (nothing is left at `dest`).
pub fn write(
    case_id: &str,
    files: &[(ArchivedFile, PathBuf)],
    dest: &Path,
) -> Result<Manifest, CaseArchiveError> {
    let partial = dest.with_extension("partial");
    let result = write_partial(case_id, files, &partial);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
        return result;
    }
    std::fs::rename(&partial, dest).map_err(io("cannot put the archive in place at", dest))?;
    if let Some(dir) = dest.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    result
}

fn write_partial(
    case_id: &str,
    files: &[(ArchivedFile, PathBuf)],
    partial: &Path,
) -> Result<Manifest, CaseArchiveError> {
    let out = File::create(partial).map_err(io("cannot create", partial))?;
    let mut zip = zip::ZipWriter::new(out);
    for (file, blob) in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(file.size_bytes >= u64::from(u32::MAX));
        zip.start_file(entry_name(&file.file_id), options)
            .map_err(zip_error("cannot write to", partial))?;
        let mut input = BufReader::new(File::open(blob).map_err(io("cannot read evidence", blob))?);
        let (_, found) = copy_hashed(&mut input, &mut zip).map_err(io("cannot archive", blob))?;
        if found != file.sha256 {
            return Err(CaseArchiveError::Mismatch {
                file_id: file.file_id.clone(),
                name: file.name.clone(),
                expected: file.sha256.clone(),
                found,
            });
        }
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        case_id: case_id.to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        files: files.iter().map(|(file, _)| file.clone()).collect(),
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(MANIFEST_ENTRY, options)
        .map_err(zip_error("cannot write to", partial))?;
    serde_json::to_writer_pretty(&mut zip, &manifest).map_err(|error| CaseArchiveError::Io {
        what: "cannot write the manifest of",
        path: partial.to_path_buf(),
        message: error.to_string(),
    })?;
    let out = zip.finish().map_err(zip_error("cannot finish", partial))?;
    out.sync_all().map_err(io("cannot flush", partial))?;
    Ok(manifest)
}

/// Opens the archive at `path` of case `case_id` and reads its manifest.
fn open(
    path: &Path,
    case_id: &str,
) -> Result<(zip::ZipArchive<BufReader<File>>, Manifest), CaseArchiveError> {
    let file = File::open(path).map_err(io("cannot open the archive", path))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|error| CaseArchiveError::NoManifest(error.to_string()))?;
    let manifest: Manifest = {
        let entry = zip
            .by_name(MANIFEST_ENTRY)
            .map_err(|error| CaseArchiveError::NoManifest(error.to_string()))?;
        serde_json::from_reader(entry)
            .map_err(|error| CaseArchiveError::NoManifest(error.to_string()))?
    };
    if manifest.format != MANIFEST_FORMAT {
        return Err(CaseArchiveError::Format(manifest.format));
    }
    if manifest.case_id != case_id {
        return Err(CaseArchiveError::WrongCase {
            expected: case_id.to_string(),
            found: manifest.case_id,
        });
    }
    Ok((zip, manifest))
}

/// Streams one file of the archive into `out`, checking its sum.
fn copy_entry(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    file: &ArchivedFile,
    out: &mut impl Write,
    path: &Path,
) -> Result<(), CaseArchiveError> {
    let mut entry =
        zip.by_name(&entry_name(&file.file_id))
            .map_err(|_| CaseArchiveError::Missing {
                file_id: file.file_id.clone(),
                name: file.name.clone(),
            })?;
    let (_, found) =
        copy_hashed(&mut entry, out).map_err(|error| CaseArchiveError::Unreadable {
            file_id: file.file_id.clone(),
            name: file.name.clone(),
            message: format!("{error} (in {})", path.display()),
        })?;
    if found != file.sha256 {
        return Err(CaseArchiveError::Mismatch {
            file_id: file.file_id.clone(),
            name: file.name.clone(),
            expected: file.sha256.clone(),
            found,
        });
    }
    Ok(())
}

/// Checks every file of the archive against its SHA-256, without writing anything;
/// the manifest when all match, else the first file that does not (by name and id).
pub fn verify(path: &Path, case_id: &str) -> Result<Manifest, CaseArchiveError> {
    let (mut zip, manifest) = open(path, case_id)?;
    for file in &manifest.files {
        copy_entry(&mut zip, file, &mut std::io::sink(), path)?;
    }
    Ok(manifest)
}

/// Verifies the whole archive first, then writes each file to `target(file)` (through
/// a `.partial` file, checked again, then renamed). Nothing is written when any sum does
/// not match.
pub fn restore(
    path: &Path,
    case_id: &str,
    target: impl Fn(&ArchivedFile) -> PathBuf,
) -> Result<Manifest, CaseArchiveError> {
    let manifest = verify(path, case_id)?;
    let (mut zip, _) = open(path, case_id)?;
    for file in &manifest.files {
        let dest = target(file);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        }
        let partial = dest.with_extension("partial");
        let mut out = File::create(&partial).map_err(io("cannot create", &partial))?;
        if let Err(error) = copy_entry(&mut zip, file, &mut out, path) {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
        out.sync_all().map_err(io("cannot flush", &partial))?;
        std::fs::rename(&partial, &dest).map_err(io("cannot put in place", &dest))?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(dir: &Path, name: &str, bytes: &[u8]) -> (ArchivedFile, PathBuf) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        (
            ArchivedFile {
                file_id: format!("id-{name}"),
                name: format!("{name}.evtx"),
                sha256: hex::encode(Sha256::digest(bytes)),
                size_bytes: bytes.len() as u64,
            },
            path,
        )
    }

    fn two_files(dir: &Path) -> Vec<(ArchivedFile, PathBuf)> {
        let big: Vec<u8> = (0..3 * COPY_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        vec![blob(dir, "a", b"first evidence"), blob(dir, "b", &big)]
    }

    #[test]
    fn an_archive_restores_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let files = two_files(dir.path());
        let archive = dir.path().join("case.zip");
        let written = write("case-1", &files, &archive).unwrap();
        assert!(!archive.with_extension("partial").exists());
        assert_eq!(verify(&archive, "case-1").unwrap(), written);
        let out = dir.path().join("restored");
        let restored = restore(&archive, "case-1", |f| out.join(&f.file_id)).unwrap();
        assert_eq!(restored.files.len(), 2);
        for (file, original) in &files {
            assert_eq!(
                std::fs::read(out.join(&file.file_id)).unwrap(),
                std::fs::read(original).unwrap()
            );
        }
        let error = verify(&archive, "case-2").unwrap_err();
        assert!(
            matches!(error, CaseArchiveError::WrongCase { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_blob_is_not_archived() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = two_files(dir.path());
        std::fs::write(&files[1].1, b"damaged on disk").unwrap();
        files[1].0.size_bytes = 15;
        let archive = dir.path().join("case.zip");
        let error = write("case-1", &files, &archive).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("file \"b.evtx\" (id-b) does not match its SHA-256"),
            "{error}"
        );
        assert!(!archive.exists() && !archive.with_extension("partial").exists());
    }

    #[test]
    fn a_corrupted_archive_is_refused_naming_the_file_and_nothing_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let files = two_files(dir.path());
        let archive = dir.path().join("case.zip");
        write("case-1", &files, &archive).unwrap();
        // Flip one byte in the middle of the second (stored) file's data.
        let mut bytes = std::fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&archive, &bytes).unwrap();
        let error = verify(&archive, "case-1").unwrap_err();
        assert!(error.to_string().contains("\"b.evtx\" (id-b)"), "{error}");
        let out = dir.path().join("restored");
        assert!(restore(&archive, "case-1", |f| out.join(&f.file_id)).is_err());
        assert!(!out.exists(), "nothing written");
    }

    #[test]
    fn an_archive_cut_short_has_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let files = two_files(dir.path());
        let archive = dir.path().join("case.zip");
        write("case-1", &files, &archive).unwrap();
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        let error = verify(&archive, "case-1").unwrap_err();
        assert!(matches!(error, CaseArchiveError::NoManifest(_)), "{error}");
    }
}
