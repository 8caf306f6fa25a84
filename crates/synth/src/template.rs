//! The templates a chunk defines: which record shapes it has a definition for, and where.
//!
//! A template is everything in a record but its values (see [`Shape`]). Each chunk defines a
//! shape's template inline in the first record of that shape it holds, and later records of
//! the shape refer to that definition by its chunk offset. The chunk header's template table
//! links every definition: 32 buckets, a template in bucket `id % 32`, each bucket the head of
//! a chain through the definitions' `next_template_offset`, as the string table is for names.

/// Buckets in the chunk header's template table.
pub(crate) const TEMPLATE_BUCKETS: usize = 32;

/// How an optional `System` value is written, which the template says (its substitution's
/// place and type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Not in the event: no attribute for it.
    Absent,
    /// As its own type (GUID, SID), where it reads back as written.
    Typed,
    /// As text.
    Text,
}

/// What a record's template depends on: all of the event but its values. Every `System`
/// value, and every `Data` value, is a substitution; the `Data` names are literal text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'e> {
    pub(crate) provider_guid: Form,
    pub(crate) user_id: Form,
    pub(crate) data: &'e [(String, String)],
}

impl Shape<'_> {
    /// A hash of the shape, the same in every run and on every platform: it picks the
    /// template ID and GUID, and finds the shape in [`TemplateTable`]. Reads names 8 bytes at
    /// a time; the lengths keep different name lists apart.
    pub(crate) fn hash(&self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(31);
        let mut h = mix(
            0x243f_6a88_85a3_08d3,
            self.provider_guid as u64 | (self.user_id as u64) << 8,
        );
        h = mix(h, self.data.len() as u64);
        for (name, _) in self.data {
            let bytes = name.as_bytes();
            h = mix(h, bytes.len() as u64);
            let (words, rest) = bytes.as_chunks::<8>();
            for word in words {
                h = mix(h, u64::from_le_bytes(*word));
            }
            if !rest.is_empty() {
                let mut last = [0u8; 8];
                last[..rest.len()].copy_from_slice(rest);
                h = mix(h, u64::from_le_bytes(last));
            }
        }
        finalize(h)
    }
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn finalize(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The template ID of a shape whose [`Shape::hash`] is `hash`.
pub(crate) fn template_id(hash: u64) -> u32 {
    hash as u32
}

/// The template GUID of a shape: starts with its template ID (the GUID's first field), as in
/// the templates Windows writes; the rest comes from the hash too.
pub(crate) fn template_guid(hash: u64) -> [u8; 16] {
    let mut guid = [0u8; 16];
    guid[..4].copy_from_slice(&template_id(hash).to_le_bytes());
    guid[4..8].copy_from_slice(&((hash >> 32) as u32).to_le_bytes());
    guid[8..].copy_from_slice(&finalize(hash ^ 0x5851_f42d_4c95_7f2d).to_le_bytes());
    guid
}

/// The template table bucket of a template ID.
pub(crate) fn bucket(id: u32) -> usize {
    id as usize % TEMPLATE_BUCKETS
}

/// A template defined in the chunk.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    provider_guid: Form,
    user_id: Form,
    data_len: usize,
    /// Its `Data` names in [`TemplateTable::names`].
    names: (usize, usize),
    /// Chunk offset of its definition (its header), as instances refer to it.
    offset: u32,
}

/// The templates one chunk defines. Memory is allocated as templates are first defined and
/// kept across chunks: finding a record's template allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct TemplateTable {
    /// Head of each bucket's chain (the template defined last in it), as the chunk header
    /// stores.
    pub(crate) buckets: [u32; TEMPLATE_BUCKETS],
    entries: Vec<Entry>,
    /// The `Data` names of every entry, each as a `u32` length then its UTF-8 bytes.
    names: Vec<u8>,
}

/// A [`TemplateTable`] as it was, to go back to (see [`TemplateTable::undo`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    buckets: [u32; TEMPLATE_BUCKETS],
    entries: usize,
    names: usize,
}

impl TemplateTable {
    /// The offset of the definition of `shape` (whose hash is `hash`), if the chunk has one.
    pub(crate) fn find(&self, shape: &Shape<'_>, hash: u64) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| {
                e.hash == hash
                    && e.provider_guid == shape.provider_guid
                    && e.user_id == shape.user_id
                    && e.data_len == shape.data.len()
                    && self.same_names(e.names, shape.data)
            })
            .map(|e| e.offset)
    }

    fn same_names(&self, (start, end): (usize, usize), data: &[(String, String)]) -> bool {
        let mut stored = &self.names[start..end];
        for (name, _) in data {
            let Some((len, rest)) = stored.split_first_chunk::<4>() else {
                return false;
            };
            let len = u32::from_le_bytes(*len) as usize;
            if rest.get(..len) != Some(name.as_bytes()) {
                return false;
            }
            stored = &rest[len..];
        }
        stored.is_empty()
    }

    /// Record that the chunk defines `shape`'s template at `offset`, its complete definition
    /// linking to the previous head of its bucket.
    pub(crate) fn add(&mut self, shape: &Shape<'_>, hash: u64, offset: u32) {
        let start = self.names.len();
        for (name, _) in shape.data {
            // Names longer than 4 GiB can't be in a chunk: they never get here.
            self.names
                .extend_from_slice(&(name.len() as u32).to_le_bytes());
            self.names.extend_from_slice(name.as_bytes());
        }
        self.entries.push(Entry {
            hash,
            provider_guid: shape.provider_guid,
            user_id: shape.user_id,
            data_len: shape.data.len(),
            names: (start, self.names.len()),
            offset,
        });
        self.buckets[bucket(template_id(hash))] = offset;
    }

    /// Where to come back to with [`undo`](TemplateTable::undo).
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            buckets: self.buckets,
            entries: self.entries.len(),
            names: self.names.len(),
        }
    }

    /// Forget the templates defined since `mark`.
    pub(crate) fn undo(&mut self, mark: Mark) {
        self.buckets = mark.buckets;
        self.entries.truncate(mark.entries);
        self.names.truncate(mark.names);
    }

    /// Forget every template, for the next chunk.
    pub(crate) fn clear(&mut self) {
        self.buckets = [0; TEMPLATE_BUCKETS];
        self.entries.clear();
        self.names.clear();
    }

    /// How many templates the chunk defines.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), "value".to_string()))
            .collect()
    }

    fn shape(data: &[(String, String)]) -> Shape<'_> {
        Shape {
            provider_guid: Form::Typed,
            user_id: Form::Absent,
            data,
        }
    }

    #[test]
    fn shapes_hash_apart_and_values_do_not_count() {
        let a = data(&["SubjectUserSid", "SubjectUserName"]);
        let b = data(&["SubjectUserSi", "dSubjectUserName"]);
        let mut a2 = a.clone();
        a2[0].1 = "other".into();
        assert_eq!(shape(&a).hash(), shape(&a2).hash());
        assert_ne!(shape(&a).hash(), shape(&b).hash());
        assert_ne!(shape(&a).hash(), shape(&a[..1]).hash());
        let text = Shape {
            provider_guid: Form::Text,
            ..shape(&a)
        };
        assert_ne!(shape(&a).hash(), text.hash());
        // Fixed across runs and versions: file bytes depend on it.
        assert_eq!(shape(&[]).hash(), shape(&[]).hash());
        let guid = template_guid(shape(&a).hash());
        assert_eq!(guid[..4], template_id(shape(&a).hash()).to_le_bytes());
    }

    #[test]
    fn finds_only_the_same_shape_and_undoes() {
        let a = data(&["A", "B"]);
        let b = data(&["A", "C"]);
        let mut table = TemplateTable::default();
        let (ha, hb) = (shape(&a).hash(), shape(&b).hash());
        table.add(&shape(&a), ha, 600);
        assert_eq!(table.find(&shape(&a), ha), Some(600));
        assert_eq!(table.find(&shape(&b), hb), None);
        // Same hash, other names (as a collision would be): not found.
        assert_eq!(table.find(&shape(&b), ha), None);
        let mark = table.mark();
        table.add(&shape(&b), hb, 900);
        assert_eq!(table.find(&shape(&b), hb), Some(900));
        assert_eq!(table.buckets[bucket(template_id(hb))], 900);
        table.undo(mark);
        assert_eq!(table.find(&shape(&b), hb), None);
        assert_eq!(table.buckets, mark.buckets);
        assert_eq!(table.len(), 1);
        table.clear();
        assert_eq!(table.find(&shape(&a), ha), None);
        assert_eq!(table.buckets, [0; TEMPLATE_BUCKETS]);
    }
}
