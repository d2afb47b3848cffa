//! One host of a [`super::Lan`]: commands, pacman and helper processes run inside its
//! namespace, and its link shaped.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{http_get_in, http_get_in_with, netprobe_path, NsDaemon, READY_TIMEOUT};
use crate::daemon::DaemonArgs;
use crate::http::Response;
use crate::pacman::PacmanRoot;
use crate::process::{describe, run_ok, show_command};

use super::http::http_in;

/// One host of a [`Lan`]: a network namespace with `eth0` on the bridge.
pub struct Host {
    pub(super) name: String,
    pub(super) ip: Ipv4Addr,
    pub(super) index: usize,
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
