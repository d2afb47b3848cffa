//! `Mesh::who_has` with 30 linked peers of 10 000 packages each, over real
//! QUIC links on loopback: the digests arrive over the wire, then the
//! lookup is timed one call at a time. Target: p99 ≤ 1 ms.
//!
//! `cargo bench -p pacmeshd --bench who_has`

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacmesh_proto::PackageSet;
use pacmeshd::identity::Identity;
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

fn start(packages: PackageSet, shutdown: &CancellationToken) -> (Mesh, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = Arc::new(Identity::load_or_create(dir.path()).expect("identity"));
    let opts = MeshOptions::new(identity, vec!["x86_64".into()]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let publisher = Arc::new(Publisher::new(packages));
    let mesh = Mesh::start(socket, opts, publisher, shutdown.clone()).expect("mesh");
    (mesh, dir)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shutdown = CancellationToken::new();
    let (center, _dir) = start(PackageSet::new(), &shutdown);
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
        let (mesh, dir) = start(set, &shutdown);
        center.on_discovery(DiscoveryEvent::Up(PeerAd {
            node_id: Some(mesh.node_id()),
            addrs: vec![mesh.local_addr()],
        }));
        keep.push((mesh, dir));
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
    let mut hits = 0usize;
    let mut times = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let q = &queries[i % queries.len()];
        let t = Instant::now();
        let holders = center.who_has(q);
        times.push(t.elapsed());
        hits += usize::from(!holders.is_empty());
    }
    times.sort_unstable();
    println!(
        "who_has over {PEERS} peers x {PACKAGES} packages, {LOOKUPS} calls ({hits} hits): \
         p50 {:?}, p99 {:?}, max {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );
    let p99 = percentile(&times, 0.99);
    shutdown.cancel();
    center.closed().await;
    assert!(
        p99 <= Duration::from_millis(1),
        "p99 {p99:?} over the 1 ms target"
    );
}
