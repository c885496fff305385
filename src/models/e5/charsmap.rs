//! SentencePiece's `precompiled_charsmap`, built from a per-character map.
//!
//! The `tokenizers` crate's `Precompiled` normaliser reads this format: a
//! little-endian `u32` byte length of the trie, the trie as `u32` units (a
//! darts-clone double array over the UTF-8 bytes of each key), then the
//! replacement strings, each ended by a NUL. A key's leaf unit holds the byte
//! offset of its replacement.
//!
//! Units: bits 0-7 the label (the byte that leads to the unit), bit 8 "has a
//! leaf", bits 10-30 the offset to the unit's children (`position ^ base`);
//! a leaf unit has bit 31 set and the value in bits 0-30. A child for byte
//! `c` of a node whose base is `b` sits at `b ^ c`, its leaf at `b ^ 0`.
//! Every node has its own base (so a probe from one node never lands on
//! another node's child with the same label), and the array extends to the
//! end of every base's 256-unit block, so a lookup of any byte stays inside.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Offsets must fit in 21 bits (no extended offsets are written).
const MAX_UNITS: usize = 1 << 21;
const LEAF_BIT: u32 = 1 << 31;
const HAS_LEAF: u32 = 1 << 8;

/// Why a charsmap could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CharsmapError {
    /// Too many keys for 21-bit offsets.
    #[error("the normalisation map needs more than {MAX_UNITS} trie units")]
    TooLarge,
    /// A key is empty or contains NUL (which ends a lookup).
    #[error("normalisation key {0:?} is empty or contains NUL")]
    BadKey(String),
}

#[derive(Default)]
struct TrieNode {
    children: BTreeMap<u8, usize>,
    value: Option<u32>,
}

/// Build the charsmap that replaces each key (a string, usually one
/// character) with its value. Keys must not be prefixes of one another for a
/// longest-match reading; single characters never are.
pub fn build(map: &[(String, String)]) -> Result<Vec<u8>, CharsmapError> {
    // Replacement strings, deduplicated, each NUL-terminated.
    let mut blob = Vec::new();
    let mut offsets: HashMap<&str, u32> = HashMap::new();
    let mut nodes = vec![TrieNode::default()];
    for (key, value) in map {
        if key.is_empty() || key.as_bytes().contains(&0) {
            return Err(CharsmapError::BadKey(key.clone()));
        }
        let off = *offsets.entry(value.as_str()).or_insert_with(|| {
            let o = blob.len() as u32;
            blob.extend_from_slice(value.as_bytes());
            blob.push(0);
            o
        });
        let mut n = 0;
        for &b in key.as_bytes() {
            n = match nodes[n].children.get(&b) {
                Some(&c) => c,
                None => {
                    nodes.push(TrieNode::default());
                    let c = nodes.len() - 1;
                    nodes[n].children.insert(b, c);
                    c
                }
            };
        }
        nodes[n].value = Some(off);
    }
    let units = place(&nodes)?;
    let mut out = Vec::with_capacity(4 + units.len() * 4 + blob.len());
    out.extend_from_slice(&((units.len() * 4) as u32).to_le_bytes());
    for u in &units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&blob);
    Ok(out)
}

/// Assign every node a base and write the units, breadth first.
fn place(nodes: &[TrieNode]) -> Result<Vec<u32>, CharsmapError> {
    let mut units: Vec<u32> = vec![0; 256];
    let mut used = vec![false; 256];
    used[0] = true; // the root's own unit
    let mut bases = HashSet::new();
    let mut first_free = 1;
    // (node, the position of its unit, the label leading to it)
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize, 0u8)]);
    while let Some((n, pos, label)) = queue.pop_front() {
        let node = &nodes[n];
        let mut labels: Vec<u8> = Vec::with_capacity(node.children.len() + 1);
        if node.value.is_some() {
            labels.push(0);
        }
        labels.extend(node.children.keys());
        while first_free < used.len() && used[first_free] {
            first_free += 1;
        }
        let base = find_base(&labels, &used, &bases, first_free);
        if base >= MAX_UNITS {
            return Err(CharsmapError::TooLarge);
        }
        if used.len() <= (base | 0xff) {
            used.resize((base | 0xff) + 1, false);
            units.resize((base | 0xff) + 1, 0);
        }
        bases.insert(base);
        let offset = (pos ^ base) as u32;
        units[pos] =
            (offset << 10) | if node.value.is_some() { HAS_LEAF } else { 0 } | u32::from(label);
        if let Some(v) = node.value {
            used[base] = true;
            units[base] = LEAF_BIT | v;
        }
        for (&c, &child) in &node.children {
            let p = base ^ usize::from(c);
            used[p] = true;
            queue.push_back((child, p, c));
        }
    }
    Ok(units)
}

/// The lowest base, unused as a base, whose slots for `labels` are all free.
fn find_base(labels: &[u8], used: &[bool], bases: &HashSet<usize>, from: usize) -> usize {
    let first = usize::from(labels.first().copied().unwrap_or(0));
    let free = |p: usize| p >= used.len() || !used[p];
    let mut slot = from;
    loop {
        if free(slot) {
            let base = slot ^ first;
            if !bases.contains(&base) && labels.iter().all(|&c| free(base ^ usize::from(c))) {
                return base;
            }
        }
        slot += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::Precompiled;

    fn map(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokenizers_reads_what_we_build() {
        let m = map(&[
            ("\u{ff21}", "A"),
            ("\u{fb01}", "fi"),
            ("\t", " "),
            ("\u{1}", ""),
            ("\u{2581}", " "),
            ("\u{2460}", "1"),
            ("\u{1d400}", "A"),
        ]);
        let p = Precompiled::from(&build(&m).unwrap()).unwrap();
        assert_eq!(p.transform("\u{ff21}"), Some("A"));
        assert_eq!(p.transform("\u{fb01}"), Some("fi"));
        assert_eq!(p.transform("\t"), Some(" "));
        assert_eq!(p.transform("\u{1}"), Some(""));
        assert_eq!(p.transform("\u{1d400}"), Some("A"));
        assert_eq!(p.transform("\u{2460}"), Some("1"));
        // Not in the map: no match, including a key's prefix bytes and a
        // character sharing its first bytes with a key.
        assert_eq!(p.transform("a"), None);
        assert_eq!(p.transform("\u{ff22}"), None);
        assert_eq!(p.transform("\u{2581}"), Some(" "));
        assert_eq!(p.transform("\u{2582}"), None);
        assert_eq!(
            p.normalize_string("\u{ff21}b\tc\u{1}\u{fb01}"),
            "Ab cfi".to_string()
        );
    }

    #[test]
    fn every_byte_after_every_key_stays_in_the_array() {
        // Probe each key followed by every possible byte: a lookup must end
        // (the crate indexes the array without a bounds check).
        let m = map(&[
            ("\u{e9}", "e"),
            ("\u{ea}", "e"),
            ("x", "y"),
            ("\u{10ffff}", ""),
        ]);
        let p = Precompiled::from(&build(&m).unwrap()).unwrap();
        for (k, v) in &m {
            for b in 1..=0x7fu8 {
                let s = format!("{k}{}", b as char);
                assert_eq!(p.transform(&s), Some(v.as_str()));
            }
        }
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(build(&map(&[("", "x")])).is_err());
        assert!(build(&map(&[("a\0", "x")])).is_err());
    }
}
