//! The real binary tells systemd it is ready only once pacman can be
//! served, says so when it stops, and feeds systemd's watchdog when asked
//! to (and only then).
#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

mod support;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use support::daemon::{command, free_tcp, get};

/// QUIC on any free loopback port (this test never links).
const ANY_QUIC: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

#[test]
fn ready_after_the_port_answers_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let http = free_tcp();
    let mut child = command(dir.path(), http, SocketAddr::from(ANY_QUIC))
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Checked right when READY arrives: the port must already answer.
    let answered = get(http, "/_pacmesh/status").is_some();
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first message {first:?}"
    );
    assert!(first.contains("STATUS="), "{first:?}");
    assert!(answered, "READY=1 came before the HTTP port answered");

    rustix_kill(child.id());
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

fn rustix_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts the daemon with `NOTIFY_SOCKET` and the watchdog variables
/// `env`; returns it and the socket, after `READY=1`.
fn start_notified(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, UnixDatagram) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = command(dir, free_tcp(), SocketAddr::from(ANY_QUIC));
    cmd.env("NOTIFY_SOCKET", &socket_path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 10 s");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    (child, socket)
}

/// Waits for `n` `WATCHDOG=1` on `socket` (each within 2 s); how long
/// they took.
fn pings(socket: &UnixDatagram, n: usize) -> Duration {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 512];
    let started = std::time::Instant::now();
    let mut pings = 0;
    while pings < n {
        let got = socket.recv(&mut buf).expect("WATCHDOG=1 within 2 s");
        if &buf[..got] == b"WATCHDOG=1" {
            pings += 1;
        }
    }
    started.elapsed()
}

#[test]
fn the_watchdog_is_fed_while_the_runtime_runs() {
    let dir = tempfile::tempdir().unwrap();
    // A 400 ms watchdog: a ping every 200 ms.
    let (mut child, socket) = start_notified(dir.path(), &[("WATCHDOG_USEC", "400000")]);
    let took = pings(&socket, 3);
    assert!(took < Duration::from_secs(3), "3 pings took {took:?}");
    rustix_kill(child.id());
    child.wait().unwrap();
}

#[test]
fn no_watchdog_pings_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    // systemd's variables meant for another process (inherited): ignored.
    let (mut child, socket) = start_notified(
        dir.path(),
        &[("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")],
    );
    // The clock: a daemon started after it with the same watchdog for
    // itself. Once that one pinged 3 times (one at once, then every 200 ms),
    // the first would have pinged too.
    let control_dir = tempfile::tempdir().unwrap();
    let (mut control, control_socket) =
        start_notified(control_dir.path(), &[("WATCHDOG_USEC", "400000")]);
    pings(&control_socket, 3);
    // Stopped now, its next message is its first since READY.
    rustix_kill(child.id());
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "STOPPING=1",
        "a message before STOPPING=1"
    );
    child.wait().unwrap();
    rustix_kill(control.id());
    control.wait().unwrap();
}
