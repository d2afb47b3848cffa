//! The mesh as the daemon runs it: the QUIC links, mDNS discovery feeding
//! them, the static peers; and, at shutdown, the order peers notice best
//! (mDNS goodbye and link `Goodbye`s together, then the endpoint closes).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use pacmesh_proto::PROTOCOL_VERSION;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::discovery::Discovery;
use super::inflight::InFlightFiles;
use super::link::{mesh_tag, Mesh, MeshKey, MeshOptions};
use super::publish::Publisher;
use super::{Announce, NodeId};
use crate::identity::Identity;
use crate::index::watch::SharedIndex;

/// The mesh's IO, made ready by `main`: a bound UDP socket, the discovery
/// source (none with `--no-mdns`), each static peer's addresses, and the
/// downloads under way that peers may read as they grow (the download
/// engine's; [`NoDownloads`](super::inflight::NoDownloads) without one).
pub struct MeshParts {
    pub socket: UdpSocket,
    pub discovery: Option<Box<dyn Discovery>>,
    pub static_peers: Vec<StaticPeer>,
    pub in_flight: Arc<dyn InFlightFiles>,
}

impl std::fmt::Debug for MeshParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshParts")
            .field("socket", &self.socket.local_addr().ok())
            .field("mdns", &self.discovery.is_some())
            .field("static_peers", &self.static_peers)
            .finish()
    }
}

/// One configured static peer: its addresses and, with `ID@HOST:PORT`,
/// the node id its key must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPeer {
    pub node: Option<NodeId>,
    pub addrs: Vec<SocketAddr>,
}

/// The running mesh and its discovery task.
pub struct MeshService {
    pub mesh: Mesh,
    discovery: Option<JoinHandle<()>>,
}

impl MeshService {
    /// Starts links and discovery; both stop when `shutdown` is cancelled.
    pub fn start(
        parts: MeshParts,
        identity: Arc<Identity>,
        mesh_key: Option<MeshKey>,
        archs: Vec<String>,
        publisher: Arc<Publisher>,
        index: SharedIndex,
        shutdown: CancellationToken,
    ) -> anyhow::Result<MeshService> {
        let quic_port = parts.socket.local_addr()?.port();
        let announce = Announce {
            node_id: identity.node_id(),
            quic_port,
            archs: archs.clone(),
            mesh_tag: mesh_tag(mesh_key.as_ref()),
            protocol_version: PROTOCOL_VERSION,
        };
        let mut options = MeshOptions::new(identity, archs);
        options.mesh_key = mesh_key;
        // Peers are served from the same index pacman is.
        options.index = index;
        options.in_flight = parts.in_flight;
        let mesh = Mesh::start(parts.socket, options, publisher, shutdown.clone())?;
        for peer in parts.static_peers {
            mesh.add_static_pinned(peer.node, peer.addrs);
        }
        let discovery = match parts.discovery {
            Some(discovery) => Some(run_discovery(discovery, &announce, mesh.clone(), shutdown)?),
            None => None,
        };
        Ok(MeshService { mesh, discovery })
    }

    /// Waits, after shutdown, until the mDNS goodbye is out and every link
    /// is closed.
    pub async fn stopped(self) {
        if let Some(task) = self.discovery {
            let _ = task.await;
        }
        self.mesh.closed().await;
    }
}

/// Feeds discovery events to the mesh until shutdown, then unregisters
/// (blocking briefly, so on the blocking pool).
fn run_discovery(
    mut discovery: Box<dyn Discovery>,
    announce: &Announce,
    mesh: Mesh,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let (tx, mut rx) = mpsc::channel(64);
    discovery.start(announce, tx)?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = rx.recv() => match event {
                    Some(event) => mesh.on_discovery(event),
                    None => break,
                },
            }
        }
        if let Err(e) = tokio::task::spawn_blocking(move || discovery.stop()).await {
            warn!(error = %e, "mDNS did not stop cleanly");
        }
    }))
}
