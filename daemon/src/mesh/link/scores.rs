//! What the mesh remembers of each peer's service, across its links: the
//! choice record (throughput, failures, penalties, downloads in flight;
//! `mesh::choice` decides with it) and file bytes moved each way. Bounded:
//! what is kept of peers that are not linked is pruned when a link goes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacmesh_proto::NodeId;
use parking_lot::Mutex;

use crate::mesh::choice::{Choice, ChoicePolicy, Penalty, MAX_GONE_PEERS};

/// File bytes moved to and from one peer, kept across its links.
#[derive(Debug, Default)]
pub(crate) struct PeerBytes {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

pub(crate) struct Scores {
    choice: Mutex<Choice>,
    bytes: Mutex<HashMap<NodeId, Arc<PeerBytes>>>,
    to_peers: AtomicU64,
}

impl Scores {
    pub(super) fn new(policy: ChoicePolicy) -> Self {
        Scores {
            choice: Mutex::new(Choice::new(policy)),
            bytes: Mutex::new(HashMap::new()),
            to_peers: AtomicU64::new(0),
        }
    }

    /// `holders` best first for a download (`Choice::rank`), with each
    /// one's current round-trip time from `rtt`. A query: nothing is
    /// recorded.
    pub(super) fn rank(
        &self,
        holders: &[NodeId],
        rtt: impl Fn(&NodeId) -> Option<Duration>,
        now: Instant,
    ) -> Vec<NodeId> {
        self.choice.lock().rank(holders, rtt, now)
    }

    pub(super) fn penalise(&self, peer: NodeId, reason: String, now: Instant) {
        self.choice.lock().penalise(peer, reason, now);
    }

    pub(super) fn penalty(&self, peer: &NodeId, now: Instant) -> Option<Penalty> {
        self.choice.lock().penalty(peer, now).cloned()
    }

    pub(super) fn record_transfer(
        &self,
        peer: NodeId,
        bytes: u64,
        took: Duration,
        ok: bool,
        now: Instant,
    ) {
        self.choice
            .lock()
            .record_transfer(peer, bytes, took, ok, now);
    }

    /// A download from `peer` began.
    pub(super) fn started(&self, peer: NodeId) {
        self.choice.lock().started(peer);
    }

    /// A download from `peer` ended: `ok` when it ended by itself (a
    /// success or the peer's failure), `None` when that says nothing of
    /// the peer (then only a throughput sample is kept).
    pub(super) fn ended(&self, peer: NodeId, bytes: u64, took: Duration, ok: Option<bool>) {
        let mut choice = self.choice.lock();
        choice.ended(peer);
        match ok {
            Some(ok) => choice.record_transfer(peer, bytes, took, ok, Instant::now()),
            None => choice.record_sample(peer, bytes, took),
        }
    }

    /// The peer's byte counters, made at first use.
    pub(super) fn bytes_of(&self, peer: NodeId) -> Arc<PeerBytes> {
        self.bytes.lock().entry(peer).or_default().clone()
    }

    /// `n` file bytes were uploaded to `counters`' peer.
    pub(super) fn sent(&self, counters: &PeerBytes, n: u64) {
        counters.sent.fetch_add(n, Relaxed);
        self.to_peers.fetch_add(n, Relaxed);
    }

    /// File bytes uploaded to peers since start, all peers together.
    pub(super) fn bytes_to_peers(&self) -> u64 {
        self.to_peers.load(Relaxed)
    }

    /// Bounds what is kept of peers that are not `linked`: their choice
    /// records (`Choice::prune`) and byte counters (at most
    /// [`MAX_GONE_PEERS`]).
    pub(super) fn forget_gone(&self, linked: &HashSet<NodeId>, now: Instant) {
        self.choice.lock().prune(|id| linked.contains(id), now);
        let mut bytes = self.bytes.lock();
        let mut gone = bytes.len().saturating_sub(linked.len());
        if gone > MAX_GONE_PEERS {
            bytes.retain(|id, _| {
                if linked.contains(id) || gone <= MAX_GONE_PEERS {
                    return true;
                }
                gone -= 1;
                false
            });
        }
    }

    /// (peers with a choice record, peers with byte counters).
    pub(super) fn tracked(&self) -> (usize, usize) {
        (self.choice.lock().tracked(), self.bytes.lock().len())
    }
}
