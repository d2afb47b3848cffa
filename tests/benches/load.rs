//! Load on two real pacmeshd processes on loopback (issue 12, "Load, crash and fuzz evidence"):
//! `cargo build --release --workspace --bins && cargo bench -p pacmesh-tests --bench load`
//! (benches run the release binaries next to them: build those first). Env: `LOCAL` (concurrent
//! downloads of cached packages, default 256), `PEER` (concurrent peer fetches, default 64).
//!
//! A holds `LOCAL_FILES` packages of 0.25–4 MiB in its cache dir and `PEER` packages of 1 MiB
//! that only it holds. B links to A over QUIC on loopback (`--peer`, no mDNS) and has nothing
//! cached. Both have a `[bench]` repo whose mirror is a real nginx on loopback serving every
//! file (a pacman.conf always names one; B falls back to it when A answers `Busy`).
//!
//! All clients start at once behind a barrier: `LOCAL` clients each GET one of A's cached
//! packages from A, `PEER` clients each GET a different one of the peer-held packages from B,
//! following redirects as pacman does (come-backs to B, or B's redirect to the mirror). An error
//! is a transport error, a status other than 200, or a body whose length (local) or SHA-256
//! (peer) differs from the file's. Reported: errors (target 0), time, where B's answers came
//! from (its status page's `requests`), bytes A uploaded to B, and each daemon's peak RSS
//! (`VmHWM`, start to end).

use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::process::vm_mib;
use pacmesh_tests::upstream::Upstream;
use sha2::{Digest as _, Sha256};

const REPO: &str = "bench";
const ARCH: &str = "x86_64";
/// Distinct cached packages the `LOCAL` clients spread over.
const LOCAL_FILES: usize = 32;
const PEER_FILE_LEN: usize = 1 << 20;
const LINK_TIMEOUT: Duration = Duration::from_secs(20);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeded bytes (xorshift), different for every `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `/{repo}/os/{arch}/{name}`.
fn path_of(name: &str) -> String {
    format!("/{REPO}/os/{ARCH}/{name}")
}

/// Writes `data` as `name` into the cache dir and into the mirror's tree.
fn place(cache: &Path, mirror_root: &Path, name: &str, data: &[u8]) {
    std::fs::write(cache.join(name), data).expect("writing a package");
    let dir = mirror_root.join(REPO).join("os").join(ARCH);
    std::fs::create_dir_all(&dir).expect("mirror tree");
    std::fs::hard_link(cache.join(name), dir.join(name)).expect("linking into the mirror");
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // pacman follows up to 10 redirects: come-backs and the mirror's.
        .max_redirects(10)
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// GETs `url`: the body's length and SHA-256, or what went wrong.
fn fetch(url: &str) -> Result<(usize, [u8; 32]), String> {
    let mut response = agent().get(url).call().map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: status {}", response.status()));
    }
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let (mut len, mut hash, mut buf) = (0, Sha256::new(), vec![0u8; 64 * 1024]);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                hash.update(&buf[..n]);
            }
            Err(e) => return Err(format!("{url}: body cut after {len} bytes: {e}")),
        }
    }
    Ok((len, hash.finalize().into()))
}

type Client = std::thread::JoinHandle<Result<u64, String>>;

/// A thread that waits at `barrier`, then GETs `url`: its body bytes, or
/// an error when `whole(length, sha256)` says the body is not the file.
fn client(
    url: String,
    barrier: &Arc<Barrier>,
    whole: impl Fn(usize, [u8; 32]) -> bool + Send + 'static,
) -> Client {
    let barrier = barrier.clone();
    std::thread::spawn(move || {
        barrier.wait();
        let (len, hash) = fetch(&url)?;
        if whole(len, hash) {
            Ok(len as u64)
        } else {
            Err(format!("{url}: {len} bytes that are not the file"))
        }
    })
}

struct Outcome {
    errors: Vec<String>,
    bytes: u64,
}

fn main() {
    let local_clients = env_usize("LOCAL", 256);
    let peer_clients = env_usize("PEER", 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cache_a, mirror_root) = (dir.path().join("cache-a"), dir.path().join("mirror"));
    for d in [&cache_a, &mirror_root, &dir.path().join("cache-b")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut local = Vec::new();
    for i in 0..LOCAL_FILES {
        let name = format!("local{i:02}-1.0-1-{ARCH}.pkg.tar.zst");
        let len = (256 << 10) + (i * (3840 << 10) / LOCAL_FILES);
        place(&cache_a, &mirror_root, &name, &bytes(i as u64, len));
        local.push((name, len));
    }
    let mut peer = Vec::new();
    for i in 0..peer_clients {
        let name = format!("peer{i:03}-1.0-1-{ARCH}.pkg.tar.zst");
        let data = bytes(1000 + i as u64, PEER_FILE_LEN);
        place(&cache_a, &mirror_root, &name, &data);
        peer.push((name, <[u8; 32]>::from(Sha256::digest(&data))));
    }
    let mirror = Upstream::start(&mirror_root);
    let conf = |name: &str| {
        let path = dir.path().join(name);
        let text = format!("[options]\n[{REPO}]\nServer = {}\n", mirror.server_url());
        std::fs::write(&path, text).expect("pacman.conf");
        path
    };
    let a = Daemon::start(
        DaemonArgs::new(&conf("a.conf"))
            .cache_dir(&cache_a)
            .env("PACMESH_LOG", "warn"),
    );
    let b = Daemon::start(
        DaemonArgs::new(&conf("b.conf"))
            .cache_dir(&dir.path().join("cache-b"))
            .arg("--peer")
            .arg(format!("127.0.0.1:{}", a.quic_port()))
            .env("PACMESH_LOG", "warn"),
    );
    let held = (LOCAL_FILES + peer_clients) as u64;
    let linked = Instant::now();
    while b.status()["peers"][0]["packages"].as_u64() != Some(held) {
        assert!(
            linked.elapsed() < LINK_TIMEOUT,
            "B never saw A's digest of {held} packages: {}",
            b.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (pid_a, pid_b) = (a.pid().expect("A runs"), b.pid().expect("B runs"));
    let rss_before = (vm_mib(pid_a, "VmRSS"), vm_mib(pid_b, "VmRSS"));

    let barrier = Arc::new(Barrier::new(local_clients + peer_clients + 1));
    let mut clients = Vec::new();
    for i in 0..local_clients {
        let (name, len) = local[i % LOCAL_FILES].clone();
        let url = format!("{}{}", a.url(), path_of(&name));
        clients.push(client(url, &barrier, move |got, _| got == len));
    }
    for (name, sha) in peer.iter().cloned() {
        let url = format!("{}{}", b.url(), path_of(&name));
        clients.push(client(url, &barrier, move |_, hash| hash == sha));
    }
    barrier.wait();
    let started = Instant::now();
    let mut outcome = Outcome {
        errors: Vec::new(),
        bytes: 0,
    };
    for client in clients {
        match client.join().expect("a client thread") {
            Ok(n) => outcome.bytes += n,
            Err(e) => outcome.errors.push(e),
        }
    }
    let took = started.elapsed();
    let status_a = a.status();
    let status_b = b.status();
    report(&outcome, took, local_clients, peer_clients);
    println!("B's answers by source: {}", status_b["requests"]);
    println!(
        "bytes A sent to B: {} MiB (file bytes); B took from peers: {} MiB",
        status_a["bytes"]["to_peers"].as_u64().unwrap_or(0) >> 20,
        status_b["bytes"]["peer"].as_u64().unwrap_or(0) >> 20
    );
    println!(
        "peak RSS (VmHWM): A {:.1} MiB, B {:.1} MiB (RSS before the load: A {:.1}, B {:.1})",
        vm_mib(pid_a, "VmHWM"),
        vm_mib(pid_b, "VmHWM"),
        rss_before.0,
        rss_before.1
    );
    if !outcome.errors.is_empty() {
        std::process::exit(1);
    }
}

fn report(outcome: &Outcome, took: Duration, local: usize, peer: usize) {
    println!(
        "{local} downloads of cached packages from A + {peer} peer fetches through B, at once: \
         {} errors, {:.0} MiB in {:.2} s",
        outcome.errors.len(),
        outcome.bytes as f64 / f64::from(1 << 20),
        took.as_secs_f64()
    );
    for e in outcome.errors.iter().take(20) {
        println!("  error: {e}");
    }
}
