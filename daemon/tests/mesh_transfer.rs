//! Transfers between in-process meshes on loopback, each serving its own
//! temporary cache dir through the real index watcher: whole files and
//! offsets, refusals, concurrent fetches, the upload limit, stalled,
//! killed and stopping peers, penalties, and a bad frame on a transfer
//! stream.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pacmesh_proto::{encode_frame, FetchStatus, Message, MAX_FRAME};
use pacmeshd::identity::NodeId;
use pacmeshd::mesh::link::{CloseCode, FetchError, Pace, PeerDownload};
use support::data::data;
use support::data::sha256;
use support::node::Node;
use support::stall::{StallAfter, Trickle};
use support::stranger::Stranger;
use support::wait::eventually;

const BIG: &str = "big-1.0-1-x86_64.pkg.tar.zst";
const BIG_SIG: &str = "big-1.0-1-x86_64.pkg.tar.zst.sig";
const BIG_LEN: usize = 5 * 1000 * 1000;

#[derive(Clone)]
struct Setup {
    max_uploads: usize,
    stall_timeout: Duration,
    stall_after: Option<u64>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            max_uploads: 4,
            stall_timeout: Duration::from_secs(3),
            stall_after: None,
        }
    }
}

/// A node of `support::node` sized by `setup`.
async fn start(files: &[(&str, &[u8])], setup: Setup) -> Node {
    Node::start(files, |opts| {
        opts.max_uploads = setup.max_uploads;
        opts.stall_timeout = setup.stall_timeout;
        if let Some(bytes) = setup.stall_after {
            opts.files = Arc::new(StallAfter::new(bytes));
        }
    })
    .await
}

fn mtime(path: &Path) -> i64 {
    let modified = std::fs::metadata(path)
        .expect("metadata")
        .modified()
        .expect("mtime");
    modified
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Reads a download to its end.
async fn read_all(dl: &mut PeerDownload) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    while let Some(chunk) = dl.next_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn fetch_all(from: &Node, to: &Node, file: &str, offset: u64) -> Result<Vec<u8>, FetchError> {
    let mut dl = from.mesh.fetch(to.id(), file, offset).await?;
    read_all(&mut dl).await
}

fn refusal(r: Result<PeerDownload, FetchError>) -> FetchError {
    match r {
        Ok(dl) => panic!("expected a refusal, got {dl:?}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_whole_from_any_offset_and_refusals_name_their_reason() {
    let big = data(BIG_LEN, 1);
    let sig = data(566, 2);
    let a_file = data(70_000, 3);
    let b = start(
        &[
            (BIG, &big),
            (BIG_SIG, &sig),
            ("core.db", b"database"),
            ("core.db.sig", b"database sig"),
            ("notes.txt", b"text"),
        ],
        Setup::default(),
    )
    .await;
    let a = start(&[("apkg-2-1-any.pkg.tar.xz", &a_file)], Setup::default()).await;
    a.links_to(&b, BIG).await;
    assert_eq!(a.mesh.candidates(BIG), vec![b.id()]);

    let mut dl = a.mesh.fetch(b.id(), BIG, 0).await.expect("fetch");
    assert_eq!(dl.size, BIG_LEN as u64);
    assert_eq!(dl.mtime, mtime(&b.cache.path().join(BIG)));
    assert_eq!((dl.peer(), dl.offset()), (b.id(), 0));
    let got = read_all(&mut dl).await.expect("whole file");
    assert_eq!(sha256(&got), sha256(&big));
    assert_eq!(dl.remaining(), 0);
    assert_eq!(dl.next_chunk().await, Ok(None), "stays at the end");
    drop(dl);

    for offset in [1, 1_234_567, BIG_LEN as u64 - 1, BIG_LEN as u64] {
        let got = fetch_all(&a, &b, BIG, offset).await.expect("from offset");
        assert_eq!(got, big[offset as usize..], "offset {offset}");
    }
    assert_eq!(fetch_all(&a, &b, BIG_SIG, 0).await.expect("sig"), sig);

    let cases: [(&str, u64, FetchStatus); 6] = [
        ("nobody-1-1-any.pkg.tar.zst", 0, FetchStatus::NotFound),
        (BIG, BIG_LEN as u64 + 1, FetchStatus::BadOffset),
        (BIG, u64::MAX, FetchStatus::BadOffset),
        ("core.db", 0, FetchStatus::NotFound),
        ("core.db.sig", 0, FetchStatus::NotFound),
        ("notes.txt", 0, FetchStatus::NotFound),
    ];
    for (file, offset, status) in cases {
        let err = refusal(a.mesh.fetch(b.id(), file, offset).await);
        assert_eq!(err, FetchError::Refused(status), "{file} at {offset}");
    }
    // A name no peer can hold is refused before anything is sent.
    let err = refusal(a.mesh.fetch(b.id(), "../etc/passwd", 0).await);
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
    let stranger = NodeId([7; 32]);
    assert_eq!(
        refusal(a.mesh.fetch(stranger, BIG, 0).await),
        FetchError::NoLink
    );

    // The dialer serves too.
    b.links_to(&a, "apkg-2-1-any.pkg.tar.xz").await;
    let got = fetch_all(&b, &a, "apkg-2-1-any.pkg.tar.xz", 0)
        .await
        .expect("reverse");
    assert_eq!(got, a_file);

    // Counted at both ends (the uploader counts once quinn took a chunk,
    // which may be just after the asker read it).
    let sent_by_b = (BIG_LEN + (BIG_LEN - 1) + (BIG_LEN - 1_234_567) + 1 + sig.len()) as u64;
    eventually("uploads counted", Duration::from_secs(1), || {
        b.mesh.bytes_to_peers() == sent_by_b && a.mesh.bytes_to_peers() == a_file.len() as u64
    })
    .await;
    let a_sees_b = a
        .mesh
        .peers()
        .into_iter()
        .find(|p| p.node_id == b.id())
        .expect("b");
    assert_eq!(a_sees_b.file_bytes_received, sent_by_b);
    assert_eq!(a_sees_b.file_bytes_sent, a_file.len() as u64);
    let json = serde_json::to_value(&a_sees_b).expect("json");
    assert!(json.get("penalty_reason").is_none(), "{json}");
    assert!(json.get("penalised_until_s").is_none(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_fetches_of_one_file_both_arrive_whole() {
    let big = data(BIG_LEN, 4);
    let b = start(&[(BIG, &big)], Setup::default()).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    let (one, two) = tokio::join!(fetch_all(&a, &b, BIG, 0), fetch_all(&a, &b, BIG, 1_000_000));
    assert_eq!(sha256(&one.expect("first")), sha256(&big));
    assert_eq!(two.expect("second"), big[1_000_000..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_upload_limit_the_answer_is_busy() {
    let big = data(BIG_LEN, 5);
    let setup = Setup {
        max_uploads: 1,
        ..Setup::default()
    };
    let b = start(&[(BIG, &big)], setup).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    // A slow reader: the upload fills the stream window and waits.
    let mut slow = a.mesh.fetch(b.id(), BIG, 0).await.expect("first upload");
    let first = slow.next_chunk().await.expect("bytes").expect("some");
    assert!(!first.is_empty());
    let err = refusal(a.mesh.fetch(b.id(), BIG, 0).await);
    assert_eq!(err, FetchError::Refused(FetchStatus::Busy));
    // Refusals count against the peer, but do not exclude it.
    assert_eq!(a.mesh.candidates(BIG), vec![b.id()]);
    // The asker giving up frees the upload slot.
    drop(slow);
    let start = Instant::now();
    let got = loop {
        match fetch_all(&a, &b, BIG, 4_000_000).await {
            Err(FetchError::Refused(FetchStatus::Busy)) => {
                assert!(start.elapsed() < Duration::from_secs(2), "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.expect("after the slot is free"),
        }
    };
    assert_eq!(got, big[4_000_000..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_sending_is_reported_stalled() {
    let big = data(BIG_LEN, 6);
    let setup = Setup {
        stall_after: Some(1 << 20),
        ..Setup::default()
    };
    let b = start(&[(BIG, &big)], setup).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    let mut dl = a.mesh.fetch(b.id(), BIG, 0).await.expect("fetch");
    let mut got = Vec::new();
    let mut last = Instant::now();
    let err = loop {
        match dl.next_chunk().await {
            Ok(Some(chunk)) => {
                got.extend_from_slice(&chunk);
                last = Instant::now();
            }
            Ok(None) => panic!("the stalling peer finished"),
            Err(e) => break e,
        }
    };
    let waited = last.elapsed();
    println!(
        "stalled after {} bytes, reported {waited:?} after the last",
        got.len()
    );
    assert_eq!(err, FetchError::Stalled);
    assert_eq!(got, big[..1 << 20], "the bytes before the stall are right");
    assert_eq!(dl.received(), 1 << 20, "resume from here elsewhere");
    assert!(waited >= Duration::from_millis(2900), "{waited:?}");
    assert!(waited <= Duration::from_secs(4), "{waited:?}");
    assert_eq!(dl.next_chunk().await, Err(FetchError::Stalled), "sticks");
}

/// A peer that sends a byte now and then, inside the stall timeout, is
/// given up once a whole pace window went under the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_trickles_is_given_up_under_the_pace_floor() {
    let big = data(BIG_LEN, 7);
    let b = Node::start(&[(BIG, &big)], |opts| {
        opts.files = Arc::new(Trickle::new(Duration::from_millis(100)));
    })
    .await;
    let a = Node::start(&[], |opts| {
        opts.pace = Pace {
            window: Duration::from_secs(1),
            bytes_per_s: 1000,
        };
    })
    .await;
    a.links_to(&b, BIG).await;
    let mut dl = a.mesh.fetch(b.id(), BIG, 0).await.expect("fetch");
    let read = async {
        loop {
            match dl.next_chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the trickling peer finished"),
                Err(e) => break e,
            }
        }
    };
    let err = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the trickle was not given up");
    assert!(matches!(err, FetchError::TooSlow { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fails_the_download_within_the_stall_timeout() {
    let big = data(BIG_LEN, 7);
    // b runs on its own runtime, so "kill" is dropping that runtime: its
    // tasks stop without sending anything.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let files = [(BIG.to_owned(), big.clone())];
    let b = rt
        .spawn(async move {
            let files: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice()))
                .collect();
            start(&files, Setup::default()).await
        })
        .await
        .expect("b starts");
    let a = start(
        &[],
        Setup {
            stall_timeout: Duration::from_secs(1),
            ..Setup::default()
        },
    )
    .await;
    a.links_to(&b, BIG).await;
    let mut dl = a.mesh.fetch(b.id(), BIG, 0).await.expect("fetch");
    dl.next_chunk().await.expect("first bytes");
    let killed = Instant::now();
    rt.shutdown_background();
    let err = read_all(&mut dl).await.expect_err("cannot finish");
    let took = killed.elapsed();
    println!("killed peer: {err} after {took:?}, {} bytes", dl.received());
    assert!(
        matches!(err, FetchError::Stalled | FetchError::Link(_)),
        "{err:?}"
    );
    assert!(took <= Duration::from_secs(2), "{took:?}");
    assert!(dl.received() < BIG_LEN as u64);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_peer_cuts_its_uploads_at_once() {
    let big = data(BIG_LEN, 8);
    let b = start(&[(BIG, &big)], Setup::default()).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    let mut dl = a.mesh.fetch(b.id(), BIG, 0).await.expect("fetch");
    dl.next_chunk().await.expect("first bytes");
    let stopped = Instant::now();
    b.shutdown.cancel();
    let err = read_all(&mut dl).await.expect_err("cut");
    let took = stopped.elapsed();
    println!("stopping peer: {err} after {took:?}");
    assert!(matches!(err, FetchError::Link(_)), "{err:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalised_peers_are_not_candidates_and_show_in_status() {
    let big = data(300_000, 9);
    let b = start(&[(BIG, &big)], Setup::default()).await;
    let c = start(&[(BIG, &big)], Setup::default()).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    a.links_to(&c, BIG).await;
    let mut both = a.mesh.candidates(BIG);
    both.sort();
    let mut want = vec![b.id(), c.id()];
    want.sort();
    assert_eq!(both, want);

    a.mesh.penalise(b.id(), "sha256 mismatch");
    assert_eq!(a.mesh.candidates(BIG), vec![c.id()]);
    let status = a.mesh.peers();
    let sb = status.iter().find(|p| p.node_id == b.id()).expect("b");
    let sc = status.iter().find(|p| p.node_id == c.id()).expect("c");
    assert_eq!(sb.penalty_reason.as_deref(), Some("sha256 mismatch"));
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let until = sb.penalised_until_s.expect("until");
    assert!((until - now_s - 600.0).abs() < 5.0, "{until} vs {now_s}");
    assert_eq!(
        (sc.penalty_reason.clone(), sc.penalised_until_s),
        (None, None)
    );
    let json = serde_json::to_value(sb).expect("json");
    assert_eq!(json["penalty_reason"], "sha256 mismatch");

    // Failures only reorder; a penalty excludes, whatever the others did.
    assert_eq!(fetch_all(&a, &c, BIG, 0).await.expect("from c"), big);
    a.mesh.record_transfer(c.id(), 0, Duration::ZERO, false);
    assert_eq!(a.mesh.candidates(BIG), vec![c.id()]);
}

/// `a`, linked to two holders of `BIG` (kept alive in the second
/// value), and the holders as `a` ranks them now: best first.
async fn two_holders(seed: u64) -> (Node, [Node; 2], NodeId, NodeId) {
    let big = data(300_000, seed);
    let b = start(&[(BIG, &big)], Setup::default()).await;
    let c = start(&[(BIG, &big)], Setup::default()).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    a.links_to(&c, BIG).await;
    let first = a.mesh.candidates(BIG)[0];
    let other = if first == b.id() { c.id() } else { b.id() };
    (a, [b, c], first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_move_a_holder_behind_the_others() {
    let (a, _holders, first, other) = two_holders(10).await;
    // A refusal is recorded by the fetch itself.
    let err = refusal(a.mesh.fetch(first, BIG, u64::MAX).await);
    assert_eq!(err, FetchError::Refused(FetchStatus::BadOffset));
    assert_eq!(a.mesh.candidates(BIG), vec![other, first]);
}

/// Links to `to` as a raw QUIC peer (TLS, Hello), then opens a transfer
/// stream and sends `bytes` on it.
async fn stranger_transfer_sends(to: &Node, bytes: &[u8]) -> quinn::ConnectionError {
    let mut stranger = Stranger::connect(to.id(), to.mesh.local_addr()).await;
    stranger.hello().await;
    let (mut tsend, _trecv) = stranger.conn.open_bi().await.expect("transfer stream");
    tsend.write_all(bytes).await.expect("garbage written");
    tokio::time::timeout(Duration::from_secs(5), stranger.conn.closed())
        .await
        .expect("the mesh closes the stranger's link")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_on_a_transfer_stream_closes_that_link_only() {
    let big = data(100_000, 11);
    let b = start(&[(BIG, &big)], Setup::default()).await;
    let a = start(&[], Setup::default()).await;
    a.links_to(&b, BIG).await;
    let oversized = u32::MAX.to_be_bytes();
    let not_a_request = encode_frame(&Message::Goodbye, MAX_FRAME).expect("frame");
    for (what, bytes) in [
        ("oversized", &oversized[..]),
        ("not a request", &not_a_request),
    ] {
        match stranger_transfer_sends(&b, bytes).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, CloseCode::Protocol.varint(), "{what}")
            }
            other => panic!("{what}: closed otherwise: {other}"),
        }
    }
    assert_eq!(
        fetch_all(&a, &b, BIG, 0).await.expect("other link fine"),
        big
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetching_peer_that_no_longer_has_the_download_is_not_failed() {
    let (a, _holders, first, other) = two_holders(11).await;
    a.mesh
        .record_transfer(other, 0, Duration::from_millis(1), false);
    assert_eq!(a.mesh.candidates(BIG), vec![first, other]);
    // Joining a WAN download `first` no longer runs (it ended, or its
    // claim lost): twice `NotFound`, which says nothing about its health.
    let gone = "gone-1.0-1-x86_64.pkg.tar.zst";
    for _ in 0..2 {
        let err = refusal(a.mesh.fetch_growing(first, gone, 0).await);
        assert_eq!(err, FetchError::Refused(FetchStatus::NotFound));
    }
    assert_eq!(a.mesh.candidates(BIG), vec![first, other]);
}
