//! Mesh benchmark across real namespaces (run as root):
//! `cargo build --release --workspace --bins && cargo bench -p pacmesh-tests --bench mesh_idle`
//! (benches run the release binaries next to them: build those first).
//!
//! 1. Process start to "all peers linked" with 3 hosts (target ≤ 2 s),
//!    over a few rounds.
//! 2. Idle traffic per host per minute with 3 linked peers: bytes and
//!    packets each host's interface sent and received over 60 s
//!    (keep-alives, mDNS announcements).

use std::time::{Duration, Instant};

use pacmesh_tests::daemon::DaemonArgs;
use pacmesh_tests::lan::{Host, Lan, NsDaemon};

const ROUNDS: usize = 5;
const IDLE: Duration = Duration::from_secs(60);

fn peer_count(d: &NsDaemon) -> usize {
    d.status()["peers"].as_array().map_or(0, Vec::len)
}

/// (tx_bytes, rx_bytes, tx_packets, rx_packets) of the host's eth0.
fn counters(host: &Host) -> [u64; 4] {
    let read = |name: &str| -> u64 {
        let out = host
            .exec("cat")
            .arg(format!("/sys/class/net/eth0/statistics/{name}"))
            .output()
            .expect("reading interface counters");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    [
        read("tx_bytes"),
        read("rx_bytes"),
        read("tx_packets"),
        read("rx_packets"),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut linked_ms = Vec::new();
    for round in 0..ROUNDS {
        let lan = Lan::new(3);
        let started = Instant::now();
        let daemons: Vec<_> = lan
            .hosts()
            .iter()
            .map(|h| h.start_daemon(DaemonArgs::default()))
            .collect();
        let up = started.elapsed();
        while daemons.iter().any(|d| peer_count(d) < 2) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: never linked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "round {round}: all 3 started in {} ms, all linked {ms:.0} ms after the first start",
            up.as_millis()
        );
        linked_ms.push(ms);
        let ids: Vec<_> = daemons.iter().map(NsDaemon::node_id).collect();
        assert_eq!(ids.len(), 3);
    }
    println!(
        "start → all linked (3 hosts): median {:.0} ms, max {:.0} ms (target ≤ 2000 ms)",
        median(linked_ms.clone()),
        linked_ms.iter().cloned().fold(0.0, f64::max)
    );

    let lan = Lan::new(3);
    let daemons: Vec<_> = lan
        .hosts()
        .iter()
        .map(|h| h.start_daemon(DaemonArgs::default()))
        .collect();
    while daemons.iter().any(|d| peer_count(d) < 2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Past the announcement burst of the first seconds.
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<_> = lan.hosts().iter().map(counters).collect();
    std::thread::sleep(IDLE);
    let after: Vec<_> = lan.hosts().iter().map(counters).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        println!(
            "host {i} idle per minute: sent {} B in {} packets, received {} B in {} packets",
            a[0] - b[0],
            a[2] - b[2],
            a[1] - b[1],
            a[3] - b[3]
        );
    }
    for d in &daemons {
        assert_eq!(peer_count(d), 2, "a link dropped while idle");
    }
}
