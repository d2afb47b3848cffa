//! Peer links: the QUIC endpoint, TLS pinned to node ids, the mesh-key
//! proof, one link per peer with its control stream, and the in-memory
//! answer to "who has this file?".
//!
//! - `tls`: certificate verifiers (node id pinning, handshake signatures).
//! - `key`: the mesh key, its tag and proof.
//! - `hello`: the first exchange on a link and its checks (pure).
//! - `control`: a link's life: register, digest out, deltas both ways.
//! - `table`: the link table (one registered link per peer, bounded) and
//!   what a link is.
//! - `dial`: the `Dialer` (dial targets, discovered and static, with
//!   backoff); accepting.
//! - `uploads`: upload admission (the pure `admit`) and what uploads are
//!   served from.
//! - `query`: who has a file, in what order to ask, peers' status.
//! - `accept`: the accept loop, admitting by `mesh::admission`.
//! - `scores`: what is remembered of each peer's service (choice records,
//!   bytes moved), pruned when peers go.
//! - `close`: application close codes.
//! - `frames`, `socket`: framing on streams, UDP buffer sizes.
//! - `transport`: the QUIC transport sized for pacmesh, tight until a
//!   peer's `Hello` checked (`mesh::admission` decides which incoming
//!   connections get that far).
//! - `serve`: the serving end of transfer streams (uploads): cache files
//!   with `crate::cachefile`, downloads still arriving from
//!   `mesh::inflight`; `body` sends either.
//! - `transfer`: the asking end, [`Mesh::fetch`] and [`PeerDownload`].
//! - `announce`: this host's WAN downloads told to its peers
//!   ([`Mesh::announce`]) and theirs heard ([`Mesh::fetchers`]).
//! - `options`: [`MeshOptions`].
//!
//! The decisions (backoff, duplicates, liveness) are in `mesh::peers`;
//! which holder to fetch from is in `mesh::choice`.

mod accept;
mod announce;
mod body;
mod close;
mod control;
mod dial;
mod frames;
mod hello;
mod key;
mod options;
mod query;
mod scores;
mod serve;
mod socket;
mod table;
pub mod tls;
mod transfer;
mod transport;
mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pacmesh_proto::NodeId;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use body::{CacheFiles, FileChunks, UploadFile, UploadFiles};
pub use close::CloseCode;
pub use hello::{check_hello, Refusal, MIN_PROTOCOL_VERSION};
pub use key::{
    generate as generate_mesh_key, mesh_tag, permission_problem, MeshKey, MeshKeyError, Role,
    GENERATED_KEY_BYTES, KEY_STRETCH_ITERATIONS, MIN_KEY_LEN, OPEN_TAG,
};
pub use options::{MeshOptions, MAX_LINKS};
pub use query::{PeerStatus, Tracked};
pub use serve::{
    MAX_UPLOADS_PER_PEER, RESET_BAD_BYTES, RESET_FILE_ERROR, RESET_NO_REQUEST, RESET_SHUTDOWN,
    RESET_STALLED, UPLOAD_PRIORITY, UPLOAD_STALL_TIMEOUT,
};
pub use socket::{size_buffers, BUFFER_BYTES};
pub use transfer::{FetchError, Pace, PeerDownload};
pub use transport::{
    LINK_RECEIVE_WINDOW, LINK_STREAMS, PRE_HELLO_RECEIVE_WINDOW, PRE_HELLO_STREAMS, SEND_WINDOW,
    STREAM_RECEIVE_WINDOW,
};

use super::admission::Admission;
use super::fetching::OwnFetches;
pub use super::fetching::{Fetcher, MAX_PEER_FETCHING};
use super::peers::BackoffPolicy;
use super::publish::Publisher;
use super::DiscoveryEvent;
use crate::identity::Identity;
use dial::Dialer;
use scores::Scores;
use table::{Link, LinkTable, Registration};
use uploads::Uploads;

/// Log target of link up/down events.
const TARGET: &str = "pacmesh::peers";

/// The longest `closed()` takes after shutdown.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);

/// The running mesh: cheap to clone, one per daemon.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("node_id", &self.inner.local)
            .field("addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    local: NodeId,
    local_addr: SocketAddr,
    identity: Arc<Identity>,
    mesh_key: Option<MeshKey>,
    archs: Vec<String>,
    keep_alive: Duration,
    idle_timeout: Duration,
    transport: Arc<quinn::TransportConfig>,
    endpoint: quinn::Endpoint,
    publisher: Arc<Publisher>,
    shutdown: CancellationToken,
    /// Cancelled once everything is closed.
    done: CancellationToken,
    tasks: TaskTracker,
    /// The registered link per peer.
    table: LinkTable,
    /// Incoming connections that have not passed their first exchange.
    admission: Mutex<Admission>,
    /// Dial targets and their backoff.
    dialer: Dialer,
    /// This host's announced WAN downloads; every v2 link's writer
    /// watches it.
    own_fetches: watch::Sender<OwnFetches>,
    /// Bumped whenever a peer's announced downloads change or a link comes
    /// or goes ([`Mesh::fetchers_changed`]).
    fetchers_changed: watch::Sender<u64>,
    /// Upload admission and what uploads serve from.
    uploads: Uploads,
    /// Patience with a holder that sends nothing, and with a peer's
    /// download that is still arriving.
    stall_timeout: Duration,
    growing_stall_timeout: Duration,
    pace: transfer::Pace,
    /// What is remembered of each peer's service.
    scores: Scores,
}

impl Inner {
    /// A link came or went: wakes the dialers and whoever waits on the
    /// peers' announced downloads (a gone link takes its own with it).
    fn links_changed(&self) {
        self.dialer.wake();
        self.fetchers_changed.send_modify(|n| *n += 1);
    }

    /// [`LinkTable::register`], refused once shutting down.
    fn register(&self, link: &Arc<Link>) -> Registration {
        if self.shutdown.is_cancelled() {
            return Registration::Duplicate;
        }
        let registration = self.table.register(link);
        if registration == Registration::Registered {
            self.links_changed();
        }
        registration
    }

    /// Forgets `link` if it is still the registered one.
    fn unregister(&self, link: &Arc<Link>) {
        if self.table.unregister(link) {
            self.links_changed();
            self.forget_gone();
        }
    }

    /// Bounds what is kept of peers that are not linked (their announced
    /// downloads went with their links).
    fn forget_gone(&self) {
        self.scores.forget_gone(&self.table.ids(), Instant::now());
    }

    /// Closes and forgets the link to `peer` at once.
    fn drop_peer(&self, peer: &NodeId, code: CloseCode) {
        if let Some(link) = self.table.remove(peer) {
            link.close(code);
            tracing::info!(target: TARGET, peer = %peer, reason = code.reason(), "link down");
            self.links_changed();
            self.forget_gone();
        }
    }
}

impl Mesh {
    /// Starts the endpoint on a bound UDP socket (tests bind port 0) and
    /// begins accepting. Must run inside a tokio runtime. Sets the socket's
    /// buffers to 4 MiB (forced past `rmem_max` when allowed).
    pub fn start(
        socket: std::net::UdpSocket,
        opts: MeshOptions,
        publisher: Arc<Publisher>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Mesh> {
        let local_addr = socket
            .local_addr()
            .context("reading the QUIC socket's address")?;
        let (endpoint, transport) = endpoint(socket, &opts)?;
        let inner = Arc::new(Inner {
            local: opts.identity.node_id(),
            local_addr,
            identity: opts.identity,
            mesh_key: opts.mesh_key,
            archs: opts.archs,
            keep_alive: opts.keep_alive,
            idle_timeout: opts.idle_timeout,
            transport,
            endpoint,
            publisher,
            shutdown,
            done: CancellationToken::new(),
            tasks: TaskTracker::new(),
            table: LinkTable::new(opts.max_links),
            admission: Mutex::new(Admission::default()),
            dialer: Dialer::new(BackoffPolicy::default()),
            own_fetches: watch::Sender::new(OwnFetches::default()),
            fetchers_changed: watch::Sender::new(0),
            uploads: Uploads::new(
                uploads::Limits {
                    cached: opts.max_uploads,
                    per_peer: opts.max_uploads_per_peer,
                    growing: opts.max_growing_uploads,
                    growing_per_peer: uploads::GROWING_UPLOADS_PER_PEER,
                },
                opts.upload_stall_timeout,
                opts.index,
                opts.in_flight,
                opts.files,
            ),
            stall_timeout: opts.stall_timeout,
            growing_stall_timeout: opts.growing_stall_timeout,
            pace: opts.pace,
            scores: Scores::new(opts.choice),
        });
        tracing::info!(node_id = %inner.local, addr = %local_addr, tag = %mesh_tag(inner.mesh_key.as_ref()), "mesh endpoint up");
        inner.tasks.spawn(accept::accept_loop(inner.clone()));
        tokio::spawn(close_when_stopped(inner.clone()));
        Ok(Mesh { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.local
    }

    /// `Up`: link to the peer (dialing unless a link is up), and keep
    /// redialing with backoff while it stays announced. `Down`: drop it.
    pub fn on_discovery(&self, event: DiscoveryEvent) {
        match event {
            DiscoveryEvent::Up(ad) => match ad.node_id {
                Some(id) if id == self.inner.local => {}
                Some(id) => dial::announce(&self.inner, id, ad.addrs),
                None => self.add_static(ad.addrs),
            },
            DiscoveryEvent::Down(id) => {
                dial::withdraw(&self.inner, id);
                self.inner.drop_peer(&id, CloseCode::Gone);
            }
        }
    }

    /// Peers configured by address: dialed with backoff for as long as the
    /// daemon runs; their node id is learnt from their certificate, and
    /// pinned from their first link on (a later key at the address is
    /// refused).
    pub fn add_static(&self, addrs: Vec<SocketAddr>) {
        self.add_static_pinned(None, addrs);
    }

    /// [`Mesh::add_static`] whose key must hash to `node` when it is given
    /// (`ID@HOST:PORT` in the config).
    pub fn add_static_pinned(&self, node: Option<NodeId>, addrs: Vec<SocketAddr>) {
        for addr in addrs {
            dial::add_static(&self.inner, addr, node);
        }
    }

    /// QUIC connections open now, links or not (one per peer once settled).
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// Completes once shutdown was asked and the mesh is closed: every
    /// peer was sent `Goodbye`, connections are closed and the endpoint is
    /// idle, or 2 s passed.
    pub async fn closed(&self) {
        self.inner.done.cancelled().await;
    }
}

/// The QUIC endpoint on `socket` (buffers sized, non-blocking), serving
/// TLS pinned to node ids with pacmesh's transport; and that transport,
/// which dialed connections use too.
fn endpoint(
    socket: std::net::UdpSocket,
    opts: &MeshOptions,
) -> anyhow::Result<(quinn::Endpoint, Arc<quinn::TransportConfig>)> {
    socket::size_buffers(&socket, socket::BUFFER_BYTES);
    socket
        .set_nonblocking(true)
        .context("making the QUIC socket non-blocking")?;
    let transport = Arc::new(transport::transport_config(
        opts.keep_alive,
        opts.idle_timeout,
    )?);
    let crypto = tls::server_crypto(&opts.identity).context("TLS server configuration")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport.clone());
    transport::limit_incoming(&mut server);
    let runtime = quinn::default_runtime().context("Mesh::start needs a tokio runtime")?;
    // Resets and connection ids keyed by the identity: see
    // `Identity::reset_key` and `Identity::cid_key`.
    let mut config = quinn::EndpointConfig::new(Arc::new(opts.identity.reset_key()));
    let cid_key = opts.identity.cid_key();
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let endpoint = quinn::Endpoint::new(config, Some(server), socket, runtime)
        .context("starting the QUIC endpoint")?;
    Ok((endpoint, transport))
}

/// After shutdown: let links say goodbye, then close the endpoint, within
/// [`CLOSE_BUDGET`].
async fn close_when_stopped(inner: Arc<Inner>) {
    inner.shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + CLOSE_BUDGET;
    inner.tasks.close();
    let links_deadline = deadline - CLOSE_BUDGET / 4;
    if tokio::time::timeout_at(links_deadline, inner.tasks.wait())
        .await
        .is_err()
    {
        tracing::debug!("links still closing at the deadline; closing the endpoint");
    }
    inner.endpoint.close(
        CloseCode::Goodbye.varint(),
        CloseCode::Goodbye.reason().as_bytes(),
    );
    let _ = tokio::time::timeout_at(deadline, inner.endpoint.wait_idle()).await;
    inner.table.clear();
    tracing::info!("mesh closed");
    inner.done.cancel();
}
