//! The link table: the one registered link per peer, bounded, and what a
//! link is (its connection, the peer's digest and announced downloads,
//! when it was last heard).
//!
//! Registration decides between two links to the same peer
//! (`peers::resolve_duplicate`) and refuses past the table's size; the
//! caller is told what changed and wakes whoever waits on links.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use pacmesh_proto::{DigestState, Hello, NodeId};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::close::CloseCode;
use super::PeerStatus;
use crate::mesh::fetching::PeerFetches;
use crate::mesh::peers::{self, LinkRank};

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    Registered,
    /// Another link to the peer survives.
    Duplicate,
    /// [`MeshOptions::max_links`] links are up.
    Full,
}

/// A registered link: the one connection to a peer.
pub(crate) struct Link {
    pub(super) peer: NodeId,
    pub(super) conn: quinn::Connection,
    pub(super) addr: SocketAddr,
    pub(super) rank: LinkRank,
    pub(super) archs: Vec<String>,
    /// The peer's `Hello.version`: what it may be sent.
    pub(super) version: u32,
    pub(super) digest: RwLock<DigestState>,
    /// The WAN downloads the peer announced on this link.
    pub(super) fetches: Mutex<PeerFetches>,
    /// (UDP datagrams received when last looked, when they last grew).
    pub(super) heard: Mutex<(u64, Instant)>,
    /// Set by whoever closes the link on purpose.
    pub(super) closed_with: OnceLock<CloseCode>,
}

impl Link {
    pub(super) fn new(peer: NodeId, conn: quinn::Connection, rank: LinkRank, hello: Hello) -> Self {
        Link {
            peer,
            addr: conn.remote_address(),
            heard: Mutex::new((conn.stats().udp_rx.datagrams, Instant::now())),
            conn,
            rank,
            archs: hello.archs,
            version: hello.version,
            digest: RwLock::new(DigestState::new()),
            fetches: Mutex::new(PeerFetches::default()),
            closed_with: OnceLock::new(),
        }
    }

    /// Closes the connection, remembering why.
    pub(super) fn close(&self, code: CloseCode) {
        let _ = self.closed_with.set(code);
        code.close(&self.conn);
    }

    pub(super) fn closed_with(&self) -> Option<CloseCode> {
        self.closed_with.get().copied()
    }

    /// When the peer was last heard from: any packet since the previous
    /// look counts as heard `now`.
    pub(super) fn heard(&self, now: Instant) -> Instant {
        let rx = self.conn.stats().udp_rx.datagrams;
        let mut heard = self.heard.lock();
        if rx != heard.0 {
            *heard = (rx, now);
        }
        heard.1
    }

    /// `heard` as last looked at, without looking again.
    pub(super) fn last_heard(&self) -> Instant {
        self.heard.lock().1
    }

    pub(super) fn read_digest(&self) -> RwLockReadGuard<'_, DigestState> {
        self.digest.read()
    }

    pub(super) fn write_digest(&self) -> RwLockWriteGuard<'_, DigestState> {
        self.digest.write()
    }

    pub(super) fn fetches(&self) -> MutexGuard<'_, PeerFetches> {
        self.fetches.lock()
    }

    pub(super) fn status(&self) -> PeerStatus {
        let stats = self.conn.stats();
        PeerStatus {
            node_id: self.peer,
            addr: self.addr,
            rtt_ms: self.conn.rtt().as_secs_f64() * 1000.0,
            packages: self.read_digest().len(),
            bytes_received: stats.udp_rx.bytes,
            bytes_sent: stats.udp_tx.bytes,
            file_bytes_received: 0,
            file_bytes_sent: 0,
            archs: self.archs.clone(),
            penalised_until_s: None,
            penalty_reason: None,
        }
    }
}

/// The registered links, at most `max`; read by every who-has.
pub(crate) struct LinkTable {
    links: RwLock<HashMap<NodeId, Arc<Link>>>,
    max: usize,
}

impl LinkTable {
    pub(super) fn new(max: usize) -> Self {
        LinkTable {
            links: RwLock::new(HashMap::new()),
            max,
        }
    }

    /// The most links the table holds.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Every link, under a read lock held only while the caller looks.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, HashMap<NodeId, Arc<Link>>> {
        self.links.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<NodeId, Arc<Link>>> {
        self.links.write()
    }

    pub(super) fn contains(&self, peer: &NodeId) -> bool {
        self.read().contains_key(peer)
    }

    pub(super) fn len(&self) -> usize {
        self.read().len()
    }

    pub(super) fn ids(&self) -> HashSet<NodeId> {
        self.read().keys().copied().collect()
    }

    /// Makes `link` the link to its peer unless an existing one wins
    /// (`peers::resolve_duplicate`; the loser is closed) or the table is
    /// full.
    pub(super) fn register(&self, link: &Arc<Link>) -> Registration {
        let mut links = self.write();
        match links.get(&link.peer) {
            Some(existing) => match peers::resolve_duplicate(&existing.rank, &link.rank) {
                peers::Keep::Existing => return Registration::Duplicate,
                peers::Keep::New => existing.close(CloseCode::Duplicate),
            },
            None if links.len() >= self.max => return Registration::Full,
            None => {}
        }
        links.insert(link.peer, link.clone());
        Registration::Registered
    }

    /// Forgets `link` if it is still the registered one; whether it was.
    pub(super) fn unregister(&self, link: &Arc<Link>) -> bool {
        let mut links = self.write();
        if links.get(&link.peer).is_some_and(|l| Arc::ptr_eq(l, link)) {
            links.remove(&link.peer);
            return true;
        }
        false
    }

    /// Forgets the link to `peer`, whichever it is.
    pub(super) fn remove(&self, peer: &NodeId) -> Option<Arc<Link>> {
        self.write().remove(peer)
    }

    pub(super) fn clear(&self) {
        self.write().clear();
    }
}
