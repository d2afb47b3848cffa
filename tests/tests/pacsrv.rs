//! `pacsrv` as a user runs it: the real binary, the real pacman, an nginx mirror and the real
//! `pacmeshd`. The pacman.conf lists only the mirror; pacsrv must put the daemon first when it
//! answers, run plain pacman (with one notice line) when it does not, hand back pacman's exit
//! status, and rewrite its generated pacman.conf only when an input changed.
//!
//! The last tests need neither root nor pacman: `PACMAN` points at a shell script and a
//! stand-in answers the status probe, to show that pacsrv *becomes* the program (same pid,
//! same exit status, same signal) with exactly the rewritten arguments.
//!
//! Needs `target/debug/pacsrv` and `pacmeshd`: `cargo build -p pacsrv -p pacmeshd` first.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::fixtures::{FixtureRepo, PkgSpec};
use pacmesh_tests::pacman::PacmanRoot;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::process::{describe, show_command};
use pacmesh_tests::upstream::Upstream;
use pacmesh_tests::{net, workspace};

const REPO: &str = "pmpacsrv";
const SOON: Duration = Duration::from_secs(5);
/// The start of the line pacsrv prints when the daemon does not answer.
const DOWN_NOTICE: &str = "pacsrv: pacmeshd is not answering at ";

fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("hello", "1.0-1", 64 * 1024),
            PkgSpec::new("world", "2.0-1", 128 * 1024),
        ],
    )
}

fn pacsrv_bin() -> PathBuf {
    let bin = workspace::bin_path("pacsrv");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p pacsrv -p pacmeshd` first",
        bin.display()
    );
    bin
}

/// `pacsrv` with a clean environment of its own: its cache dir, the daemon at `daemon_url`,
/// and no `PACMAN`/`PACSRV_INCLUDE` inherited from whoever runs the tests.
fn pacsrv(cache: &Path, daemon_url: &str, args: impl IntoIterator<Item = OsString>) -> Command {
    let mut cmd = Command::new(pacsrv_bin());
    cmd.args(args)
        .env("PACSRV_CACHE_DIR", cache)
        .env("PACSRV_DAEMON_URL", daemon_url)
        .env_remove("PACMAN")
        .env_remove("PACSRV_INCLUDE")
        .stdin(Stdio::null());
    cmd
}

/// A URL where nothing listens (a port that was free a moment ago).
fn dead_daemon_url() -> String {
    format!("http://127.0.0.1:{}", net::free_tcp_port())
}

fn run(cmd: &mut Command) -> Output {
    pacmesh_tests::process::run(cmd)
}

fn run_ok(cmd: &mut Command, pacman: &PacmanRoot) -> Output {
    let out = run(cmd);
    if !out.status.success() {
        panic!("{}", pacman.report(&out, &show_command(cmd)));
    }
    out
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sorted names in `dir` (empty if it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    e.expect("a dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The one generated pacman.conf in `cache`.
fn generated_conf(cache: &Path) -> PathBuf {
    let confs: Vec<String> = listing(cache)
        .into_iter()
        .filter(|n| n.starts_with("pacman-") && n.ends_with(".conf"))
        .collect();
    assert_eq!(
        confs.len(),
        1,
        "generated confs in {}: {confs:?}",
        cache.display()
    );
    cache.join(&confs[0])
}

/// What `pacmeshd --print-include` says, for a daemon on `port` instead of the default.
fn print_include_for(port: u16) -> String {
    let out = pacmesh_tests::process::run_ok(Command::new(Daemon::binary()).arg("--print-include"));
    let text = String::from_utf8(out.stdout).expect("the include file is UTF-8");
    assert!(text.contains("127.0.0.1:15680"), "{text}");
    text.replace("127.0.0.1:15680", &format!("127.0.0.1:{port}"))
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a temp dir")
}

#[test]
fn pacsrv_installs_through_the_running_daemon() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let upstream = Upstream::start(repo.root());
    let shared = temp_dir("pacmesh-shared-");
    let hello = repo.package("hello");
    hello.copy_into(shared.path());
    let pacman = PacmanRoot::new(REPO, &[upstream.server_url()]);
    let user_conf = std::fs::read_to_string(pacman.conf_path()).expect("reading pacman.conf");
    let daemon = Daemon::start(DaemonArgs::new(&pacman.conf_path()).cache_dir(shared.path()));
    let cache = temp_dir("pacmesh-pacsrv-");

    let out = run_ok(
        &mut pacsrv(
            cache.path(),
            &daemon.url(),
            pacman.pacman_args(&["-Sy", "hello"]),
        ),
        &pacman,
    );

    assert_eq!(pacman.installed_version("hello").as_deref(), Some("1.0-1"));
    assert!(
        !stderr_lines(&out).iter().any(|l| l.starts_with("pacsrv:")),
        "pacsrv spoke although the daemon answered:\n{}",
        describe(&out, "pacsrv")
    );
    // The real pacman read pacsrv's include without a word: `Server` for pacman 6.0 (which
    // warns about a `CacheServer` it does not know, and ignores it), `CacheServer` from 6.1.
    assert!(
        !stderr_lines(&out)
            .iter()
            .any(|l| l.starts_with("warning: config file")),
        "pacman did not take the generated config:\n{}",
        describe(&out, "pacsrv")
    );
    // hello came from the daemon's cache, the database through its redirect.
    assert!(
        upstream.requests_for(hello.file_name()).is_empty(),
        "the mirror was asked for hello: {:?}",
        upstream.requests()
    );
    let status = daemon.status();
    assert!(
        status["requests"]["local"].as_u64() >= Some(1),
        "{status:#}"
    );
    assert!(
        status["requests"]["mirror_redirect"].as_u64() >= Some(1),
        "{status:#}"
    );

    // A package the daemon does not have is redirected to the mirror.
    run_ok(
        &mut pacsrv(
            cache.path(),
            &daemon.url(),
            pacman.pacman_args(&["-S", "world"]),
        ),
        &pacman,
    );
    assert!(pacman.installed("world"));
    let world = repo.package("world");
    assert_eventually!(
        upstream
            .requests_for(world.file_name())
            .iter()
            .any(|r| r.status == 200),
        SOON,
        "the mirror never served world: {:?}",
        upstream.requests()
    );
    assert!(daemon.status()["requests"]["mirror_redirect"].as_u64() >= Some(2));

    // No /etc/pacman.d/pacmesh fits a daemon on a test port: pacsrv wrote its own include,
    // exactly what pacmeshd prints for that port, and named it first in the repo.
    let include = cache
        .path()
        .join(format!("pacmesh-include-{}", daemon.port()));
    assert_eq!(
        std::fs::read_to_string(&include).expect("pacsrv's include file"),
        print_include_for(daemon.port())
    );
    let generated = std::fs::read_to_string(generated_conf(cache.path())).expect("GENERATED");
    assert!(
        generated.contains(&format!(
            "\n[{REPO}]\nInclude = {}\nServer = {}\n",
            include.display(),
            upstream.server_url()
        )),
        "{generated}"
    );
    assert_eq!(
        std::fs::read_to_string(pacman.conf_path()).expect("reading pacman.conf"),
        user_conf,
        "the user's pacman.conf was changed"
    );
}

#[test]
fn without_a_daemon_pacsrv_runs_plain_pacman_and_says_so_once() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let upstream = Upstream::start(repo.root());
    let pacman = PacmanRoot::new(REPO, &[upstream.server_url()]);
    let plain = PacmanRoot::new(REPO, &[upstream.server_url()]);
    let cache = temp_dir("pacmesh-pacsrv-");
    let url = dead_daemon_url();

    let out = run_ok(
        &mut pacsrv(cache.path(), &url, pacman.pacman_args(&["-Sy", "hello"])),
        &pacman,
    );
    let expected = plain.run_ok(&["-Sy", "hello"]);

    assert!(pacman.installed("hello"));
    let hello = repo.package("hello");
    assert_eventually!(
        upstream.requests_for(hello.file_name()).len() == 2,
        SOON,
        "both installs should come from the mirror: {:?}",
        upstream.requests()
    );
    // One notice line, then exactly what pacman itself printed.
    let lines = stderr_lines(&out);
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("{DOWN_NOTICE}{url} "))),
        "{}",
        describe(&out, "pacsrv")
    );
    assert_eq!(
        lines[1..],
        stderr_lines(&expected)[..],
        "{}",
        describe(&out, "pacsrv")
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(DOWN_NOTICE));
    assert_eq!(
        listing(cache.path()),
        Vec::<String>::new(),
        "nothing is generated"
    );
}

#[test]
fn pacsrv_exits_with_pacmans_status() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let upstream = Upstream::start(repo.root());
    let pacman = PacmanRoot::new(REPO, &[upstream.server_url()]);
    let daemon = Daemon::start(DaemonArgs::new(&pacman.conf_path()));
    let cache = temp_dir("pacmesh-pacsrv-");
    let args = ["-Sy", "nosuchpkg"];

    let plain = pacman.run(&args);
    let up = run(&mut pacsrv(
        cache.path(),
        &daemon.url(),
        pacman.pacman_args(&args),
    ));
    let down = run(&mut pacsrv(
        cache.path(),
        &dead_daemon_url(),
        pacman.pacman_args(&args),
    ));

    assert!(plain.status.code().is_some_and(|c| c != 0), "{plain:?}");
    assert_eq!(
        up.status.code(),
        plain.status.code(),
        "{}",
        describe(&up, "daemon up")
    );
    assert_eq!(
        down.status.code(),
        plain.status.code(),
        "{}",
        describe(&down, "daemon down")
    );
    for out in [&up, &down] {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("target not found: nosuchpkg"),
            "{}",
            describe(out, "pacsrv")
        );
    }
}

#[test]
fn generated_conf_is_rewritten_only_when_an_included_file_changes() {
    if !prereq::require(WHOLE_SYSTEM_TOOLS) {
        return;
    }
    let repo = fixture();
    let upstream = Upstream::start(repo.root());
    let etc = temp_dir("pacmesh-etc-");
    let mirrorlist = etc.path().join("mirrorlist");
    std::fs::write(&mirrorlist, format!("Server = {}\n", upstream.server_url()))
        .expect("writing the mirrorlist");
    let mut pacman = PacmanRoot::new(REPO, &[]);
    pacman.add_repo_line(&format!("Include = {}", mirrorlist.display()));
    let daemon = Daemon::start(DaemonArgs::new(&pacman.conf_path()));
    let cache = temp_dir("pacmesh-pacsrv-");
    let sync = || {
        run_ok(
            &mut pacsrv(cache.path(), &daemon.url(), pacman.pacman_args(&["-Sy"])),
            &pacman,
        );
    };
    let snapshot = |path: &Path| {
        let meta = std::fs::metadata(path).expect("GENERATED exists");
        let text = std::fs::read_to_string(path).expect("reading GENERATED");
        (meta.ino(), meta.modified().expect("mtime"), text)
    };

    sync();
    let generated = generated_conf(cache.path());
    let files = listing(cache.path());
    assert_eq!(files.len(), 2, "GENERATED and the include file: {files:?}");
    let first = snapshot(&generated);
    assert!(
        first
            .2
            .contains(&format!("Include = {}", mirrorlist.display())),
        "{}",
        first.2
    );

    // Unchanged inputs, even with a new mtime: the same file, untouched.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::File::options()
        .write(true)
        .open(&mirrorlist)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .expect("touching the mirrorlist");
    sync();
    assert_eq!(snapshot(&generated), first, "GENERATED was rewritten");
    assert_eq!(listing(cache.path()), files);

    // An edit to the included mirrorlist: a new file, renamed into place.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&mirrorlist)
        .and_then(|mut f| f.write_all(b"# edited\n"))
        .expect("editing the mirrorlist");
    sync();
    let second = snapshot(&generated);
    assert_ne!(second.0, first.0, "GENERATED was not replaced");
    assert_ne!(second.2, first.2, "its cache key did not change");
    assert_eq!(listing(cache.path()), files, "no temp file is left");
    assert_eq!(
        second
            .2
            .lines()
            .filter(|l| l.starts_with("# pacsrv-key:"))
            .count(),
        1
    );
}

/// A stand-in for pacmeshd that answers every request with 200 (only the probe asks).
fn stand_in_daemon() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a stand-in daemon");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        }
    });
    url
}

/// A `PACMAN` that prints its pid and arguments (one per line), then runs `then`.
fn fake_pacman(dir: &Path, then: &str) -> PathBuf {
    let path = dir.join("fake-pacman");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"pid $$\"\nfor a in \"$@\"; do echo \"$a\"; done\n{then}\n"),
    )
    .expect("writing the fake pacman");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Spawns `cmd` and returns its pid with its output.
fn spawn(cmd: &mut Command) -> (u32, Output) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pacsrv");
    let pid = child.id();
    (pid, child.wait_with_output().expect("waiting for pacsrv"))
}

#[test]
fn pacsrv_becomes_pacman_with_the_config_replaced() {
    let dir = temp_dir("pacmesh-pacsrv-fake-");
    let conf = dir.path().join("pacman.conf");
    std::fs::write(
        &conf,
        "[options]\n\n[core]\nServer = http://mirror.invalid/$repo\n",
    )
    .expect("writing pacman.conf");
    let cache = dir.path().join("cache");
    let fake = fake_pacman(dir.path(), "exit 7");
    let url = stand_in_daemon();
    let user_args = [
        "-S",
        "b",
        "--config",
        conf.to_str().expect("UTF-8"),
        "a",
        "--noconfirm",
    ];

    let (pid, out) =
        spawn(pacsrv(&cache, &url, user_args.map(OsString::from)).env("PACMAN", &fake));

    assert_eq!(out.status.code(), Some(7), "{}", describe(&out, "pacsrv"));
    let generated = generated_conf(&cache);
    let expected = format!(
        "pid {pid}\n--config\n{}\n-S\nb\na\n--noconfirm\n",
        generated.display()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "same pid, rewritten args"
    );
    assert!(out.stderr.is_empty(), "{}", describe(&out, "pacsrv"));
    let port = url.rsplit_once(':').expect("a port").1;
    let text = std::fs::read_to_string(&generated).expect("GENERATED");
    assert!(
        text.contains(&format!(
            "[core]\nInclude = {}/pacmesh-include-{port}\nServer = http://mirror.invalid/$repo\n",
            cache.display()
        )),
        "{text}"
    );
}

#[test]
fn without_a_daemon_pacsrv_becomes_pacman_with_the_args_unchanged() {
    let dir = temp_dir("pacmesh-pacsrv-fake-");
    let cache = dir.path().join("cache");
    let fake = fake_pacman(dir.path(), "kill -TERM $$");
    let url = dead_daemon_url();

    let (pid, out) = spawn(
        pacsrv(
            &cache,
            &url,
            ["-Qi", "--config", "/nonexistent.conf", "x"].map(OsString::from),
        )
        .env("PACMAN", &fake),
    );

    assert_eq!(
        out.status.signal(),
        Some(15),
        "{}",
        describe(&out, "pacsrv")
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("pid {pid}\n-Qi\n--config\n/nonexistent.conf\nx\n")
    );
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{DOWN_NOTICE}{url} ")),
        "{lines:?}"
    );
    assert!(!cache.exists(), "nothing is generated without a daemon");
}

#[test]
fn pacsrv_help_is_its_own_and_pacman_h_is_pacmans() {
    let dir = temp_dir("pacmesh-pacsrv-fake-");
    let fake = fake_pacman(dir.path(), "exit 0");
    let url = dead_daemon_url();
    for args in [&["--help"][..], &["-S", "--pacsrv-help"]] {
        let (_, out) =
            spawn(pacsrv(dir.path(), &url, args.iter().map(OsString::from)).env("PACMAN", &fake));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", describe(&out, "pacsrv --help"));
        assert!(
            text.contains("PACSRV_DAEMON_URL") && !text.contains("pid "),
            "{text}"
        );
    }
    for args in [&["-h"][..], &["-S", "--help"]] {
        let (pid, out) =
            spawn(pacsrv(dir.path(), &url, args.iter().map(OsString::from)).env("PACMAN", &fake));
        let mut expected = format!("pid {pid}\n");
        for a in args {
            expected.push_str(a);
            expected.push('\n');
        }
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
    }
}
