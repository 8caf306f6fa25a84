//! How field values are indexed: each value yields its whole lower-cased text (for exact
//! and wildcard matches on paths, user names, hashes) and its lower-cased words (for
//! word and phrase matches inside command lines and messages). Words are runs of
//! letters, digits and `_`.
//!
//! A *structured* value — every word hexadecimal with at least one decimal digit, as in
//! times (`2024-03-11 08:00:02.913`), GUIDs, IP addresses, process ids, or a security
//! identifier (`S-1-5-21-…`) — is indexed by its whole value only. Its pieces (`08`, `65ee`) are not words anyone searches for,
//! yet they were a third of the tokens of a Sysmon event and most of its distinct
//! terms; the value itself, a wildcard (`UtcTime:2024-03-11*`) or a range still find it.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

pub const VALUE_TOKENIZER: &str = "casescope_values";
/// Whole values longer than this are indexed by their words only.
pub const MAX_WHOLE_VALUE_BYTES: usize = 1024;

#[derive(Clone, Default)]
pub struct ValueTokenizer {
    tokens: Vec<Token>,
    /// The current value's word spans (reused).
    spans: Vec<(usize, usize)>,
}

pub struct ValueTokenStream<'a> {
    tokens: &'a [Token],
    next: usize,
}

impl TokenStream for ValueTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        unreachable!("value tokens are not filtered")
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte spans of the words of `text`.
fn word_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if is_word_char(c) {
                break;
            }
            chars.next();
        }
        let (start, _) = *chars.peek()?;
        let mut end = start;
        while let Some(&(index, c)) = chars.peek() {
            if !is_word_char(c) {
                break;
            }
            end = index + c.len_utf8();
            chars.next();
        }
        Some((start, end))
    })
}

/// The byte spans of the words of `text` into `out` (ASCII text byte by byte: most
/// values are ASCII, and this runs for every value of every event).
fn collect_spans(text: &str, out: &mut Vec<(usize, usize)>) {
    out.clear();
    if !text.is_ascii() {
        out.extend(word_spans(text));
        return;
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        while at < bytes.len() && !WORD_BYTE[usize::from(bytes[at])] {
            at += 1;
        }
        if at == bytes.len() {
            break;
        }
        let from = at;
        while at < bytes.len() && WORD_BYTE[usize::from(bytes[at])] {
            at += 1;
        }
        out.push((from, at));
    }
}

/// The ASCII bytes that are word characters (letters, digits, `_`), as a table: the
/// span scan runs over every byte of every value.
static WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_';
        byte += 1;
    }
    table
};

/// [`is_structured`] given the value's word spans.
fn structured(text: &str, spans: &[(usize, usize)]) -> bool {
    if is_sid(text) {
        return true;
    }
    !spans.is_empty()
        && spans.iter().all(|&(start, end)| {
            let word = &text.as_bytes()[start..end];
            word.iter().all(u8::is_ascii_hexdigit) && word.iter().any(u8::is_ascii_digit)
        })
}

/// True if every word of `text` is hexadecimal and holds a decimal digit (times, GUIDs,
/// addresses, numbers) or `text` is a security identifier: such a value is indexed
/// whole, without its words.
pub fn is_structured(text: &str) -> bool {
    let mut spans = Vec::new();
    collect_spans(text, &mut spans);
    structured(text, &spans)
}

/// A security identifier: `S-` and dash-separated decimal numbers (`S-1-5-18`).
fn is_sid(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("S-").or_else(|| text.strip_prefix("s-")) else {
        return false;
    };
    rest.split('-')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The words of `text`, lower-cased, with byte offsets.
pub fn words(text: &str) -> impl Iterator<Item = (usize, usize, String)> + '_ {
    word_spans(text).map(|(start, end)| (start, end, text[start..end].to_lowercase()))
}

/// Whether a value is indexed by its words as well as whole: not if it is structured and
/// short enough to be indexed whole (a longer one has nothing else to be found by).
pub fn words_are_indexed(text: &str) -> bool {
    text.len() > MAX_WHOLE_VALUE_BYTES || !is_structured(text)
}

/// `text` lower-cased into `out` (reusing its allocation; ASCII without a copy).
fn lowercase_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        out.push_str(text);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&text.to_lowercase());
    }
}

impl ValueTokenizer {
    /// Sets token `slot` (reusing the token's text buffer) and returns the next slot.
    fn set(&mut self, slot: usize, text: &str, from: usize, to: usize, position: usize) -> usize {
        if self.tokens.len() <= slot {
            self.tokens.push(Token::default());
        }
        let token = &mut self.tokens[slot];
        token.offset_from = from;
        token.offset_to = to;
        token.position = position;
        token.position_length = 1;
        lowercase_into(&text[from..to], &mut token.text);
        slot + 1
    }
}

impl Tokenizer for ValueTokenizer {
    type TokenStream<'a> = ValueTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ValueTokenStream<'a> {
        let mut spans = std::mem::take(&mut self.spans);
        collect_spans(text, &mut spans);
        let mut used = 0;
        let whole = !text.is_empty() && text.len() <= MAX_WHOLE_VALUE_BYTES;
        if whole {
            used = self.set(used, text, 0, text.len(), 0);
        }
        // A structured value is indexed whole only (unless too long to be).
        let words = !whole || !structured(text, &spans);
        // A one-word value already has its whole-value token.
        let one_word = whole && spans.len() == 1 && spans[0] == (0, text.len());
        if words && !one_word {
            for (index, &(start, end)) in spans.iter().enumerate() {
                used = self.set(used, text, start, end, index + 1);
            }
        }
        self.spans = spans;
        ValueTokenStream {
            tokens: &self.tokens[..used],
            next: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<(usize, String)> {
        let mut tokenizer = ValueTokenizer::default();
        let mut stream = tokenizer.token_stream(input);
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().position, stream.token().text.clone()));
        }
        out
    }

    #[test]
    fn whole_value_then_words() {
        assert_eq!(
            texts(r"C:\Windows\System32\cmd.exe /c WHOAMI"),
            [
                (0, r"c:\windows\system32\cmd.exe /c whoami".to_string()),
                (1, "c".into()),
                (2, "windows".into()),
                (3, "system32".into()),
                (4, "cmd".into()),
                (5, "exe".into()),
                (6, "c".into()),
                (7, "whoami".into()),
            ]
        );
        assert_eq!(texts("Admin"), [(0, "admin".to_string())]);
        assert_eq!(texts("José"), [(0, "josé".to_string())]);
        assert!(
            texts(&"a ".repeat(1000)).iter().all(|(p, _)| *p > 0),
            "long values: words only"
        );
    }

    /// The byte-wise ASCII path finds the same words as the general one.
    #[test]
    fn ascii_spans_match_the_general_rule() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"aZ09_ -.\\/:{}\t=%";
        let mut spans = Vec::new();
        for length in 0..400 {
            let text: String = (0..length % 40)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize] as char
                })
                .collect();
            collect_spans(&text, &mut spans);
            assert_eq!(spans, word_spans(&text).collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn structured_values_are_indexed_whole() {
        for value in [
            "2024-03-11 08:00:02.913",
            "{6F1A2B3C-9B67-65EE-F555-00000000101A}",
            "10.0.1.57",
            "fe80::1c2d:3e4f",
            "4624",
            "S-1-5-18",
            "S-1-5-21-3623811015-3361044348-30300820-1013",
        ] {
            assert!(is_structured(value), "{value}");
            assert_eq!(texts(value), [(0, value.to_lowercase())], "{value}");
            assert!(!words_are_indexed(value), "{value}");
        }
        for value in [
            "S-1-5-",
            "S-1-5-x",
            "cafe babe",
            "C:\\Windows\\123",
            "SHA256=E13F6D47",
            "-",
            "",
        ] {
            assert!(!is_structured(value), "{value}");
        }
        assert_eq!(
            texts("Add 2024"),
            [
                (0, "add 2024".into()),
                (1, "add".into()),
                (2, "2024".into())
            ]
        );
        // Too long to index whole: its words are what finds it.
        let long = "1234 ".repeat(300);
        assert!(words_are_indexed(&long));
        assert_eq!(texts(&long).len(), 300);
    }
}
