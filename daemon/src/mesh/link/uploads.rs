//! Upload admission: how many uploads run at once, for all peers and for
//! one, decided by the pure [`admit`]; and what uploads are served from.
//!
//! Uploads of cached files are bounded in all (`max_uploads`) and per peer
//! (`max_uploads_per_peer`, so one peer cannot take every slot); uploads
//! of files still arriving (peers joining our WAN fetch) have their own,
//! larger bound (they go at the WAN's pace), and one peer holds at most
//! as many of them as it can run downloads at once
//! ([`GROWING_UPLOADS_PER_PEER`]): more could only be a peer keeping
//! others out. A request past a bound is answered `Busy` at once, so the
//! asker goes to another holder or the mirror instead of waiting on us.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pacmesh_proto::NodeId;
use parking_lot::Mutex;

use super::body::UploadFiles;

/// Uploads of growing files one peer may hold: a daemon runs at most this
/// many downloads at once.
pub(crate) const GROWING_UPLOADS_PER_PEER: usize = crate::fetch::MAX_TRANSFERS;
use crate::index::watch::SharedIndex;
use crate::mesh::inflight::InFlightFiles;

/// What an upload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A complete file from the cache index.
    Cached,
    /// A download still arriving here.
    Growing,
}

/// The bounds [`admit`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub cached: usize,
    pub per_peer: usize,
    pub growing: usize,
    pub growing_per_peer: usize,
}

/// Uploads under way when a request arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub cached: usize,
    pub growing: usize,
    /// Cached-file uploads to the asking peer.
    pub by_peer: usize,
    /// Growing-file uploads to the asking peer.
    pub growing_by_peer: usize,
}

/// Why a request is answered `Busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The asking peer holds its share of uploads of that kind.
    PeerShare,
    /// Every slot of the kind is taken.
    Full,
}

/// Whether one more upload of `kind` may start.
pub(crate) fn admit(kind: Kind, held: Held, limits: Limits) -> Result<(), Busy> {
    match kind {
        Kind::Cached if held.by_peer >= limits.per_peer => Err(Busy::PeerShare),
        Kind::Cached if held.cached >= limits.cached => Err(Busy::Full),
        Kind::Growing if held.growing_by_peer >= limits.growing_per_peer => Err(Busy::PeerShare),
        Kind::Growing if held.growing >= limits.growing => Err(Busy::Full),
        Kind::Cached | Kind::Growing => Ok(()),
    }
}

#[derive(Debug, Default)]
struct Counts {
    cached: usize,
    growing: usize,
    /// Only peers with a cached-file upload under way.
    by_peer: HashMap<NodeId, usize>,
    /// Only peers with a growing-file upload under way.
    growing_by_peer: HashMap<NodeId, usize>,
}

impl Counts {
    /// The uploads of `kind`: in all, and by peer.
    fn of(&mut self, kind: Kind) -> (&mut usize, &mut HashMap<NodeId, usize>) {
        match kind {
            Kind::Cached => (&mut self.cached, &mut self.by_peer),
            Kind::Growing => (&mut self.growing, &mut self.growing_by_peer),
        }
    }
}

/// The uploads of one mesh.
pub(crate) struct Uploads {
    limits: Limits,
    counts: Mutex<Counts>,
    /// An upload whose asker takes nothing for this long is cut.
    pub(super) stall_timeout: Duration,
    /// Where cached files are found.
    pub(super) index: SharedIndex,
    /// Downloads under way here, served as they grow.
    pub(super) in_flight: Arc<dyn InFlightFiles>,
    /// Opens what the index locates.
    pub(super) files: Arc<dyn UploadFiles>,
}

impl Uploads {
    pub(super) fn new(
        limits: Limits,
        stall_timeout: Duration,
        index: SharedIndex,
        in_flight: Arc<dyn InFlightFiles>,
        files: Arc<dyn UploadFiles>,
    ) -> Self {
        Uploads {
            limits,
            counts: Mutex::new(Counts::default()),
            stall_timeout,
            index,
            in_flight,
            files,
        }
    }

    /// A slot for one upload of `kind` to `peer`, given back when dropped.
    pub(super) fn take(&self, kind: Kind, peer: NodeId) -> Result<Slot<'_>, Busy> {
        let mut counts = self.counts.lock();
        let held = Held {
            cached: counts.cached,
            growing: counts.growing,
            by_peer: counts.by_peer.get(&peer).copied().unwrap_or(0),
            growing_by_peer: counts.growing_by_peer.get(&peer).copied().unwrap_or(0),
        };
        admit(kind, held, self.limits)?;
        let (all, by_peer) = counts.of(kind);
        *all += 1;
        *by_peer.entry(peer).or_default() += 1;
        Ok(Slot {
            uploads: self,
            kind,
            peer,
        })
    }

    fn give_back(&self, kind: Kind, peer: NodeId) {
        let mut counts = self.counts.lock();
        let (all, by_peer) = counts.of(kind);
        *all -= 1;
        if let Some(n) = by_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                by_peer.remove(&peer);
            }
        }
    }
}

/// One upload's place in [`Uploads`].
pub(super) struct Slot<'a> {
    uploads: &'a Uploads,
    kind: Kind,
    peer: NodeId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.uploads.give_back(self.kind, self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        cached: 8,
        per_peer: 4,
        growing: 64,
        growing_per_peer: 32,
    };

    fn held(cached: usize, growing: usize, by_peer: usize) -> Held {
        Held {
            cached,
            growing,
            by_peer,
            growing_by_peer: 0,
        }
    }

    #[test]
    fn admission_table() {
        use Kind::*;
        let cases: &[(&str, Kind, Held, Result<(), Busy>)] = &[
            ("idle", Cached, held(0, 0, 0), Ok(())),
            ("last shared slot", Cached, held(7, 0, 3), Ok(())),
            ("all slots taken", Cached, held(8, 0, 0), Err(Busy::Full)),
            (
                "peer holds its share",
                Cached,
                held(4, 0, 4),
                Err(Busy::PeerShare),
            ),
            (
                "share is checked first",
                Cached,
                held(8, 0, 4),
                Err(Busy::PeerShare),
            ),
            (
                "growing ignores cached slots",
                Growing,
                held(8, 0, 4),
                Ok(()),
            ),
            ("growing full", Growing, held(0, 64, 0), Err(Busy::Full)),
            (
                "peer holds its growing share",
                Growing,
                Held {
                    growing_by_peer: 32,
                    ..held(0, 32, 0)
                },
                Err(Busy::PeerShare),
            ),
            (
                "another peer's growing uploads leave room",
                Growing,
                Held {
                    growing_by_peer: 31,
                    ..held(0, 63, 0)
                },
                Ok(()),
            ),
        ];
        for (what, kind, held, want) in cases {
            assert_eq!(admit(*kind, *held, LIMITS), *want, "{what}");
        }
    }
}
