//! Finding the other pacmesh daemons: announcing this host and reporting
//! peers as [`DiscoveryEvent`]s, behind the [`Discovery`] trait.
//!
//! - `txt`: the announcement's TXT record and the pure decision whether an
//!   announcement is a peer of ours ([`Ignored`] says why not).
//! - `tracker`: repeated resolutions → one `Up` per address change, goodbye
//!   → `Down`; at most `MAX_ANNOUNCEMENTS` tracked; pure.
//! - `scope`: which announced addresses may be dialled (the announcing
//!   interface's subnet, or a static peer's); pure.
//! - `mdns`: the real implementation on mdns-sd.
//! - `memory`: an in-process LAN for tests, with the same filtering.
//!
//! Static peers are not discovery's business: the link layer dials them.

pub mod mdns;
pub mod memory;
pub mod scope;
pub mod tracker;
pub mod txt;

#[cfg(test)]
mod tests;

pub use mdns::MdnsDiscovery;
pub use memory::{MemoryDiscovery, MemoryLan};
pub use tracker::{Tracker, Update};
pub use txt::{decode, encode, Ignored, Resolved, SeenIp};

use super::{Announce, DiscoveryEvent, PeerAd};

/// Log target of peer found / gone / ignored events.
const TARGET: &str = "pacmesh::peers";

/// A source of peers: announces this host and reports the others.
pub trait Discovery: Send {
    /// Starts announcing `me` and browsing; peers arrive on `events` —
    /// never this host itself (filtered by node id, not instance name),
    /// never another mesh (TXT mesh tag differs), a protocol version
    /// older than `link::MIN_PROTOCOL_VERSION`, or a host with no
    /// architecture in common.
    fn start(
        &mut self,
        me: &Announce,
        events: tokio::sync::mpsc::Sender<DiscoveryEvent>,
    ) -> anyhow::Result<()>;

    /// Unregisters and waits (≤ 2 s) until the goodbye is sent, so peers
    /// drop this host at once; then stops. Blocking is fine (called once at
    /// shutdown).
    fn stop(&mut self);
}

/// The mDNS instance name of `me`: the first 12 hex digits of its node id
/// (instance names are for humans; peers are told apart by the id in TXT).
pub fn instance_name(me: &Announce) -> String {
    let mut id = me.node_id.to_string();
    id.truncate(12);
    id
}

/// Feeds a resolution to `tracker` and logs what it meant: a new peer or
/// a peer gone at info level, an ignored one once per announcement (at
/// info, except this host's own, which every host sees).
pub(crate) fn on_resolved(
    tracker: &mut Tracker,
    fullname: &str,
    seen: &Resolved,
) -> Vec<DiscoveryEvent> {
    let update = tracker.resolved(fullname, seen);
    let me = instance_name(tracker.me());
    if let Some(reason) = &update.newly_ignored {
        let peer = seen.raw_id();
        let addrs: Vec<_> = seen.ips.iter().map(|s| s.ip).collect();
        if matches!(reason, Ignored::Myself | Ignored::TooMany) {
            tracing::debug!(target: TARGET, me, peer, ?addrs, instance = fullname, "ignoring peer: {reason}");
        } else {
            tracing::info!(target: TARGET, me, peer, ?addrs, instance = fullname, "ignoring peer: {reason}");
        }
    }
    log_events(&me, &update.events, fullname);
    update.events
}

/// Feeds a goodbye to `tracker`; logs and returns the `Down` it means.
pub(crate) fn on_removed(tracker: &mut Tracker, fullname: &str) -> Option<DiscoveryEvent> {
    let event = tracker.removed(fullname);
    log_events(&instance_name(tracker.me()), event.as_slice(), fullname);
    event
}

/// `me` (this host's instance name) tells apart the logs of several
/// daemons in one test process.
fn log_events(me: &str, events: &[DiscoveryEvent], fullname: &str) {
    for event in events {
        match event {
            DiscoveryEvent::Up(PeerAd {
                node_id: Some(peer),
                addrs,
            }) => {
                tracing::info!(target: TARGET, me, peer = %peer, ?addrs, instance = fullname, "peer discovered");
            }
            DiscoveryEvent::Up(_) => {}
            DiscoveryEvent::Down(peer) => {
                tracing::info!(target: TARGET, me, peer = %peer, instance = fullname, "peer said goodbye");
            }
        }
    }
}
