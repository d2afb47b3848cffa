//! Which package files a host holds, as a set of fixed 64-bit name hashes,
//! and the compact byte form that set takes inside a `Digest`.
//!
//! Raw file names are 40–60 bytes, so an index of 10 000 packages would be
//! half a megabyte. Instead every name becomes a [`NameHash`]; the set is
//! kept sorted, and on the wire it is the first hash followed by the gaps
//! between consecutive hashes, each as an unsigned LEB128 varint. Gaps
//! between n uniformly spread 64-bit values are about 2^64/n, so at 10 000
//! packages most take 8 bytes and a quarter 7 (measured by
//! `benches/digest_size.rs`).
//!
//! Collisions are harmless: a receiver that believes a peer holds a file
//! because of a colliding hash makes one wasted request, which the peer
//! answers `NotFound`, and every file received is verified anyway.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Most packages one `Digest` may carry. At the varint worst case of 10
/// bytes per hash this is 1 000 000 bytes, so a full digest always fits in
/// one control frame ([`crate::MAX_FRAME`]).
pub const MAX_DIGEST_PACKAGES: usize = 100_000;

/// Longest unsigned LEB128 encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// The 64-bit hash that stands for a file name on the wire.
///
/// Defined as the first 8 bytes, big-endian, of SHA-256 over the file
/// name's UTF-8 bytes (`printf %s NAME | sha256sum | cut -c1-16` gives it in
/// hex). SHA-256 because it is fixed and identical on every host (a keyed
/// SipHash would not be), has test vectors everywhere, is already a
/// dependency, and at ~0.3 µs per name its speed does not matter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameHash(u64);

impl NameHash {
    /// Wraps a raw hash value, e.g. one read back from storage.
    pub const fn from_u64(value: u64) -> Self {
        NameHash(value)
    }

    /// The raw hash value.
    pub const fn to_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NameHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameHash({:016x})", self.0)
    }
}

impl fmt::Display for NameHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Hashes a file name as every pacmesh host does; see [`NameHash`].
pub fn name_hash(name: &str) -> NameHash {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    NameHash(u64::from_be_bytes(first))
}

// On the binary wire a hash is its 8 big-endian bytes (a bincode varint
// would take 9); human-readable formats such as the status JSON get hex.
impl Serialize for NameHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.to_be_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NameHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            u64::from_str_radix(&text, 16)
                .map(NameHash)
                .map_err(de::Error::custom)
        } else {
            <[u8; 8]>::deserialize(deserializer).map(|b| NameHash(u64::from_be_bytes(b)))
        }
    }
}

/// Why a compact set encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    #[error("package set ends inside a varint")]
    Truncated,
    #[error("package set varint is longer than a u64 or not minimally encoded")]
    BadVarint,
    #[error("package set hashes are not strictly increasing")]
    NotIncreasing,
    #[error("package set has more than {MAX_DIGEST_PACKAGES} entries")]
    TooMany,
}

/// A set of name hashes, kept sorted and free of duplicates.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackageSet {
    sorted: Vec<u64>,
}

impl fmt::Debug for PackageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageSet({} hashes)", self.sorted.len())
    }
}

impl PackageSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set of the given file names' hashes.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names.into_iter().map(name_hash).collect()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn contains(&self, hash: NameHash) -> bool {
        self.sorted.binary_search(&hash.0).is_ok()
    }

    /// Whether the set (probably) holds this file; see the module doc on
    /// collisions.
    pub fn contains_name(&self, name: &str) -> bool {
        self.contains(name_hash(name))
    }

    /// Adds one hash; true when it was not there yet.
    pub fn insert(&mut self, hash: NameHash) -> bool {
        match self.sorted.binary_search(&hash.0) {
            Ok(_) => false,
            Err(pos) => {
                self.sorted.insert(pos, hash.0);
                true
            }
        }
    }

    /// Removes one hash; true when it was there.
    pub fn remove(&mut self, hash: NameHash) -> bool {
        match self.sorted.binary_search(&hash.0) {
            Ok(pos) => {
                self.sorted.remove(pos);
                true
            }
            Err(_) => false,
        }
    }

    /// Applies a change: `removed` first, then `added`, so a hash in both
    /// ends up present. Linear in the set's size plus the change's (the
    /// change is sorted, then merged in; the set is never sorted again).
    pub fn apply_changes(&mut self, added: &[NameHash], removed: &[NameHash]) {
        if !removed.is_empty() {
            let mut gone: Vec<u64> = removed.iter().map(|h| h.0).collect();
            gone.sort_unstable();
            self.sorted.retain(|h| gone.binary_search(h).is_err());
        }
        if added.len() == 1 {
            self.insert(added[0]);
        } else if !added.is_empty() {
            let mut fresh: Vec<u64> = added.iter().map(|h| h.0).collect();
            fresh.sort_unstable();
            fresh.dedup();
            self.sorted = merge(&self.sorted, &fresh);
        }
    }

    /// Applies a peer's `Delta` (its sequence number is the caller's
    /// business, see [`crate::DigestState`]).
    pub fn apply(&mut self, delta: &crate::Delta) {
        self.apply_changes(&delta.added, &delta.removed);
    }

    /// The hashes in ascending order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = NameHash> + '_ {
        self.sorted.iter().map(|&h| NameHash(h))
    }

    /// The compact form: first hash, then the gaps, as LEB128 varints.
    pub fn encode_compact(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.sorted.len() * 8);
        let mut prev = 0u64;
        for (i, &h) in self.sorted.iter().enumerate() {
            // Strictly increasing, so every gap after the first is >= 1.
            let gap = if i == 0 { h } else { h - prev };
            write_varint(&mut out, gap);
            prev = h;
        }
        out
    }

    /// Parses the compact form. Only canonical input is accepted (minimal
    /// varints, strictly increasing hashes, at most
    /// [`MAX_DIGEST_PACKAGES`]), so one set has exactly one encoding.
    pub fn decode_compact(mut bytes: &[u8]) -> Result<Self, SetError> {
        let mut sorted = Vec::with_capacity((bytes.len() / 8).min(MAX_DIGEST_PACKAGES));
        let mut prev: Option<u64> = None;
        while !bytes.is_empty() {
            if sorted.len() == MAX_DIGEST_PACKAGES {
                return Err(SetError::TooMany);
            }
            let gap = read_varint(&mut bytes)?;
            let h = match prev {
                None => gap,
                Some(_) if gap == 0 => return Err(SetError::NotIncreasing),
                Some(p) => p.checked_add(gap).ok_or(SetError::NotIncreasing)?,
            };
            sorted.push(h);
            prev = Some(h);
        }
        Ok(PackageSet { sorted })
    }
}

impl FromIterator<NameHash> for PackageSet {
    fn from_iter<I: IntoIterator<Item = NameHash>>(iter: I) -> Self {
        let mut sorted: Vec<u64> = iter.into_iter().map(|h| h.0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        PackageSet { sorted }
    }
}

/// The sorted union of two sorted, duplicate-free lists.
fn merge(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, SetError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let (&byte, rest) = bytes.split_first().ok_or(SetError::Truncated)?;
        *bytes = rest;
        let bits = u64::from(byte & 0x7f);
        // The 10th byte may only carry the top bit of a u64.
        if i == MAX_VARINT_LEN - 1 && bits > 1 {
            return Err(SetError::BadVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            // A final zero byte after others means the encoding was padded.
            if i > 0 && byte == 0 {
                return Err(SetError::BadVarint);
            }
            return Ok(value);
        }
    }
    Err(SetError::BadVarint)
}

impl Serialize for PackageSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encode_compact())
    }
}

impl<'de> Deserialize<'de> for PackageSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(CompactVisitor)
    }
}

struct CompactVisitor;

impl<'de> Visitor<'de> for CompactVisitor {
    type Value = PackageSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a compact package set (LEB128 hash gaps)")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<PackageSet, E> {
        PackageSet::decode_compact(bytes).map_err(E::custom)
    }

    // Formats without a bytes type (JSON) hand the bytes over as a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PackageSet, A::Error> {
        let mut bytes = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        self.visit_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_hash_is_the_first_eight_bytes_of_sha256() {
        // printf %s core-1.0-1-x86_64.pkg.tar.zst | sha256sum
        let h = name_hash("core-1.0-1-x86_64.pkg.tar.zst");
        assert_eq!(h.to_u64(), 0x5de5_b146_9168_aa40);
        assert_eq!(name_hash("").to_string(), "e3b0c44298fc1c14");
    }

    fn check_varint(value: u64, len: usize) {
        let mut out = Vec::new();
        write_varint(&mut out, value);
        assert_eq!(out.len(), len, "length of varint {value}");
        let mut slice = out.as_slice();
        assert_eq!(read_varint(&mut slice), Ok(value));
        assert!(slice.is_empty());
    }

    #[test]
    fn varint_lengths() {
        let table = [
            (0, 1),
            (127, 1),
            (128, 2),
            ((1 << 49) - 1, 7),
            (1 << 49, 8),
            ((1 << 63) - 1, 9),
            (u64::MAX, 10),
        ];
        for (value, len) in table {
            check_varint(value, len);
        }
    }

    fn check_bad(bytes: &[u8], want: SetError) {
        assert_eq!(
            PackageSet::decode_compact(bytes),
            Err(want),
            "decode_compact({bytes:02x?})"
        );
    }

    #[test]
    fn non_canonical_sets_are_refused() {
        check_bad(&[0x80], SetError::Truncated);
        check_bad(&[0x81, 0x00], SetError::BadVarint);
        check_bad(
            &[0xff; 9].iter().chain(&[0x02]).copied().collect::<Vec<_>>(),
            SetError::BadVarint,
        );
        check_bad(&[0xff; 11], SetError::BadVarint);
        check_bad(&[5, 0], SetError::NotIncreasing);
        let mut overflow = Vec::new();
        write_varint(&mut overflow, u64::MAX);
        write_varint(&mut overflow, 1);
        check_bad(&overflow, SetError::NotIncreasing);
        check_bad(&vec![1; MAX_DIGEST_PACKAGES + 1], SetError::TooMany);
    }

    #[test]
    fn zero_hash_and_max_hash_round_trip() {
        let set: PackageSet = [0, 1, u64::MAX]
            .map(NameHash::from_u64)
            .into_iter()
            .collect();
        let back = PackageSet::decode_compact(&set.encode_compact());
        assert_eq!(back, Ok(set));
    }

    #[test]
    fn apply_removes_then_adds() {
        let [a, b, c] = [1, 2, 3].map(NameHash::from_u64);
        let mut set: PackageSet = [a, b].into_iter().collect();
        set.apply_changes(&[c, b, c], &[a, b]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![b, c]);
        set.apply_changes(&[a], &[]);
        assert!(set.contains(a) && set.contains(b) && set.contains(c));
        set.apply_changes(&[], &[b, NameHash::from_u64(99)]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![a, c]);
    }

    #[test]
    fn contains_name_uses_the_hash() {
        let set = PackageSet::from_names(["a-1-1-any.pkg.tar.zst", "b-1-1-any.pkg.tar.zst"]);
        assert!(set.contains_name("a-1-1-any.pkg.tar.zst"));
        assert!(!set.contains_name("c-1-1-any.pkg.tar.zst"));
        assert_eq!(set.len(), 2);
    }
}
