//! Real HTTP clients against the real `pacmeshd` serving its cache: curl,
//! wget, aria2c (parallel ranges) and Python's `http.client` get bytes
//! identical to the files, over keep-alive, ranges, resumes, HEAD and
//! HTTP/1.0; uploads are refused at once; and clients that hang up
//! mid-download or send garbage leave no descriptor open in the daemon,
//! which serves on. (pacman itself: `foundation.rs`; the connection's
//! limits with short timeouts: the daemon's `http_conn` tests.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::process::run_ok;
use pacmesh_tests::{http, net, prereq};

/// The clients these tests drive.
const CLIENTS: &[&str] = &["curl", "wget", "aria2c", "python3"];
const SMALL: &str = "small-1.0-1-any.pkg.tar.zst";
const SMALL_LEN: usize = 200_000;
const BIG: &str = "big-2.0-1-x86_64.pkg.tar.zst";
/// Larger than loopback's socket buffers, so a download is still under way
/// when a client hangs up.
const BIG_LEN: usize = 24 * 1024 * 1024;
const SOON: Duration = Duration::from_secs(10);

struct Setup {
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).expect("mkdir");
        std::fs::write(cache.join(SMALL), pattern(SMALL_LEN)).expect("write");
        std::fs::write(cache.join(BIG), pattern(BIG_LEN)).expect("write");
        let conf = dir.path().join("pacman.conf");
        std::fs::write(&conf, "[options]\n").expect("write");
        let daemon = Daemon::start(DaemonArgs::new(&conf).cache_dir(&cache));
        Setup { daemon, dir }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.daemon.url())
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's open descriptors.
    fn daemon_fds(&self) -> usize {
        let pid = self.daemon.pid().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the daemon's fds")
            .count()
    }

    /// The daemon's finished-request log lines for `name`.
    fn logged(&self, name: &str) -> Vec<String> {
        let needle = format!("/{name} ");
        self.daemon
            .log()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("status="))
            .map(str::to_owned)
            .collect()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

fn curl() -> Command {
    let mut c = Command::new("curl");
    // Loopback only, whatever the environment says.
    c.args(["-sS", "--noproxy", "*"]);
    c
}

#[test]
fn curl_downloads_ranges_head_http10_and_keep_alive() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    let (small, big) = (pattern(SMALL_LEN), pattern(BIG_LEN));
    // Three downloads in one curl: one connection, kept alive.
    let (a, b, c) = (s.out("a"), s.out("b"), s.out("c"));
    let connects = stdout(
        curl()
            .args(["-w", "%{num_connects} "])
            .arg(s.url(SMALL))
            .arg("-o")
            .arg(&a)
            .arg(s.url(BIG))
            .arg("-o")
            .arg(&b)
            .arg(s.url(SMALL))
            .arg("-o")
            .arg(&c),
    );
    assert_eq!(
        connects.trim(),
        "1 0 0",
        "curl did not reuse its connection"
    );
    assert!(read(&a) == small && read(&b) == big && read(&c) == small);

    let ranges: &[(&str, std::ops::Range<usize>)] = &[
        ("100-199", 100..200),
        ("-1000", SMALL_LEN - 1000..SMALL_LEN),
        ("150000-", 150_000..SMALL_LEN),
        // Several ranges: the whole file, as before.
        ("0-1,5-6", 0..SMALL_LEN),
    ];
    for (range, want) in ranges {
        let out = s.out("range");
        run_ok(curl().args(["-r", range, "-o"]).arg(&out).arg(s.url(SMALL)));
        assert!(read(&out) == small[want.clone()], "range {range}");
    }
    // Resume with `Range: bytes=N-`, as pacman does.
    let part = s.out("resumed");
    std::fs::write(&part, &big[..1_000_000]).expect("write");
    run_ok(curl().args(["-C", "-", "-o"]).arg(&part).arg(s.url(BIG)));
    assert!(read(&part) == big, "curl -C - resume differs");

    let code = stdout(
        curl()
            .args(["-o", "/dev/null", "-w", "%{http_code}", "-r", "999999-"])
            .arg(s.url(SMALL)),
    );
    assert_eq!(code, "416");
    let head = stdout(curl().arg("-I").arg(s.url(BIG)));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {BIG_LEN}")),
        "{head}"
    );
    let old = s.out("http10");
    let head10 = stdout(
        curl()
            .args(["-0", "-D", "-", "-o"])
            .arg(&old)
            .arg(s.url(SMALL)),
    );
    assert!(read(&old) == small);
    assert!(
        head10.to_ascii_lowercase().contains("connection: close"),
        "{head10}"
    );
    let closed = s.out("closed");
    run_ok(
        curl()
            .args(["-H", "Connection: close", "-o"])
            .arg(&closed)
            .arg(s.url(BIG)),
    );
    assert!(read(&closed) == big);
}

#[test]
fn curl_upload_is_refused_at_once() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    // With 100-continue the body is never sent; without, a small one is
    // drained before the connection closes, so curl reads the answer.
    let (big, small) = (s.out("upload-big"), s.out("upload-small"));
    std::fs::write(&big, pattern(4 * 1024 * 1024)).expect("write");
    std::fs::write(&small, pattern(100_000)).expect("write");
    for (expect, upload) in [("Expect: 100-continue", &big), ("Expect:", &small)] {
        let started = Instant::now();
        let code = stdout(
            curl()
                .args(["-o", "/dev/null", "-w", "%{http_code}", "-H", expect, "-T"])
                .arg(upload)
                .arg(s.url("up-1-1-any.pkg.tar.zst")),
        );
        assert_eq!(code, "413", "{expect}");
        assert!(started.elapsed() < Duration::from_secs(3), "{expect}");
    }
    assert_eq!(http::get(&s.url(SMALL), &[]).status, 200);
}

#[test]
fn wget_downloads_and_resumes() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    let big = pattern(BIG_LEN);
    let out = s.out(BIG);
    run_ok(
        Command::new("wget")
            .args(["-q", "--no-proxy", "-O"])
            .arg(&out)
            .arg(s.url(BIG)),
    );
    assert!(read(&out) == big);
    std::fs::write(&out, &big[..3_000_000]).expect("write");
    run_ok(
        Command::new("wget")
            .args(["-q", "--no-proxy", "-c", "-P"])
            .arg(s.dir.path())
            .arg(s.url(BIG)),
    );
    assert!(read(&out) == big, "wget -c resume differs");
    // Logged when the body ends, which may be just after wget is done.
    let rest = format!("bytes={} ", BIG_LEN - 3_000_000);
    assert_eventually!(
        s.logged(BIG)
            .iter()
            .any(|l| l.contains("status=206") && l.contains(&rest)),
        SOON,
        "no 206 with {rest}logged: {:#?}",
        s.logged(BIG)
    );
}

#[test]
fn aria2c_downloads_with_parallel_ranges() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    let dir = s.dir.path().join("aria");
    run_ok(
        Command::new("aria2c")
            .args([
                "-q",
                "--no-conf",
                "--no-proxy=127.0.0.1",
                "-x",
                "4",
                "-s",
                "4",
                "-k",
                "1M",
            ])
            .args(["--file-allocation=none", "-d"])
            .arg(&dir)
            .args(["-o", BIG])
            .arg(s.url(BIG)),
    );
    assert!(
        read(&dir.join(BIG)) == pattern(BIG_LEN),
        "aria2c's copy differs"
    );
    let ranged = || {
        s.logged(BIG)
            .iter()
            .filter(|l| l.contains("status=206"))
            .count()
    };
    assert_eventually!(
        ranged() >= 2,
        SOON,
        "aria2c asked no parallel ranges: {:#?}",
        s.logged(BIG)
    );
}

#[test]
fn python_http_client_keep_alive_head_and_range() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    let script = r#"
import hashlib, http.client, sys
port, small, small_len = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
want = bytes(((i % 251) ^ (i >> 16)) & 0xff for i in range(small_len))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(50):
    conn.request("GET", "/" + small)
    r = conn.getresponse()
    assert r.status == 200 and r.read() == want, (i, r.status)
conn.request("HEAD", "/" + small)
r = conn.getresponse()
assert r.status == 200 and r.getheader("Content-Length") == str(small_len) and r.read() == b""
conn.request("GET", "/" + small, headers={"Range": "bytes=10-"})
r = conn.getresponse()
assert r.status == 206 and r.read() == want[10:]
conn.request("GET", "/nope-1-1-any.pkg.tar.zst")
r = conn.getresponse()
r.read()
assert r.status in (307, 404), r.status
conn.request("GET", "/" + small)
assert conn.getresponse().read() == want
# One connection for all of it.
assert conn.sock is not None
print("ok")
"#;
    let out = stdout(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(s.daemon.port().to_string())
            .arg(SMALL)
            .arg(SMALL_LEN.to_string()),
    );
    assert_eq!(out.trim(), "ok");
}

#[test]
fn clients_that_hang_up_or_send_garbage_leave_nothing_open() {
    if !prereq::require_tools(CLIENTS) {
        return;
    }
    let s = Setup::start();
    let addr = net::loopback(s.daemon.port());
    assert_eq!(http::get(&s.url(SMALL), &[]).status, 200);
    let before = s.daemon_fds();
    for i in 0..30 {
        let request = match i % 3 {
            0 => format!("GET /{BIG} HTTP/1.1\r\nHost: x\r\n\r\n"),
            1 => format!("GET /{BIG} HTTP/1.1\r\nRange: bytes={i}-\r\n\r\n"),
            _ => "\x16\x03\x01 garbage \0\r\n\r\n".to_string(),
        };
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
        let mut first = [0u8; 1024];
        let _ = std::io::Read::read(&mut stream, &mut first);
        drop(stream);
    }
    // No more than before: a descriptor the daemon opens now and then for
    // itself (the sync dir watch, retried every few seconds) may have been
    // open when `before` was taken.
    assert_eventually!(
        s.daemon_fds() <= before,
        SOON,
        "the daemon holds {} descriptors, {before} before",
        s.daemon_fds()
    );
    let reply = http::get(&s.url(BIG), &[]);
    assert!(reply.status == 200 && reply.body == pattern(BIG_LEN));
}
