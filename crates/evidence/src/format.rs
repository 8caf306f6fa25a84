//! Which evidence formats are accepted: the file name's extension must be on the
//! allow-list *and* the content must look like that format (magic bytes, UTF-8 text).

/// An accepted evidence format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Evtx,
    /// `.json`: a JSON array of objects, or one object per line.
    Json,
    /// `.jsonl` / `.ndjson`: one object per line.
    Jsonl,
    Csv,
    Zip,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Evtx => "evtx",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Zip => "zip",
        }
    }

    /// The format named by a file's extension, if it is on the allow-list.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match extension.as_str() {
            "evtx" => Format::Evtx,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "zip" => Format::Zip,
            _ => return None,
        })
    }
}

/// The allowed extensions, for error messages and docs.
pub const ALLOWED_EXTENSIONS: &str = ".evtx, .json, .jsonl, .ndjson, .csv, .zip";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{name:?}: extension not accepted; allowed: {ALLOWED_EXTENSIONS}")]
    UnsupportedExtension { name: String },
    #[error("{name:?} is named .{format} but {reason}")]
    ContentMismatch {
        name: String,
        format: &'static str,
        reason: String,
    },
    #[error("{format} files are not parsed directly: {hint}")]
    NotParseable {
        format: &'static str,
        hint: &'static str,
    },
}

const EVTX_MAGIC: &[u8] = b"ElfFile\0";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";

/// Checks `name`'s extension and the first bytes of the content (`head`, ideally the
/// first 64 KiB) and returns the format, or why the file is refused.
pub fn sniff_format(name: &str, head: &[u8]) -> Result<Format, FormatError> {
    let format = Format::from_file_name(name).ok_or_else(|| FormatError::UnsupportedExtension {
        name: name.to_string(),
    })?;
    let mismatch = |reason: &str| FormatError::ContentMismatch {
        name: name.to_string(),
        format: format.as_str(),
        reason: reason.to_string(),
    };
    match format {
        Format::Evtx if !head.starts_with(EVTX_MAGIC) => Err(mismatch(
            "does not start with the EVTX signature \"ElfFile\"",
        )),
        Format::Zip if !(head.starts_with(ZIP_MAGIC) || head.starts_with(EMPTY_ZIP_MAGIC)) => {
            Err(mismatch("does not start with a ZIP signature"))
        }
        Format::Json | Format::Jsonl | Format::Csv => {
            let text = utf8_prefix(head).ok_or_else(|| mismatch("is not UTF-8 text"))?;
            let text = text.trim_start_matches('\u{feff}').trim_start();
            match format {
                Format::Csv if text.is_empty() => {
                    Err(mismatch("is empty (a header row is required)"))
                }
                Format::Json
                    if !(text.is_empty() || text.starts_with('{') || text.starts_with('[')) =>
                {
                    Err(mismatch("does not start with a JSON object or array"))
                }
                Format::Jsonl if !(text.is_empty() || text.starts_with('{')) => {
                    Err(mismatch("does not start with a JSON object"))
                }
                _ => Ok(format),
            }
        }
        _ => Ok(format),
    }
}

/// `head` as UTF-8, tolerating a multi-byte character cut at its end.
fn utf8_prefix(head: &[u8]) -> Option<&str> {
    match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(error) if error.error_len().is_none() && head.len() - error.valid_up_to() < 4 => {
            std::str::from_utf8(&head[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_and_content_must_agree() {
        assert_eq!(sniff_format("a.EVTX", b"ElfFile\0rest"), Ok(Format::Evtx));
        assert!(matches!(
            sniff_format("a.evtx", b"MZ\x90\0"),
            Err(FormatError::ContentMismatch { .. })
        ));
        assert!(matches!(
            sniff_format("a.exe", b"ElfFile\0"),
            Err(FormatError::UnsupportedExtension { .. })
        ));
        assert_eq!(sniff_format("x.ndjson", b"{\"a\":1}\n"), Ok(Format::Jsonl));
        assert_eq!(
            sniff_format("x.json", b"\xef\xbb\xbf [ {"),
            Ok(Format::Json)
        );
        assert!(sniff_format("x.json", b"hello").is_err());
        assert!(sniff_format("x.csv", b"a,b\n\xff\xfe,1").is_err());
        // A UTF-8 character cut by the end of the sniffed head is fine.
        assert_eq!(
            sniff_format("x.csv", "time,user\n1,é".as_bytes()[..13].as_ref()),
            Ok(Format::Csv)
        );
        assert_eq!(sniff_format("x.zip", b"PK\x03\x04"), Ok(Format::Zip));
        assert!(sniff_format("noextension", b"").is_err());
    }
}
