//! The mesh: finding the other pacmesh daemons on the network, keeping an
//! authenticated QUIC link to each, and knowing which packages each one
//! holds, so "who has file X?" is answered from memory.
//!
//! - `discovery`: mDNS (mdns-sd) announcing and browsing, behind the
//!   [`discovery::Discovery`] trait (with an in-memory implementation for
//!   tests), emitting [`DiscoveryEvent`]s.
//! - `link`: the QUIC endpoint, TLS pinned to node ids, the mesh-key proof,
//!   one link per peer with the control stream (Hello, Digest, Delta).
//! - `admission`: the pure choice of which incoming connections to take
//!   on before they proved anything (pending limits, QUIC Retry).
//! - `peers`: the pure peer-table decisions (liveness, backoff, which of
//!   two simultaneous links survives).
//! - `choice`: the pure choice of which holder to download from (measured
//!   throughput, RTT, failures, penalties).
//! - `inflight`: what the mesh serves of downloads still arriving here,
//!   and what hosts announce about their own WAN fetches.
//! - `fetching`: the pure state of announced WAN fetches (this host's,
//!   what each link was told, what each peer said).
//! - `publish`: this host's index as a digest and numbered deltas.
//! - `service`: how the daemon starts and stops all of the above.

pub mod admission;
pub mod choice;
pub mod discovery;
pub mod fetching;
pub mod inflight;
pub mod link;
pub mod peers;
pub mod publish;
pub mod service;

use std::net::SocketAddr;

pub use pacmesh_proto::{BadNodeId, NodeId};

/// A static peer as configured: `HOST:PORT`, or `ID@HOST:PORT` naming the
/// node id its key must hash to. Returns the id, if named, and the
/// `HOST:PORT` part.
pub fn split_static_peer(peer: &str) -> Result<(Option<NodeId>, &str), BadNodeId> {
    match peer.split_once('@') {
        Some((id, host_port)) => Ok((Some(id.parse()?), host_port)),
        None => Ok((None, peer)),
    }
}

/// The mDNS service type every pacmesh daemon announces.
pub const SERVICE_TYPE: &str = "_pacmesh._udp.local.";

/// What this host announces about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub node_id: NodeId,
    /// UDP port of the QUIC endpoint.
    pub quic_port: u16,
    /// Package architectures this host caches (pacman.conf's, plus `any`).
    pub archs: Vec<String>,
    /// Names the mesh: derived from the mesh key (or `open` without one),
    /// so hosts of other meshes are ignored before any connection.
    pub mesh_tag: String,
    pub protocol_version: u32,
}

/// A peer as discovery or static configuration reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAd {
    /// `None` for a static peer, whose id is learnt from its certificate.
    pub node_id: Option<NodeId>,
    /// Where its QUIC endpoint listens, best first.
    pub addrs: Vec<SocketAddr>,
}

/// What discovery tells the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// Found, or found again with new addresses: treat as an update.
    Up(PeerAd),
    /// Unregistered (a goodbye): drop it now.
    Down(NodeId),
}
