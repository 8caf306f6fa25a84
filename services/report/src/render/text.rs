//! Text handling shared by the formats: escaping, display-safe text, bounds.

use minijinja::value::Value;
use std::borrow::Cow;

/// Whether `c` changes how the text around it is displayed (bidi controls, zero-width
/// characters, the BOM) or is a control character other than tab and line breaks.
fn hides(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{061C}')
        || (c.is_control() && c != '\t' && c != '\n' && c != '\r')
}

/// `text` with every character that would change the display of the text around it
/// (or is an invisible control) shown as `⟨U+XXXX⟩`.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hides) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hides(c) {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `text`, and whether it was cut.
pub fn clip(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((end, _)) => (text[..end].to_string(), true),
        None => (text.to_string(), false),
    }
}

pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            other => out.push(other),
        }
    }
    out
}

/// Characters that can start or end inline Markdown (emphasis, code, links, images,
/// HTML, entities, tables, math, footnotes, GitHub's autolinks after a `:`).
const MARKDOWN_INLINE: &str = "\\`*_[]<>!|$~&(){}#^:";
/// Characters that start a block only where a line starts (lists, headings, rules).
const MARKDOWN_LINE_START: &str = "-+=.>#";

/// Markdown that renders as exactly `text`: every character that can start inline
/// markup backslash-escaped (CommonMark allows it for all ASCII punctuation), those that
/// start a block escaped at the start of the value (and the `.`/`)` of a leading
/// `1.`), line breaks as `<br>` (valid in a table cell and a list item alike). Other
/// punctuation (`-`, `.`, `/`, …) is left as is, so dates and paths stay readable.
pub fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    let mut at_start = true;
    let mut digits_only = true;
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c if MARKDOWN_INLINE.contains(c)
                || (at_start && MARKDOWN_LINE_START.contains(c))
                || (digits_only && !at_start && (c == '.' || c == ')')) =>
            {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
        if c == ' ' && at_start {
            continue; // leading spaces keep the value at its line start
        }
        digits_only = digits_only && c.is_ascii_digit();
        at_start = false;
    }
    out
}

/// Filter `num`: an integer with thousands separators (`1,234,567`).
pub fn thousands(value: Value) -> String {
    let Some(n) = i128::try_from(value.clone()).ok() else {
        return value.to_string();
    };
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Filter `bytes`: a size in bytes for people (`1.5 MiB`), exact below 1 KiB.
pub fn bytes(value: Value) -> String {
    let Some(n) = u64::try_from(value.clone()).ok() else {
        return value.to_string();
    };
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut size = n as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// Filter `fenced` (Markdown): the text as a fenced code block, shown literally: the
/// fence is longer than any run of backticks inside.
pub fn fenced(value: Value) -> Value {
    let text = value.as_str().map(str::to_string).unwrap_or_default();
    let text = visible(&text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(longest.max(2) + 1);
    let mut body = text.replace("\r\n", "\n");
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Value::from_safe_string(format!("{fence}text\n{body}{fence}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_shown() {
        assert_eq!(visible("a\u{202E}b"), "a⟨U+202E⟩b");
        assert_eq!(visible("tab\tnl\n"), "tab\tnl\n");
        assert_eq!(visible("nul\u{0}"), "nul⟨U+0000⟩");
    }

    #[test]
    fn markdown_escapes_every_markup_character() {
        assert_eq!(
            markdown_escape("**x** <b>|$E=mc^2$|[a](b)\n"),
            "\\*\\*x\\*\\* \\<b\\>\\|\\$E=mc\\^2\\$\\|\\[a\\]\\(b\\)<br>"
        );
        assert_eq!(markdown_escape("- item"), "\\- item");
        assert_eq!(markdown_escape("12. item"), "12\\. item");
        assert_eq!(markdown_escape("2026-01-01 a.b"), "2026-01-01 a.b");
        assert_eq!(markdown_escape("http://x"), "http\\://x");
    }

    #[test]
    fn fences_outgrow_the_backticks_inside() {
        let block = fenced(Value::from("a ````` b")).to_string();
        assert!(block.starts_with("``````text\n"), "{block}");
        assert!(block.ends_with("\n``````\n"), "{block}");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("ééé", 2), ("éé".to_string(), true));
        assert_eq!(clip("ab", 2), ("ab".to_string(), false));
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(Value::from(1234567)), "1,234,567");
        assert_eq!(thousands(Value::from(12)), "12");
        assert_eq!(bytes(Value::from(512)), "512 B");
        assert_eq!(bytes(Value::from(1536)), "1.5 KiB");
    }
}
