//! Checking an AI summary against the evidence it was given.
//!
//! The answer is cut into sentences (a sentence ends at `.`, `!` or `?` before white
//! space, or at a line break; citations right after its end belong to it). Citations
//! are bracketed ids — `[E3]`, `[E3, D1]`, `[E3][E4]`, `[E3-E5]` — and each is checked
//! against the ids given: a known id is kept with its sentence, an unknown one is
//! removed from the text and listed as invented. A sentence left with no citation is
//! marked uncited. Reasoning blocks (`<think>…</think>`) are dropped first.

use crate::model::AiSentence;
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// Ids a range like `[E3-E9]` may expand to at most (beyond, it is taken as invented).
const MAX_RANGE: u32 = 50;
/// Invented ids listed at most.
const MAX_INVENTED: usize = 100;

static CITATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\s*([A-Za-z]{1,3}\d{1,6}(?:\s*(?:[,;]|[-–]|and)\s*[A-Za-z]{0,3}\d{1,6})*)\s*\]")
        .expect("citation pattern")
});
static ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([A-Za-z]{0,3})(\d{1,6})(\s*[-–]\s*([A-Za-z]{0,3})(\d{1,6}))?")
        .expect("id pattern")
});
static THINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<think>.*?(?:</think>|\z)").expect("think pattern"));
static LIST_MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(?:[-*•]|\d{1,3}[.)]|#{1,6})\s+").expect("list marker"));

/// The checked summary.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub sentences: Vec<AiSentence>,
    /// Ids cited that were not given (removed from the text), in order of appearance.
    pub invented: Vec<String>,
    pub uncited: usize,
}

/// Words whose full stop does not end a sentence.
fn abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "e.g" | "i.e" | "etc" | "vs" | "approx" | "cf" | "mr" | "ms" | "dr"
    )
}

/// Splits `text` into sentences, each with the citations that follow its end.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            push(&mut out, &mut current);
            i += 1;
            continue;
        }
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
            && !(c == '.' && abbreviation(&current[..current.len() - 1]));
        i += 1;
        if ends {
            // Citations after the end belong to this sentence.
            loop {
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                if chars.get(j) != Some(&'[') {
                    break;
                }
                let Some(close) = chars[j..].iter().position(|c| *c == ']') else {
                    break;
                };
                let group: String = chars[j..=j + close].iter().collect();
                if !CITATION.is_match(&group) {
                    break;
                }
                current.push(' ');
                current.push_str(&group);
                i = j + close + 1;
            }
            push(&mut out, &mut current);
        }
    }
    push(&mut out, &mut current);
    out
}

fn push(out: &mut Vec<String>, current: &mut String) {
    let text = current.trim();
    if CITATION
        .replace_all(text, "")
        .chars()
        .any(char::is_alphanumeric)
    {
        out.push(text.to_string());
    } else if let Some(last) = out.last_mut().filter(|_| CITATION.is_match(text)) {
        // A line of citations alone belongs to the sentence before it.
        last.push(' ');
        last.push_str(text);
    }
    current.clear();
}

/// The ids of one citation group (`E3, D1`, `E3-E5`).
fn ids(group: &str) -> Vec<String> {
    let mut found = Vec::new();
    for caps in ID.captures_iter(group) {
        let prefix = caps[1].to_ascii_uppercase();
        let first: u32 = caps[2].parse().unwrap_or(0);
        match (caps.get(3), caps.get(5)) {
            (Some(_), Some(last)) => {
                let last: u32 = last.as_str().parse().unwrap_or(0);
                let end_prefix = caps
                    .get(4)
                    .map(|m| m.as_str().to_ascii_uppercase())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| prefix.clone());
                if end_prefix == prefix && last >= first && last - first < MAX_RANGE {
                    found.extend((first..=last).map(|n| format!("{prefix}{n}")));
                } else {
                    found.push(format!("{prefix}{first}-{end_prefix}{last}"));
                }
            }
            _ => found.push(format!("{prefix}{first}")),
        }
    }
    found
}

/// Removes spaces left before punctuation and doubled by removed citations.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let glued = word.starts_with(['.', ',', ';', ':', '!', '?', ')']);
        if !out.is_empty() && !glued {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Checks `answer` against the ids that were given.
pub fn check(answer: &str, known: &HashSet<String>) -> Checked {
    let answer = THINK.replace_all(answer, "");
    let answer = LIST_MARKER.replace_all(&answer, "");
    let mut checked = Checked::default();
    let mut invented_seen = HashSet::new();
    for sentence in sentences(&answer) {
        let mut citations: Vec<String> = Vec::new();
        for caps in CITATION.captures_iter(&sentence) {
            for id in ids(&caps[1]) {
                if known.contains(&id) {
                    if !citations.contains(&id) {
                        citations.push(id);
                    }
                } else if invented_seen.insert(id.clone()) && checked.invented.len() < MAX_INVENTED
                {
                    checked.invented.push(id);
                }
            }
        }
        let text = tidy(&CITATION.replace_all(&sentence, " "));
        if text.is_empty() {
            continue;
        }
        let uncited = citations.is_empty();
        checked.uncited += usize::from(uncited);
        checked.sentences.push(AiSentence {
            text,
            citations,
            uncited,
        });
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn s(text: &str, citations: &[&str]) -> AiSentence {
        AiSentence {
            text: text.into(),
            citations: citations.iter().map(|c| c.to_string()).collect(),
            uncited: citations.is_empty(),
        }
    }

    #[test]
    fn valid_citations_stay_with_their_sentence() {
        let got = check(
            "Mimikatz ran on WS01 [E1, E2]. The account adm-bob then logged on to DC01 [E3][D1].\n\
             Persistence followed (e.g. a service). [E4]",
            &known(&["E1", "E2", "E3", "E4", "D1"]),
        );
        assert_eq!(
            got.sentences,
            vec![
                s("Mimikatz ran on WS01.", &["E1", "E2"]),
                s("The account adm-bob then logged on to DC01.", &["E3", "D1"]),
                s("Persistence followed (e.g. a service).", &["E4"]),
            ]
        );
        assert!(got.invented.is_empty());
        assert_eq!(got.uncited, 0);
    }

    #[test]
    fn invented_citations_are_removed_and_listed() {
        let got = check(
            "Lateral movement reached DC01 [E2, E99]. Data was staged [E7].",
            &known(&["E1", "E2"]),
        );
        assert_eq!(
            got.sentences,
            vec![
                s("Lateral movement reached DC01.", &["E2"]),
                s("Data was staged.", &[]),
            ]
        );
        assert_eq!(got.invented, vec!["E99", "E7"]);
        assert_eq!(got.uncited, 1);
    }

    #[test]
    fn sentences_without_citations_are_marked() {
        let got = check(
            "<think>the user wants [E1]</think>The attacker is probably APT29! Nothing else.",
            &known(&["E1"]),
        );
        assert_eq!(
            got.sentences,
            vec![
                s("The attacker is probably APT29!", &[]),
                s("Nothing else.", &[])
            ]
        );
        assert_eq!(got.uncited, 2);
        assert!(got.invented.is_empty());
    }

    #[test]
    fn ranges_lists_and_case_are_understood() {
        let got = check(
            "- Logons failed 40 times [e1-E3; D2].\n- Version 1.5 of the tool ran [E4 and E5]\n[I1]",
            &known(&["E1", "E2", "E3", "E4", "E5", "D2", "I1"]),
        );
        assert_eq!(
            got.sentences,
            vec![
                s("Logons failed 40 times.", &["E1", "E2", "E3", "D2"]),
                s("Version 1.5 of the tool ran", &["E4", "E5", "I1"]),
            ]
        );
        // A huge range is not expanded.
        let got = check("All of it [E1-E9999].", &known(&["E1"]));
        assert_eq!(got.invented, vec!["E1-E9999"]);
        assert_eq!(got.uncited, 1);
    }

    #[test]
    fn markup_in_the_answer_stays_text() {
        let got = check("<script>x</script> ran [E1].", &known(&["E1"]));
        assert_eq!(got.sentences, vec![s("<script>x</script> ran.", &["E1"])]);
    }
}
