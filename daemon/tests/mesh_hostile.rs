//! Hostile peers and strangers against an in-process mesh on loopback
//! (docs/DESIGN.md, "What closes a link" and "Limits"): each test is one
//! way of exhausting the daemon that must not work.

mod support;

use std::time::{Duration, Instant};

use pacmesh_proto::{Delta, Digest, FetchStatus, Message, NameHash, PackageSet};
use pacmesh_proto::{MAX_DELTA_CHANGES, MAX_DIGEST_PACKAGES};
use pacmeshd::mesh::admission::MAX_PENDING_PER_ADDR;
use pacmeshd::mesh::link::{CloseCode, FetchError, MeshKey, PeerDownload, RESET_STALLED};
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use support::daemon::Daemon;
use support::data::data;
use support::logs::{capture_logs, log_has_line};
use support::node::Node;
use support::stranger::Stranger;

/// Closed by the mesh with `code`, within 5 s.
async fn closed_with(conn: &quinn::Connection, code: CloseCode, what: &str) {
    let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the mesh did not close the link"));
    match &err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, code.varint(), "{what}: {err}");
        }
        other => panic!("{what}: closed otherwise: {other}"),
    }
}

const BIG: &str = "big-1.0-1-x86_64.pkg.tar.zst";
/// Larger than quinn's default stream window (1.25 MB), so an asker that
/// does not read blocks the upload.
const BIG_LEN: usize = 5_000_000;

async fn read_all(dl: &mut PeerDownload) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    while let Some(chunk) = dl.next_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads what the mesh sent on a stream the stranger left unread, up to
/// its end: how the stream ended.
async fn end_of(mut recv: quinn::RecvStream) -> Result<(), quinn::ReadError> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => panic!("the stream neither ended nor was reset"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_loses_its_upload_slots_after_the_deadline() {
    capture_logs();
    let stall = Duration::from_secs(1);
    let big = data(BIG_LEN, 1);
    let a = Node::start(&[(BIG, &big)], |o| {
        o.max_uploads = 4;
        o.upload_stall_timeout = stall;
        // Liveness must not be what frees the slots.
        o.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let c = Node::start(&[], |_| {}).await;

    // B asks for the file four times and never reads.
    let mut b = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    b.hello().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let (send, recv, header) = b.ask(BIG, 0).await;
        assert_eq!(header.status, FetchStatus::Ok);
        held.push((send, recv));
    }
    c.links_to(&a, BIG).await;
    let busy = c.mesh.fetch(a.id(), BIG, 0).await.err();
    assert_eq!(
        busy,
        Some(FetchError::Refused(FetchStatus::Busy)),
        "B holds every slot"
    );

    let asked = Instant::now();
    let mut dl = loop {
        match c.mesh.fetch(a.id(), BIG, 0).await {
            Ok(dl) => break dl,
            Err(FetchError::Refused(FetchStatus::Busy)) => {
                assert!(
                    asked.elapsed() < stall * 10,
                    "still busy after {:?}",
                    asked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("C's fetch failed: {e}"),
        }
    };
    println!("C served {:?} after B's uploads stalled", asked.elapsed());
    assert_eq!(read_all(&mut dl).await.expect("whole file"), big);

    // B's uploads were reset as stalled; its link stays.
    for (_send, recv) in held {
        match end_of(recv).await {
            Err(quinn::ReadError::Reset(code)) => assert_eq!(code, RESET_STALLED),
            other => panic!("B's stream ended otherwise: {other:?}"),
        }
    }
    assert!(b.conn.close_reason().is_none(), "B's link stays up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_at_most_its_share_of_upload_slots() {
    let big = data(BIG_LEN, 2);
    // The defaults: 8 slots, 4 per peer.
    let a = Node::start(&[(BIG, &big)], |o| o.idle_timeout = Duration::from_secs(30)).await;
    let c = Node::start(&[], |_| {}).await;
    let mut b = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    b.hello().await;
    let mut statuses = Vec::new();
    let mut held = Vec::new();
    for _ in 0..6 {
        let (send, recv, header) = b.ask(BIG, 0).await;
        statuses.push(header.status);
        held.push((send, recv));
    }
    let ok = statuses.iter().filter(|s| **s == FetchStatus::Ok).count();
    let busy = statuses.iter().filter(|s| **s == FetchStatus::Busy).count();
    assert_eq!((ok, busy), (4, 2), "{statuses:?}");
    // Another peer is served at once.
    c.links_to(&a, BIG).await;
    let mut dl = c.mesh.fetch(a.id(), BIG, 0).await.expect("C is served");
    assert_eq!(read_all(&mut dl).await.expect("whole file"), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_growing_a_digest_past_its_limit_close_the_link() {
    capture_logs();
    let a = Node::start(&[], |_| {}).await;
    let mut stranger = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    stranger.hello().await;
    stranger
        .send_message(&Message::Digest(Digest {
            seq: 0,
            packages: PackageSet::new(),
        }))
        .await;
    let chunk = MAX_DELTA_CHANGES as u64;
    for seq in 1..=30u64 {
        let added = (0..chunk)
            .map(|i| NameHash::from_u64(seq * chunk + i))
            .collect();
        let delta = Message::Delta(Delta {
            seq,
            added,
            removed: Vec::new(),
        });
        if stranger.try_send_message(&delta).await.is_err() {
            break;
        }
    }
    closed_with(&stranger.conn, CloseCode::Protocol, "30 deltas of 4096").await;
    let id = stranger.me.node_id().to_string();
    let limit = format!("past {MAX_DIGEST_PACKAGES} packages");
    assert!(
        log_has_line(&["WARN", &id, &limit]),
        "no warning naming the peer and the limit"
    );
    assert!(a.mesh.peers().is_empty());
}

const KEY: &[u8] = b"a mesh key of thirty-two bytes!!";

/// A client without the key opens 100 streams and writes 1 MB to each,
/// never sending `Hello`: the daemon holds at most the pre-`Hello` window
/// of it, and a keyed peer still links meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_flooding_streams_before_hello_costs_little_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("mesh.key");
    std::fs::write(&key_file, KEY).expect("key");
    let daemon = Daemon::start(&[], Some(&key_file));
    // Start-up work is done once the status page answers (`Daemon::start`
    // waits for it): measured, the resident memory stays flat from there.
    let before = daemon.rss();

    let stranger = Stranger::connect(daemon.node_id, daemon.quic).await;
    // A frame announcing 1 MiB, then 1 MB of it: waited for, not refused,
    // by the frame decoder.
    let mut bytes = (1u32 << 20).to_be_bytes().to_vec();
    bytes.resize(4 + 1_000_000, 0x5a);
    let bytes = std::sync::Arc::new(bytes);
    let patience = Duration::from_secs(3);
    let mut writers = Vec::new();
    for _ in 0..100 {
        let (conn, bytes) = (stranger.conn.clone(), bytes.clone());
        writers.push(tokio::spawn(async move {
            let (mut send, recv) = tokio::time::timeout(patience, conn.open_bi())
                .await
                .ok()?
                .ok()?;
            let _ = tokio::time::timeout(patience, send.write_all(&bytes)).await;
            // Kept open: a dropped stream would be finished.
            Some((send, recv))
        }));
    }
    // The control stream the stranger opened on connecting, too.
    let mut control = stranger.send;
    let _ = tokio::time::timeout(patience, control.write_all(&bytes)).await;
    let mut open = Vec::new();
    for w in writers {
        open.extend(w.await.expect("writer task"));
    }
    println!("{} more streams opened by the stranger", open.len());
    let during = daemon.rss();
    let grew = during.saturating_sub(before);
    println!(
        "daemon RSS {} KiB before, {} KiB with the flood (+{} KiB)",
        before / 1024,
        during / 1024,
        grew / 1024
    );
    let reason = stranger.conn.close_reason();
    assert!(
        reason.is_none(),
        "measured while the flood is pending: {reason:?}"
    );
    assert!(grew < 10 << 20, "RSS grew by {} KiB", grew / 1024);

    // A peer with the key links while the stranger is still pending.
    let keyed = Node::start(&[], |o| {
        o.mesh_key = Some(MeshKey::from_bytes(KEY).expect("key"));
    })
    .await;
    keyed.mesh.on_discovery(DiscoveryEvent::Up(PeerAd {
        node_id: Some(daemon.node_id),
        addrs: vec![daemon.quic],
    }));
    support::wait::eventually("the keyed peer links", Duration::from_secs(5), || {
        keyed
            .mesh
            .peers()
            .iter()
            .any(|p| p.node_id == daemon.node_id)
    })
    .await;
}

/// Connections that have not passed `Hello` are capped per source
/// address; another source still gets in, and the slots come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_connections_are_capped_per_source() {
    let a = Node::start(&[], |o| o.idle_timeout = Duration::from_secs(30)).await;
    let (id, addr) = (a.id(), a.mesh.local_addr());
    let from = |ip: [u8; 4]| std::net::SocketAddr::from((ip, 0));
    let mut pending = Vec::new();
    for _ in 0..MAX_PENDING_PER_ADDR {
        let s = Stranger::try_connect_from(from([127, 0, 0, 2]), id, addr).await;
        pending.push(s.expect("within the per-address cap (after a Retry)"));
    }
    let refused = Stranger::try_connect_from(from([127, 0, 0, 2]), id, addr).await;
    assert!(refused.is_err(), "one more from the same source is refused");
    let other = Stranger::try_connect_from(from([127, 0, 0, 3]), id, addr).await;
    assert!(other.is_ok(), "another source gets in");
    // A stranger that says Hello leaves the pending set.
    let mut first = pending.remove(0);
    first.hello().await;
    let again = Stranger::try_connect_from(from([127, 0, 0, 2]), id, addr).await;
    assert!(again.is_ok(), "a slot came back after a Hello");
}

/// Binds `addr` again once the host that held it stopped.
async fn rebind(addr: std::net::SocketAddr) -> std::net::UdpSocket {
    let started = Instant::now();
    loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(socket) => return socket,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{addr} still bound: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A static peer is pinned to the node id its first link had: another key
/// answering at its address later is refused, with a line naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_peer_whose_key_changed_is_refused() {
    capture_logs();
    let a = Node::start(&[], |_| {}).await;
    let b = Node::start(&[], |_| {}).await;
    let (b_id, b_addr) = (b.id(), b.mesh.local_addr());
    a.mesh.add_static(vec![b_addr]);
    support::wait::eventually("linked to the static peer", Duration::from_secs(5), || {
        a.mesh.peers().iter().any(|p| p.node_id == b_id)
    })
    .await;

    // B goes (its link's end pins its id); another key takes its address.
    b.stop().await;
    support::wait::eventually("the id is pinned", Duration::from_secs(5), || {
        log_has_line(&["static peer pinned", &b_id.to_string()])
    })
    .await;
    let c = Node::start_at(rebind(b_addr).await, &[], |_| {}).await;
    let c_id = c.id();
    support::wait::eventually("the refusal is logged", Duration::from_secs(10), || {
        log_has_line(&[
            "WARN",
            "another key than the one pinned",
            &b_id.to_string(),
            &c_id.to_string(),
        ])
    })
    .await;
    assert!(
        a.mesh.peers().iter().all(|p| p.node_id != c_id),
        "never linked to C"
    );
}

/// `ID@HOST:PORT`: a static peer whose key is not the named one is never
/// linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_peer_pinned_in_the_config_links_only_with_that_key() {
    capture_logs();
    let a = Node::start(&[], |_| {}).await;
    let b = Node::start(&[], |_| {}).await;
    let wrong = pacmeshd::identity::NodeId([0x42; 32]);
    a.mesh
        .add_static_pinned(Some(wrong), vec![b.mesh.local_addr()]);
    let c = Node::start(&[], |_| {}).await;
    a.mesh
        .add_static_pinned(Some(c.id()), vec![c.mesh.local_addr()]);
    support::wait::eventually("the pinned peer links", Duration::from_secs(5), || {
        a.mesh.peers().iter().any(|p| p.node_id == c.id())
    })
    .await;
    support::wait::eventually("the refusal is logged", Duration::from_secs(5), || {
        log_has_line(&[
            "WARN",
            "another key than the one pinned",
            &wrong.to_string(),
            &b.id().to_string(),
        ])
    })
    .await;
    assert!(
        a.mesh.peers().iter().all(|p| p.node_id != b.id()),
        "never linked to B"
    );
}
