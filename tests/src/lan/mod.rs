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
//!
//! By job: this module makes and removes the namespaces ([`Lan`]); `host` is one host
//! ([`Host`]: running commands, pacman and helper processes in it, shaping its link);
//! `http` reaches HTTP inside a namespace; `daemon` is pacmeshd in a host ([`NsDaemon`]).

mod daemon;
mod host;
mod http;

pub use daemon::NsDaemon;
pub use host::{Host, NsProcess};
pub use http::{http_get_in, http_get_in_with};

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::process::{describe, run_ok};

/// The port pacmeshd uses for HTTP (on each host's loopback) and QUIC (on its LAN address).
pub const PORT: u16 = 15680;
/// The pacman `Server` value naming the host's own daemon: every host has its own loopback,
/// so one pacman.conf line fits all hosts.
pub const DAEMON_SERVER_URL: &str = "http://127.0.0.1:15680/$repo/os/$arch";
/// The multicast group mDNS uses.
pub const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

const PREFIX: &str = "pml-";
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
