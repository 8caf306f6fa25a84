//! Substring search for many needles at once, when there are too many for an
//! Aho-Corasick automaton to stay in cache.
//!
//! Each needle of 8 bytes or more is indexed by one of its 8-byte windows, its
//! *anchor* (a needle of 4 to 7 bytes by a 4-byte one), chosen to be rare in logs
//! (uncommon letters, and windows no other needle uses, are preferred; digits and hex
//! letters, which fill ids and hashes, are avoided). The text is read once with rolling
//! 8- and 4-byte windows: a window is looked up in a bit set (512 KiB, in cache) and,
//! only when its bit is set, in the anchor table; each needle anchored there is compared
//! with the text at the anchor's offset. Every occurrence of a needle is found exactly once (through the
//! anchor at its own offset), overlapping ones included, as an overlapping automaton
//! search would find them. Needles under 4 bytes go to a small automaton.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rustc_hash::FxHashMap;

/// Bits of the anchor filter (2^22 bits = 512 KiB).
const FILTER_BITS: u32 = 22;

/// An occurrence: (needle, start, end).
pub(super) type Found = (usize, usize, usize);

pub(super) struct Anchored {
    /// Lower-case needles.
    needles: Vec<Box<[u8]>>,
    /// Anchor (8 lower-case bytes, big-endian) → (needle, offset of the anchor in it).
    long: FxHashMap<u64, Vec<(u32, u32)>>,
    /// The same for 4-byte anchors of needles of 4 to 7 bytes.
    anchors: FxHashMap<u32, Vec<(u32, u32)>>,
    /// Bits of every anchor (8-byte ones hashed apart from 4-byte ones).
    filter: Vec<u64>,
    /// Needles under 4 bytes (indices into `short_ids`).
    short: Option<AhoCorasick>,
    short_ids: Vec<usize>,
}

fn lower(b: u8) -> u8 {
    b.to_ascii_lowercase()
}

fn slot(window: u32) -> usize {
    (window.wrapping_mul(0x9E37_79B1) >> (32 - FILTER_BITS)) as usize
}

fn slot8(window: u64) -> usize {
    (window.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

fn is_set(filter: &[u64], bit: usize) -> bool {
    filter[bit >> 6] & (1 << (bit & 63)) != 0
}

fn set(filter: &mut [u64], bit: usize) {
    filter[bit >> 6] |= 1 << (bit & 63);
}

/// How common a byte is in Windows logs (higher: more common); anchors avoid them.
/// Digits and hexadecimal letters fill GUIDs, hashes, times and ids.
fn commonness(b: u8) -> u32 {
    match b {
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 9,
        b'\\' | b'/' | b'.' | b' ' | b':' | b'-' | b'_' | b'{' | b'}' | b'=' | b',' => 9,
        b'0'..=b'9' => 9,
        b'b' | b'c' | b'd' | b'f' => 8,
        b'h' | b'l' | b'u' | b'm' | b'w' | b'p' => 7,
        b'g' | b'y' | b'v' | b'k' => 4,
        b'x' | b'j' | b'q' | b'z' => 2,
        _ => 3,
    }
}

impl Anchored {
    pub(super) fn new(needles: &[String]) -> Anchored {
        let mut long: FxHashMap<u64, Vec<(u32, u32)>> = FxHashMap::default();
        let mut anchors: FxHashMap<u32, Vec<(u32, u32)>> = FxHashMap::default();
        let mut filter = vec![0u64; 1 << (FILTER_BITS - 6)];
        let mut lowered = Vec::with_capacity(needles.len());
        let mut short = Vec::new();
        let mut short_ids = Vec::new();
        for (index, needle) in needles.iter().enumerate() {
            let bytes: Box<[u8]> = needle.bytes().map(lower).collect();
            let width = match bytes.len() {
                0..4 => {
                    short.push(needle.clone());
                    short_ids.push(index);
                    lowered.push(bytes);
                    continue;
                }
                4..8 => 4,
                _ => 8,
            };
            let mut best: Option<(u32, u64, u32)> = None; // (score, window, offset)
            for offset in 0..=bytes.len() - width {
                let w = &bytes[offset..offset + width];
                let window = w.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                let used = if width == 8 {
                    long.get(&window).map_or(0, Vec::len)
                } else {
                    anchors.get(&(window as u32)).map_or(0, Vec::len)
                } as u32;
                let score = w.iter().map(|b| commonness(*b)).sum::<u32>() + used.min(64) * 12;
                if best.is_none_or(|(s, _, _)| score < s) {
                    best = Some((score, window, offset as u32));
                }
            }
            if let Some((_, window, offset)) = best {
                if width == 8 {
                    long.entry(window).or_default().push((index as u32, offset));
                    set(&mut filter, slot8(window));
                } else {
                    anchors
                        .entry(window as u32)
                        .or_default()
                        .push((index as u32, offset));
                    set(&mut filter, slot(window as u32));
                }
            }
            lowered.push(bytes);
        }
        let short = (!short.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&short)
                    .ok()
            })
            .flatten();
        Anchored {
            needles: lowered,
            long,
            anchors,
            filter,
            short,
            short_ids,
        }
    }

    /// The needles anchored at `window`, ending at `end` (inclusive) of `text`.
    fn verify(&self, list: &[(u32, u32)], text: &[u8], at: usize, found: &mut impl FnMut(Found)) {
        for &(needle, offset) in list {
            let Some(start) = at.checked_sub(offset as usize) else {
                continue;
            };
            let needle_bytes = &self.needles[needle as usize];
            let stop = start + needle_bytes.len();
            if stop <= text.len() && text[start..stop].eq_ignore_ascii_case(needle_bytes) {
                found((needle as usize, start, stop));
            }
        }
    }

    /// Every occurrence of every needle in `text`.
    pub(super) fn find(&self, text: &[u8], found: &mut impl FnMut(Found)) {
        if let Some(short) = &self.short {
            for hit in short.find_overlapping_iter(text) {
                found((
                    self.short_ids[hit.pattern().as_usize()],
                    hit.start(),
                    hit.end(),
                ));
            }
        }
        if text.len() < 4 {
            return;
        }
        let check_long = !self.long.is_empty();
        let check_short = !self.anchors.is_empty();
        let mut window = 0u64;
        for (end, byte) in text.iter().enumerate() {
            window = (window << 8) | u64::from(lower(*byte));
            if check_short && end >= 3 {
                let w4 = window as u32;
                if is_set(&self.filter, slot(w4))
                    && let Some(list) = self.anchors.get(&w4)
                {
                    self.verify(list, text, end - 3, found);
                }
            }
            if check_long
                && end >= 7
                && is_set(&self.filter, slot8(window))
                && let Some(list) = self.long.get(&window)
            {
                self.verify(list, text, end - 7, found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The anchored search finds exactly what an overlapping automaton search finds.
    #[test]
    fn finds_what_an_overlapping_automaton_finds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"abcAB.\\x1";
        for round in 0..200 {
            let needles: Vec<String> = (0..rng.random_range(1..40))
                .map(|_| {
                    let len = rng.random_range(1..9);
                    (0..len)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                        .collect()
                })
                .collect();
            let mut unique = needles.clone();
            unique.sort_by_key(|n| n.to_ascii_lowercase());
            unique.dedup_by_key(|n| n.to_ascii_lowercase());
            let text: String = (0..rng.random_range(0..200))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect();
            let anchored = Anchored::new(&unique);
            let mut got = Vec::new();
            anchored.find(text.as_bytes(), &mut |hit| got.push(hit));
            let automaton = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .build(&unique)
                .unwrap();
            let mut want: Vec<Found> = automaton
                .find_overlapping_iter(&text)
                .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "round {round}: {unique:?} in {text:?}");
        }
    }
}
