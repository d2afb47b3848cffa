//! `Mesh::who_has` with 30 linked peers of 10 000 packages each, over real
//! QUIC links on loopback: the digests arrive over the wire, then the
//! lookup is timed one call at a time. Target: p99 ≤ 1 ms.
//!
//! Then again while one peer streams 10 000 new packages to it as deltas
//! of 1 to 4096 entries (each applied under the lock lookups wait on):
//! p99 ≤ 1 ms still.
//!
//! `cargo bench -p pacmeshd --bench who_has`

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacmesh_proto::PackageSet;
use pacmeshd::identity::Identity;
use pacmeshd::index::Change;
use pacmeshd::mesh::link::{Mesh, MeshOptions};
use pacmeshd::mesh::publish::Publisher;
use pacmeshd::mesh::{DiscoveryEvent, PeerAd};
use tokio_util::sync::CancellationToken;

const PEERS: usize = 30;
const PACKAGES: usize = 10_000;
const LOOKUPS: usize = 100_000;

fn name(peer: usize, i: usize) -> String {
    format!("pkg{i}-{peer}.0-1-x86_64.pkg.tar.zst")
}

/// New packages the delta-stream phase sends, and its delta sizes.
const STREAMED: usize = 10_000;
const DELTA_SIZES: [usize; 5] = [1, 7, 64, 500, 4096];

fn start(
    packages: PackageSet,
    shutdown: &CancellationToken,
) -> (Mesh, Arc<Publisher>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = Arc::new(Identity::load_or_create(dir.path()).expect("identity"));
    let opts = MeshOptions::new(identity, vec!["x86_64".into()]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let publisher = Arc::new(Publisher::new(packages));
    let mesh = Mesh::start(socket, opts, publisher.clone(), shutdown.clone()).expect("mesh");
    (mesh, publisher, dir)
}

/// Times `who_has` over `queries`, `calls` times.
fn time_lookups(
    center: &Mesh,
    queries: &[String],
    calls: usize,
    times: &mut Vec<Duration>,
) -> usize {
    let mut hits = 0;
    for i in 0..calls {
        let q = &queries[i % queries.len()];
        let t = Instant::now();
        let holders = center.who_has(q);
        times.push(t.elapsed());
        hits += usize::from(!holders.is_empty());
    }
    hits
}

fn report(what: &str, times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let p99 = percentile(times, 0.99);
    println!(
        "{what}, {} calls: p50 {:?}, p99 {p99:?}, max {:?}",
        times.len(),
        percentile(times, 0.50),
        times[times.len() - 1],
    );
    p99
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shutdown = CancellationToken::new();
    let (center, _, _dir) = start(PackageSet::new(), &shutdown);
    let mut keep = Vec::new();
    let setup = Instant::now();
    for peer in 0..PEERS {
        // Every 10th package is also held by the next peer, so some files
        // have two holders.
        let names: Vec<String> = (0..PACKAGES)
            .map(|i| {
                if i % 10 == 0 {
                    name(peer.saturating_sub(1), i)
                } else {
                    name(peer, i)
                }
            })
            .collect();
        let set = PackageSet::from_names(names.iter().map(String::as_str));
        let (mesh, publisher, dir) = start(set, &shutdown);
        center.on_discovery(DiscoveryEvent::Up(PeerAd {
            node_id: Some(mesh.node_id()),
            addrs: vec![mesh.local_addr()],
        }));
        keep.push((mesh, publisher, dir));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let peers = center.peers();
        if peers.len() == PEERS && peers.iter().all(|p| p.packages >= PACKAGES - PACKAGES / 10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} peers linked",
            peers.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{PEERS} peers x {PACKAGES} packages linked in {:?}",
        setup.elapsed()
    );

    // Hits (one or two holders) and misses, interleaved.
    let queries: Vec<String> = (0..1000)
        .map(|q| match q % 4 {
            0 => format!("missing-{q}-1-1-any.pkg.tar.zst"),
            _ => name(q % PEERS, (q * 7919) % PACKAGES),
        })
        .collect();
    let mut times = Vec::with_capacity(LOOKUPS);
    let hits = time_lookups(&center, &queries, LOOKUPS, &mut times);
    let p99 = report(
        &format!("who_has over {PEERS} peers x {PACKAGES} packages ({hits} hits)"),
        &mut times,
    );

    // One peer streams STREAMED new packages as deltas of every size.
    let (streamer_mesh, streamer, _) = &keep[0];
    let streamer_id = streamer_mesh.node_id();
    let streamer = streamer.clone();
    let stream = tokio::spawn(async move {
        let (mut sent, mut deltas) = (0, 0);
        while sent < STREAMED {
            let n = DELTA_SIZES[deltas % DELTA_SIZES.len()].min(STREAMED - sent);
            let changes: Vec<Change> = (sent..sent + n)
                .map(|i| Change::Added(format!("streamed{i}-1-1-x86_64.pkg.tar.zst").into()))
                .collect();
            streamer.change(&changes);
            sent += n;
            deltas += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        deltas
    });
    let want = PACKAGES + STREAMED;
    let mut during = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = center
            .peers()
            .iter()
            .any(|p| p.node_id == streamer_id && p.packages >= want);
        if arrived && stream.is_finished() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the streamed deltas did not arrive"
        );
        time_lookups(&center, &queries, 200, &mut during);
        tokio::task::yield_now().await;
    }
    let deltas = stream.await.expect("stream task");
    let p99_during = report(
        &format!("who_has while a peer streams {STREAMED} packages in {deltas} deltas"),
        &mut during,
    );
    shutdown.cancel();
    center.closed().await;
    for (what, p99) in [("idle", p99), ("during the delta stream", p99_during)] {
        assert!(
            p99 <= Duration::from_millis(1),
            "{what}: p99 {p99:?} over the 1 ms target"
        );
    }
}
