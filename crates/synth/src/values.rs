//! System values stored with their own BinXML types (GUID, SID) where they read back as
//! the text the caller gave: only text in the form readers render is converted.

/// The 16 bytes of a GUID written `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` in lowercase, the
/// form readers render: Data1, Data2 and Data3 little-endian, Data4 as is.
pub(crate) fn parse_guid(text: &str) -> Option<[u8; 16]> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?.as_bytes();
    if inner.len() != 36 {
        return None;
    }
    let mut digits = [0u8; 32];
    let mut n = 0;
    for (i, &c) in inner.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        digits[n] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        n += 1;
    }
    let mut text_order = [0u8; 16];
    for (byte, pair) in text_order.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    // The text shows Data1..Data3 big-endian; they are stored little-endian.
    const STORED: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut guid = [0u8; 16];
    for (slot, &from) in guid.iter_mut().zip(STORED.iter()) {
        *slot = text_order[from];
    }
    Some(guid)
}

/// Revision, count, 6-byte authority, then up to 15 sub-authorities.
pub(crate) const MAX_SID_LEN: usize = 8 + 4 * 15;

/// A SID `S-R-A-S1-…-Sn` in the form readers render it (decimal, no leading zeros), as stored:
/// revision, sub-authority count, 48-bit big-endian authority, little-endian sub-authorities.
/// Returns its length in `out`.
pub(crate) fn parse_sid(text: &str, out: &mut [u8; MAX_SID_LEN]) -> Option<usize> {
    let mut parts = text.strip_prefix("S-")?.split('-');
    let revision = u8::try_from(canonical_decimal(parts.next()?)?).ok()?;
    let authority = canonical_decimal(parts.next()?)?;
    if authority >= 1 << 48 {
        return None;
    }
    out[0] = revision;
    out[2..8].copy_from_slice(&authority.to_be_bytes()[2..]);
    let mut count = 0usize;
    for part in parts {
        if count == 15 {
            return None;
        }
        let sub = u32::try_from(canonical_decimal(part)?).ok()?;
        out[8 + 4 * count..12 + 4 * count].copy_from_slice(&sub.to_le_bytes());
        count += 1;
    }
    out[1] = u8::try_from(count).ok()?;
    Some(8 + 4 * count)
}

/// A decimal number as readers render one: digits only, no leading zero but in "0".
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_parse_only_in_rendered_form() {
        let guid = parse_guid("{54849625-5478-4994-a5ba-3e3b0328c30d}").unwrap();
        assert_eq!(
            guid,
            [
                0x25, 0x96, 0x84, 0x54, 0x78, 0x54, 0x94, 0x49, 0xa5, 0xba, 0x3e, 0x3b, 0x03, 0x28,
                0xc3, 0x0d
            ]
        );
        for text in [
            "{54849625-5478-4994-A5BA-3E3B0328C30D}",
            "54849625-5478-4994-a5ba-3e3b0328c30d",
            "{54849625-5478-4994-a5ba-3e3b0328c30}",
            "{54849625-5478-4994-a5ba_3e3b0328c30d}",
            "{5484962g-5478-4994-a5ba-3e3b0328c30d}",
            "{é4849625-5478-4994-a5ba-3e3b0328c30d}",
        ] {
            assert_eq!(parse_guid(text), None, "{text}");
        }
    }

    #[test]
    fn sids_parse_only_in_rendered_form() {
        let mut out = [0u8; MAX_SID_LEN];
        assert_eq!(parse_sid("S-1-5-18", &mut out), Some(12));
        assert_eq!(&out[..12], &[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]);
        let len = parse_sid("S-1-5-21-3623811015-3361044348-30300820-1013", &mut out).unwrap();
        assert_eq!(len, 8 + 4 * 5);
        assert_eq!(out[1], 5);
        assert_eq!(&out[24..28], &1013u32.to_le_bytes());
        assert_eq!(parse_sid("S-1-0", &mut out), Some(8));
        for text in [
            "S-1-05-18",
            "S-1-5-4294967296",
            "S-1-281474976710656-1",
            "S-1--18",
            "s-1-5-18",
            "S-256-5-18",
            "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
            "NT AUTHORITY\\SYSTEM",
        ] {
            assert_eq!(parse_sid(text, &mut out), None, "{text}");
        }
    }
}
