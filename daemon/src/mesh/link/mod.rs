//! Peer links: the QUIC endpoint, TLS pinned to node ids, the mesh-key
//! proof, one link per peer with its control stream, and the in-memory
//! answer to "who has this file?".
//!
//! - `tls`: certificate verifiers (node id pinning, handshake signatures).
//! - `key`: the mesh key, its tag and proof.
//! - `hello`: the first exchange on a link and its checks (pure).
//! - `control`: a link's life: register, digest out, deltas both ways.
//! - `dial`: dial targets (discovered and static) with backoff; accepting.
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

mod announce;
mod body;
mod close;
mod control;
mod dial;
mod frames;
mod hello;
mod key;
mod options;
mod serve;
mod socket;
pub mod tls;
mod transfer;
mod transport;

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use pacmesh_proto::{name_hash, DigestState, Hello, NodeId};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
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
pub use serve::{
    MAX_UPLOADS_PER_PEER, RESET_BAD_BYTES, RESET_FILE_ERROR, RESET_NO_REQUEST, RESET_SHUTDOWN,
    RESET_STALLED, UPLOAD_PRIORITY, UPLOAD_STALL_TIMEOUT,
};
pub use socket::{size_buffers, BUFFER_BYTES};
pub use transfer::{FetchError, PeerDownload};
pub use transport::{
    LINK_RECEIVE_WINDOW, LINK_STREAMS, PRE_HELLO_RECEIVE_WINDOW, PRE_HELLO_STREAMS, SEND_WINDOW,
    STREAM_RECEIVE_WINDOW,
};

use super::admission::Admission;
use super::choice::{Choice, MAX_GONE_PEERS};
pub use super::fetching::{Fetcher, MAX_PEER_FETCHING};
use super::fetching::{OwnFetches, PeerFetches};
use super::inflight::InFlightFiles;
use super::peers::{self, BackoffPolicy, LinkFacts, LinkRank};
use super::publish::Publisher;
use super::DiscoveryEvent;
use crate::identity::Identity;
use crate::index::watch::SharedIndex;

/// Log target of link up/down events.
const TARGET: &str = "pacmesh::peers";

/// The longest `closed()` takes after shutdown.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);

/// One linked peer, for status and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    #[serde(serialize_with = "as_display")]
    pub node_id: NodeId,
    pub addr: SocketAddr,
    pub rtt_ms: f64,
    /// Packages in the peer's digest as kept in step.
    pub packages: usize,
    /// Everything on the link (UDP bytes, transfers included).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// File bytes downloaded from / uploaded to this peer since the daemon
    /// started (across links).
    pub file_bytes_received: u64,
    pub file_bytes_sent: u64,
    /// From the peer's `Hello`.
    pub archs: Vec<String>,
    /// Until when the peer is not chosen for downloads, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalised_until_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_reason: Option<String>,
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    Registered,
    /// Another link to the peer survives.
    Duplicate,
    /// [`MeshOptions::max_links`] links are up.
    Full,
}

/// How many peers the mesh keeps something of ([`Mesh::tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub links: usize,
    pub choice_records: usize,
    pub byte_counters: usize,
    pub dial_targets: usize,
}

/// File bytes moved to and from one peer, kept across its links.
#[derive(Debug, Default)]
pub(crate) struct PeerBytes {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

fn as_display<S: serde::Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

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

/// A registered link: the one connection to a peer.
pub(crate) struct Link {
    peer: NodeId,
    conn: quinn::Connection,
    addr: SocketAddr,
    rank: LinkRank,
    archs: Vec<String>,
    /// The peer's `Hello.version`: what it may be sent.
    version: u32,
    digest: RwLock<DigestState>,
    /// The WAN downloads the peer announced on this link.
    fetches: Mutex<PeerFetches>,
    /// Uploads of cached files to this peer under way (its share of
    /// `Inner::uploads`).
    cached_uploads: AtomicUsize,
    /// (UDP datagrams received when last looked, when they last grew).
    heard: Mutex<(u64, Instant)>,
    /// Set by whoever closes the link on purpose.
    closed_with: OnceLock<CloseCode>,
}

impl Link {
    fn new(peer: NodeId, conn: quinn::Connection, rank: LinkRank, hello: Hello) -> Self {
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
            cached_uploads: AtomicUsize::new(0),
            closed_with: OnceLock::new(),
        }
    }

    /// Closes the connection, remembering why.
    fn close(&self, code: CloseCode) {
        let _ = self.closed_with.set(code);
        code.close(&self.conn);
    }

    fn closed_with(&self) -> Option<CloseCode> {
        self.closed_with.get().copied()
    }

    /// When the peer was last heard from: any packet since the previous
    /// look counts as heard `now`.
    fn heard(&self, now: Instant) -> Instant {
        let rx = self.conn.stats().udp_rx.datagrams;
        let mut heard = self.heard.lock();
        if rx != heard.0 {
            *heard = (rx, now);
        }
        heard.1
    }

    /// `heard` as last looked at, without looking again.
    fn last_heard(&self) -> Instant {
        self.heard.lock().1
    }

    fn read_digest(&self) -> RwLockReadGuard<'_, DigestState> {
        self.digest.read()
    }

    fn write_digest(&self) -> RwLockWriteGuard<'_, DigestState> {
        self.digest.write()
    }

    fn fetches(&self) -> MutexGuard<'_, PeerFetches> {
        self.fetches.lock()
    }

    fn status(&self) -> PeerStatus {
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
    policy: BackoffPolicy,
    /// The registered link per peer; read by `who_has`.
    links: RwLock<HashMap<NodeId, Arc<Link>>>,
    max_links: usize,
    /// Incoming connections that have not passed their first exchange.
    admission: Mutex<Admission>,
    targets: Mutex<dial::Targets>,
    /// Bumped whenever a link comes or goes, to wake waiting dialers.
    changed: watch::Sender<u64>,
    /// This host's announced WAN downloads; every v2 link's writer
    /// watches it.
    own_fetches: watch::Sender<OwnFetches>,
    /// Bumped whenever a peer's announced downloads change or a link comes
    /// or goes ([`Mesh::fetchers_changed`]).
    fetchers_changed: watch::Sender<u64>,
    /// What uploads are served from.
    index: SharedIndex,
    /// Downloads under way here, served to peers as they grow.
    in_flight: Arc<dyn InFlightFiles>,
    /// Opens what the index locates, for uploads.
    files: Arc<dyn UploadFiles>,
    /// One permit per upload in progress.
    uploads: Arc<Semaphore>,
    max_uploads_per_peer: usize,
    upload_stall_timeout: Duration,
    /// One permit per upload of a file still arriving.
    growing_uploads: Arc<Semaphore>,
    stall_timeout: Duration,
    growing_stall_timeout: Duration,
    choice: Mutex<Choice>,
    peer_bytes: Mutex<HashMap<NodeId, Arc<PeerBytes>>>,
    bytes_to_peers: AtomicU64,
}

impl Inner {
    fn links(&self) -> RwLockReadGuard<'_, HashMap<NodeId, Arc<Link>>> {
        self.links.read()
    }

    fn links_mut(&self) -> RwLockWriteGuard<'_, HashMap<NodeId, Arc<Link>>> {
        self.links.write()
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.lock()
    }

    fn choice(&self) -> MutexGuard<'_, Choice> {
        self.choice.lock()
    }

    /// The peer's byte counters, made at first use.
    fn peer_bytes(&self, peer: NodeId) -> Arc<PeerBytes> {
        let mut all = self.peer_bytes.lock();
        all.entry(peer).or_default().clone()
    }

    fn is_linked(&self, peer: &NodeId) -> bool {
        self.links().contains_key(peer)
    }

    /// A link came or went: wakes the dialers and whoever waits on the
    /// peers' announced downloads (a gone link takes its own with it).
    fn links_changed(&self) {
        self.changed.send_modify(|n| *n += 1);
        self.fetchers_changed.send_modify(|n| *n += 1);
    }

    /// Makes `link` the link to its peer unless an existing one wins
    /// (`peers::resolve_duplicate`) or the link table is full.
    fn register(&self, link: &Arc<Link>) -> Registration {
        if self.shutdown.is_cancelled() {
            return Registration::Duplicate;
        }
        let mut links = self.links_mut();
        match links.get(&link.peer) {
            Some(existing) => match peers::resolve_duplicate(&existing.rank, &link.rank) {
                peers::Keep::Existing => return Registration::Duplicate,
                peers::Keep::New => existing.close(CloseCode::Duplicate),
            },
            None if links.len() >= self.max_links => return Registration::Full,
            None => {}
        }
        links.insert(link.peer, link.clone());
        drop(links);
        self.links_changed();
        Registration::Registered
    }

    /// Forgets `link` if it is still the registered one.
    fn unregister(&self, link: &Arc<Link>) {
        let mut links = self.links_mut();
        if links.get(&link.peer).is_some_and(|l| Arc::ptr_eq(l, link)) {
            links.remove(&link.peer);
            drop(links);
            self.links_changed();
            self.forget_gone();
        }
    }

    /// Bounds what is kept of peers that are not linked: their choice
    /// records (`Choice::prune`) and byte counters (at most
    /// [`MAX_GONE_PEERS`] each). Their announced downloads went with
    /// their links.
    fn forget_gone(&self) {
        let linked: std::collections::HashSet<NodeId> = self.links().keys().copied().collect();
        self.choice()
            .prune(|id| linked.contains(id), Instant::now());
        let mut bytes = self.peer_bytes.lock();
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

    /// Peers with a link, a choice record and byte counters (for tests and
    /// diagnostics).
    fn tracked(&self) -> Tracked {
        Tracked {
            links: self.links().len(),
            choice_records: self.choice().tracked(),
            byte_counters: self.peer_bytes.lock().len(),
            dial_targets: dial::target_count(self),
        }
    }

    /// Closes and forgets the link to `peer` at once.
    fn drop_peer(&self, peer: &NodeId, code: CloseCode) {
        let removed = self.links_mut().remove(peer);
        if let Some(link) = removed {
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
        socket::size_buffers(&socket, socket::BUFFER_BYTES);
        socket
            .set_nonblocking(true)
            .context("making the QUIC socket non-blocking")?;
        let local_addr = socket
            .local_addr()
            .context("reading the QUIC socket's address")?;

        let transport = Arc::new(transport::transport_config(
            opts.keep_alive,
            opts.idle_timeout,
        )?);
        let crypto = tls::server_crypto(&opts.identity).context("TLS server configuration")?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());
        transport::limit_incoming(&mut server);
        let runtime = quinn::default_runtime().context("Mesh::start needs a tokio runtime")?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .context("starting the QUIC endpoint")?;

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
            policy: BackoffPolicy::default(),
            links: RwLock::new(HashMap::new()),
            max_links: opts.max_links,
            admission: Mutex::new(Admission::default()),
            targets: Mutex::new(dial::Targets::default()),
            changed: watch::Sender::new(0),
            own_fetches: watch::Sender::new(OwnFetches::default()),
            fetchers_changed: watch::Sender::new(0),
            index: opts.index,
            in_flight: opts.in_flight,
            files: opts.files,
            uploads: Arc::new(Semaphore::new(opts.max_uploads)),
            max_uploads_per_peer: opts.max_uploads_per_peer,
            upload_stall_timeout: opts.upload_stall_timeout,
            growing_uploads: Arc::new(Semaphore::new(opts.max_growing_uploads)),
            stall_timeout: opts.stall_timeout,
            growing_stall_timeout: opts.growing_stall_timeout,
            choice: Mutex::new(Choice::new(opts.choice)),
            peer_bytes: Mutex::new(HashMap::new()),
            bytes_to_peers: AtomicU64::new(0),
        });
        tracing::info!(node_id = %inner.local, addr = %local_addr, tag = %mesh_tag(inner.mesh_key.as_ref()), "mesh endpoint up");
        inner.tasks.spawn(dial::accept_loop(inner.clone()));
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

    /// Linked peers (digest received, heard from within the idle timeout),
    /// by node id.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut out: Vec<PeerStatus> = self
            .inner
            .links()
            .values()
            .filter(|link| {
                let facts = LinkFacts {
                    has_digest: link.read_digest().seq().is_some(),
                    last_heard: link.heard(now),
                };
                peers::counts_as_linked(&facts, now, self.inner.idle_timeout)
            })
            .map(|link| link.status())
            .collect();
        out.sort_by_key(|p| p.node_id);
        let wall = SystemTime::now();
        let choice = self.inner.choice();
        for status in &mut out {
            if let Some(penalty) = choice.penalty(&status.node_id, now) {
                let left = penalty.until.saturating_duration_since(now);
                status.penalised_until_s = (wall + left)
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64());
                status.penalty_reason = Some(penalty.reason.clone());
            }
        }
        drop(choice);
        for status in &mut out {
            let bytes = self.inner.peer_bytes(status.node_id);
            status.file_bytes_received = bytes.received.load(Relaxed);
            status.file_bytes_sent = bytes.sent.load(Relaxed);
        }
        out
    }

    /// The peers holding `file_name` (as [`Mesh::who_has`]), best first
    /// for a download: penalised peers left out, then ranked by recent
    /// failures, throughput, RTT and downloads in flight (`mesh::choice`).
    pub fn candidates(&self, file_name: &str) -> Vec<NodeId> {
        let holders = self.who_has(file_name);
        let rtts: Vec<(NodeId, Duration)> = {
            let links = self.inner.links();
            holders
                .iter()
                .filter_map(|id| links.get(id).map(|l| (*id, l.conn.rtt())))
                .collect()
        };
        let mut choice = self.inner.choice();
        for (id, rtt) in rtts {
            choice.observe_rtt(id, rtt);
        }
        choice.rank(&holders, Instant::now())
    }

    /// Not chosen by [`Mesh::candidates`] for the penalty duration (10 min
    /// by default); `reason` shows in [`PeerStatus`].
    pub fn penalise(&self, peer: NodeId, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::info!(target: TARGET, peer = %peer, %reason, "peer penalised");
        self.inner.choice().penalise(peer, reason, Instant::now());
    }

    /// Records a transfer the mesh did not see end by itself. Downloads
    /// made with [`Mesh::fetch`] record their own throughput and failures;
    /// call this for what only the caller knows (the bytes did not match
    /// the sync database: `ok = false`, and usually [`Mesh::penalise`]).
    pub fn record_transfer(&self, peer: NodeId, bytes: u64, duration: Duration, ok: bool) {
        self.inner
            .choice()
            .record_transfer(peer, bytes, duration, ok, Instant::now());
    }

    /// File bytes uploaded to peers since start, all peers together.
    pub fn bytes_to_peers(&self) -> u64 {
        self.inner.bytes_to_peers.load(Relaxed)
    }

    /// The linked peers whose digest (probably) holds `file_name`, from
    /// memory: one hash, then one lookup per peer. A link counts as in
    /// [`Mesh::peers`] (liveness from when the link last looked).
    pub fn who_has(&self, file_name: &str) -> Vec<NodeId> {
        let hash = name_hash(file_name);
        let now = Instant::now();
        let idle = self.inner.idle_timeout;
        self.inner
            .links()
            .values()
            .filter(|link| {
                peers::is_alive(link.last_heard(), now, idle) && link.read_digest().contains(hash)
            })
            .map(|link| link.peer)
            .collect()
    }

    /// How many peers the mesh keeps something of: links, choice records,
    /// byte counters, dial targets. Bounded however many identities came
    /// and went (docs/DESIGN.md, "Limits").
    pub fn tracked(&self) -> Tracked {
        self.inner.tracked()
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
    inner.links_mut().clear();
    tracing::info!("mesh closed");
    inner.done.cancel();
}
