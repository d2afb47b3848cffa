//! A caching mirror under a burst: many clients ask it for the same uncached package at once
//! (run as root: the fixture is built by makepkg as a throwaway user):
//! `cargo build --release --workspace --bins && cargo bench -p pacmesh-tests --bench mirror_fanout`
//! Env: `FANOUT_CLIENTS` (64), `FANOUT_MIB` (the package's size, 100), `FANOUT_WAN` (nginx
//! `limit_rate` of the upstream's response, the site's WAN: `"25m"`, 25 MiB/s), `FANOUT_ROUNDS`
//! (3).
//!
//! Loopback only: an nginx upstream serving a makepkg-built repo whose one package is
//! `FANOUT_MIB` MiB of incompressible bytes, each response limited to `FANOUT_WAN`;
//! `pacmeshd --mode mirror` naming that upstream; the clients are threads of this process, each
//! with its own TCP connection, released together by a barrier.
//!
//! Cold, each round: a new pacmeshd with an empty store, its database fetched first (as
//! `pacman -Sy` would), then every client's `GET` of the package at once. Measured: the
//! upstream's GETs of the package (its access log; target 1), each client's time to first
//! body byte from its own request (the target: ≤ 50 ms for the last client to
//! arrive), and the aggregate client throughput (all bytes over the time from the first
//! request to the last byte).
//!
//! Warm: the same clients again on the same daemon (the package is kept now: the hit path of
//! mirror mode), and on nginx serving the same file from its disk (which is what a
//! `proxy_cache` hit is: a file sent with `sendfile`), one after the other, each round.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::upstream::{ServeOptions, Upstream};

/// One client's request, as it saw it.
struct Got {
    status: u16,
    bytes: u64,
    /// When its request was written.
    asked: Instant,
    /// From `asked` to the first body byte.
    ttfb: Duration,
    /// When the last byte arrived.
    done: Instant,
}

/// What one burst of clients measured.
struct Burst {
    /// Aggregate throughput, MiB/s.
    mib_s: f64,
    /// The largest time to first byte.
    ttfb_max: Duration,
    /// The time to first byte of the client whose request was written last.
    ttfb_last_arrival: Duration,
    failures: usize,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let clients: usize = env_or("FANOUT_CLIENTS", 64);
    let mib: u64 = env_or("FANOUT_MIB", 100);
    let wan: String = env_or("FANOUT_WAN", "25m".to_string());
    let rounds: usize = env_or("FANOUT_ROUNDS", 3);
    let repo = FixtureRepo::get(
        &format!("pmfanout{mib}"),
        &[PkgSpec::new("fanout", "1.0-1", mib << 20)],
    );
    let pkg = &repo.packages()[0];
    let path = repo.url_path(pkg.file_name());
    let db_path = repo.url_path(&format!("{}.db", repo.repo_name()));
    eprintln!(
        "mirror_fanout: {clients} clients, one {} MiB package, upstream limited to {wan}/s per \
         response, {rounds} rounds",
        pkg.size() >> 20
    );
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut nginx = Vec::new();
    let mut upstream_gets = Vec::new();
    for round in 0..rounds {
        let upstream = Upstream::start_with(repo.root(), &ServeOptions::default().limit_rate(&wan));
        let daemon = mirror_daemon(repo.repo_name(), &upstream);
        let addr = daemon_addr(&daemon);
        let db = get(addr, &db_path);
        assert_eq!(db.status, 200, "the mirror did not serve {db_path}");
        let burst = burst(addr, &path, clients, pkg);
        upstream.barrier();
        let gets = upstream.gets_for(pkg.file_name()).len();
        report(&format!("round {round} cold pacmesh"), &burst, Some(gets));
        upstream_gets.push(gets);
        cold.push(burst);

        let hit = burst_of(addr, &path, clients, pkg);
        report(&format!("round {round} warm pacmesh"), &hit, None);
        warm.push(hit);
        let plain = Upstream::start(repo.root());
        let plain_addr = SocketAddr::from(([127, 0, 0, 1], plain.port()));
        let served = burst_of(plain_addr, &path, clients, pkg);
        report(&format!("round {round} warm nginx"), &served, None);
        nginx.push(served);
        drop(daemon);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("--- medians over {rounds} rounds ---");
    println!(
        "cold: upstream GETs {:?}; TTFB of the last client to arrive {:.1} ms (max of all {:.1} ms); \
         aggregate {:.0} MiB/s; failures {}",
        upstream_gets,
        median(&mut cold.iter().map(|b| ms(b.ttfb_last_arrival)).collect()),
        median(&mut cold.iter().map(|b| ms(b.ttfb_max)).collect()),
        median(&mut cold.iter().map(|b| b.mib_s).collect()),
        cold.iter().map(|b| b.failures).sum::<usize>(),
    );
    let warm_mib = median(&mut warm.iter().map(|b| b.mib_s).collect());
    let nginx_mib = median(&mut nginx.iter().map(|b| b.mib_s).collect());
    println!(
        "warm: pacmesh {warm_mib:.0} MiB/s, nginx {nginx_mib:.0} MiB/s, ratio {:.2}; failures {}",
        warm_mib / nginx_mib,
        warm.iter().chain(&nginx).map(|b| b.failures).sum::<usize>(),
    );
}

/// `pacmeshd --mode mirror` on loopback for `repo`, its upstream the only server.
fn mirror_daemon(repo: &str, upstream: &Upstream) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pacmeshd.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"mirror\"\n\n[mirror]\ndb_revalidate_s = 60\n\n[[mirror.repo]]\n\
             name = \"{repo}\"\nservers = [{:?}]\n",
            upstream.server_url()
        ),
    )
    .expect("writing the mirror's config");
    let daemon = Daemon::start(DaemonArgs::default().arg("--config").arg(&config));
    // The daemon read its config at start; the file may go.
    drop(dir);
    daemon
}

fn daemon_addr(daemon: &Daemon) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], daemon.port()))
}

/// [`burst_of`], checked: every client got the whole package.
fn burst(addr: SocketAddr, path: &str, clients: usize, pkg: &FixturePackage) -> Burst {
    let b = burst_of(addr, path, clients, pkg);
    assert_eq!(b.failures, 0, "{} of {clients} clients failed", b.failures);
    b
}

/// `clients` GETs of `path` at once, each on its own connection.
fn burst_of(addr: SocketAddr, path: &str, clients: usize, pkg: &FixturePackage) -> Burst {
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (start, path) = (start.clone(), path.to_string());
            std::thread::spawn(move || {
                start.wait();
                get(addr, &path)
            })
        })
        .collect();
    let got: Vec<Got> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread panicked"))
        .collect();
    let failures = got
        .iter()
        .filter(|g| g.status != 200 || g.bytes != pkg.size())
        .count();
    let first = got.iter().map(|g| g.asked).min().expect("clients");
    let last = got.iter().map(|g| g.done).max().expect("clients");
    let bytes: u64 = got.iter().map(|g| g.bytes).sum();
    let last_arrival = got.iter().max_by_key(|g| g.asked).expect("clients");
    Burst {
        mib_s: bytes as f64 / (1 << 20) as f64 / (last - first).as_secs_f64(),
        ttfb_max: got.iter().map(|g| g.ttfb).max().expect("clients"),
        ttfb_last_arrival: last_arrival.ttfb,
        failures,
    }
}

fn report(what: &str, b: &Burst, upstream_gets: Option<usize>) {
    let gets = upstream_gets.map_or(String::new(), |g| format!("upstream GETs {g}; "));
    println!(
        "{what}: {gets}TTFB last arrival {:.1} ms, max {:.1} ms; {:.0} MiB/s; failures {}",
        b.ttfb_last_arrival.as_secs_f64() * 1000.0,
        b.ttfb_max.as_secs_f64() * 1000.0,
        b.mib_s,
        b.failures
    );
}

/// One `GET path` on a new connection, the body counted and dropped.
fn get(addr: SocketAddr, path: &str) -> Got {
    let mut got = Got {
        status: 0,
        bytes: 0,
        asked: Instant::now(),
        ttfb: Duration::ZERO,
        done: Instant::now(),
    };
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return got;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: mirror\r\nConnection: close\r\n\r\n");
    got.asked = Instant::now();
    if conn.write_all(request.as_bytes()).is_err() {
        return got;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut head_done = false;
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        let body = if head_done {
            n as u64
        } else {
            head.extend_from_slice(&buf[..n]);
            match find(&head, b"\r\n\r\n") {
                Some(end) => {
                    head_done = true;
                    got.status = status_of(&head[..end]);
                    (head.len() - end - 4) as u64
                }
                None => 0,
            }
        };
        if body > 0 && got.bytes == 0 {
            got.ttfb = got.asked.elapsed();
        }
        got.bytes += body;
    }
    got.done = Instant::now();
    got
}

fn status_of(head: &[u8]) -> u16 {
    std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
