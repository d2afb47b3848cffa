//! SIGHUP reloads pacman.conf without dropping a download in flight, and
//! names the changed keys that only a restart applies (none when only the
//! mirrors changed); a bad pacman.conf on reload is refused with a log line
//! and the running one kept; SIGUSR1 writes the peer table to the log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::http;

const BIG: &str = "big-1.0-1-any.pkg.tar.zst";
const BIG_SIZE: usize = 32 * 1024 * 1024;

fn conf_with_mirror(mirror_port: u16) -> String {
    format!("[options]\n[rl]\nServer = http://127.0.0.1:{mirror_port}/$repo/os/$arch\n")
}

fn signal(daemon: &Daemon, sig: &str) {
    let pid = daemon.pid().expect("daemon running").to_string();
    let status = Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The log's lines that say a reload left something for the restart.
fn restart_lines(daemon: &Daemon) -> Vec<String> {
    let log = daemon.log();
    let lines = log.lines().filter(|l| l.contains("take effect at restart"));
    lines.map(str::to_owned).collect()
}

fn reloads(daemon: &Daemon) -> usize {
    daemon.log().matches("reloaded configuration").count()
}

fn redirect_target(daemon: &Daemon) -> String {
    let r = http::get(
        &format!("{}/rl/os/x86_64/miss-1-1-any.pkg.tar.zst", daemon.url()),
        &[],
    );
    assert_eq!(r.status, 307);
    r.header("location").expect("Location").to_owned()
}

#[test]
fn sighup_swaps_mirrors_and_keeps_downloads_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::write(cache.join(BIG), vec![5u8; BIG_SIZE]).expect("write");
    let conf = dir.path().join("pacman.conf");
    std::fs::write(&conf, conf_with_mirror(1111)).expect("write");
    let toml = dir.path().join("pacmeshd.toml");
    std::fs::write(&toml, "pages_lan = false\n").expect("write");
    let daemon = Daemon::start(
        DaemonArgs::new(&conf)
            .cache_dir(&cache)
            .arg("--config")
            .arg(&toml),
    );
    assert!(redirect_target(&daemon).starts_with("http://127.0.0.1:1111/rl/os/x86_64/"));

    // A download in flight: read its head, reload, then read the rest.
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /rl/os/x86_64/{BIG} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = vec![0u8; 64 * 1024];
    stream.read_exact(&mut head).expect("first bytes");
    assert!(head.starts_with(b"HTTP/1.1 200"));

    std::fs::write(&conf, conf_with_mirror(2222)).expect("rewrite");
    signal(&daemon, "-HUP");
    assert_eventually!(
        redirect_target(&daemon).starts_with("http://127.0.0.1:2222/rl/os/x86_64/"),
        Duration::from_secs(5),
        "the new mirror was not taken up after SIGHUP"
    );
    // Only pacman.conf's mirrors changed: nothing is left for a restart.
    assert_eventually!(
        reloads(&daemon) == 1,
        Duration::from_secs(5),
        "no log line for the reload"
    );
    assert_eq!(restart_lines(&daemon), Vec::<String>::new());

    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the rest of the download");
    let header_end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
        + 4;
    assert_eq!(
        head.len() - header_end + rest.len(),
        BIG_SIZE,
        "download cut by the reload"
    );

    // A broken pacman.conf is refused; the running configuration stays.
    std::fs::write(
        &conf,
        "[rl\nServer = http://127.0.0.1:3333/$repo/os/$arch\n",
    )
    .expect("rewrite");
    signal(&daemon, "-HUP");
    assert_eventually!(
        daemon.log().contains("reload failed"),
        Duration::from_secs(5),
        "no log line for the refused reload"
    );
    assert!(redirect_target(&daemon).starts_with("http://127.0.0.1:2222/"));

    // A key of the daemon's own changed: the reload names it.
    std::fs::write(&conf, conf_with_mirror(2222)).expect("rewrite");
    std::fs::write(&toml, "pages_lan = true\n").expect("rewrite");
    signal(&daemon, "-HUP");
    assert_eventually!(
        reloads(&daemon) == 2,
        Duration::from_secs(5),
        "no log line for the second reload"
    );
    let lines = restart_lines(&daemon);
    assert!(
        lines.len() == 1 && lines[0].contains("pages_lan"),
        "the reload did not name pages_lan as waiting for a restart: {lines:?}"
    );

    signal(&daemon, "-USR1");
    assert_eventually!(
        daemon.log().contains("peer table"),
        Duration::from_secs(5),
        "SIGUSR1 wrote no peer table"
    );
}
