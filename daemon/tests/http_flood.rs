//! A flood of connections against the real daemon on loopback (issue 12,
//! item 8): half-sent requests past the connection cap close only their
//! own oldest members, and a cached package still answers at once.
#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pacmeshd::http::admit::MAX_CONNECTIONS;
use support::daemon::{get, Daemon};
use support::wait::eventually_blocking;

/// Half-sent requests held open, as the issue asks.
const FLOOD: usize = 1100;
const PACKAGE: &str = "flood-1.0-1-x86_64.pkg.tar.zst";
const PATH: &str = "/core/os/x86_64/flood-1.0-1-x86_64.pkg.tar.zst";

/// Enough descriptors for the flood, this process's and the daemon's (it
/// inherits them).
fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).unwrap();
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now >= 2 * FLOOD as u64 + 256,
        "RLIMIT_NOFILE {now} is too low for this test"
    );
}

/// True while `conn` is open with nothing to read.
fn open(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = match (&*conn).read(&mut byte) {
        Err(e) => e.kind() == ErrorKind::WouldBlock,
        Ok(0) => false,
        Ok(_) => panic!("a half-sent request got an answer"),
    };
    conn.set_nonblocking(false).unwrap();
    open
}

/// Waits until at least `n` of `conns` were closed by the server (at
/// most 5 s, half the daemon's head timeout, which would close them all);
/// how many are.
fn wait_closed(conns: &[TcpStream], n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let closed = conns.iter().filter(|c| !open(c)).count();
        if closed >= n || Instant::now() > deadline {
            return closed;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens `n` connections that each send a request head without its end,
/// from a few threads (a connect now and then waits a second for a SYN
/// retransmit; in parallel those waits overlap).
fn half_sent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    const THREADS: usize = 4;
    let half = format!("GET {PATH} HTTP/1.1\r\nHost: x\r\nUser-Agent: flood\r\n");
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let half = &half;
                s.spawn(move || {
                    let count = n / THREADS + usize::from(t < n % THREADS);
                    (0..count)
                        .map(|_| {
                            let mut conn = TcpStream::connect(addr).unwrap();
                            conn.write_all(half.as_bytes()).unwrap();
                            conn
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    })
}

#[test]
fn a_flood_of_half_sent_requests_does_not_lock_out_a_cached_get() {
    const { assert!(FLOOD > MAX_CONNECTIONS, "the flood must pass the cap") };
    raise_open_files();
    let daemon = Daemon::start(&[], None);
    let body = "p".repeat(64 * 1024);
    std::fs::write(daemon.cache_dir().join(PACKAGE), &body).unwrap();
    eventually_blocking("the package is served", Duration::from_secs(10), || {
        get(daemon.http, PATH).as_deref() == Some(body.as_str())
    });

    let flood = half_sent(daemon.http, FLOOD);
    assert_eq!(flood.len(), FLOOD);
    // Every one admitted: as many as went past the cap were closed.
    let past = FLOOD - MAX_CONNECTIONS;
    assert_eq!(wait_closed(&flood, past), past);

    let started = Instant::now();
    let answer = get(daemon.http, PATH);
    let took = started.elapsed();
    assert!(
        answer.as_deref() == Some(body.as_str()),
        "the cached GET failed"
    );
    assert!(
        took < Duration::from_secs(1),
        "the cached GET took {took:?}"
    );

    // It made room by closing one waiting connection: the rest of the
    // flood is still held (not dropped wholesale by a timeout).
    assert_eq!(wait_closed(&flood, past + 1), past + 1);
}
