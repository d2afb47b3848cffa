//! Peer links between in-process meshes on loopback: linking, digests and
//! deltas, one link per pair, the mesh key, hostile frames, a killed peer
//! and a clean stop.

mod support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacmesh_proto::{encode_frame, Message, PackageSet, MAX_FRAME};
use pacmeshd::identity::{Identity, NodeId};
use pacmeshd::index::Change;
use pacmeshd::mesh::link::{CloseCode, Mesh, MeshKey, MeshOptions};
use pacmeshd::mesh::publish::Publisher;
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use support::logs::{capture_logs, log_count, log_has_line};
use support::stranger::Stranger;
use support::wait::eventually;
use tokio_util::sync::CancellationToken;

fn pkg(host: &str, i: usize) -> String {
    format!("{host}pkg{i}-1.0-1-x86_64.pkg.tar.zst")
}

struct Node {
    mesh: Mesh,
    publisher: Arc<Publisher>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
struct Setup {
    key: Option<&'static [u8]>,
    keep_alive: Duration,
    idle_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            key: None,
            keep_alive: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(2),
        }
    }
}

impl Setup {
    fn key(key: Option<&'static [u8]>) -> Self {
        Setup {
            key,
            ..Setup::default()
        }
    }
}

impl Node {
    /// A mesh whose publisher holds `packages` names prefixed by `host`.
    fn start(host: &str, packages: usize, setup: Setup) -> Node {
        capture_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Arc::new(Identity::load_or_create(dir.path()).expect("identity"));
        let names: Vec<String> = (0..packages).map(|i| pkg(host, i)).collect();
        let publisher = Arc::new(Publisher::new(PackageSet::from_names(
            names.iter().map(String::as_str),
        )));
        let mut opts = MeshOptions::new(identity, vec!["x86_64".into(), "any".into()]);
        opts.mesh_key = setup.key.map(|k| MeshKey::from_bytes(k).expect("test key"));
        opts.keep_alive = setup.keep_alive;
        opts.idle_timeout = setup.idle_timeout;
        let shutdown = CancellationToken::new();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mesh = Mesh::start(socket, opts, publisher.clone(), shutdown.clone()).expect("mesh");
        Node {
            mesh,
            publisher,
            shutdown,
            _dir: dir,
        }
    }

    fn id(&self) -> NodeId {
        self.mesh.node_id()
    }

    fn ad(&self) -> DiscoveryEvent {
        DiscoveryEvent::Up(PeerAd {
            node_id: Some(self.id()),
            addrs: vec![self.mesh.local_addr()],
        })
    }

    fn discovers(&self, other: &Node) {
        self.mesh.on_discovery(other.ad());
    }

    fn peer_ids(&self) -> Vec<NodeId> {
        self.mesh.peers().iter().map(|p| p.node_id).collect()
    }

    fn packages_of(&self, peer: NodeId) -> Option<usize> {
        self.mesh
            .peers()
            .iter()
            .find(|p| p.node_id == peer)
            .map(|p| p.packages)
    }
}

fn sorted(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_link_both_ways_and_follow_each_others_index() {
    let a = Node::start("a", 3, Setup::default());
    let b = Node::start("b", 5, Setup::default());
    a.discovers(&b); // one side only
    let within = Duration::from_secs(5);
    eventually("a lists b with its 5 packages", within, || {
        a.packages_of(b.id()) == Some(5)
    })
    .await;
    eventually("b lists a with its 3 packages", within, || {
        b.packages_of(a.id()) == Some(3)
    })
    .await;
    assert_eq!(a.peer_ids(), vec![b.id()]);
    assert_eq!(b.peer_ids(), vec![a.id()]);
    assert_eq!(a.mesh.who_has(&pkg("b", 4)), vec![b.id()]);
    assert_eq!(b.mesh.who_has(&pkg("a", 0)), vec![a.id()]);
    assert!(a.mesh.who_has(&pkg("a", 0)).is_empty(), "only peers");
    assert!(a.mesh.who_has("nobody-1-1-any.pkg.tar.zst").is_empty());
    let status = &a.mesh.peers()[0];
    assert_eq!(status.addr, b.mesh.local_addr());
    assert!(status.bytes_received > 0 && status.bytes_sent > 0);
    assert!(status.rtt_ms > 0.0);
    let json = serde_json::to_value(status).expect("json");
    assert_eq!(json["node_id"], b.id().to_string());

    let fresh = "fresh-2.0-1-any.pkg.tar.zst";
    b.publisher.change(&[Change::Added(fresh.into())]);
    let took = eventually(
        "an added file reaches the peer",
        Duration::from_secs(2),
        || a.mesh.who_has(fresh) == vec![b.id()],
    )
    .await;
    println!("delta reached the peer in {took:?}");
    b.publisher.change(&[
        Change::Removed(fresh.into()),
        Change::Removed(pkg("b", 0).into()),
    ]);
    eventually(
        "removed files leave the peer",
        Duration::from_secs(2),
        || a.mesh.who_has(fresh).is_empty() && a.mesh.who_has(&pkg("b", 0)).is_empty(),
    )
    .await;
    assert_eq!(a.packages_of(b.id()), Some(4));
    assert_eq!(a.mesh.open_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_know_every_holder() {
    let a = Node::start("a", 2, Setup::default());
    let b = Node::start("b", 2, Setup::default());
    let c = Node::start("c", 2, Setup::default());
    a.discovers(&b);
    a.discovers(&c);
    b.discovers(&c);
    let within = Duration::from_secs(5);
    for (node, n) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        eventually(&format!("{n} has two peers with digests"), within, || {
            let peers = node.mesh.peers();
            peers.len() == 2 && peers.iter().all(|p| p.packages == 2)
        })
        .await;
    }
    let shared = "shared-1-1-any.pkg.tar.zst";
    b.publisher.change(&[Change::Added(shared.into())]);
    c.publisher.change(&[Change::Added(shared.into())]);
    eventually("a sees both holders", Duration::from_secs(2), || {
        sorted(a.mesh.who_has(shared)) == sorted(vec![b.id(), c.id()])
    })
    .await;
    // c's delta reaches b on its own link: a seeing it says nothing of b.
    eventually("b sees c as the holder", Duration::from_secs(2), || {
        sorted(b.mesh.who_has(shared)) == vec![c.id()]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_leave_one_link_per_pair() {
    for round in 0..4 {
        let a = Node::start("a", 1, Setup::default());
        let b = Node::start("b", 1, Setup::default());
        a.discovers(&b);
        b.discovers(&a);
        let within = Duration::from_secs(5);
        eventually(&format!("round {round}: one link each"), within, || {
            a.peer_ids() == vec![b.id()]
                && b.peer_ids() == vec![a.id()]
                && a.mesh.open_connections() == 1
                && b.mesh.open_connections() == 1
        })
        .await;
        // The surviving link is the same one at both ends and stays up:
        // after a delta's round trip on it, still one connection each.
        let name = format!("r{round}-1-1-any.pkg.tar.zst");
        b.publisher.change(&[Change::Added(name.as_str().into())]);
        eventually("the link carries deltas", Duration::from_secs(2), || {
            a.mesh.who_has(&name) == vec![b.id()]
        })
        .await;
        let back = format!("r{round}-2-1-any.pkg.tar.zst");
        a.publisher.change(&[Change::Added(back.as_str().into())]);
        eventually("and back", Duration::from_secs(2), || {
            b.mesh.who_has(&back) == vec![a.id()]
        })
        .await;
        assert_eq!(a.mesh.open_connections(), 1, "round {round}");
        assert_eq!(b.mesh.open_connections(), 1, "round {round}");
    }
}

async fn check_refused(a: &Node, b: &Node, log_peer: NodeId, log_reason: &str) {
    a.discovers(b);
    let id = log_peer.to_string();
    eventually(
        &format!("a log line naming {id} and `{log_reason}`"),
        Duration::from_secs(5),
        || log_has_line(&[&id, log_reason]),
    )
    .await;
    // The dialer tries again (after its backoff): that redial is refused
    // too, and nothing links in between.
    eventually("a redial refused too", Duration::from_secs(10), || {
        log_count(&[&id, log_reason]) >= 2
    })
    .await;
    assert!(a.mesh.peers().is_empty(), "a linked");
    assert!(b.mesh.peers().is_empty(), "b linked");
    assert!(
        b.mesh.who_has(&pkg("a", 0)).is_empty(),
        "b learnt a's index"
    );
    assert!(
        a.mesh.who_has(&pkg("b", 0)).is_empty(),
        "a learnt b's index"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_mesh_key_means_no_link() {
    let a = Node::start(
        "a",
        1,
        Setup::key(Some(b"the first mesh key, 32 bytes long")),
    );
    let b = Node::start(
        "b",
        1,
        Setup::key(Some(b"the other mesh key, 32 bytes long")),
    );
    // b (acceptor) checks a's proof first and names a.
    check_refused(&a, &b, a.id(), "mesh key mismatch").await;
    // a is told why, and names b.
    assert!(log_has_line(&[
        &b.id().to_string(),
        "peer closed the link: mesh key mismatch"
    ]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_mesh_key_gets_no_link() {
    let a = Node::start("a", 1, Setup::key(None));
    let b = Node::start(
        "b",
        1,
        Setup::key(Some(b"the only mesh key, thirty-two bytes")),
    );
    check_refused(&a, &b, a.id(), "peer has no mesh key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_dialer_is_refused_by_an_open_host() {
    let a = Node::start(
        "a",
        1,
        Setup::key(Some(b"the only mesh key, thirty-two bytes")),
    );
    let b = Node::start("b", 1, Setup::key(None));
    check_refused(&a, &b, a.id(), "mesh key mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_mesh_key_links() {
    let a = Node::start(
        "a",
        1,
        Setup::key(Some(b"shared mesh key 123, 32 bytes long")),
    );
    let b = Node::start(
        "b",
        2,
        Setup::key(Some(b"shared mesh key 123, 32 bytes long\n")),
    );
    a.discovers(&b);
    eventually("linked with a key", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(2) && b.packages_of(a.id()) == Some(1)
    })
    .await;
}

/// Connects to `to` as a stranger with its own certificate, completes TLS
/// and ALPN, opens the control stream and sends `bytes`.
async fn stranger_sends(
    to: &Node,
    hello_first: bool,
    bytes: &[u8],
) -> (NodeId, quinn::ConnectionError) {
    let mut stranger = Stranger::connect(to.id(), to.mesh.local_addr()).await;
    if hello_first {
        stranger.hello().await;
    }
    stranger
        .send
        .write_all(bytes)
        .await
        .expect("garbage written");
    let err = tokio::time::timeout(Duration::from_secs(5), stranger.conn.closed())
        .await
        .expect("the mesh closes the stranger's link");
    (stranger.me.node_id(), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_close_that_link_only() {
    let a = Node::start("a", 1, Setup::default());
    let b = Node::start("b", 1, Setup::default());
    a.discovers(&b);
    eventually("linked", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(1)
    })
    .await;

    let oversized = u32::MAX.to_be_bytes();
    let mut junk = 5u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xee; 5]);
    let unexpected = encode_frame(
        &Message::FetchRequest(pacmesh_proto::FetchRequest {
            file_name: "x-1-1-any.pkg.tar.zst".into(),
            offset: 0,
        }),
        MAX_FRAME,
    )
    .expect("frame");
    let cases: [(&str, bool, &[u8]); 4] = [
        ("oversized prefix before hello", false, &oversized),
        ("junk payload before hello", false, &junk),
        ("junk payload after hello", true, &junk),
        ("fetch message on the control stream", true, &unexpected),
    ];
    for (what, hello_first, bytes) in cases {
        let (stranger, err) = stranger_sends(&a, hello_first, bytes).await;
        match &err {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(
                    close.error_code,
                    CloseCode::Protocol.varint(),
                    "{what}: {err}"
                )
            }
            other => panic!("{what}: closed otherwise: {other}"),
        }
        assert!(
            log_has_line(&["WARN", &stranger.to_string()]),
            "{what}: no warning naming the peer"
        );
        // The mesh's other link still works.
        let name = format!("after-{}-1-1-any.pkg.tar.zst", what.replace(' ', "_"));
        b.publisher.change(&[Change::Added(name.as_str().into())]);
        eventually(
            &format!("{what}: b's link still carries deltas"),
            Duration::from_secs(2),
            || a.mesh.who_has(&name) == vec![b.id()],
        )
        .await;
        assert_eq!(a.peer_ids(), vec![b.id()], "{what}");
    }
    assert!(log_has_line(&["WARN", "bad frame from peer"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_dropped_within_the_idle_timeout() {
    let setup = Setup {
        key: None,
        keep_alive: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
    };
    let a = Node::start("a", 1, setup.clone());
    // b runs on its own runtime, so "kill" is dropping that runtime: its
    // tasks stop without sending anything.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let b = rt
        .spawn(async move { Node::start("b", 1, setup) })
        .await
        .expect("b starts");
    a.discovers(&b);
    eventually("linked", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(1)
    })
    .await;
    let b_id = b.id();
    rt.shutdown_background();
    let took = eventually("the killed peer is dropped", Duration::from_secs(3), || {
        a.mesh.peers().is_empty()
    })
    .await;
    println!("killed peer dropped after {took:?} (idle timeout 1 s)");
    assert!(
        took >= Duration::from_millis(500),
        "dropped too soon: {took:?}"
    );
    assert!(a.mesh.who_has(&pkg("b", 0)).is_empty());
    assert!(!a.peer_ids().contains(&b_id));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_says_goodbye_and_is_dropped_at_once() {
    // A long idle timeout: only the goodbye can explain a fast drop.
    let setup = Setup {
        key: None,
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
    };
    let a = Node::start("a", 1, setup.clone());
    let b = Node::start("b", 1, setup);
    a.discovers(&b);
    eventually("linked", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(1) && b.packages_of(a.id()) == Some(1)
    })
    .await;
    let stopped = Instant::now();
    b.shutdown.cancel();
    let took = eventually("a drops b at once", Duration::from_millis(500), || {
        a.mesh.peers().is_empty()
    })
    .await;
    tokio::time::timeout(Duration::from_millis(2100), b.mesh.closed())
        .await
        .expect("closed within 2 s");
    println!(
        "peer dropped after {took:?}, closed after {:?}",
        stopped.elapsed()
    );
    assert!(log_has_line(&[&b.id().to_string(), "peer said goodbye"]));
    assert!(b.mesh.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_down_drops_the_peer_at_once() {
    let a = Node::start("a", 1, Setup::default());
    let b = Node::start("b", 1, Setup::default());
    a.discovers(&b);
    eventually("linked", Duration::from_secs(5), || {
        a.packages_of(b.id()).is_some() && b.packages_of(a.id()).is_some()
    })
    .await;
    a.mesh.on_discovery(DiscoveryEvent::Down(b.id()));
    assert!(a.mesh.peers().is_empty(), "dropped synchronously");
    assert!(a.mesh.who_has(&pkg("b", 0)).is_empty());
    eventually("b sees the close", Duration::from_secs(2), || {
        b.mesh.peers().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peers_are_linked_by_address_and_self_is_refused() {
    let a = Node::start("a", 1, Setup::default());
    let b = Node::start("b", 3, Setup::default());
    a.mesh
        .add_static(vec![b.mesh.local_addr(), a.mesh.local_addr()]);
    eventually(
        "id learnt from the certificate",
        Duration::from_secs(5),
        || a.packages_of(b.id()) == Some(3),
    )
    .await;
    // The self-dial is refused once its certificate showed this host's id.
    let own = a.mesh.local_addr().to_string();
    eventually("the self-dial refused", Duration::from_secs(5), || {
        log_has_line(&["static peer is this host", &own])
    })
    .await;
    assert_eq!(a.peer_ids(), vec![b.id()], "never linked to itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_delta_backlog_still_converges() {
    let a = Node::start("a", 0, Setup::default());
    let b = Node::start("b", 0, Setup::default());
    a.discovers(&b);
    eventually("linked", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(0)
    })
    .await;
    // 600 single-file changes: more deltas than the publisher keeps.
    for i in 0..600 {
        b.publisher.change(&[Change::Added(pkg("burst", i).into())]);
    }
    eventually("all 600 arrive", Duration::from_secs(5), || {
        a.packages_of(b.id()) == Some(600)
    })
    .await;
    assert_eq!(a.mesh.who_has(&pkg("burst", 599)), vec![b.id()]);
}
