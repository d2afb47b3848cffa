//! Keeping a peer's index in step, both ends, as pure state machines.
//!
//! The sender ([`DigestSender`], one per host) numbers its index states:
//! a `Digest` carries the current number, each `Delta` the next one. The
//! receiver ([`DigestState`], one per peer link) applies deltas in order;
//! on a gap it asks once for a resync and ignores deltas until the fresh
//! `Digest` arrives. Meanwhile it keeps answering from the stale set: a
//! wrong guess costs one request answered `NotFound`.
//!
//! The receiver keeps a peer's hashes in a hash set, not sorted: a delta
//! then costs what it changes, not what the peer holds, and "who has this
//! file?" (which waits on the same lock) is one lookup. Its hasher is
//! std's keyed SipHash, since a peer chooses the values it sends. The
//! applied set is bounded like a full digest: a delta that would take it
//! past [`MAX_DIGEST_PACKAGES`] is [`DeltaOutcome::TooLarge`], and the link
//! is to be closed.

use std::collections::HashSet;

use crate::message::{Delta, Digest, MAX_DELTA_CHANGES};
use crate::package_set::{NameHash, PackageSet, MAX_DIGEST_PACKAGES};

/// What the receiver should do after a `Delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// It was the next one and is applied.
    Applied,
    /// Its sequence number was already seen; ignored.
    Stale,
    /// A delta is missing: send `ResyncRequest` (said once per gap).
    NeedResync,
    /// A resync was already asked for; ignored until the `Digest`.
    AwaitingResync,
    /// Applied, it would hold more than [`MAX_DIGEST_PACKAGES`] hashes: a
    /// protocol violation (an honest sender caps its set). The state is
    /// left part applied and must not be used again.
    TooLarge,
}

/// The receiver's copy of one peer's index.
#[derive(Debug, Clone, Default)]
pub struct DigestState {
    packages: HashSet<NameHash>,
    /// Sequence number of the state `packages` reflects; None before the
    /// first `Digest`.
    seq: Option<u64>,
    resync_asked: bool,
}

impl DigestState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A full digest replaces everything and ends any pending resync.
    pub fn on_digest(&mut self, digest: Digest) {
        // Room for a delta more, so a large set is not rehashed (under
        // the lock lookups wait on) at the first delta that grows it.
        let len = digest.packages.len();
        let mut packages = HashSet::with_capacity(len + len.min(MAX_DELTA_CHANGES));
        packages.extend(digest.packages.iter());
        self.packages = packages;
        self.seq = Some(digest.seq);
        self.resync_asked = false;
    }

    /// Applies the next delta in O(its length); see [`DeltaOutcome`].
    pub fn on_delta(&mut self, delta: &Delta) -> DeltaOutcome {
        match self.seq {
            Some(seq) if delta.seq <= seq => DeltaOutcome::Stale,
            _ if self.resync_asked => DeltaOutcome::AwaitingResync,
            Some(seq) if delta.seq == seq + 1 => {
                for hash in &delta.removed {
                    self.packages.remove(hash);
                }
                for hash in &delta.added {
                    if self.packages.insert(*hash) && self.packages.len() > MAX_DIGEST_PACKAGES {
                        return DeltaOutcome::TooLarge;
                    }
                }
                self.seq = Some(delta.seq);
                DeltaOutcome::Applied
            }
            // A gap, or a delta before any digest.
            _ => {
                self.resync_asked = true;
                DeltaOutcome::NeedResync
            }
        }
    }

    /// Whether the peer (probably) holds the file with this hash.
    pub fn contains(&self, hash: NameHash) -> bool {
        self.packages.contains(&hash)
    }

    /// How many hashes the peer's index holds.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The hashes as a sorted set (a copy; for comparisons and tests).
    pub fn to_package_set(&self) -> PackageSet {
        self.packages.iter().copied().collect()
    }

    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// True once a digest arrived and no delta is known to be missing.
    pub fn is_in_sync(&self) -> bool {
        self.seq.is_some() && !self.resync_asked
    }
}

/// The sending side: this host's advertised index and its sequence number.
/// Every link gets [`DigestSender::digest`] on connect (and on
/// `ResyncRequest`) and then every delta [`DigestSender::change`] returns,
/// in order; take the snapshot and subscribe to deltas atomically.
#[derive(Debug, Clone, Default)]
pub struct DigestSender {
    packages: PackageSet,
    seq: u64,
    left_out: usize,
}

impl DigestSender {
    /// Starts at sequence number 0 with the given index, of which only the
    /// first [`MAX_DIGEST_PACKAGES`] hashes are advertised.
    pub fn new(packages: PackageSet) -> Self {
        let mut sender = DigestSender::default();
        let all: Vec<NameHash> = packages.iter().collect();
        sender.add_capped(&all);
        sender
    }

    fn add_capped(&mut self, added: &[NameHash]) -> Vec<NameHash> {
        let room = MAX_DIGEST_PACKAGES - self.packages.len();
        let mut fresh: Vec<NameHash> = added
            .iter()
            .copied()
            .filter(|h| !self.packages.contains(*h))
            .collect();
        fresh.sort_unstable();
        fresh.dedup();
        if fresh.len() > room {
            self.left_out += fresh.len() - room;
            fresh.truncate(room);
        }
        self.packages.apply_changes(&fresh, &[]);
        fresh
    }

    /// The full digest of the current state.
    pub fn digest(&self) -> Digest {
        Digest {
            seq: self.seq,
            packages: self.packages.clone(),
        }
    }

    /// Records files that appeared and disappeared; returns the deltas to
    /// send (none when nothing advertised changed, several when the change
    /// exceeds [`MAX_DELTA_CHANGES`]). Additions past
    /// [`MAX_DIGEST_PACKAGES`] are left out of the advertised set.
    pub fn change(&mut self, added: &[NameHash], removed: &[NameHash]) -> Vec<Delta> {
        let mut also_added = added.to_vec();
        also_added.sort_unstable();
        let mut gone: Vec<NameHash> = removed
            .iter()
            .copied()
            .filter(|h| self.packages.contains(*h) && also_added.binary_search(h).is_err())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        self.packages.apply_changes(&[], &gone);
        let fresh = self.add_capped(added);

        let mut deltas = Vec::new();
        let (mut fresh, mut gone) = (fresh.as_slice(), gone.as_slice());
        while !fresh.is_empty() || !gone.is_empty() {
            let (a, rest_a) = fresh.split_at(fresh.len().min(MAX_DELTA_CHANGES));
            let (r, rest_r) = gone.split_at(gone.len().min(MAX_DELTA_CHANGES));
            self.seq += 1;
            deltas.push(Delta {
                seq: self.seq,
                added: a.to_vec(),
                removed: r.to_vec(),
            });
            (fresh, gone) = (rest_a, rest_r);
        }
        deltas
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn packages(&self) -> &PackageSet {
        &self.packages
    }

    /// How many additions were left out because the set was full.
    pub fn left_out(&self) -> usize {
        self.left_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: u64) -> NameHash {
        NameHash::from_u64(v)
    }

    fn delta(seq: u64, added: &[u64], removed: &[u64]) -> Delta {
        Delta {
            seq,
            added: added.iter().copied().map(h).collect(),
            removed: removed.iter().copied().map(h).collect(),
        }
    }

    fn digest(seq: u64, hashes: &[u64]) -> Digest {
        Digest {
            seq,
            packages: hashes.iter().copied().map(h).collect(),
        }
    }

    #[test]
    fn deltas_in_order_are_applied() {
        let mut state = DigestState::new();
        state.on_digest(digest(7, &[1, 2]));
        assert_eq!(state.on_delta(&delta(8, &[3], &[1])), DeltaOutcome::Applied);
        assert_eq!(state.on_delta(&delta(9, &[4], &[])), DeltaOutcome::Applied);
        assert_eq!(state.seq(), Some(9));
        assert!(!state.contains(h(1)));
        assert!(state.contains(h(2)) && state.contains(h(3)) && state.contains(h(4)));
        assert!(state.is_in_sync());
    }

    #[test]
    fn duplicate_and_old_deltas_are_ignored() {
        let mut state = DigestState::new();
        state.on_digest(digest(5, &[1]));
        assert_eq!(state.on_delta(&delta(6, &[2], &[])), DeltaOutcome::Applied);
        assert_eq!(state.on_delta(&delta(6, &[], &[2])), DeltaOutcome::Stale);
        assert_eq!(state.on_delta(&delta(3, &[], &[1])), DeltaOutcome::Stale);
        assert!(state.contains(h(1)) && state.contains(h(2)));
        assert_eq!(state.seq(), Some(6));
    }

    #[test]
    fn gap_asks_for_resync_once_and_digest_restores() {
        let mut state = DigestState::new();
        state.on_digest(digest(1, &[1]));
        assert_eq!(
            state.on_delta(&delta(3, &[3], &[])),
            DeltaOutcome::NeedResync
        );
        assert!(!state.is_in_sync());
        assert!(!state.contains(h(3)), "a delta after a gap is not applied");
        assert_eq!(
            state.on_delta(&delta(4, &[4], &[])),
            DeltaOutcome::AwaitingResync
        );
        // The stale set still answers meanwhile.
        assert!(state.contains(h(1)));
        state.on_digest(digest(4, &[3, 4]));
        assert!(state.is_in_sync());
        assert!(!state.contains(h(1)) && state.contains(h(3)) && state.contains(h(4)));
        assert_eq!(state.on_delta(&delta(4, &[], &[3])), DeltaOutcome::Stale);
        assert_eq!(state.on_delta(&delta(5, &[5], &[])), DeltaOutcome::Applied);
    }

    #[test]
    fn delta_before_any_digest_asks_for_resync() {
        let mut state = DigestState::new();
        assert_eq!(
            state.on_delta(&delta(1, &[1], &[])),
            DeltaOutcome::NeedResync
        );
        assert_eq!(
            state.on_delta(&delta(2, &[2], &[])),
            DeltaOutcome::AwaitingResync
        );
        assert!(state.is_empty());
    }

    #[test]
    fn sender_numbers_deltas_and_receiver_follows() {
        let mut sender = DigestSender::new([1, 2].map(h).into_iter().collect());
        let mut receiver = DigestState::new();
        receiver.on_digest(sender.digest());
        assert_eq!(sender.seq(), 0);

        let deltas = sender.change(&[h(3), h(2)], &[h(1), h(9)]);
        assert_eq!(
            deltas,
            vec![delta(1, &[3], &[1])],
            "only real changes are sent"
        );
        assert!(sender.change(&[h(3)], &[h(9)]).is_empty());
        for d in &deltas {
            assert_eq!(receiver.on_delta(d), DeltaOutcome::Applied);
        }
        assert_eq!(&receiver.to_package_set(), sender.packages());
    }

    #[test]
    fn large_changes_are_split_into_numbered_deltas() {
        let mut sender = DigestSender::default();
        let many: Vec<NameHash> = (0..(MAX_DELTA_CHANGES as u64 * 2 + 1)).map(h).collect();
        let deltas = sender.change(&many, &[]);
        assert_eq!(
            deltas.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(deltas.iter().all(|d| d.added.len() <= MAX_DELTA_CHANGES));
        let mut receiver = DigestState::new();
        receiver.on_digest(Digest {
            seq: 0,
            packages: PackageSet::new(),
        });
        for d in &deltas {
            assert_eq!(receiver.on_delta(d), DeltaOutcome::Applied);
        }
        assert_eq!(receiver.len(), many.len());
    }

    #[test]
    fn sender_caps_the_advertised_set() {
        let all: PackageSet = (0..MAX_DIGEST_PACKAGES as u64 + 5).map(h).collect();
        let mut sender = DigestSender::new(all);
        assert_eq!(sender.packages().len(), MAX_DIGEST_PACKAGES);
        assert_eq!(sender.left_out(), 5);
        assert!(sender.change(&[h(u64::MAX)], &[]).is_empty());
        assert_eq!(sender.left_out(), 6);
        // A removal makes room again.
        let d = sender.change(&[h(u64::MAX - 1)], &[h(0)]);
        assert_eq!(d, vec![delta(1, &[u64::MAX - 1], &[0])]);
    }

    #[test]
    fn deltas_past_the_digest_limit_are_too_large() {
        let chunk = MAX_DELTA_CHANGES as u64;
        let mut state = DigestState::new();
        state.on_digest(digest(0, &[]));
        let mut outcomes = Vec::new();
        for seq in 1..=30u64 {
            let added: Vec<u64> = ((seq - 1) * chunk..seq * chunk).collect();
            let outcome = state.on_delta(&delta(seq, &added, &[]));
            outcomes.push(outcome);
            if outcome == DeltaOutcome::TooLarge {
                break;
            }
        }
        // 24 deltas of 4096 are 98 304 hashes; the 25th goes past 100 000.
        let applied = (MAX_DIGEST_PACKAGES as u64 / chunk) as usize;
        assert_eq!(outcomes.len(), applied + 1);
        assert!(outcomes[..applied]
            .iter()
            .all(|o| *o == DeltaOutcome::Applied));
        assert_eq!(outcomes[applied], DeltaOutcome::TooLarge);
    }

    #[test]
    fn a_full_set_may_still_change() {
        // At the limit, removals make room, and re-adding a held hash or
        // replacing one by another does not count as growth.
        let full: Vec<u64> = (0..MAX_DIGEST_PACKAGES as u64).collect();
        let mut state = DigestState::new();
        state.on_digest(digest(0, &full));
        assert_eq!(
            state.on_delta(&delta(1, &[0, 1], &[])),
            DeltaOutcome::Applied
        );
        let big = u64::MAX;
        assert_eq!(
            state.on_delta(&delta(2, &[big], &[0])),
            DeltaOutcome::Applied
        );
        assert_eq!(state.len(), MAX_DIGEST_PACKAGES);
        assert_eq!(
            state.on_delta(&delta(3, &[big - 1], &[])),
            DeltaOutcome::TooLarge
        );
    }
}
