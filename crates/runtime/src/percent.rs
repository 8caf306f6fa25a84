//! Percent-encoding of URL parts: decoding a query value or a URL's user info, and
//! `application/x-www-form-urlencoded` encoding of one value.

/// `text` with `%XX` escapes decoded (and `+` as a space when `plus_is_space`, as in a
/// query); a `%` not followed by two hex digits stays as it is.
pub fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && bytes[i] == b'+' {
            b' '
        } else {
            bytes[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` encoding of one value (e.g. client credentials
/// in HTTP Basic, RFC 6749 §2.3.1).
pub fn form_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::{decode, form_encode};

    #[test]
    fn decoding_and_encoding() {
        assert_eq!(decode("a%2Fb+c", true), "a/b c");
        assert_eq!(decode("p%40ss+word", false), "p@ss+word");
        assert_eq!(decode("abc%", true), "abc%");
        assert_eq!(decode("%zz1", true), "%zz1");
        assert_eq!(decode("%41", true), "A");
        assert_eq!(decode("%é1", true), "%é1", "no panic inside a character");
        assert_eq!(form_encode("casescope"), "casescope");
        assert_eq!(form_encode("a b:c/ü"), "a+b%3Ac%2F%C3%BC");
        assert_eq!(decode(&form_encode("a b:c/ü"), true), "a b:c/ü");
    }
}
