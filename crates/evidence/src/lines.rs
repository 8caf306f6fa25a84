//! Reading lines with a length bound: an over-long line is skipped (and reported)
//! without ever being held in memory, so a 100 MB single-line file costs at most the
//! bound, not 100 MB.

use std::io::{self, BufRead};

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// `buf` holds the line without its `\n` (and `\r`).
    Text,
    /// The line was longer than the bound; `bytes` were skipped (excluding `\n`).
    TooLong {
        bytes: u64,
    },
    Eof,
}

pub fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut skipped: u64 = 0;
    let mut saw_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            if !saw_any {
                return Ok(Line::Eof);
            }
            break;
        }
        saw_any = true;
        let (chunk, found_newline) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        let consumed = chunk.len() + usize::from(found_newline);
        if skipped > 0 || buf.len() + chunk.len() > max {
            skipped += (buf.len() + chunk.len()) as u64;
            buf.clear();
        } else {
            buf.extend_from_slice(chunk);
        }
        reader.consume(consumed);
        if found_newline {
            break;
        }
    }
    if skipped > 0 {
        return Ok(Line::TooLong { bytes: skipped });
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_without_buffering() {
        let input = format!("short\r\n{}\nafter\nlast", "x".repeat(10_000));
        let mut reader = io::BufReader::with_capacity(64, input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).unwrap(),
            Line::Text
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).unwrap(),
            Line::TooLong { bytes: 10_000 }
        );
        assert!(
            buf.capacity() <= 256,
            "never held the long line: {}",
            buf.capacity()
        );
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).unwrap(),
            Line::Text
        );
        assert_eq!(buf, b"after");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).unwrap(),
            Line::Text
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).unwrap(),
            Line::Eof
        );
    }
}
