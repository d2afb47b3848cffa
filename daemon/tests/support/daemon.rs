//! The real `pacmeshd` binary as a child process on loopback (`--no-mdns`,
//! QUIC on 127.0.0.1), for what must be measured from outside: its
//! resident memory under a hostile client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pacmeshd::identity::NodeId;

use super::wait::eventually_blocking;

pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    pub node_id: NodeId,
    _dir: tempfile::TempDir,
}

pub fn free_tcp() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn free_udp() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr")
}

/// GET `path` over HTTP/1.1 with `Connection: close`; the body on a 200.
pub fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// `pacmeshd` with everything under `dir` (an empty `pacman.conf`, a
/// cache dir, the state and store dirs), HTTP on `http` and QUIC on `quic`
/// (both loopback), `--no-mdns`, stderr dropped; not started.
pub fn command(dir: &Path, http: SocketAddr, quic: SocketAddr) -> Command {
    std::fs::create_dir(dir.join("cache")).expect("cache dir");
    let pacman_conf = dir.join("pacman.conf");
    std::fs::write(&pacman_conf, "[options]\n").expect("pacman.conf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacmeshd"));
    cmd.arg("--pacman-conf")
        .arg(&pacman_conf)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--store-dir")
        .arg(dir.join("store"))
        .args(["--http-listen", &http.to_string()])
        .args(["--quic-listen", &quic.to_string(), "--no-mdns"])
        .stderr(Stdio::null());
    cmd
}

impl Daemon {
    /// Starts the daemon with `args` added, and waits until its status
    /// page answers.
    pub fn start(args: &[&str], mesh_key: Option<&Path>) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, quic) = (free_tcp(), free_udp());
        let mut cmd = command(dir.path(), http, quic);
        cmd.args(args).env("PACMESH_LOG", "warn");
        if let Some(key) = mesh_key {
            cmd.arg("--mesh-key").arg(key);
        }
        let child = cmd.spawn().expect("pacmeshd starts");
        let mut status = None;
        eventually_blocking("the status page answers", Duration::from_secs(20), || {
            status = get(http, "/_pacmesh/status");
            status.is_some()
        });
        let status = status.expect("answered");
        let json: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
        let hex = json["node_id"].as_str().expect("node_id");
        let node_id: NodeId = hex.parse().expect("node id");
        Daemon {
            child,
            http,
            quic,
            node_id,
            _dir: dir,
        }
    }

    /// The cache dir it shares (pacman's, to the daemon).
    pub fn cache_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("cache")
    }

    /// Resident memory now, from `/proc/PID/status` (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
