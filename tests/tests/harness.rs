//! Proves the harness itself: makepkg/repo-add fixtures that the real pacman installs from nginx, fixture reuse, Range support, the raw client and the daemon wrapper.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::fixtures::{FixtureRepo, PkgSpec};
use pacmesh_tests::pacman::PacmanRoot;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::upstream::Upstream;
use pacmesh_tests::{http, net};

const REPO: &str = "pmharness";

fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("hello", "1.0-1", 64 * 1024),
            PkgSpec::new("bigblob", "2.3", 4 * 1024 * 1024),
        ],
    )
}

#[test]
fn pacman_installs_fixture_packages_from_nginx() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let upstream = Upstream::start(repo.root());
    let pacman = PacmanRoot::new(REPO, &[upstream.server_url()]);

    pacman.run_ok(&["-Sy"]);
    pacman.run_ok(&["-S", "hello", "bigblob"]);

    assert_eq!(pacman.installed_version("hello").as_deref(), Some("1.0-1"));
    assert_eq!(
        pacman.installed_version("bigblob").as_deref(),
        Some("2.3-1")
    );
    let blob = pacman.root_dir().join("usr/share/bigblob/blob");
    assert_eq!(
        std::fs::metadata(&blob).expect("installed blob").len(),
        4 * 1024 * 1024
    );
    let pkg = repo.package("bigblob");
    let cached = std::fs::read(pacman.cache_dir().join(pkg.file_name())).expect("cached package");
    assert_eq!(cached.len() as u64, pkg.size());

    let db = format!("{REPO}.db");
    assert_eventually!(
        upstream.requests_for(pkg.file_name()).len() == 1,
        Duration::from_secs(5)
    );
    let got = &upstream.requests_for(pkg.file_name())[0];
    assert_eq!(
        (got.method.as_str(), got.status, got.bytes),
        ("GET", 200, pkg.size())
    );
    assert_eq!(
        got.path,
        format!("/{REPO}/os/{}/{}", repo.arch(), pkg.file_name())
    );
    assert!(
        got.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("pacman/")),
        "{got:?}"
    );
    let db_gets = upstream.requests_for(&db);
    assert!(
        db_gets.iter().any(|r| r.method == "GET" && r.status == 200),
        "{db_gets:?}"
    );
    assert!(!pacman.run(&["-Q", "nosuchpkg"]).status.success());
}

#[test]
fn same_specs_reuse_the_built_fixture() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let first = fixture();
    let second = fixture();
    assert_eq!(first.root(), second.root());
    assert_eq!(
        first.build_id(),
        second.build_id(),
        "the fixture was rebuilt"
    );

    let pkg = first.package("hello");
    assert_eq!(pkg.file_name(), "hello-1.0-1-any.pkg.tar.zst");
    assert_eq!(
        std::fs::metadata(pkg.path()).expect("package file").len(),
        pkg.size()
    );
    assert_eq!(pkg.sha256().len(), 64);
    let db = std::fs::symlink_metadata(first.db_path()).expect("repo db");
    assert!(db.file_type().is_file(), "{REPO}.db should be a real file");
}

#[test]
fn nginx_answers_ranges_with_206() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let pkg = repo.package("bigblob");
    let bytes = std::fs::read(pkg.path()).expect("reading the package");
    let upstream = Upstream::start(repo.root());
    let url = format!(
        "{}/{REPO}/os/{}/{}",
        upstream.url(),
        repo.arch(),
        pkg.file_name()
    );

    let part = http::get(&url, &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, bytes[100..200]);
    let want = format!("bytes 100-199/{}", bytes.len());
    assert_eq!(part.header("content-range"), Some(want.as_str()));

    // The form pacman sends to resume a download.
    let resume = http::get(&url, &[("Range", "bytes=1000000-")]);
    assert_eq!(resume.status, 206);
    assert_eq!(resume.body, bytes[1_000_000..]);

    assert_eventually!(
        upstream.requests_for(pkg.file_name()).len() == 2,
        Duration::from_secs(5)
    );
    let logged = upstream.requests_for(pkg.file_name());
    assert_eq!(logged[0].range.as_deref(), Some("bytes=100-199"));
    assert_eq!(
        (logged[1].status, logged[1].bytes),
        (206, bytes.len() as u64 - 1_000_000)
    );
}

#[test]
fn raw_requests_reach_the_server_as_sent() {
    if !prereq::require(&["nginx"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = Upstream::start(dir.path());
    let answer = http::raw(
        net::loopback(upstream.port()),
        b"BL\x01AH / HTTP/1.1\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10 * 1024));
    let answer = http::raw(net::loopback(upstream.port()), long.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert_eq!(
        http::get(&format!("{}/missing", upstream.url()), &[]).status,
        404
    );
}

/// Exercises `Daemon` against a stand-in that serves `/_pacmesh/status` like pacmeshd.
#[test]
fn daemon_wrapper_starts_queries_and_stops_a_stand_in() {
    if !prereq::require_tools(&["python3"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("fake-pacmeshd");
    std::fs::write(&script, FAKE_DAEMON).expect("writing the stand-in");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let args = DaemonArgs {
        binary: Some(script),
        ..DaemonArgs::new(&dir.path().join("pacman.conf"))
    };
    let mut daemon = Daemon::start(args.cache_dir(dir.path()).arg("--extra"));
    assert_eq!(daemon.status()["node_id"], "fake");
    assert!(
        daemon.log().contains("--no-mdns --extra"),
        "{}",
        daemon.log()
    );
    let redirect = http::get(&format!("{}/redirect", daemon.url()), &[]);
    assert_eq!(redirect.status, 307, "redirects must not be followed");
    let status = daemon.stop();
    assert!(
        status.success(),
        "the stand-in exits 0 on SIGTERM: {status:?}"
    );
}

const FAKE_DAEMON: &str = r#"#!/usr/bin/python3
import http.server, json, signal, sys
print("args:", " ".join(sys.argv[1:]), flush=True)
port = int(sys.argv[sys.argv.index("--http-listen") + 1].rsplit(":", 1)[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/_pacmesh/status":
            body = json.dumps({"node_id": "fake"}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
        else:
            self.send_response(307); self.send_header("Location", "/_pacmesh/status")
            self.send_header("Content-Length", "0"); self.end_headers()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

#[test]
fn netprobe_out_of_time_exits_with_an_error_not_a_result() {
    // A server that accepts and never answers: netprobe's `get` would wait
    // its 15 s read timeout, past a one-second lifetime.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/never", silent.local_addr().expect("its address"));
    let out = std::process::Command::new(pacmesh_tests::lan::netprobe_path())
        .env("PMH_LIFETIME_S", "1")
        .args(["get", &url])
        .output()
        .expect("netprobe runs");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lifetime of 1 s"), "{stderr}");
    assert!(out.stdout.is_empty(), "a result was printed: {out:?}");
}
