//! Template values rendered as the evtx crate renders them in JSON.

use evtx::binxml::value_variant::{FileTime, SysTime};
use serde_json::Value;

/// A value, as its type and bytes (a template instance's substitution), rendered as
/// the evtx crate renders it in JSON (numbers as numbers; times, GUIDs, SIDs and hex
/// values as its text); `None` for the forms left to the JSON path (ANSI text,
/// floating point, arrays, BinXML, …) and for sizes the type does not have.
pub(super) fn raw_json(kind: u8, bytes: &[u8]) -> Option<Value> {
    let int = |n: usize| -> Option<[u8; 8]> {
        let mut out = [0u8; 8];
        (bytes.len() == n).then(|| out[..n].copy_from_slice(bytes))?;
        Some(out)
    };
    Some(match kind {
        0x00 => Value::String(String::new()),
        0x01 => {
            // Up to the first NUL, as the evtx crate reads it.
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let (units, _) = bytes.as_chunks::<2>();
            if let Some(text) = ascii_text(units) {
                return Some(Value::String(text));
            }
            let len = units
                .iter()
                .position(|unit| *unit == [0, 0])
                .unwrap_or(units.len());
            Value::String(utf16_text(&bytes[..len * 2])?)
        }
        0x03 => Value::from(i8::from_le_bytes([int(1)?[0]])),
        0x04 => Value::from(int(1)?[0]),
        0x05 => Value::from(i16::from_le_bytes(int(2)?[..2].try_into().ok()?)),
        0x06 => Value::from(u16::from_le_bytes(int(2)?[..2].try_into().ok()?)),
        0x07 => Value::from(i32::from_le_bytes(int(4)?[..4].try_into().ok()?)),
        0x08 => Value::from(u32::from_le_bytes(int(4)?[..4].try_into().ok()?)),
        0x09 => Value::from(i64::from_le_bytes(int(8)?)),
        0x0a => Value::from(u64::from_le_bytes(int(8)?)),
        // Windows writes bitmasks into some bool slots: the evtx crate keeps those as
        // the integer.
        0x0d => match i32::from_le_bytes(int(4)?[..4].try_into().ok()?) {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => Value::from(other),
        },
        0x0e => {
            let mut text = String::with_capacity(bytes.len() * 2);
            for byte in bytes {
                text.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
                text.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
            }
            Value::String(text)
        }
        0x0f => Value::String(guid_text(bytes.try_into().ok()?)),
        0x11 => Value::String(filetime_text(FileTime(u64::from_le_bytes(int(8)?)))?),
        0x12 => Value::String(systime_text(&SysTime::from_bytes(bytes.try_into().ok()?))?),
        0x13 => Value::String(sid_text(bytes)?),
        // SizeT is a HexInt of its width.
        0x10 | 0x14 if bytes.len() == 4 => Value::String(hex_text(u64::from(u32::from_le_bytes(
            int(4)?[..4].try_into().ok()?,
        )))),
        0x10 | 0x15 if bytes.len() == 8 => Value::String(hex_text(u64::from_le_bytes(int(8)?))),
        _ => return None,
    })
}

/// `value` as `format!("{value:#x}")` writes it (`0x` and lower-case digits, no
/// leading zeros), without the formatting machinery: a keyword mask or handle per
/// record.
pub(super) fn hex_text(value: u64) -> String {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - value.leading_zeros() as usize / 4).max(1);
    let mut text = String::with_capacity(2 + digits);
    text.push_str("0x");
    for place in (0..digits).rev() {
        text.push(char::from(
            HEX_LOWER[(value >> (place * 4)) as usize & 0x0f],
        ));
    }
    text
}

/// `S-R-A-S1-…`: revision, 48-bit big-endian authority, little-endian sub-authorities.
pub(super) fn sid_text(bytes: &[u8]) -> Option<String> {
    let [revision, count, authority @ ..] = bytes.get(..8)? else {
        return None;
    };
    let subs = bytes.get(8..8 + 4 * usize::from(*count))?;
    let mut wide = [0u8; 8];
    wide[2..].copy_from_slice(authority);
    let mut text = format!("S-{revision}-{}", u64::from_be_bytes(wide));
    for sub in subs.as_chunks::<4>().0 {
        text.push('-');
        text.push_str(&u32::from_le_bytes(*sub).to_string());
    }
    Some(text)
}

pub(super) const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// UTF-16LE units that are all ASCII but NUL (the usual case) as text, a byte per
/// unit; `None` otherwise. Checked four units at a time as one word, without a branch
/// per word, then narrowed in one pass the compiler vectorises.
pub(super) fn ascii_text(units: &[[u8; 2]]) -> Option<String> {
    // Per 16-bit lane: the high byte and bit 7 of the low byte are clear (ASCII), and
    // the lane plus 0x7f reaches bit 7 (not NUL; no carry leaves an ASCII lane).
    const NOT_ASCII: u64 = 0xff80_ff80_ff80_ff80;
    const SEVEN_F: u64 = 0x007f_007f_007f_007f;
    const BIT_7: u64 = 0x0080_0080_0080_0080;
    let (words, tail) = units.as_flattened().as_chunks::<8>();
    let mut wrong = 0u64;
    for word in words {
        let word = u64::from_le_bytes(*word);
        wrong |= (word & NOT_ASCII) | (!word.wrapping_add(SEVEN_F) & BIT_7);
    }
    if wrong != 0 {
        return None;
    }
    for unit in tail.as_chunks::<2>().0 {
        if unit[1] != 0 || unit[0].wrapping_sub(1) >= 0x7f {
            return None;
        }
    }
    String::from_utf8(units.iter().map(|unit| unit[0]).collect()).ok()
}

/// UTF-16LE text; `None` for an unpaired surrogate or a NUL (the JSON path's cases).
pub(super) fn utf16_text(bytes: &[u8]) -> Option<String> {
    let (units, rest) = bytes.as_chunks::<2>();
    if !rest.is_empty() {
        return None;
    }
    if let Some(text) = ascii_text(units) {
        return Some(text);
    }
    let mut text = String::with_capacity(units.len() * 2);
    for ch in char::decode_utf16(units.iter().map(|unit| u16::from_le_bytes(*unit))) {
        match ch.ok()? {
            '\0' => return None,
            ch => text.push(ch),
        }
    }
    Some(text)
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`, lower case, the first three groups
/// little-endian (as Windows renders a GUID).
pub(super) fn guid_text(bytes: &[u8; 16]) -> String {
    const ORDER: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(38);
    text.push('{');
    for (i, index) in ORDER.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let byte = bytes[*index];
        text.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        text.push(char::from(HEX_LOWER[usize::from(byte & 0x0f)]));
    }
    text.push('}');
    text
}

pub(super) const TICKS_PER_SECOND: u64 = 10_000_000;

/// `YYYY-MM-DDTHH:MM:SS.fffffffZ`, for years up to 9999 (the evtx crate renders later
/// ones with their last four digits: left to it).
pub(super) fn filetime_text(time: FileTime) -> Option<String> {
    // 10000-01-01T00:00:00Z in FILETIME ticks.
    const YEAR_10000: u64 = 2_650_467_744_000_000_000;
    if time.0 >= YEAR_10000 {
        return None;
    }
    let days = time.0 / (86_400 * TICKS_PER_SECOND);
    let ticks = time.0 % (86_400 * TICKS_PER_SECOND);
    let (year, month, day) = civil_from_days_since_1601(days);
    let seconds = ticks / TICKS_PER_SECOND;
    Some(datetime_text(
        year,
        month,
        day,
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ticks % TICKS_PER_SECOND,
    ))
}

/// A valid SYSTEMTIME as [`filetime_text`] writes a FILETIME (an invalid one is
/// rendered as 1601-01-01 by the evtx crate: left to it).
pub(super) fn systime_text(time: &SysTime) -> Option<String> {
    if !time.is_valid() || time.year > 9999 {
        return None;
    }
    Some(datetime_text(
        u64::from(time.year),
        u64::from(time.month),
        u64::from(time.day),
        u64::from(time.hour),
        u64::from(time.minute),
        u64::from(time.second),
        u64::from(time.milliseconds) * 10_000,
    ))
}

pub(super) fn datetime_text(
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    ticks: u64,
) -> String {
    let mut text = *b"0000-00-00T00:00:00.0000000Z";
    for (range, value) in [
        (0..4, year),
        (5..7, month),
        (8..10, day),
        (11..13, hour),
        (14..16, minute),
        (17..19, second),
        (20..27, ticks),
    ] {
        let mut value = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // Digits and separators only: ASCII.
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// The proleptic Gregorian date `days` after 1601-01-01 (Howard Hinnant's
/// `civil_from_days`, counted from 0000-03-01, 584,694 days earlier).
pub(super) fn civil_from_days_since_1601(days: u64) -> (u64, u64, u64) {
    let z = days + 584_694;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + u64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_evtx_crate_writes_them() {
        // 2019-03-19T23:34:25.1234567Z
        let ticks = 131_975_120_651_234_567;
        assert_eq!(
            filetime_text(FileTime(ticks)).as_deref(),
            Some("2019-03-19T23:34:25.1234567Z")
        );
        assert_eq!(
            filetime_text(FileTime(0)).as_deref(),
            Some("1601-01-01T00:00:00.0000000Z")
        );
        assert_eq!(filetime_text(FileTime(u64::MAX)), None);
        let mut bytes = [0u8; 16];
        for (i, v) in [2024u16, 2, 4, 29, 23, 59, 58, 999].iter().enumerate() {
            bytes[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            systime_text(&SysTime::from_bytes(&bytes)).as_deref(),
            Some("2024-02-29T23:59:58.9990000Z")
        );
    }

    #[test]
    fn hex_values_are_written_as_the_formatter_writes_them() {
        let mut values = vec![0, 1, 0xf, 0x10, 0xff, 0x100, u64::from(u32::MAX), u64::MAX];
        values.extend((0..64).map(|shift| 1u64 << shift));
        values.extend((0..64).map(|shift| (1u64 << shift) - 1));
        values.extend((0..64).map(|shift| 0x8000_0000_0000_0000_u64 >> shift | 0x5a));
        for value in values {
            assert_eq!(hex_text(value), format!("{value:#x}"), "{value}");
        }
    }

    #[test]
    fn guids_and_text() {
        let bytes = [
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(guid_text(&bytes), "{12345678-9abc-def0-0102-030405060708}");
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        assert_eq!(
            utf16_text(&utf16("cmd.exe /c")).as_deref(),
            Some("cmd.exe /c")
        );
        assert_eq!(
            utf16_text(&utf16("Ünïcödé ✓ 𝄞")).as_deref(),
            Some("Ünïcödé ✓ 𝄞")
        );
        assert_eq!(utf16_text(&utf16("a\0b")), None);
        assert_eq!(utf16_text(&[0x00, 0xd8]), None); // unpaired surrogate
        assert_eq!(utf16_text(&[0x41]), None); // odd length
        // Every position of a non-ASCII unit, a NUL and a DEL in a long value: the
        // many-units-at-a-time check misses none.
        let longest = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -nop";
        for long in [
            longest,
            &longest[..longest.len() - 1],
            &longest[..longest.len() - 2],
        ] {
            for (i, _) in long.char_indices() {
                for odd in ["é", "\u{7f}", "\u{100}"] {
                    let text = format!("{}{odd}{}", &long[..i], &long[i + 1..]);
                    assert_eq!(utf16_text(&utf16(&text)).as_deref(), Some(text.as_str()));
                }
                let with_nul = format!("{}\0{}", &long[..i], &long[i + 1..]);
                assert_eq!(utf16_text(&utf16(&with_nul)), None);
                // A string value is read up to its first NUL.
                assert_eq!(
                    raw_json(0x01, &utf16(&with_nul)),
                    Some(Value::String(long[..i].to_string()))
                );
            }
            assert_eq!(
                raw_json(0x01, &utf16(long)),
                Some(Value::String(long.to_string()))
            );
        }
    }
}
