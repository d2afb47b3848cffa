//! Turns the stream of "resolved" and "removed" announcements into
//! [`DiscoveryEvent`]s: one `Up` per peer and again only when its
//! addresses change (mDNS resolves a peer several times as its addresses
//! arrive), `Down` when it says goodbye, and each ignore reason reported
//! once per announcement. Pure: no sockets, no clock.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::super::{Announce, DiscoveryEvent, NodeId, PeerAd};
use super::txt::{decode_peer, Ignored, Resolved};

/// Announcements tracked at once; a new name past it is ignored until
/// others say goodbye (or expire). mDNS names cost nothing to invent.
pub const MAX_ANNOUNCEMENTS: usize = 1024;

/// What one announcement (by its mDNS full name) last resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Peer { id: NodeId, addrs: Vec<SocketAddr> },
    Ignored(Ignored),
}

/// What to do after a resolution.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Events for the mesh, in order.
    pub events: Vec<DiscoveryEvent>,
    /// Set when this announcement is ignored for a reason not reported
    /// before, so the caller logs it once, not on every repeat.
    pub newly_ignored: Option<Ignored>,
}

#[derive(Debug)]
pub struct Tracker {
    me: Announce,
    by_name: HashMap<String, Entry>,
}

impl Tracker {
    pub fn new(me: Announce) -> Self {
        Tracker {
            me,
            by_name: HashMap::new(),
        }
    }

    /// The host this tracker decides for.
    pub fn me(&self) -> &Announce {
        &self.me
    }

    /// The announcement `fullname` resolved (again) to `seen`.
    pub fn resolved(&mut self, fullname: &str, seen: &Resolved) -> Update {
        let mut update = Update::default();
        if self.by_name.len() >= MAX_ANNOUNCEMENTS && !self.by_name.contains_key(fullname) {
            // Not remembered, so not reported once: the caller logs these
            // at debug level only.
            update.newly_ignored = Some(Ignored::TooMany);
            return update;
        }
        match decode_peer(&self.me, seen) {
            Ok((id, addrs)) => {
                let entry = Entry::Peer {
                    id,
                    addrs: addrs.clone(),
                };
                let previous = self.by_name.insert(fullname.to_string(), entry.clone());
                match previous {
                    Some(same) if same == entry => {}
                    Some(Entry::Peer { id: old, .. }) if old != id => {
                        if !self.names_id(old) {
                            update.events.push(DiscoveryEvent::Down(old));
                        }
                        update.events.push(up(id, addrs));
                    }
                    _ => update.events.push(up(id, addrs)),
                }
            }
            Err(reason) => {
                let entry = Entry::Ignored(reason.clone());
                match self.by_name.insert(fullname.to_string(), entry) {
                    Some(Entry::Ignored(old)) if old == reason => {}
                    Some(Entry::Peer { id, .. }) => {
                        if !self.names_id(id) {
                            update.events.push(DiscoveryEvent::Down(id));
                        }
                        update.newly_ignored = Some(reason);
                    }
                    _ => update.newly_ignored = Some(reason),
                }
            }
        }
        update
    }

    /// The announcement `fullname` was withdrawn (a goodbye).
    pub fn removed(&mut self, fullname: &str) -> Option<DiscoveryEvent> {
        match self.by_name.remove(fullname)? {
            // Still announced under another name (mDNS renamed a clash).
            Entry::Peer { id, .. } if self.names_id(id) => None,
            Entry::Peer { id, .. } => Some(DiscoveryEvent::Down(id)),
            Entry::Ignored(_) => None,
        }
    }

    /// Announcements tracked now.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether some announcement still resolves to peer `id`.
    fn names_id(&self, id: NodeId) -> bool {
        self.by_name
            .values()
            .any(|e| matches!(e, Entry::Peer { id: other, .. } if *other == id))
    }
}

fn up(id: NodeId, addrs: Vec<SocketAddr>) -> DiscoveryEvent {
    DiscoveryEvent::Up(PeerAd {
        node_id: Some(id),
        addrs,
    })
}
