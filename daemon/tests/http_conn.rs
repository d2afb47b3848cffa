//! The pacman-facing HTTP connection layer (`http::server`, `conn`,
//! `send`) in-process, with short limits and a handler that serves a temp
//! dir through the daemon's own local-file responder: keep-alive,
//! pipelining, HTTP/1.0, bodies and expectations, hostile heads, a client
//! that stops reading, files truncated or removed mid-send, shutdown.
//! The tests that count this process's file descriptors run one at a time.
#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use pacmeshd::http::admit::Caps;
use pacmeshd::http::conn::{Handler, Limits};
use pacmeshd::http::head::{Head, MAX_HEADERS, MAX_HEAD_BYTES};
use pacmeshd::http::local::{self, FileAsk};
use pacmeshd::http::reply::Reply as Answer;
use pacmeshd::http::{server, Body};
use tokio_util::sync::CancellationToken;

/// Short limits, so the hostile tests wait for events, not for minutes
/// (long enough for a debug-built client on a busy machine between two
/// requests on one connection).
const LIMITS: Limits = Limits {
    head_timeout: Duration::from_secs(1),
    write_stall: Duration::from_secs(1),
    linger: Duration::from_millis(300),
    caps: Caps::DEFAULT,
};
const GRACE: Duration = Duration::from_secs(2);
/// Generous bound for anything the server should do "at once" or after
/// one of [`LIMITS`].
const SOON: Duration = Duration::from_secs(5);
/// Larger than any socket buffer on loopback, so a client that stops
/// reading really stops the sender.
const BIG: usize = 48 * 1024 * 1024;
const SMALL: usize = 100_000;

/// Serialises the tests: some count this process's open descriptors.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A file response's end, as its `OnDone` reports it.
type Done = (StatusCode, u64, bool);

/// Serves the files of `dir` by name (`/NAME`), 404 otherwise.
struct Files {
    dir: PathBuf,
    done: Mutex<mpsc::Sender<Done>>,
}

impl Handler for Files {
    fn quick(&self, head: &Head, _peer: SocketAddr) -> Option<Answer> {
        // Every other request waits on the daemon's runtime first, and is
        // answered from `http`'s request type.
        let path = head.uri().path();
        let waits = path == "/slow" || path == SHORT;
        (!waits).then(|| self.serve(path, FileAsk::from_head(head)))
    }

    async fn respond(&self, req: &Request<()>, _peer: SocketAddr) -> Answer {
        if req.uri().path() == SHORT {
            return short_stream();
        }
        let ask = FileAsk::from_request(req.method(), req.headers());
        self.serve(req.uri().path(), ask)
    }
}

/// A streamed body whose task ends after half of its stated length (a
/// download that ended early).
const SHORT: &str = "/short";
const SHORT_LEN: u64 = 1000;

fn short_stream() -> Answer {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let half = bytes::Bytes::from(vec![7u8; SHORT_LEN as usize / 2]);
        let _ = tx.send(Ok(half)).await;
    });
    Response::builder()
        .body(Body::channel(rx, SHORT_LEN))
        .unwrap()
        .into()
}

impl Files {
    fn serve(&self, path: &str, ask: FileAsk<'_>) -> Answer {
        let path = self.dir.join(path.trim_start_matches('/'));
        let done = self.done.lock().unwrap().clone();
        let on_done = Box::new(move |status, bytes, all| {
            let _ = done.send((status, bytes, all));
        });
        match local::serve(&path, ask, on_done) {
            Ok(file) => file.into(),
            Err(_) => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .unwrap()
                .into(),
        }
    }
}

struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    done: mpsc::Receiver<Done>,
    shutdown: CancellationToken,
    serving: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
    _serial: MutexGuard<'static, ()>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(LIMITS)
    }

    fn start_with(limits: Limits) -> Server {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small"), pattern(SMALL)).unwrap();
        std::fs::write(dir.path().join("big"), pattern(BIG)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, done) = mpsc::channel();
        let files = Arc::new(Files {
            dir: dir.path().to_owned(),
            done: Mutex::new(tx),
        });
        let shutdown = CancellationToken::new();
        let serving = runtime.spawn(server::serve(
            files,
            vec![listener],
            limits,
            GRACE,
            shutdown.clone(),
        ));
        Server {
            addr,
            dir,
            done,
            shutdown,
            serving: Some(serving),
            runtime,
            _serial: serial,
        }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(SOON)).unwrap();
        Client {
            stream,
            input: Vec::new(),
        }
    }

    /// The next file response's end.
    fn next_done(&self) -> Done {
        self.done.recv_timeout(SOON).expect("a file response ended")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server and waits for `serve` to return.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        let serving = self.serving.take().unwrap();
        self.runtime
            .block_on(async { tokio::time::timeout(SOON, serving).await })
            .expect("serve returns after shutdown")
            .unwrap();
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Bytes that differ at every offset a test might cut at.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// This process's open sockets (each counted once: every runtime holds
/// its own copy of tokio's signal socket) and descriptors of files in the
/// served dir.
fn open_fds(dir: &std::path::Path) -> usize {
    let targets: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .collect();
    let files = targets.iter().filter(|t| t.starts_with(dir)).count();
    let sockets: std::collections::HashSet<_> = targets
        .iter()
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .collect();
    files + sockets.len()
}

/// Waits until `cond` holds, at most [`SOON`].
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SOON;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not within {SOON:?}: {what}; open: {:?}",
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    stream: TcpStream,
    /// Bytes read past the last response.
    input: Vec<u8>,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn get(&mut self, path: &str, extra: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
        self.reply(false).expect("a response")
    }

    /// Reads more bytes; false at end of stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.input.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// The next response (its body unless it answers a HEAD); `None` when
    /// the server closed before a whole head.
    fn reply(&mut self, to_head: bool) -> Option<Reply> {
        let (status, headers, len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = parsed.parse(&self.input).unwrap() {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_owned(), value)
                    })
                    .collect();
                break (parsed.code.unwrap(), headers, len);
            }
            if !self.fill() {
                return None;
            }
        };
        self.input.drain(..len);
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let bodyless = to_head || status == 304 || status == 204 || status < 200;
        let length = reply
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap());
        let want = if bodyless {
            0
        } else {
            length.unwrap_or(usize::MAX)
        };
        while self.input.len() < want && self.fill() {}
        let rest = self.input.split_off(want.min(self.input.len()));
        reply.body = std::mem::replace(&mut self.input, rest);
        Some(reply)
    }

    /// True once the server closed the connection (reads to the end).
    fn closed(&mut self) -> bool {
        while self.fill() {}
        true
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::start();
    let small = pattern(SMALL);
    let mut client = server.connect();
    for i in 0..200u64 {
        let start = i * 97 % SMALL as u64;
        let reply = client.get("/small", &format!("Range: bytes={start}-\r\n"));
        assert_eq!(reply.status, 206, "request {i}");
        assert_eq!(reply.body, small[start as usize..], "request {i}");
        assert_eq!(reply.header("connection"), None);
    }
    let reply = client.get("/small", "");
    assert_eq!((reply.status, reply.body == small), (200, true));
}

#[test]
fn a_file_dated_before_1970_is_served_with_the_earliest_date() {
    let server = Server::start();
    let old = server.path("old");
    std::fs::write(&old, pattern(SMALL)).unwrap();
    let sixties = std::time::UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(sixties)
        .unwrap();
    let mut client = server.connect();
    let reply = client.get("/old", "");
    assert_eq!((reply.status, reply.body.len()), (200, SMALL));
    assert_eq!(
        reply.header("last-modified"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    // The connection lives on.
    assert_eq!(client.get("/old", "").status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let small = pattern(SMALL);
    let mut client = server.connect();
    client.send(
        b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /small HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /small HTTP/1.1\r\nRange: bytes=-10\r\n\r\n\
          GET /nope HTTP/1.1\r\n\r\n\
          GET /slow HTTP/1.1\r\n\r\n\
          GET /small HTTP/1.1\r\nRange: bytes=5-9\r\nConnection: close\r\n\r\n",
    );
    let full = client.reply(false).unwrap();
    assert_eq!((full.status, full.body == small), (200, true));
    let head = client.reply(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(SMALL.to_string().as_str())
    );
    let suffix = client.reply(false).unwrap();
    assert_eq!(
        (suffix.status, &suffix.body[..]),
        (206, &small[SMALL - 10..])
    );
    assert_eq!(client.reply(false).unwrap().status, 404);
    // Answered on the daemon's runtime, still in order.
    assert_eq!(client.reply(false).unwrap().status, 404);
    let last = client.reply(false).unwrap();
    assert_eq!((last.status, &last.body[..]), (206, &small[5..10]));
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed());
}

#[test]
fn ranges_over_the_wire() {
    let server = Server::start();
    let small = pattern(SMALL);
    let mut client = server.connect();
    let end = SMALL - 1;
    let cases: &[(&str, u16, std::ops::Range<usize>, Option<String>)] = &[
        (
            "bytes=10-19",
            206,
            10..20,
            Some(format!("bytes 10-19/{SMALL}")),
        ),
        (
            "bytes=-100",
            206,
            SMALL - 100..SMALL,
            Some(format!("bytes {}-{end}/{SMALL}", SMALL - 100)),
        ),
        (
            "bytes=99990-",
            206,
            99990..SMALL,
            Some(format!("bytes 99990-{end}/{SMALL}")),
        ),
        ("bytes=0-1,5-6", 200, 0..SMALL, None),
        ("bytes=100000-", 416, 0..0, Some(format!("bytes */{SMALL}"))),
    ];
    for (range, status, bytes, content_range) in cases {
        let reply = client.get("/small", &format!("Range: {range}\r\n"));
        assert_eq!(reply.status, *status, "{range}");
        assert_eq!(reply.body, small[bytes.clone()], "{range}");
        assert_eq!(
            reply.header("content-range"),
            content_range.as_deref(),
            "{range}"
        );
    }
    // Still usable after the 416.
    assert_eq!(client.get("/small", "").status, 200);
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let server = Server::start();
    let mut client = server.connect();
    client.send(b"GET /small HTTP/1.0\r\n\r\n");
    let reply = client.reply(false).unwrap();
    assert_eq!((reply.status, reply.body.len()), (200, SMALL));
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.closed());

    let mut client = server.connect();
    for _ in 0..3 {
        client.send(b"GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let reply = client.reply(false).unwrap();
        assert_eq!((reply.status, reply.body.len()), (200, SMALL));
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::start();
    let mut client = server.connect();
    let reply = client.get("/small", "Connection: close\r\n");
    assert_eq!(
        (reply.status, reply.header("connection")),
        (200, Some("close"))
    );
    assert!(client.closed());
}

#[test]
fn expect_100_continue_and_request_bodies() {
    let server = Server::start();
    // No body: the final answer, no interim 100.
    let mut client = server.connect();
    let reply = client.get("/small", "Expect: 100-continue\r\n");
    assert_eq!((reply.status, reply.body.len()), (200, SMALL));

    // A body announced with 100-continue: refused at once, before it is sent.
    let mut client = server.connect();
    client.send(b"PUT /small HTTP/1.1\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    let reply = client.reply(false).unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(client.closed());

    let bodies: [&[u8]; 3] = [
        b"POST /small HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /small HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
    ];
    for (request, status) in bodies.iter().zip([413, 413, 417]) {
        let mut client = server.connect();
        client.send(request);
        let reply = client.reply(false).unwrap();
        assert_eq!(reply.status, status, "{}", String::from_utf8_lossy(request));
        assert!(client.closed());
    }
}

#[test]
fn hostile_heads_are_refused_and_closed() {
    let server = Server::start();
    let huge_path = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
    let endless = format!(
        "GET /small HTTP/1.1\r\nX: {}",
        "b".repeat(2 * MAX_HEAD_BYTES)
    );
    let many = format!(
        "GET /small HTTP/1.1\r\n{}\r\n",
        "X: y\r\n".repeat(MAX_HEADERS + 1)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("oversized head", huge_path.into_bytes(), 431),
        ("head that never ends", endless.into_bytes(), 431),
        ("too many headers", many.into_bytes(), 431),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in the path",
            b"GET /sm\0all HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad header value",
            b"GET /small HTTP/1.1\r\nX: \x7f\r\n\r\n".to_vec(),
            400,
        ),
        (
            "absurd Content-Length",
            b"GET /small HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let mut client = server.connect();
        client.send(&request);
        let reply = client
            .reply(false)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(reply.status, status, "{what}");
        assert!(client.closed(), "{what}");
    }
    assert_eq!(server.connect().get("/small", "").status, 200);
}

#[test]
fn a_slow_or_idle_client_is_dropped_after_the_head_timeout() {
    let server = Server::start();
    let mut slow = server.connect();
    let mut idle = server.connect();
    assert_eq!(idle.get("/small", "").status, 200);
    slow.send(b"GET /small HTTP/1.1\r\nHost:");
    let started = Instant::now();
    assert!(slow.reply(false).is_none(), "a partial head got an answer");
    assert!(idle.reply(false).is_none());
    let took = started.elapsed();
    assert!(
        took >= LIMITS.head_timeout - Duration::from_millis(50) && took < SOON,
        "closed after {took:?}"
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_nothing_leaks() {
    let server = Server::start();
    let before = open_fds(server.dir.path());
    let mut client = server.connect();
    client.send(b"GET /big HTTP/1.1\r\n\r\n");
    // Read the head and a little of the body, then stop reading.
    while client.input.len() < 1024 {
        assert!(client.fill());
    }
    let (status, sent, complete) = server.next_done();
    assert_eq!((status, complete), (StatusCode::OK, false));
    assert!(sent < BIG as u64, "sent {sent}");
    // Only the client's own socket is left: the server's socket and the
    // open file were closed with the connection.
    eventually("the server's socket and file closed", || {
        open_fds(server.dir.path()) == before + 1
    });
    drop(client);
    eventually("every descriptor closed", || {
        open_fds(server.dir.path()) == before
    });
}

#[test]
fn a_client_that_disconnects_mid_body_leaks_nothing() {
    let server = Server::start();
    let before = open_fds(server.dir.path());
    for _ in 0..20 {
        let mut client = server.connect();
        client.send(b"GET /big HTTP/1.1\r\n\r\n");
        assert!(client.fill());
        drop(client);
        let (_, sent, complete) = server.next_done();
        assert!(!complete && sent < BIG as u64);
    }
    eventually("every descriptor closed", || {
        open_fds(server.dir.path()) == before
    });
    assert_eq!(server.connect().get("/small", "").status, 200);
}

#[test]
fn a_file_truncated_while_sent_cuts_the_connection() {
    let server = Server::start();
    let mut client = server.connect();
    client.send(b"GET /big HTTP/1.1\r\n\r\n");
    assert!(client.fill());
    let cut_at = 1024 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(server.path("big"))
        .unwrap()
        .set_len(cut_at)
        .unwrap();
    let mut got = std::mem::take(&mut client.input);
    while client.fill() {
        got.append(&mut client.input);
    }
    let (status, sent, complete) = server.next_done();
    assert_eq!((status, complete), (StatusCode::OK, false));
    assert!(got.len() < BIG, "the whole promised length arrived");
    assert!(sent < BIG as u64);
    // The daemon serves on, and the next request sees the new size.
    let reply = server.connect().get("/big", "");
    assert_eq!((reply.status, reply.body.len()), (200, cut_at as usize));
    assert_eq!(reply.body, pattern(BIG)[..cut_at as usize]);
}

/// A streamed body that ends before its length cuts the connection: a
/// client kept waiting on it, or reading the next response into it, would
/// take a short body for a whole one.
#[test]
fn a_stream_that_ends_early_cuts_the_connection() {
    let server = Server::start();
    let mut client = server.connect();
    // A second request already sent: answered on this connection, its
    // bytes would be read as the rest of the first body.
    client.send(format!("GET {SHORT} HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n").as_bytes());
    let reply = client.reply(false).expect("a response");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("1000"));
    assert_eq!(reply.body.len() as u64, SHORT_LEN / 2);
    assert!(client.closed());
    // The server goes on.
    assert_eq!(server.connect().get("/small", "").status, 200);
}

#[test]
fn a_file_removed_while_sent_is_sent_whole() {
    let server = Server::start();
    let mut client = server.connect();
    client.send(b"GET /big HTTP/1.1\r\n\r\n");
    assert!(client.fill());
    std::fs::remove_file(server.path("big")).unwrap();
    let reply = client.reply(false).unwrap();
    // Asked before the checks below, which take longer than the idle limit.
    assert_eq!(client.get("/big", "").status, 404);
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == pattern(BIG),
        "the bytes sent differ from the file"
    );
    assert_eq!(server.next_done(), (StatusCode::OK, BIG as u64, true));
}

#[test]
fn shutdown_closes_idle_connections_at_once() {
    let mut server = Server::start();
    let mut idle = server.connect();
    assert_eq!(idle.get("/small", "").status, 200);
    let took = server.stop();
    assert!(took < GRACE, "serve returned after {took:?}");
    assert!(idle.reply(false).is_none());
}

#[test]
fn shutdown_lets_a_download_finish_then_closes() {
    let mut server = Server::start();
    let mut client = server.connect();
    client.send(b"GET /big HTTP/1.1\r\n\r\n");
    assert!(client.fill());
    server.shutdown.cancel();
    // Its head went out before the shutdown: it finishes, then the
    // connection closes.
    let reply = client.reply(false).unwrap();
    assert!(reply.body == pattern(BIG));
    assert!(client.closed());
    server.stop();
}

#[test]
fn shutdown_cuts_a_download_that_outlasts_the_grace() {
    // A stall limit beyond the grace: only the shutdown can cut.
    let mut server = Server::start_with(Limits {
        write_stall: GRACE * 5,
        ..LIMITS
    });
    let mut client = server.connect();
    client.send(b"GET /big HTTP/1.1\r\n\r\n");
    assert!(client.fill());
    // A client reading slowly: 48 MiB at ~6 MB/s.
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let slow = slow.clone();
        std::thread::spawn(move || {
            let mut got = client.input.len();
            while client.fill() {
                got += std::mem::take(&mut client.input).len();
                if slow.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            got
        })
    };
    let took = server.stop();
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(
        took >= GRACE - Duration::from_millis(50),
        "cut after {took:?}, before the grace"
    );
    let got = reader.join().unwrap();
    assert!(got < BIG, "the whole body arrived ({got} bytes)");
    let (status, sent, complete) = server.next_done();
    assert_eq!((status, complete), (StatusCode::OK, false));
    assert!(sent < BIG as u64, "sent {sent}");
}

#[test]
fn at_the_connection_cap_the_oldest_waiting_connection_makes_room() {
    let server = Server::start_with(Limits {
        caps: Caps {
            total: 2,
            per_client: 2,
        },
        ..LIMITS
    });
    let mut oldest = server.connect();
    oldest.send(b"GET /small HTTP/1.1\r\nHost:");
    let mut idle = server.connect();
    assert_eq!(idle.get("/small", "").status, 200);
    // A third connection closes the oldest waiting one, half-sent.
    let mut third = server.connect();
    assert!(oldest.reply(false).is_none() && oldest.closed());
    assert_eq!(third.get("/small", "").status, 200);
    // The kept-alive one was not touched, and a fourth closes it now.
    assert_eq!(idle.get("/small", "").status, 200);
    let mut fourth = server.connect();
    assert_eq!(fourth.get("/small", "").status, 200);
    assert!(idle.reply(false).is_none());
}

#[test]
fn a_fifo_in_the_served_dir_is_refused_at_once_and_serving_goes_on() {
    let server = Server::start();
    let name = "fifo-1.0-1-x86_64.pkg.tar.zst";
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    let fifo = rustix::fs::FileType::Fifo;
    rustix::fs::mknodat(rustix::fs::CWD, server.path(name), fifo, mode, 0).unwrap();
    // A blocking open would hold the serving thread until a writer came:
    // no answer within SOON fails the read.
    let mut client = server.connect();
    assert_eq!(client.get(&format!("/{name}"), "").status, 404);
    assert_eq!(client.get("/small", "").status, 200);
    assert_eq!(server.connect().get("/small", "").status, 200);
}
