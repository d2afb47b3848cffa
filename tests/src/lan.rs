//! A LAN of "hosts" for whole-system tests: Linux network namespaces on one bridge, with the
//! real `pacmeshd` started inside them.
//!
//! [`Lan::new`]`(n)` makes a bridge in a namespace of its own (`pml-<pid>-<k>-br`) and `n` host
//! namespaces (`pml-<pid>-<k>-h<i>`), each joined to the bridge by a veth pair (`eth0` in the
//! host) and holding 10.X.Y.(i+1)/24 — the only addresses made, and only inside the hosts; no
//! route leaves the LAN. `lo` is up everywhere, so each host has its own 127.0.0.1 and every
//! daemon can listen on 127.0.0.1:15680. The bridge floods multicast (snooping off), so mDNS
//! on 224.0.0.251:5353 reaches every host.
//!
//! Dropping the [`Lan`] — also while a test panics — kills every process left in its
//! namespaces and deletes them. Namespaces left by crashed runs (`pml-<pid>-…` of a pid that
//! no longer runs) are removed by the next [`Lan::new`].
//!
//! The test process stays in the root namespace; it reaches a daemon's HTTP (on the host's
//! loopback) through `pacmesh-netprobe get`, run inside the host ([`Host::http_get`]).
//!
//! ```no_run
//! use pacmesh_tests::{daemon::DaemonArgs, lan::Lan, prereq};
//!
//! if !prereq::require(Lan::TOOLS) {
//!     return;
//! }
//! let lan = Lan::new(2);
//! let a = lan.host(0).start_daemon(DaemonArgs::default());
//! let b = lan.host(1).start_daemon(DaemonArgs::default());
//! assert_ne!(a.status()["node_id"], b.status()["node_id"]);
//! ```

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::daemon::{Daemon, DaemonArgs};
use crate::http::Response;
use crate::pacman::PacmanRoot;
use crate::process::{describe, run_ok, show_command};

/// The port pacmeshd uses for HTTP (on each host's loopback) and QUIC (on its LAN address).
pub const PORT: u16 = 15680;
/// The pacman `Server` value naming the host's own daemon: every host has its own loopback,
/// so one pacman.conf line fits all hosts.
pub const DAEMON_SERVER_URL: &str = "http://127.0.0.1:15680/$repo/os/$arch";
/// The multicast group mDNS uses.
pub const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

const PREFIX: &str = "pml-";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises namespace creation and removal: the first `ip netns add` of a boot mounts
/// /run/netns, and two at once can race on it.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

fn netns_lock() -> std::sync::MutexGuard<'static, ()> {
    NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `pacmesh-netprobe` helper binary (built with this package's bins).
pub fn netprobe_path() -> PathBuf {
    crate::workspace::bin_path("pacmesh-netprobe")
}

/// A bridge and `n` host namespaces on it. See the module docs.
pub struct Lan {
    prefix: String,
    bridge: String,
    hosts: Vec<Host>,
    /// Every namespace made so far, bridge first: what [`Drop`] removes.
    made: Vec<String>,
}

/// One host of a [`Lan`]: a network namespace with `eth0` on the bridge.
pub struct Host {
    name: String,
    ip: Ipv4Addr,
    index: usize,
}

impl Lan {
    /// What [`Lan`] needs on `PATH` (with root): pass to [`crate::prereq::require`].
    pub const TOOLS: &'static [&'static str] = &["ip"];

    /// Builds the LAN; panics (after removing what it made) if a step fails.
    pub fn new(n: usize) -> Lan {
        assert!(
            (1..=250).contains(&n),
            "a /24 LAN holds 1..=250 hosts, not {n}"
        );
        let probe = netprobe_path();
        assert!(
            probe.is_file(),
            "{} not found: run `cargo build --workspace --bins` first",
            probe.display()
        );
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("{PREFIX}{pid}-{k}");
        // 10.X.Y.0/24 from pid and counter: distinct for the LANs of one run, and unlikely to
        // match another run's (each LAN is sealed in its own bridge anyway).
        let v = pid
            .wrapping_mul(64)
            .wrapping_add(u32::try_from(k).unwrap_or(0));
        let (x, y) = (
            64 + u8::try_from((v >> 8) % 128).unwrap_or(0),
            u8::try_from(v % 256).unwrap_or(0),
        );
        let mut lan = Lan {
            bridge: format!("{prefix}-br"),
            prefix,
            hosts: Vec::new(),
            made: Vec::new(),
        };
        let _lock = netns_lock();
        let br = lan.bridge.clone();
        lan.add_netns(&br);
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for i in 0..n {
            let name = format!("{}-h{i}", lan.prefix);
            let host_ip = Ipv4Addr::new(10, x, y, u8::try_from(i + 1).expect("≤250 hosts"));
            lan.add_netns(&name);
            let port = format!("h{i}");
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            lan.hosts.push(Host {
                name,
                ip: host_ip,
                index: i,
            });
        }
        lan
    }

    fn add_netns(&mut self, name: &str) {
        run_ok(Command::new("ip").args(["netns", "add", name]));
        self.made.push(name.to_string());
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// The bridge's namespace.
    pub fn bridge_netns(&self) -> &str {
        &self.bridge
    }
    /// Every namespace of this LAN, bridge first.
    pub fn netns_names(&self) -> Vec<String> {
        self.made.clone()
    }
    /// `pml-<pid>-<k>`, the start of every namespace name of this LAN.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Pids of every process now running in any of this LAN's namespaces.
    pub fn pids(&self) -> Vec<u32> {
        self.made.iter().flat_map(|ns| netns_pids(ns)).collect()
    }

    /// Asserts that a datagram multicast to `group` from each host reaches every other host
    /// (listeners on `group` in all hosts, `mcast-send` from each in turn).
    pub fn assert_multicast(&self, group: SocketAddrV4) {
        let listeners: Vec<NsProcess<'_>> = self
            .hosts
            .iter()
            .map(|h| {
                h.spawn_ready(h.netprobe().args([
                    "mcast-listen",
                    &group.to_string(),
                    &h.ip.to_string(),
                ]))
            })
            .collect();
        for host in &self.hosts {
            let mut got = host.mcast_send(group, self.hosts.len() - 1);
            got.sort();
            let want: Vec<Ipv4Addr> = self
                .hosts
                .iter()
                .filter(|h| h.index != host.index)
                .map(|h| h.ip)
                .collect();
            assert_eq!(
                got, want,
                "multicast to {group} from {} ({}) reached these hosts only",
                host.name, host.ip
            );
        }
        drop(listeners);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _lock = netns_lock();
        // Hosts first, bridge last: killing a host's processes never needs the bridge.
        for ns in self.made.iter().rev() {
            remove_netns(ns);
        }
    }
}

/// Kills everything running in `ns` (SIGKILL, ≤3 s), then deletes it. Never panics.
fn remove_netns(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let me = std::process::id();
    loop {
        let pids: Vec<u32> = netns_pids(ns).into_iter().filter(|&p| p != me).collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("pacmesh-tests: processes {pids:?} in {ns} survive SIGKILL");
            break;
        }
        for pid in pids {
            signal(pid, rustix::process::Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("ip").args(["netns", "del", ns]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("{}", describe(&o, &format!("ip netns del {ns}"))),
        Err(e) => eprintln!("pacmesh-tests: ip netns del {ns}: {e}"),
    }
}

/// Removes `pml-<pid>-…` namespaces whose pid no longer runs (left by a crashed test run).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let _lock = netns_lock();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("pacmesh-tests: removing stale namespace {name}");
            remove_netns(name);
        }
    }
}

/// `ip netns pids NS` (empty if it fails).
pub fn netns_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names listed by `ip netns list`.
pub fn netns_list() -> Vec<String> {
    let out = run_ok(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Whether a process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "PID (COMM) STATE ...": COMM may hold spaces and parens; the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args));
}

impl Host {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its address on the LAN (`eth0`).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
    /// Its index in the [`Lan`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// `ip netns exec NS program`: add args, then run or spawn it. A long-running process
    /// should go through [`Host::spawn_ready`] (or be waited for by the test); the [`Lan`]
    /// kills whatever is left in the namespace when dropped.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// [`Host::exec`] of the `pacmesh-netprobe` helper.
    pub fn netprobe(&self) -> Command {
        self.exec(netprobe_path())
    }

    /// Spawns `cmd` (stdin piped and held open, stdout read) and waits ≤5 s for a line
    /// starting with `PMH ready`; panics with its output if it exits or stays silent.
    pub fn spawn_ready(&self, cmd: &mut Command) -> NsProcess<'_> {
        let what = show_command(cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads on after `PMH ready` so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once nobody listens, sending fails: keep draining all the same.
                let _ = tx.send(line);
            }
        });
        let mut proc = NsProcess {
            child: Some(child),
            stdin,
            _host: self,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("PMH ready") => return proc,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let status = proc.kill();
                    panic!(
                        "{what}: no `PMH ready` within {READY_TIMEOUT:?} ({status}); stdout:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// `pacmesh-netprobe serve IP` here: UDP echo on IP:15680 and IP:5353, TCP on IP:15680.
    pub fn serve(&self) -> NsProcess<'_> {
        self.spawn_ready(self.netprobe().args(["serve", &self.ip.to_string()]))
    }

    /// `pacmesh-netprobe probe TARGET...` run here: each target's result (`open`, `timeout`,
    /// `refused`, …) keyed `PROTO/PORT@IP`, in the targets' order.
    pub fn probe(&self, targets: &[(&str, Ipv4Addr, u16)]) -> Vec<(String, String)> {
        let mut cmd = self.netprobe();
        cmd.arg("probe");
        for (proto, ip, port) in targets {
            cmd.arg(format!("{proto}:{ip}:{port}"));
        }
        let out = run_ok(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout);
        let results: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("PMH "))
            .collect();
        assert_eq!(
            results.len(),
            targets.len(),
            "{}",
            describe(&out, "probe printed one line per target")
        );
        targets
            .iter()
            .zip(results)
            .map(|((proto, ip, port), line)| {
                let result = line.split_once(' ').map_or(line, |(_, r)| r);
                (format!("{proto}/{port}@{ip}"), result.to_string())
            })
            .collect()
    }

    /// Multicasts to `group` from this host until `expect` listeners answered (≤2 s); the
    /// addresses of those that did.
    pub fn mcast_send(&self, group: SocketAddrV4, expect: usize) -> Vec<Ipv4Addr> {
        let out = run_ok(self.netprobe().args([
            "mcast-send",
            &group.to_string(),
            &self.ip.to_string(),
            &expect.to_string(),
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("PMH reply ")?.parse().ok())
            .collect()
    }

    /// `GET url` from inside this host (so `http://127.0.0.1:…` is this host's loopback),
    /// through `pacmesh-netprobe get`; an error if no HTTP response came.
    pub fn http_get(&self, url: &str) -> anyhow::Result<Response> {
        http_get_in(&self.name, url)
    }

    /// [`Host::http_get`] with extra request headers, e.g. `("Range", "bytes=100-")`.
    pub fn http_get_with(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        http_get_in_with(&self.name, url, headers)
    }

    /// `POST url` without a body, with extra request headers, from inside this host.
    pub fn http_post_with(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        http_in(&self.name, "post", url, headers)
    }

    /// `pacman` with `root`'s config and `args` ([`PacmanRoot::pacman_args`]) in this host, not
    /// yet run: `127.0.0.1` in its `Server` lines is this host's daemon.
    pub fn pacman_command(&self, root: &PacmanRoot, args: &[&str]) -> Command {
        let mut cmd = self.exec("pacman");
        cmd.args(root.pacman_args(args)).stdin(Stdio::null());
        cmd
    }

    /// Runs [`Host::pacman_command`], whatever its exit status.
    pub fn pacman(&self, root: &PacmanRoot, args: &[&str]) -> std::process::Output {
        crate::process::run(&mut self.pacman_command(root, args))
    }

    /// Runs [`Host::pacman_command`]; panics with its output, `root`'s pacman.conf and
    /// pacman.log unless it exits 0.
    pub fn pacman_ok(&self, root: &PacmanRoot, args: &[&str]) -> std::process::Output {
        let mut cmd = self.pacman_command(root, args);
        let out = crate::process::run(&mut cmd);
        if !out.status.success() {
            panic!(
                "{}",
                root.report(&out, &format!("{} (in {})", show_command(&cmd), self.name))
            );
        }
        out
    }

    /// Caps what this host sends on `eth0` at `rate` (tc's syntax, e.g. `100mbit`) with a
    /// token bucket (`tc qdisc replace … tbf`), so a transfer from it lasts long enough to
    /// interrupt. Needs `tc`; the qdisc goes with the namespace.
    pub fn limit_egress(&self, rate: &str) {
        run_ok(self.exec("tc").args([
            "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "64kb",
            "latency", "400ms",
        ]));
    }

    /// Removes a [`Host::limit_egress`] cap.
    pub fn unlimit_egress(&self) {
        run_ok(
            self.exec("tc")
                .args(["qdisc", "del", "dev", "eth0", "root"]),
        );
    }

    /// Starts the real `pacmeshd` in this host; see [`NsDaemon`].
    pub fn start_daemon(&self, args: DaemonArgs) -> NsDaemon<'_> {
        NsDaemon::start(self, args)
    }
}

/// `GET url` from inside the namespace `netns` through `pacmesh-netprobe get` (see
/// [`Host::http_get`]); for code that keeps a namespace's name rather than its [`Host`].
pub fn http_get_in(netns: &str, url: &str) -> anyhow::Result<Response> {
    http_get_in_with(netns, url, &[])
}

/// [`http_get_in`] with extra request headers.
pub fn http_get_in_with(
    netns: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    http_in(netns, "get", url, headers)
}

/// `pacmesh-netprobe get|post URL HEADER…` inside `netns`.
fn http_in(
    netns: &str,
    mode: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(netprobe_path())
        .args([mode, url])
        .args(headers.iter().map(|(k, v)| format!("{k}: {v}")))
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} {url} in {netns}: {}",
        mode.to_uppercase(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_response(&out.stdout)
}

/// The first `CacheDir` of a pacman.conf (pacman's own default when there is none is not
/// guessed: `None`).
fn conf_cache_dir(conf: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "CacheDir").then(|| PathBuf::from(value.trim()))
    })
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers: {}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// A process started in a host by [`Host::spawn_ready`]; killed (SIGKILL) and reaped on drop.
pub struct NsProcess<'a> {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    _host: &'a Host,
}

impl NsProcess<'_> {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
    /// Closes its stdin (netprobe servers then exit) and waits ≤5 s, then kills it.
    pub fn stop(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("process already stopped");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().expect("waiting for a killed process")
    }
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process already stopped");
        let _ = child.kill();
        child.wait().expect("waiting for a killed process")
    }
}

impl Drop for NsProcess<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The real `pacmeshd` running in a [`Host`]: `--http-listen 127.0.0.1:15680` (the host's own
/// loopback), `--quic-listen <host ip>:15680`, its own state, store and cache dirs and a
/// `pacman.conf` (`[options]` + `CacheDir = <cache dir>` unless `args.pacman_conf` is set —
/// then that file is passed with `--pacman-conf` and its first `CacheDir` is the cache dir), all
/// under one temp dir kept across [`NsDaemon::restart`] (so the identity stays). `args`'
/// `state_dir`/`store_dir`/`cache_dirs`/`extra_args`/`env`/`binary` apply as for
/// [`crate::daemon::Daemon`]; a `--quic-listen` in `extra_args` replaces the harness's. mDNS is
/// left on (add `--no-mdns` to `extra_args` to turn it off). Output goes to a log file, printed
/// if a test panics while the daemon runs; dropped, the daemon is killed.
pub struct NsDaemon<'a> {
    host: &'a Host,
    child: Option<Child>,
    dir: TempDir,
    cache_dir: PathBuf,
    state_dir: PathBuf,
    store_dir: PathBuf,
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl<'a> NsDaemon<'a> {
    fn start(host: &'a Host, args: DaemonArgs) -> NsDaemon<'a> {
        let bin = args.binary.clone().unwrap_or_else(Daemon::binary);
        assert!(
            bin.is_file(),
            "{} not found: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("pacmesh-{}-", host.name))
            .tempdir()
            .expect("creating the daemon's temp dir");
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state"));
        let store_dir = args
            .store_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("store"));
        let cache_dir = dir.path().join("cache");
        for d in [&state_dir, &store_dir, &cache_dir] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        let cache_dir = args
            .pacman_conf
            .as_deref()
            .and_then(conf_cache_dir)
            .unwrap_or(cache_dir);
        let pacman_conf = args.pacman_conf.clone().unwrap_or_else(|| {
            let conf = dir.path().join("pacman.conf");
            std::fs::write(
                &conf,
                format!("[options]\nCacheDir = {}\n", cache_dir.display()),
            )
            .expect("writing pacman.conf");
            conf
        });
        let mut cli: Vec<OsString> = vec!["--pacman-conf".into(), pacman_conf.into()];
        for cache in &args.cache_dirs {
            cli.extend(["--cache-dir".into(), cache.into()]);
        }
        cli.extend(["--http-listen".into(), format!("127.0.0.1:{PORT}").into()]);
        if !args.extra_args.iter().any(|a| a == "--quic-listen") {
            cli.extend(["--quic-listen".into(), format!("{}:{PORT}", host.ip).into()]);
        }
        cli.extend([
            "--state-dir".into(),
            state_dir.clone().into(),
            "--store-dir".into(),
            store_dir.clone().into(),
        ]);
        cli.extend(args.extra_args.iter().cloned());
        let mut daemon = NsDaemon {
            host,
            child: None,
            dir,
            cache_dir,
            state_dir,
            store_dir,
            bin,
            args: cli,
            env: args.env,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening daemon.log");
        let log2 = log
            .try_clone()
            .expect("sharing daemon.log between stdout and stderr");
        let mut cmd = self.host.exec(&self.bin);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let what = show_command(&cmd);
        // `ip netns exec` execs the program: the child's pid is pacmeshd's.
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {what}: {e}")),
        );
        self.wait_ready(&what);
    }

    fn wait_ready(&mut self, command: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.status_url();
        loop {
            let child = self.child.as_mut().expect("a starting daemon has a child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "pacmeshd exited {status} while starting in {}: {command}\n{}",
                    self.host.name,
                    self.log()
                );
            }
            if self.host.http_get(&url).is_ok_and(|r| r.status == 200) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{url} in {} not 200 after {START_TIMEOUT:?}: {command}\n{}",
                    self.host.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status_url(&self) -> String {
        format!("http://127.0.0.1:{PORT}/_pacmesh/status")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The host it runs in.
    pub fn host(&self) -> &'a Host {
        self.host
    }
    /// `GET path` (e.g. `/_pacmesh/status`) from inside the host; panics if no response came.
    pub fn get(&self, path: &str) -> Response {
        let url = format!("http://127.0.0.1:{PORT}{path}");
        self.host
            .http_get(&url)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", crate::process::tail(&self.log(), 50)))
    }
    /// `GET /_pacmesh/status` as JSON; panics unless it is a 200 with valid JSON.
    pub fn status(&self) -> serde_json::Value {
        self.get("/_pacmesh/status").status_json()
    }
    /// Its `node_id` from the status page.
    pub fn node_id(&self) -> String {
        self.status()["node_id"]
            .as_str()
            .expect("status has a node_id")
            .to_owned()
    }
    /// Its `peers[]` entry for `node_id`, if linked.
    pub fn peer(&self, node_id: &str) -> Option<serde_json::Value> {
        self.status()["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"].as_str() == Some(node_id))
            .cloned()
    }
    /// Everything the daemon printed so far (all runs, restarts included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    /// The cache dir named in its pacman.conf (the harness's, or the first `CacheDir` of
    /// `args.pacman_conf`): what it shares.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }
    /// pacmeshd's pid (in the root namespace's numbering), if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then waits ≤10 s for exit; panics (after SIGKILL) if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("pacmeshd already stopped");
        signal(child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for pacmeshd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pacmeshd in {} did not exit {STOP_TIMEOUT:?} after SIGTERM\n{}",
                    self.host.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would; returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("pacmeshd already stopped");
        let _ = child.kill();
        child.wait().expect("waiting for killed pacmeshd")
    }

    /// SIGSTOP: it stays linked as far as the kernel is concerned but sends nothing more — a
    /// peer that stalls. [`NsDaemon::resume`] undoes it; drop (SIGKILL) works either way.
    pub fn pause(&self) {
        let child = self.child.as_ref().expect("pacmeshd is not running");
        signal(child.id(), rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`NsDaemon::pause`].
    pub fn resume(&self) {
        let child = self.child.as_ref().expect("pacmeshd is not running");
        signal(child.id(), rustix::process::Signal::CONT);
    }

    /// Stops it (SIGTERM) if it runs and starts it again with the same flags and dirs, so
    /// the same identity; waits for its status page as [`Host::start_daemon`] does.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "pacmeshd in {} exited {status} on SIGTERM before restart\n{}",
                self.host.name,
                self.log()
            );
        }
        self.spawn();
    }
}

impl Drop for NsDaemon<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "----- pacmeshd in {} ({}) log (last 200 lines) -----\n{}\n----- end -----",
                    self.host.name,
                    self.host.ip,
                    crate::process::tail(&self.log(), 200)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-type: a/b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("a/b"));
        assert_eq!(r.text(), "{\"x\":1}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
