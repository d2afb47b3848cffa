//! This host's packages as the mesh sees them: one [`DigestSender`] for the
//! whole host (so every peer sees the same sequence numbers) turning cache
//! index changes into numbered deltas, broadcast to every link.
//!
//! A new link takes the current digest and a receiver of every later delta
//! under one lock, so it sees neither a gap nor an overlap. A link that falls
//! so far behind that the broadcast drops deltas for it subscribes again and
//! sends a full digest (the receiver then resyncs).

use parking_lot::Mutex;
use std::sync::Arc;

use pacmesh_proto::{name_hash, Delta, Digest, DigestSender, NameHash, PackageSet};
use tokio::sync::broadcast;

use crate::index::Change;

/// Deltas kept for slow links before they must resync.
const BACKLOG: usize = 256;

pub struct Publisher {
    sender: Mutex<DigestSender>,
    deltas: broadcast::Sender<Arc<Delta>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(PackageSet::new())
    }
}

impl Publisher {
    pub fn new(packages: PackageSet) -> Self {
        Publisher {
            sender: Mutex::new(DigestSender::new(packages)),
            deltas: broadcast::channel(BACKLOG).0,
        }
    }

    /// Applies index changes and broadcasts the resulting deltas.
    pub fn change(&self, changes: &[Change]) {
        let mut added: Vec<NameHash> = Vec::new();
        let mut removed: Vec<NameHash> = Vec::new();
        for change in changes {
            match change {
                Change::Added(name) => added.push(name_hash(name)),
                Change::Removed(name) => removed.push(name_hash(name)),
            }
        }
        let mut sender = self.lock();
        for delta in sender.change(&added, &removed) {
            // No receivers is fine: no link is up yet.
            let _ = self.deltas.send(Arc::new(delta));
        }
    }

    /// The digest now, and every delta after it.
    pub fn subscribe(&self) -> (Digest, broadcast::Receiver<Arc<Delta>>) {
        let sender = self.lock();
        (sender.digest(), self.deltas.subscribe())
    }

    /// How many packages the host announces.
    pub fn len(&self) -> usize {
        self.lock().packages().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, DigestSender> {
        self.sender.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacmesh_proto::{DeltaOutcome, DigestState};

    const A: &str = "a-1-1-any.pkg.tar.zst";
    const B: &str = "b-1-1-any.pkg.tar.zst";

    #[test]
    fn a_subscriber_sees_the_digest_then_every_later_delta() {
        let publisher = Publisher::default();
        publisher.change(&[Change::Added(A.into())]);
        let (digest, mut deltas) = publisher.subscribe();
        let mut view = DigestState::new();
        view.on_digest(digest);
        assert!(view.contains(name_hash(A)));

        publisher.change(&[Change::Added(B.into()), Change::Removed(A.into())]);
        let delta = deltas.try_recv().expect("a delta after the digest");
        assert_eq!(view.on_delta(&delta), DeltaOutcome::Applied);
        assert!(view.contains(name_hash(B)));
        assert!(!view.contains(name_hash(A)));
        assert_eq!(publisher.len(), 1);
        assert!(deltas.try_recv().is_err(), "one change, one delta");
    }

    #[test]
    fn a_slow_subscriber_is_told_it_lagged() {
        let publisher = Publisher::default();
        let (_, mut deltas) = publisher.subscribe();
        for i in 0..(BACKLOG + 10) {
            publisher.change(&[Change::Added(format!("p{i}-1-1-any.pkg.tar.zst").into())]);
        }
        assert!(matches!(
            deltas.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
