//! Joining a peer's WAN download, mesh side, between in-process meshes on
//! loopback: announced downloads reaching peers (and leaving with their
//! end or their link), a download served to a peer as it grows (with a
//! fake download engine fed by the test), a version 1 peer never told of
//! downloads, a peer announcing too many, and a claim that crossed a
//! worse-ranked host's (joined when that host is fetching, not when it
//! lost its claim).

mod support;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pacmesh_proto::{FetchStatus, Fetching, Message, PackageSet};
use pacmeshd::fetch::claim;
use pacmeshd::fetch::machine::Claimant;
use pacmeshd::fetch::source::{MeshSources, Sources};
use pacmeshd::identity::{Identity, NodeId};
use pacmeshd::index::Change;
use pacmeshd::mesh::inflight::{
    Announcement, BoxFuture, GrowingChunks, GrowingError, GrowingRead, InFlightFiles,
};
use pacmeshd::mesh::link::{
    CloseCode, FetchError, Fetcher, Mesh, MeshKey, MeshOptions, PeerDownload, MAX_PEER_FETCHING,
};
use pacmeshd::mesh::publish::Publisher;
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use pacmeshd::mirror_client::MirrorClient;
use support::data::data;
use support::logs::{capture_logs, log_has_line};
use support::stranger::Stranger;
use support::wait::eventually;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const X: &str = "x-1.0-1-x86_64.pkg.tar.zst";
const Y: &str = "y-1.0-1-x86_64.pkg.tar.zst";
const WITHIN: Duration = Duration::from_secs(5);

/// What the test sends down a fake download: bytes, or a failure.
type Feed = mpsc::UnboundedSender<Result<Bytes, GrowingError>>;

/// A download engine whose downloads are fed by the test.
#[derive(Default)]
struct FakeDownloads {
    files: Mutex<HashMap<String, Download>>,
}

enum Download {
    /// Size, mtime, and the bytes as the test releases them.
    Growing(
        u64,
        i64,
        mpsc::UnboundedReceiver<Result<Bytes, GrowingError>>,
    ),
    /// Ends before its size is known.
    Failing(GrowingError),
}

impl FakeDownloads {
    /// A download of `name` whose bytes are what the test sends on the
    /// returned feed; served once.
    fn add(&self, name: &str, size: u64, mtime: i64) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock()
            .insert(name.into(), Download::Growing(size, mtime, rx));
        tx
    }

    fn add_failing(&self, name: &str, error: GrowingError) {
        self.lock().insert(name.into(), Download::Failing(error));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Download>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl InFlightFiles for FakeDownloads {
    fn open(
        &self,
        name: &str,
        _offset: u64,
    ) -> Option<BoxFuture<'static, Result<GrowingRead, GrowingError>>> {
        let download = self.lock().remove(name)?;
        Some(Box::pin(async move {
            match download {
                Download::Growing(size, mtime, rx) => Ok(GrowingRead {
                    size,
                    mtime,
                    chunks: Box::new(FakeChunks(rx)),
                }),
                Download::Failing(error) => Err(error),
            }
        }))
    }
}

struct FakeChunks(mpsc::UnboundedReceiver<Result<Bytes, GrowingError>>);

impl GrowingChunks for FakeChunks {
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, GrowingError>> {
        Box::pin(async move { self.0.recv().await.transpose() })
    }
}

struct Node {
    mesh: Mesh,
    publisher: Arc<Publisher>,
    downloads: Arc<FakeDownloads>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        Node::start_with(|_| {})
    }

    fn start_with(edit: impl FnOnce(&mut MeshOptions)) -> Node {
        capture_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Arc::new(Identity::load_or_create(dir.path()).expect("identity"));
        let publisher = Arc::new(Publisher::new(PackageSet::new()));
        let downloads = Arc::new(FakeDownloads::default());
        let mut opts = MeshOptions::new(identity, vec!["x86_64".into(), "any".into()]);
        opts.keep_alive = Duration::from_millis(250);
        opts.idle_timeout = Duration::from_secs(2);
        opts.in_flight = downloads.clone();
        edit(&mut opts);
        let shutdown = CancellationToken::new();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mesh = Mesh::start(socket, opts, publisher.clone(), shutdown.clone()).expect("mesh");
        Node {
            mesh,
            publisher,
            downloads,
            shutdown,
            _dir: dir,
        }
    }

    fn id(&self) -> NodeId {
        self.mesh.node_id()
    }

    /// Links to `other` and waits until both ends count the link.
    async fn links_to(&self, other: &Node) {
        self.mesh.on_discovery(DiscoveryEvent::Up(PeerAd {
            node_id: Some(other.id()),
            addrs: vec![other.mesh.local_addr()],
        }));
        let linked = |n: &Node, to: NodeId| n.mesh.peers().iter().any(|p| p.node_id == to);
        eventually("linked both ways", WITHIN, || {
            linked(self, other.id()) && linked(other, self.id())
        })
        .await;
    }

    fn announce(&self, name: &str, size: u64) {
        self.mesh.announce(Announcement::Fetching {
            name: name.into(),
            size,
        });
    }

    fn announce_end(&self, name: &str, complete: bool) {
        self.mesh.announce(Announcement::Ended {
            name: name.into(),
            complete,
        });
    }

    /// `(node, size)` of each peer announcing `name`.
    fn fetchers(&self, name: &str) -> Vec<(NodeId, u64)> {
        self.mesh
            .fetchers(name)
            .iter()
            .map(|f| (f.node, f.size))
            .collect()
    }
}

/// Reads exactly `len` more bytes.
async fn read_n(dl: &mut PeerDownload, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let chunk = dl.next_chunk().await.expect("bytes").expect("not the end");
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out.len(), len, "no more than was released");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_downloads_reach_peers_and_leave_with_their_end_or_link() {
    let a = Node::start();
    let b = Node::start();
    assert!(!a.mesh.has_links(), "no peer yet");
    a.links_to(&b).await;
    assert!(a.mesh.has_links() && b.mesh.has_links());
    assert!(!a.mesh.is_keyed());
    let mut changed = b.mesh.fetchers_changed();
    changed.borrow_and_update();

    a.announce(X, 0);
    eventually("b hears of a's download", WITHIN, || {
        b.fetchers(X) == vec![(a.id(), 0)]
    })
    .await;
    assert!(changed.has_changed().expect("mesh alive"), "waiters woken");
    let Fetcher { since, .. } = b.mesh.fetchers(X)[0];
    a.announce(X, 1234);
    eventually("the size follows", WITHIN, || {
        b.fetchers(X) == vec![(a.id(), 1234)]
    })
    .await;
    assert_eq!(b.mesh.fetchers(X)[0].since, since, "the same download");
    assert!(a.fetchers(X).is_empty(), "only peers' downloads");
    assert!(b.fetchers(Y).is_empty());

    changed.borrow_and_update();
    a.announce_end(X, false);
    eventually("the end removes it", WITHIN, || b.fetchers(X).is_empty()).await;
    assert!(changed.has_changed().expect("mesh alive"));

    // A link that comes up later learns what is under way, not what ended.
    a.announce(Y, 77);
    let c = Node::start();
    c.links_to(&a).await;
    eventually("a later link learns the download", WITHIN, || {
        c.fetchers(Y) == vec![(a.id(), 77)]
    })
    .await;
    assert!(c.fetchers(X).is_empty());
    eventually("b too", WITHIN, || b.fetchers(Y) == vec![(a.id(), 77)]).await;

    // A link that goes takes its downloads with it.
    changed.borrow_and_update();
    b.mesh.on_discovery(DiscoveryEvent::Down(a.id()));
    assert!(b.fetchers(Y).is_empty(), "at once");
    assert!(changed.has_changed().expect("mesh alive"), "waiters woken");
    a.shutdown.cancel();
    eventually("a's goodbye ends its downloads at c", WITHIN, || {
        c.fetchers(Y).is_empty()
    })
    .await;
    assert!(!c.mesh.has_links());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_mesh_says_so() {
    let a = Node::start_with(|o| {
        o.mesh_key = Some(MeshKey::from_bytes(b"the mesh key of this lan, 32 bytes").expect("key"));
    });
    assert!(a.mesh.is_keyed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_file_is_served_as_its_bytes_arrive() {
    let a = Node::start();
    let b = Node::start();
    b.links_to(&a).await;
    let whole = data(300_000, 1);
    let feed = a.downloads.add(X, whole.len() as u64, 1_700_000_000);

    let mut dl = b.mesh.fetch_growing(a.id(), X, 0).await.expect("header");
    assert_eq!((dl.size, dl.mtime), (whole.len() as u64, 1_700_000_000));
    feed.send(Ok(Bytes::copy_from_slice(&whole[..100_000])))
        .expect("fed");
    assert_eq!(read_n(&mut dl, 100_000).await, whole[..100_000]);
    // Nothing more until the download has more.
    let early = tokio::time::timeout(Duration::from_millis(200), dl.next_chunk()).await;
    assert!(early.is_err(), "bytes before they arrived: {early:?}");
    feed.send(Ok(Bytes::copy_from_slice(&whole[100_000..250_000])))
        .expect("fed");
    feed.send(Ok(Bytes::copy_from_slice(&whole[250_000..])))
        .expect("fed");
    assert_eq!(read_n(&mut dl, 200_000).await, whole[100_000..]);
    assert_eq!(dl.next_chunk().await, Ok(None));
    eventually("uploads counted", Duration::from_secs(1), || {
        a.mesh.bytes_to_peers() == whole.len() as u64
    })
    .await;

    // Bytes that did not verify at a: b is told to drop them.
    let feed = a.downloads.add(Y, 200_000, 0);
    let mut dl = b.mesh.fetch_growing(a.id(), Y, 0).await.expect("header");
    feed.send(Ok(Bytes::from(data(50_000, 2)))).expect("fed");
    read_n(&mut dl, 50_000).await;
    feed.send(Err(GrowingError::BadBytes)).expect("fed");
    assert_eq!(dl.next_chunk().await, Err(FetchError::SourceBad));
    assert_eq!(dl.next_chunk().await, Err(FetchError::SourceBad), "sticks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_file_that_fails_or_cannot_be_read_is_refused_or_cut() {
    let a = Node::start();
    let b = Node::start();
    b.links_to(&a).await;
    let refused = |r: Result<PeerDownload, FetchError>| match r {
        Ok(dl) => panic!("expected a refusal, got {dl:?}"),
        Err(e) => e,
    };
    let not_found = FetchError::Refused(FetchStatus::NotFound);
    let err = refused(b.mesh.fetch_growing(a.id(), X, 0).await);
    assert_eq!(err, not_found, "no such download");
    a.downloads.add_failing(X, GrowingError::Abandoned);
    let err = refused(b.mesh.fetch_growing(a.id(), X, 0).await);
    assert_eq!(err, not_found, "ended before its size");
    let _feed = a.downloads.add(X, 10, 0);
    let err = refused(b.mesh.fetch_growing(a.id(), X, 11).await);
    assert_eq!(err, FetchError::Refused(FetchStatus::BadOffset));

    // Abandoned midway: continue elsewhere from the byte reached.
    let feed = a.downloads.add(Y, 100_000, 0);
    let mut dl = b.mesh.fetch_growing(a.id(), Y, 0).await.expect("header");
    feed.send(Ok(Bytes::from(data(1000, 3)))).expect("fed");
    read_n(&mut dl, 1000).await;
    feed.send(Err(GrowingError::Abandoned)).expect("fed");
    let err = dl.next_chunk().await.expect_err("cut");
    assert!(
        matches!(&err, FetchError::Link(why) if why.contains("code 2")),
        "{err:?}"
    );
    assert_eq!(dl.received(), 1000);

    // A download that stops short of its size is cut, never finished.
    let feed = a.downloads.add(Y, 100_000, 0);
    let mut dl = b.mesh.fetch_growing(a.id(), Y, 0).await.expect("header");
    feed.send(Ok(Bytes::from(data(1000, 4)))).expect("fed");
    drop(feed);
    let mut got = 0;
    let err = loop {
        match dl.next_chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => panic!("a short download finished"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, FetchError::Link(_)), "{err:?} after {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_peer_links_and_is_never_told_of_downloads() {
    let a = Node::start();
    a.announce(X, 5);
    let mut old = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    old.hello_as(1).await;
    let mut new = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    new.hello_as(2).await;
    // A version 2 peer is told what is under way right after the digest.
    let told = new.next_message().await;
    let want = Message::Fetching(Fetching {
        file_name: X.into(),
        size: 5,
    });
    assert_eq!(told, want);

    // Announcements go out before later deltas; the old peer gets only
    // the delta.
    a.announce_end(X, true);
    a.publisher.change(&[Change::Added(Y.into())]);
    let next = new.next_message().await;
    assert!(
        matches!(&next, Message::FetchEnded(e) if e.file_name == X && e.complete),
        "{next:?}"
    );
    let next = new.next_message().await;
    assert!(matches!(next, Message::Delta(_)), "{next:?}");
    let next = old.next_message().await;
    assert!(matches!(next, Message::Delta(_)), "old peer got {next:?}");
    assert!(
        old.conn.close_reason().is_none(),
        "the old peer's link is up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_announcing_too_many_downloads_is_cut_off() {
    let a = Node::start();
    let mut stranger = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    stranger.hello().await;
    let name = |i: usize| format!("p{i}-1-1-any.pkg.tar.zst");
    for i in 0..MAX_PEER_FETCHING {
        let fetching = Fetching {
            file_name: name(i),
            size: 1,
        };
        stranger.send_message(&Message::Fetching(fetching)).await;
    }
    let id = stranger.me.node_id();
    let last = name(MAX_PEER_FETCHING - 1);
    eventually("all heard", WITHIN, || a.fetchers(&last) == vec![(id, 1)]).await;

    let one_more = Fetching {
        file_name: name(MAX_PEER_FETCHING),
        size: 1,
    };
    stranger.send_message(&Message::Fetching(one_more)).await;
    let err = tokio::time::timeout(WITHIN, stranger.conn.closed())
        .await
        .expect("the mesh closes the link");
    match &err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CloseCode::Protocol.varint(), "{err}")
        }
        other => panic!("closed otherwise: {other}"),
    }
    assert!(a.fetchers(&name(0)).is_empty(), "gone with the link");
    assert!(log_has_line(&[
        "WARN",
        &id.to_string(),
        "more than 256 downloads"
    ]));
}

/// A file name whose claim `better` wins over `worse` (`fetch::claim`).
fn ranked_file(better: NodeId, worse: NodeId) -> String {
    (0..)
        .map(|i| format!("crossed{i}-1.0-1-x86_64.pkg.tar.zst"))
        .find(|name| claim::rank(&better, name) < claim::rank(&worse, name))
        .expect("some name")
}

/// Two linked nodes `a` and `b`, and a file name `b`'s claim wins.
async fn linked_where_b_outranks_a() -> (Node, Node, String) {
    let a = Node::start();
    let b = Node::start();
    a.links_to(&b).await;
    let file = ranked_file(b.id(), a.id());
    (a, b, file)
}

/// `b` claims a file it outranks `a` for, and `a`'s claim reaches it only
/// after `b`'s own went out: the claims crossed, and `a` (whose window
/// closed before `b`'s claim reached it) may be fetching already. What
/// `b`'s claim settles on.
async fn crossed_claim(a: &Node, b: &Node, file: &str) -> Claimant {
    const SIZE: u64 = 4096;
    let sources = MeshSources {
        mesh: b.mesh.clone(),
        client: MirrorClient::new(),
        mirror_urls: Vec::new(),
    };
    // A claim after a failed fetch (a gone fetcher excluded) waits out
    // FAILOVER_CLAIM_WINDOW: room for two loopback hops on a busy machine.
    let gone = NodeId([7; 32]);
    let name = file.to_owned();
    let claiming = tokio::spawn(async move { sources.claim(&name, SIZE, &[gone]).await });
    eventually("b's claim reaches a", WITHIN, || {
        a.fetchers(file) == vec![(b.id(), SIZE)]
    })
    .await;
    a.announce(file, SIZE);
    eventually("a's claim reaches b", WITHIN, || {
        b.fetchers(file) == vec![(a.id(), SIZE)]
    })
    .await;
    assert!(
        !claiming.is_finished(),
        "the claims could not be crossed within FAILOVER_CLAIM_WINDOW"
    );
    claiming.await.expect("claim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_crossed_a_worse_ranked_hosts_fetch_joins_it() {
    let (a, b, file) = linked_where_b_outranks_a().await;
    // a won its own claim: its download answers, with bytes to send.
    let feed = a.downloads.add(&file, 4096, 1_700_000_000);
    feed.send(Ok(Bytes::from(data(1024, 3)))).expect("feed");

    let settled = crossed_claim(&a, &b, &file).await;
    assert_eq!(settled, Claimant::Peer(a.id()), "b joins a's fetch");
    let sent = a
        .mesh
        .peers()
        .iter()
        .map(|p| p.file_bytes_sent)
        .sum::<u64>();
    assert_eq!(sent, 0, "asking sends none of the file");
    eventually("b's claim is withdrawn", WITHIN, || {
        a.fetchers(&file).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_crossed_a_worse_ranked_hosts_lost_claim_fetches() {
    let (a, b, file) = linked_where_b_outranks_a().await;
    // a has no download of it (it lost its claim to b): it refuses.
    let settled = crossed_claim(&a, &b, &file).await;
    assert_eq!(settled, Claimant::Us, "b fetches");
    assert_eq!(a.fetchers(&file), vec![(b.id(), 4096)], "still announced");
}
