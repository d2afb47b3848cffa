//! The real pacman through the real `pacmeshd`: the repo's `Server` lines list the daemon
//! first and an nginx mirror second, and the daemon reads that same pacman.conf (so it skips
//! its own line and treats nginx as the real mirror). Proves the sync, the local hit, the
//! redirected miss, resumes from both sources, refusal of bad requests, that files still
//! being written are never served, and a clean stop.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pacmesh_tests::files::sha256_hex;
use tempfile::TempDir;

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::pacman::PacmanRoot;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::upstream::Upstream;
use pacmesh_tests::{http, net};

const REPO: &str = "pmfound";
/// How many bytes of `charlie` an interrupted download left in pacman's `.part`.
const RESUME_AT: u64 = 1_000_000;
const SOON: Duration = Duration::from_secs(5);

fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("alpha", "1.0-1", 64 * 1024),
            PkgSpec::new("bravo", "2.0-3", 64 * 1024),
            PkgSpec::new("charlie", "3.1-1", 4 * 1024 * 1024),
            PkgSpec::new("delta", "0.9-2", 1024 * 1024),
        ],
    )
}

/// One host: nginx mirror, pacman root (daemon first, mirror second), and `pacmeshd`
/// sharing pacman's CacheDir (from the conf) plus an extra `--cache-dir`.
struct Host {
    /// First, so it is stopped before the dirs it shares are removed.
    daemon: Daemon,
    repo: FixtureRepo,
    upstream: Upstream,
    pacman: PacmanRoot,
    /// The extra dir given with `--cache-dir` (not pacman's CacheDir, so pacman must download).
    shared: TempDir,
    /// `http://127.0.0.1:PORT`: the address pacman.conf names for the daemon.
    url: String,
    port: u16,
}

impl Host {
    /// `prepare(shared_dir, pacman)` runs before the daemon starts.
    fn start(prepare: impl FnOnce(&Path, &PacmanRoot)) -> Host {
        let repo = fixture();
        let upstream = Upstream::start(repo.root());
        let shared = tempfile::Builder::new()
            .prefix("pacmesh-shared-")
            .tempdir()
            .expect("creating the shared cache dir");
        // The harness picks its own port for the daemon only when starting it, but pacman.conf
        // must name the daemon before then: give the daemon a second, known listen address.
        let port = net::free_tcp_port();
        let url = format!("http://127.0.0.1:{port}");
        let pacman = PacmanRoot::new(
            REPO,
            &[format!("{url}/$repo/os/$arch"), upstream.server_url()],
        );
        prepare(shared.path(), &pacman);
        let daemon = Daemon::start(
            DaemonArgs::new(&pacman.conf_path())
                .cache_dir(shared.path())
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{port}")),
        );
        assert!(
            net::port_answers(net::loopback(port)),
            "pacmeshd does not listen on {url}"
        );
        Host {
            repo,
            upstream,
            pacman,
            shared,
            daemon,
            url,
            port,
        }
    }

    fn pkg(&self, name: &str) -> &FixturePackage {
        self.repo.package(name)
    }

    /// The daemon URL of `file` in this repo.
    fn file_url(&self, file: &str) -> String {
        format!("{}/{REPO}/os/{}/{file}", self.url, self.repo.arch())
    }

    /// The mirror URL the daemon should redirect `file` to.
    fn mirror_url(&self, file: &str) -> String {
        format!(
            "{}/{REPO}/os/{}/{file}",
            self.upstream.url(),
            self.repo.arch()
        )
    }

    fn stat(&self, group: &str, key: &str) -> u64 {
        let status = self.daemon.status();
        status[group][key]
            .as_u64()
            .unwrap_or_else(|| panic!("status has no number {group}.{key}: {status:#}"))
    }

    fn cache_files(&self) -> u64 {
        self.stat("cache", "files")
    }

    /// The daemon's finished-request log lines for `file`, e.g.
    /// `pacmesh::request: done method=GET path=/…/file client=… source="local" status=206 bytes=…`.
    fn request_log(&self, file: &str) -> Vec<String> {
        self.daemon
            .log()
            .lines()
            .filter(|l| l.contains(&format!("/{file} ")) && l.contains("status="))
            .map(str::to_string)
            .collect()
    }

    /// Waits for a finished-request line for `file` that `matches` (the
    /// daemon writes its log in batches, a few ms after the response).
    fn assert_logged(&self, file: &str, what: &str, matches: impl Fn(&str) -> bool) {
        assert_eventually!(
            self.request_log(file).iter().any(|l| matches(l)),
            SOON,
            "no {what} logged for {file}: {:?}",
            self.request_log(file)
        );
    }

    /// Runs pacman and fails on any `error:` line too: a daemon answering 404 or 5xx still
    /// lets pacman succeed through its next Server, but prints an error.
    fn pacman_ok(&self, args: &[&str]) {
        let out = self.pacman.run_ok(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("error:"),
            "pacman {args:?} printed an error:\n{text}"
        );
    }
}

/// The value of `key=` in a log line.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Writes the first `n` bytes of `pkg` as `<file>.part` in `dir`, as an interrupted download leaves it.
fn write_part(pkg: &FixturePackage, dir: &Path, n: u64) -> PathBuf {
    let bytes = std::fs::read(pkg.path()).expect("reading the package");
    let part = dir.join(format!("{}.part", pkg.file_name()));
    std::fs::write(&part, &bytes[..usize::try_from(n).expect("small")]).expect("writing .part");
    part
}

/// The installed package matches the fixture and pacman kept a byte-exact copy.
fn assert_installed(host: &Host, name: &str) {
    let pkg = host.pkg(name);
    assert_eq!(
        host.pacman.installed_version(name).as_deref(),
        Some(pkg.version()),
        "{name} is not installed at its repo version"
    );
    let cached = std::fs::read(host.pacman.cache_dir().join(pkg.file_name()))
        .expect("pacman keeps the downloaded package in its CacheDir");
    assert_eq!(
        sha256_hex(&cached),
        pkg.sha256(),
        "{name} in pacman's cache"
    );
    let blob = host
        .pacman
        .root_dir()
        .join(format!("usr/share/{name}/blob"));
    assert!(blob.is_file(), "{} not installed", blob.display());
}

#[test]
fn sync_goes_through_the_redirect() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|_, _| {});
    let db = format!("{REPO}.db");

    host.pacman_ok(&["-Sy"]);

    assert!(
        host.pacman.db_path().join("sync").join(&db).is_file(),
        "pacman -Sy left no {db}"
    );
    assert_eventually!(
        host.upstream
            .requests_for(&db)
            .iter()
            .any(|r| r.method == "GET" && r.status == 200),
        SOON,
        "upstream never served {db}: {:?}",
        host.upstream.requests()
    );
    assert!(host.stat("requests", "mirror_redirect") >= 1);
    assert_eq!(host.stat("requests", "not_found"), 0);
    host.assert_logged(&db, "307", |l| log_field(l, "status") == Some("307"));
}

#[test]
fn cached_package_is_served_by_pacmeshd() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|shared, _| {
        fixture().package("alpha").copy_into(shared);
    });
    let pkg = host.pkg("alpha");
    assert_eq!(host.cache_files(), 1, "the startup scan found alpha");

    host.pacman_ok(&["-Sy", "alpha"]);

    assert_installed(&host, "alpha");
    assert!(
        host.upstream.requests_for(pkg.file_name()).is_empty(),
        "the mirror was asked for alpha: {:?}",
        host.upstream.requests()
    );
    assert!(host.stat("requests", "local") >= 1);
    assert_eventually!(
        host.stat("bytes", "local") >= pkg.size(),
        SOON,
        "bytes.local {} < {}",
        host.stat("bytes", "local"),
        pkg.size()
    );
    let size = pkg.size().to_string();
    host.assert_logged(pkg.file_name(), "full 200", |l| {
        log_field(l, "status") == Some("200") && log_field(l, "bytes") == Some(size.as_str())
    });
}

#[test]
fn uncached_package_is_redirected_to_the_mirror() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|_, _| {});
    let pkg = host.pkg("bravo");

    let direct = http::get(&host.file_url(pkg.file_name()), &[]);
    assert_eq!(direct.status, 307);
    assert_eq!(
        direct.header("location"),
        Some(host.mirror_url(pkg.file_name()).as_str())
    );
    host.pacman_ok(&["-Sy"]);
    let redirects_after_sync = host.stat("requests", "mirror_redirect");
    host.pacman_ok(&["-S", "bravo"]);

    assert_installed(&host, "bravo");
    assert!(host.stat("requests", "mirror_redirect") > redirects_after_sync);
    assert_eq!(host.stat("requests", "local"), 0);
    assert_eventually!(host.upstream.requests_for(pkg.file_name()).len() == 1, SOON);
    let got = &host.upstream.requests_for(pkg.file_name())[0];
    assert_eq!((got.method.as_str(), got.status), ("GET", 200), "{got:?}");
    assert!(
        got.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("pacman/")),
        "the redirect was not followed by pacman: {got:?}"
    );
    host.assert_logged(pkg.file_name(), "307", |l| {
        log_field(l, "status") == Some("307")
    });
    // Once pacman has renamed its download into its (shared) CacheDir, this host serves it.
    assert_eventually!(
        http::get(&host.file_url(pkg.file_name()), &[]).status == 200,
        SOON,
        "bravo in pacman's CacheDir is not served"
    );
}

#[test]
fn resume_from_a_local_copy_gets_206() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|shared, pacman| {
        let pkg = fixture().package("charlie").clone();
        pkg.copy_into(shared);
        write_part(&pkg, pacman.cache_dir(), RESUME_AT);
    });
    let pkg = host.pkg("charlie");
    // pacman's own CacheDir is shared too, but its `.part` is not a servable file.
    assert_eq!(host.cache_files(), 1);

    host.pacman_ok(&["-Sy", "charlie"]);

    assert_installed(&host, "charlie");
    let part = host
        .pacman
        .cache_dir()
        .join(format!("{}.part", pkg.file_name()));
    assert!(!part.exists(), "pacman left {}", part.display());
    let rest = (pkg.size() - RESUME_AT).to_string();
    host.assert_logged(pkg.file_name(), "206 of the remaining bytes", |l| {
        log_field(l, "status") == Some("206") && log_field(l, "bytes") == Some(rest.as_str())
    });
    assert!(
        host.upstream.requests_for(pkg.file_name()).is_empty(),
        "the mirror was asked for charlie: {:?}",
        host.upstream.requests()
    );
    assert!(host.stat("bytes", "local") >= pkg.size() - RESUME_AT);
}

#[test]
fn resume_of_an_uncached_package_is_redirected_with_its_range() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|_, pacman| {
        write_part(fixture().package("charlie"), pacman.cache_dir(), RESUME_AT);
    });
    let pkg = host.pkg("charlie");
    assert_eq!(host.cache_files(), 0);

    host.pacman_ok(&["-Sy", "charlie"]);

    assert_installed(&host, "charlie");
    host.assert_logged(pkg.file_name(), "307", |l| {
        log_field(l, "status") == Some("307")
    });
    assert_eventually!(
        !host.upstream.requests_for(pkg.file_name()).is_empty(),
        SOON
    );
    let got = host.upstream.requests_for(pkg.file_name());
    let want = format!("bytes={RESUME_AT}-");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].range.as_deref(), Some(want.as_str()), "{got:?}");
    assert_eq!(
        (got[0].status, got[0].bytes),
        (206, pkg.size() - RESUME_AT),
        "{got:?}"
    );
}

/// The status code of a raw HTTP answer, if it is one.
fn status_of(answer: &str) -> Option<u16> {
    let rest = answer.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[test]
fn bad_requests_get_4xx_and_good_ones_still_work() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|shared, _| {
        fixture().package("alpha").copy_into(shared);
    });
    let bad_before = host.stat("requests", "bad_request");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let long = format!("/{}", "a".repeat(10 * 1024));
    let probes: Vec<(&str, String)> = vec![
        ("literal ..", get("/../../etc/passwd")),
        ("encoded ..", get("/%2e%2e/%2e%2e/etc/passwd")),
        (
            "encoded ../ in a name",
            get("/core/os/x86_64/%2e%2e%2fpasswd"),
        ),
        ("10 KB path", get(&long)),
        (
            "garbage method",
            "FOO / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        ),
        ("not HTTP", "this is not http at all\r\n\r\n".into()),
    ];
    // Probes the router sees (the last one is refused by the HTTP parser itself).
    let routed = 5;
    for (what, request) in &probes {
        let started = Instant::now();
        let answer = http::raw(net::loopback(host.port), request.as_bytes());
        let took = started.elapsed();
        let code = status_of(&answer);
        assert!(
            code.is_some_and(|c| (400..500).contains(&c)),
            "{what}: expected a 4xx, got {code:?} after {took:?}:\n{answer}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{what}: answered after {took:?}"
        );
        assert!(!answer.contains("root:"), "{what} leaked a file:\n{answer}");
    }
    assert!(
        host.stat("requests", "bad_request") >= bad_before + routed,
        "bad_request {} did not count the {routed} probes (was {bad_before})",
        host.stat("requests", "bad_request")
    );

    let pkg = host.pkg("alpha");
    let good = http::get(&host.file_url(pkg.file_name()), &[]);
    assert_eq!(good.status, 200);
    assert_eq!(sha256_hex(&good.body), pkg.sha256());
    assert_eq!(host.stat("requests", "local"), 1);
}

#[test]
fn files_being_written_and_part_files_are_never_served() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let host = Host::start(|_, _| {});
    let (alpha, bravo, delta) = (host.pkg("alpha"), host.pkg("bravo"), host.pkg("delta"));
    let shared = host.shared.path();

    // A complete download under pacman's temporary name.
    let part = write_part(bravo, shared, bravo.size());
    let part_name = part
        .file_name()
        .expect("a .part has a name")
        .to_string_lossy()
        .into_owned();
    // A package file still being written: half of it, kept open.
    let delta_bytes = std::fs::read(delta.path()).expect("reading delta");
    let half = delta_bytes.len() / 2;
    let mut writing =
        std::fs::File::create(shared.join(delta.file_name())).expect("creating delta");
    writing
        .write_all(&delta_bytes[..half])
        .expect("writing half");
    writing.flush().expect("flushing");
    // A complete file after both: once the watcher has seen it, it has seen them too.
    alpha.copy_into(shared);
    assert_eventually!(host.cache_files() >= 1, SOON, "alpha never indexed");
    assert_eq!(host.cache_files(), 1, "only alpha is complete");

    let early = http::get(&host.file_url(delta.file_name()), &[]);
    assert_eq!(
        early.status,
        307,
        "a half-written file must not be served: {} bytes",
        early.body.len()
    );
    assert_eq!(
        early.header("location"),
        Some(host.mirror_url(delta.file_name()).as_str())
    );
    let head = http::head(&host.file_url(delta.file_name()), &[]);
    assert_eq!(head.status, 307);
    for url in [
        host.file_url(&part_name),
        format!("{}/{part_name}", host.url),
    ] {
        let r = http::get(&url, &[]);
        assert!(
            !(200..300).contains(&r.status),
            "{url} answered {} with {} bytes",
            r.status,
            r.body.len()
        );
    }
    assert_eq!(
        http::get(&host.file_url(bravo.file_name()), &[]).status,
        307,
        "bravo is only there as a .part"
    );

    writing
        .write_all(&delta_bytes[half..])
        .expect("writing the rest");
    drop(writing);
    assert_eventually!(
        http::get(&host.file_url(delta.file_name()), &[]).status == 200,
        Duration::from_secs(3),
        "delta not served after it was closed"
    );
    let full = http::get(&host.file_url(delta.file_name()), &[]);
    assert_eq!(full.body.len() as u64, delta.size());
    assert_eq!(sha256_hex(&full.body), delta.sha256());
    assert_eq!(host.cache_files(), 2, "alpha and delta; never the .part");
}

#[test]
fn sigterm_stops_with_status_0() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let mut host = Host::start(|shared, _| {
        fixture().package("alpha").copy_into(shared);
    });
    let pkg = host.pkg("alpha").clone();
    assert_eq!(http::get(&host.file_url(pkg.file_name()), &[]).status, 200);

    let status = host.daemon.stop();

    assert_eq!(status.code(), Some(0), "pacmeshd exited {status}");
    assert!(
        !net::port_answers(net::loopback(host.port)),
        "{} still answers after exit",
        host.url
    );
}
