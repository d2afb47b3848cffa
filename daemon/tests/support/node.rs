//! An in-process mesh on loopback serving a temporary cache dir through
//! the real index watcher, for the hostile-peer tests: each test tweaks
//! the [`MeshOptions`] it needs.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use super::wait::eventually;

use pacmeshd::identity::{Identity, NodeId};
use pacmeshd::index::watch::ChangeSink;
use pacmeshd::mesh::link::{Mesh, MeshOptions};
use pacmeshd::mesh::publish::Publisher;
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use tokio_util::sync::CancellationToken;

pub struct Node {
    pub mesh: Mesh,
    pub publisher: Arc<Publisher>,
    pub shutdown: CancellationToken,
    pub cache: tempfile::TempDir,
    _state: tempfile::TempDir,
}

impl Node {
    /// A mesh serving a fresh cache dir holding `files`, with test-sized
    /// liveness (keep-alive 250 ms, idle timeout 2 s) unless `tweak`
    /// says otherwise.
    pub async fn start(files: &[(&str, &[u8])], tweak: impl FnOnce(&mut MeshOptions)) -> Node {
        let state = tempfile::tempdir().expect("state dir");
        let identity = Arc::new(Identity::load_or_create(state.path()).expect("identity"));
        Node::start_as(identity, state, files, tweak).await
    }

    /// [`Node::start`] with a given identity (a restarted host, or one
    /// whose key changed).
    pub async fn start_as(
        identity: Arc<Identity>,
        state: tempfile::TempDir,
        files: &[(&str, &[u8])],
        tweak: impl FnOnce(&mut MeshOptions),
    ) -> Node {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        Node::start_on(socket, identity, state, files, tweak).await
    }

    /// A fresh host on `socket` (bound to a given address: another host
    /// taking over a stopped one's address).
    pub async fn start_at(
        socket: UdpSocket,
        files: &[(&str, &[u8])],
        tweak: impl FnOnce(&mut MeshOptions),
    ) -> Node {
        let state = tempfile::tempdir().expect("state dir");
        let identity = Arc::new(Identity::load_or_create(state.path()).expect("identity"));
        Node::start_on(socket, identity, state, files, tweak).await
    }

    async fn start_on(
        socket: UdpSocket,
        identity: Arc<Identity>,
        state: tempfile::TempDir,
        files: &[(&str, &[u8])],
        tweak: impl FnOnce(&mut MeshOptions),
    ) -> Node {
        let cache = tempfile::tempdir().expect("cache dir");
        for (name, bytes) in files {
            std::fs::write(cache.path().join(name), bytes).expect("cache file");
        }
        let shutdown = CancellationToken::new();
        let publisher = Arc::new(Publisher::default());
        let sink = publisher.clone();
        let on_change: ChangeSink = Arc::new(move |changes| sink.change(changes));
        let index = pacmeshd::index::watch::start(
            vec![cache.path().to_path_buf()],
            on_change,
            shutdown.clone(),
        )
        .await
        .expect("index");
        let mut opts = MeshOptions::new(identity, vec!["x86_64".into(), "any".into()]);
        opts.keep_alive = Duration::from_millis(250);
        opts.idle_timeout = Duration::from_secs(2);
        opts.index = index;
        tweak(&mut opts);
        let mesh = Mesh::start(socket, opts, publisher.clone(), shutdown.clone()).expect("mesh");
        Node {
            mesh,
            publisher,
            shutdown,
            cache,
            _state: state,
        }
    }

    pub fn id(&self) -> NodeId {
        self.mesh.node_id()
    }

    pub fn ad(&self) -> DiscoveryEvent {
        DiscoveryEvent::Up(PeerAd {
            node_id: Some(self.id()),
            addrs: vec![self.mesh.local_addr()],
        })
    }

    /// Dials `other` as if mDNS had announced it.
    pub fn discovers(&self, other: &Node) {
        self.mesh.on_discovery(other.ad());
    }

    /// Stops the mesh and waits until it closed (its socket is released
    /// once the node is dropped).
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.mesh.closed().await;
    }

    /// Links to `other` and waits until its digest lists `file`.
    pub async fn links_to(&self, other: &Node, file: &str) {
        self.discovers(other);
        eventually(
            "the peer's digest lists the file",
            Duration::from_secs(5),
            || self.mesh.who_has(file).contains(&other.id()),
        )
        .await;
    }
}
