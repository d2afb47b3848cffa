//! Hostile peers and strangers against an in-process mesh on loopback
//! (docs/DESIGN.md, "What closes a link" and "Limits"): each test is one
//! way of exhausting the daemon that must not work.

mod support;

use std::time::{Duration, Instant};

use pacmesh_proto::{Delta, Digest, FetchStatus, Message, NameHash, PackageSet};
use pacmesh_proto::{MAX_DELTA_CHANGES, MAX_DIGEST_PACKAGES};
use pacmeshd::mesh::link::{CloseCode, FetchError, PeerDownload, RESET_STALLED};
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

/// Deterministic incompressible-looking bytes (xorshift).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

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
