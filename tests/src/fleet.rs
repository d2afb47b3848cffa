//! A fleet of hosts upgrading from one WAN: mirrors (nginx, [`Upstream`]) in hosts of their own,
//! behind a capped link ([`Fleet::cap_wan`]), and [`Node`]s — each a pacman root whose repo
//! lists its own `pacmeshd` (`127.0.0.1:15680`) first and every mirror after, and the daemon
//! reading that pacman.conf (so it shares pacman's CacheDir and verifies against the sync
//! database `-Sy` wrote).
//!
//! The whole-system tests of "one WAN transfer per package for the whole network"
//! (`tests/tests/fleet.rs`) and the fleet benchmark (`tests/benches/fleet_upgrade.rs`) are
//! written with it: start pacman on several nodes at once ([`Fleet::spawn_installs`]), act on
//! an event while they run ([`await_event`], e.g. "a client has 10 MB of the big package" from
//! [`Upstream::connection_past`]), collect them ([`wait_all`]), check each install
//! ([`Node::check_installed`]), and account what the mirrors sent ([`WanUse`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use pacmesh_tests::fixtures::{FixtureRepo, PkgSpec};
//! use pacmesh_tests::fleet::{Fleet, WanUse, WAN_RATE};
//! use pacmesh_tests::lan::Lan;
//! use pacmesh_tests::upstream::ServeOptions;
//!
//! let repo = FixtureRepo::get("pmdoc", &[PkgSpec::new("one", "1.0-1", 1 << 20)]);
//! let lan = Lan::new(3);
//! // Host 0 is the mirror, hosts 1 and 2 are nodes; returns once both daemons are linked.
//! let fleet = Fleet::start(&lan, &repo, &[ServeOptions::default()], 2);
//! fleet.cap_wan(WAN_RATE);
//! fleet.sync_all();
//! let pkgs: Vec<_> = repo.packages().iter().collect();
//! let done = fleet.install_at_once(&[0, 1], &pkgs, Duration::from_secs(60));
//! for (node, run) in fleet.nodes.iter().zip(&done) {
//!     node.check_installed(&pkgs, &run.output);
//! }
//! fleet.wait_mirrors_idle();
//! println!("{}", WanUse::of(&fleet.mirrors, repo.packages()));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::assert_eventually;
use crate::daemon::DaemonArgs;
pub use crate::files::{files_under, sha256_file};
use crate::fixtures::{FixturePackage, FixtureRepo};
use crate::lan::{Host, Lan, NsDaemon, DAEMON_SERVER_URL};
use crate::pacman::PacmanRoot;
use crate::process::{run_ok, show_command};
use crate::upstream::{LoggedRequest, ServeOptions, Upstream};

/// The WAN link the tests model: what each mirror host may send, in tc's syntax.
pub const WAN_RATE: &str = "100mbit";
/// Links, digests, a sync-database reload: each well under this.
pub const SOON: Duration = Duration::from_secs(8);
/// How long [`Fleet::wait_mirrors_idle`] waits for the mirrors' last requests to end.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One host of the fleet: its pacman root and the `pacmeshd` reading that root's pacman.conf.
pub struct Node<'a> {
    /// First, so it stops before the pacman root it shares is removed.
    pub daemon: NsDaemon<'a>,
    pub pacman: PacmanRoot,
}

impl<'a> Node<'a> {
    /// A pacman root for `repo` listing its daemon, then `mirrors` (pacman `Server` values),
    /// with `ParallelDownloads = 5` as in Arch's stock pacman.conf; and the daemon, started.
    pub fn start(host: &'a Host, repo: &str, mirrors: &[String]) -> Node<'a> {
        Node::start_with(host, repo, mirrors, &[])
    }

    /// [`Node::start`], the daemon started with `extra` flags too.
    pub fn start_with(
        host: &'a Host,
        repo: &str,
        mirrors: &[String],
        extra: &[std::ffi::OsString],
    ) -> Node<'a> {
        let mut servers = vec![DAEMON_SERVER_URL.to_string()];
        servers.extend(mirrors.iter().cloned());
        let mut pacman = PacmanRoot::new(repo, &servers);
        pacman.add_option("ParallelDownloads = 5");
        Node::start_on(host, pacman, extra)
    }

    /// The daemon started on an existing pacman root (e.g. one whose cache a test filled
    /// first), with `extra` flags.
    pub fn start_on(host: &'a Host, pacman: PacmanRoot, extra: &[std::ffi::OsString]) -> Node<'a> {
        let args = extra
            .iter()
            .fold(DaemonArgs::new(&pacman.conf_path()), |args, a| args.arg(a));
        let daemon = host.start_daemon(args);
        assert_eq!(daemon.cache_dir(), pacman.cache_dir());
        Node { daemon, pacman }
    }

    /// `pacman -S` of `pkg`, checked as [`Node::check_installed`] does.
    pub fn install(&self, pkg: &FixturePackage) {
        let out = self.host().pacman_ok(&self.pacman, &["-S", pkg.name()]);
        self.check_installed(&[pkg], &out);
    }

    pub fn host(&self) -> &'a Host {
        self.daemon.host()
    }
    /// The host's namespace name.
    pub fn name(&self) -> &str {
        self.host().name()
    }
    pub fn ip(&self) -> Ipv4Addr {
        self.host().ip()
    }

    /// `pacman -Sy`, checked; with the daemon running, also waits for it to load the new
    /// database (its log says so; the status page does not), so the next `-S` is verified
    /// against it.
    pub fn sync(&self) {
        let repo = self.pacman.repo_name().to_string();
        let running = self.daemon.pid().is_some();
        let loaded = |d: &NsDaemon| count_lines(&d.log(), &["sync database loaded", &repo]);
        let before = loaded(&self.daemon);
        let out = self.host().pacman_ok(&self.pacman, &["-Sy"]);
        assert_clean_output(&out, &format!("pacman -Sy in {}", self.name()));
        if running {
            assert_eventually!(
                loaded(&self.daemon) > before,
                SOON,
                "{}'s daemon did not reload {repo}.db after -Sy:\n{}",
                self.name(),
                self.daemon.log()
            );
        }
    }

    /// Starts `pacman ARGS…` here (output to files, see [`PacmanRun`]).
    pub fn spawn_pacman(&self, args: &[&str]) -> PacmanRun {
        let cmd = self.host().pacman_command(&self.pacman, args);
        PacmanRun::spawn(cmd, format!("pacman {} in {}", args.join(" "), self.name()))
    }

    /// Starts `pacman -S` of `pkgs` here.
    pub fn spawn_install(&self, pkgs: &[&FixturePackage]) -> PacmanRun {
        let mut args = vec!["-S"];
        args.extend(pkgs.iter().map(|p| p.name()));
        self.spawn_pacman(&args)
    }

    /// [`Node::check_files`], then [`assert_clean_output`]: the install worked and pacman
    /// saw nothing go wrong on the way.
    pub fn check_installed(&self, pkgs: &[&FixturePackage], out: &Output) {
        self.check_files(pkgs, out);
        assert_clean_output(out, &format!("pacman -S in {}", self.name()));
    }

    /// pacman exited 0; each of `pkgs` is installed at its version, its cached file is the
    /// package's exact bytes, and every file it installed has the SHA-256 its mtree lists.
    pub fn check_files(&self, pkgs: &[&FixturePackage], out: &Output) {
        assert!(
            out.status.success(),
            "{}",
            self.pacman
                .report(out, &format!("pacman -S in {}", self.name()))
        );
        for pkg in pkgs {
            let listed = self.host().pacman(&self.pacman, &["-Q", pkg.name()]);
            assert!(
                String::from_utf8_lossy(&listed.stdout).contains(pkg.version()),
                "{} not installed in {}",
                pkg.name(),
                self.name()
            );
            let cached = self.pacman.cache_dir().join(pkg.file_name());
            assert_eq!(
                sha256_file(&cached),
                pkg.sha256(),
                "{}'s cached {} is not the package",
                self.name(),
                pkg.file_name()
            );
            for (path, want) in self.installed_digests(pkg) {
                assert_eq!(
                    sha256_file(&path),
                    want,
                    "{} installed by {} in {}",
                    path.display(),
                    pkg.name(),
                    self.name()
                );
            }
        }
    }

    /// (installed path, SHA-256) of every regular file `pkg`'s mtree in the local database
    /// lists (its dot files, `.PKGINFO` and the like, are not installed). Fixture paths hold
    /// no characters mtree escapes.
    fn installed_digests(&self, pkg: &FixturePackage) -> Vec<(PathBuf, String)> {
        let mtree = self
            .pacman
            .db_path()
            .join("local")
            .join(format!("{}-{}", pkg.name(), pkg.version()))
            .join("mtree");
        let out = run_ok(Command::new("gzip").arg("-dc").arg(&mtree));
        let text = String::from_utf8_lossy(&out.stdout);
        let digests: Vec<(PathBuf, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let path = fields.next()?.strip_prefix("./")?;
                let sha = fields.find_map(|f| f.strip_prefix("sha256digest="))?;
                (!path.starts_with('.'))
                    .then(|| (self.pacman.root_dir().join(path), sha.to_string()))
            })
            .collect();
        assert!(
            !digests.is_empty(),
            "{} lists no file digests:\n{text}",
            mtree.display()
        );
        digests
    }

    /// A counter of the daemon's status page, e.g. `/requests/peer`.
    pub fn counter(&self, pointer: &str) -> u64 {
        let status = self.daemon.status();
        status
            .pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("{}'s status has no {pointer}: {status}", self.name()))
    }
}

/// Mirrors in the first hosts of a [`Lan`], [`Node`]s in the hosts after them.
pub struct Fleet<'a> {
    lan: &'a Lan,
    /// Mirror `i` runs in host `i`; every node's pacman.conf lists them in this order.
    pub mirrors: Vec<Upstream>,
    /// Node `i` runs in host `mirrors.len() + i`.
    pub nodes: Vec<Node<'a>>,
}

impl<'a> Fleet<'a> {
    /// One mirror per entry of `mirrors` (each serving `repo` as that entry says), then
    /// `nodes` nodes; returns once every daemon is linked to every other. `lan` needs
    /// `mirrors.len() + nodes` hosts.
    pub fn start(
        lan: &'a Lan,
        repo: &FixtureRepo,
        mirrors: &[ServeOptions],
        nodes: usize,
    ) -> Fleet<'a> {
        Fleet::start_with(lan, repo, mirrors, nodes, &[])
    }

    /// [`Fleet::start`], every daemon started with `extra` flags too (e.g. `--mesh-key F`).
    pub fn start_with(
        lan: &'a Lan,
        repo: &FixtureRepo,
        mirrors: &[ServeOptions],
        nodes: usize,
        extra: &[std::ffi::OsString],
    ) -> Fleet<'a> {
        let m = mirrors.len();
        assert!(
            lan.hosts().len() >= m + nodes,
            "a fleet of {m} mirrors and {nodes} nodes needs {} hosts, the LAN has {}",
            m + nodes,
            lan.hosts().len()
        );
        let mirrors: Vec<Upstream> = mirrors
            .iter()
            .enumerate()
            .map(|(i, options)| Upstream::start_in_with(lan.host(i), repo.root(), options))
            .collect();
        let urls: Vec<String> = mirrors.iter().map(Upstream::server_url).collect();
        let nodes = (0..nodes)
            .map(|i| Node::start_with(lan.host(m + i), repo.repo_name(), &urls, extra))
            .collect();
        let fleet = Fleet {
            lan,
            mirrors,
            nodes,
        };
        fleet.wait_linked(&(0..fleet.nodes.len()).collect::<Vec<_>>());
        fleet
    }

    /// The host mirror `i` runs in.
    pub fn mirror_host(&self, i: usize) -> &'a Host {
        self.lan.host(i)
    }

    /// Caps what every mirror host sends at `rate` (tc's syntax, e.g. [`WAN_RATE`]): the
    /// mirrors share one WAN link each, as a site's uplink would. See [`Host::limit_egress`].
    pub fn cap_wan(&self, rate: &str) {
        for i in 0..self.mirrors.len() {
            self.mirror_host(i).limit_egress(rate);
        }
    }

    /// Waits until each of the nodes `which` (running daemons) lists every other as a peer.
    pub fn wait_linked(&self, which: &[usize]) {
        let ids: Vec<(usize, String)> = which
            .iter()
            .map(|&i| (i, self.nodes[i].daemon.node_id()))
            .collect();
        let missing = || -> Vec<String> {
            let mut missing = Vec::new();
            for &(i, _) in &ids {
                let status = self.nodes[i].daemon.status();
                let peers = status["peers"].as_array().cloned().unwrap_or_default();
                for (j, id) in ids.iter().filter(|(j, _)| *j != i) {
                    if !peers
                        .iter()
                        .any(|p| p["node_id"].as_str() == Some(id.as_str()))
                    {
                        missing.push(format!("{i}→{j}"));
                    }
                }
            }
            missing
        };
        assert_eventually!(
            missing().is_empty(),
            SOON,
            "the nodes did not all link; missing links (node→peer): {:?}",
            missing()
        );
    }

    /// `pacman -Sy` on every node, see [`Node::sync`].
    pub fn sync_all(&self) {
        for node in &self.nodes {
            node.sync();
        }
    }

    /// The node whose host has address `ip`.
    pub fn node_at(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| IpAddr::V4(n.ip()) == ip)
    }

    /// Starts `pacman -S pkgs` on each of the nodes `which`, one right after the other.
    pub fn spawn_installs(&self, which: &[usize], pkgs: &[&FixturePackage]) -> Vec<PacmanRun> {
        which
            .iter()
            .map(|&i| self.nodes[i].spawn_install(pkgs))
            .collect()
    }

    /// [`Fleet::spawn_installs`], then [`wait_all`].
    pub fn install_at_once(
        &self,
        which: &[usize],
        pkgs: &[&FixturePackage],
        timeout: Duration,
    ) -> Vec<Finished> {
        wait_all(self.spawn_installs(which, pkgs), timeout)
    }

    /// [`Upstream::wait_idle`] on every mirror: afterwards their logs hold every request.
    pub fn wait_mirrors_idle(&self) {
        for mirror in &self.mirrors {
            mirror.wait_idle(IDLE_TIMEOUT);
        }
    }

    /// What the hosts are, for messages: `mirror 0 = NS (IP)`, `node 0 = NS (IP)`, …
    pub fn describe_hosts(&self) -> String {
        let mut s = String::new();
        for i in 0..self.mirrors.len() {
            let h = self.mirror_host(i);
            let _ = writeln!(s, "mirror {i} = {} ({})", h.name(), h.ip());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(s, "node {i} = {} ({})", n.name(), n.ip());
        }
        s
    }
}

/// What the mirrors sent for a set of packages, from their access logs (call
/// [`Fleet::wait_mirrors_idle`] first). Its `Display` is a per-file table for messages.
#[derive(Clone, Debug, Default)]
pub struct WanUse {
    /// The packages' sizes, summed: one transfer of each.
    pub unique_bytes: u64,
    /// Body bytes the mirrors sent for them, all requests summed.
    pub sent_bytes: u64,
    /// Per file name.
    pub files: BTreeMap<String, FileUse>,
}

/// What the mirrors sent for one file.
#[derive(Clone, Debug, Default)]
pub struct FileUse {
    pub size: u64,
    pub gets: usize,
    pub bytes: u64,
    /// Per client address: (GETs, body bytes).
    pub clients: BTreeMap<IpAddr, (usize, u64)>,
}

impl WanUse {
    /// The mirrors' logged requests for `pkgs`' files (databases and anything else left out).
    pub fn of(mirrors: &[Upstream], pkgs: &[FixturePackage]) -> WanUse {
        Self::from_requests(mirrors.iter().flat_map(Upstream::requests), pkgs)
    }

    /// [`WanUse::of`] over given log lines, e.g. those of one benchmark run.
    pub fn from_requests(
        requests: impl IntoIterator<Item = LoggedRequest>,
        pkgs: &[FixturePackage],
    ) -> WanUse {
        let mut files: BTreeMap<String, FileUse> = pkgs
            .iter()
            .map(|p| {
                let size = p.size();
                (
                    p.file_name().to_string(),
                    FileUse {
                        size,
                        ..FileUse::default()
                    },
                )
            })
            .collect();
        for r in requests {
            let Some(file) = files.get_mut(r.file_name()) else {
                continue;
            };
            let get = usize::from(r.method == "GET");
            file.gets += get;
            file.bytes += r.bytes;
            if let Some(client) = r.remote_addr {
                let entry = file.clients.entry(client).or_default();
                entry.0 += get;
                entry.1 += r.bytes;
            }
        }
        WanUse {
            unique_bytes: pkgs.iter().map(FixturePackage::size).sum(),
            sent_bytes: files.values().map(|f| f.bytes).sum(),
            files,
        }
    }

    /// Sent ÷ unique bytes: 1.0 is one WAN transfer per package.
    pub fn ratio(&self) -> f64 {
        self.sent_bytes as f64 / self.unique_bytes.max(1) as f64
    }
}

impl fmt::Display for WanUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the mirrors sent {} body bytes for packages of {} bytes in all ({:.2}×)",
            self.sent_bytes,
            self.unique_bytes,
            self.ratio()
        )?;
        for (name, file) in &self.files {
            write!(
                f,
                "  {name} ({} B): {} GET, {} B ({:.2}×)",
                file.size,
                file.gets,
                file.bytes,
                file.bytes as f64 / file.size.max(1) as f64
            )?;
            let clients: Vec<String> = file
                .clients
                .iter()
                .map(|(ip, (gets, bytes))| format!("{ip}: {gets} GET {bytes} B"))
                .collect();
            writeln!(f, " [{}]", clients.join(", "))?;
        }
        Ok(())
    }
}

/// A pacman started by [`Node::spawn_pacman`]: stdout and stderr go to files (so nothing
/// blocks on a full pipe while the test does other things); killed on drop if still running.
pub struct PacmanRun {
    what: String,
    child: Child,
    dir: TempDir,
    started: Instant,
    ended: Option<Instant>,
}

/// A pacman run that ended.
#[derive(Debug)]
pub struct Finished {
    /// e.g. `pacman -S a b in pml-…-h2`.
    pub what: String,
    pub output: Output,
    /// From spawn to exit (as seen by polling every 20 ms).
    pub took: Duration,
}

impl PacmanRun {
    /// Spawns `cmd` with stdin closed and stdout/stderr to files.
    pub fn spawn(mut cmd: Command, what: String) -> PacmanRun {
        let dir = tempfile::Builder::new()
            .prefix("pacmesh-run-")
            .tempdir()
            .expect("creating a temp dir for pacman's output");
        let file = |name: &str| {
            std::fs::File::create(dir.path().join(name)).expect("creating pacman's output file")
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", show_command(&cmd)));
        PacmanRun {
            what,
            child,
            dir,
            started: Instant::now(),
            ended: None,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether it has exited (without collecting it).
    pub fn exited(&mut self) -> bool {
        if self.ended.is_none() && matches!(self.child.try_wait(), Ok(Some(_))) {
            self.ended = Some(Instant::now());
        }
        self.ended.is_some()
    }

    /// Kills it (if still running) and collects what it printed.
    pub fn kill(mut self) -> Finished {
        let _ = self.child.kill();
        self.collect()
    }

    /// Waits for it and collects its output.
    fn collect(mut self) -> Finished {
        let status = self.child.wait().expect("waiting for pacman");
        let ended = self.ended.unwrap_or_else(Instant::now);
        let read = |name: &str| std::fs::read(self.dir.path().join(name)).unwrap_or_default();
        Finished {
            what: self.what.clone(),
            output: Output {
                status,
                stdout: read("stdout"),
                stderr: read("stderr"),
            },
            took: ended - self.started,
        }
    }
}

impl Drop for PacmanRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for every run (polling every 20 ms, so each one's `took` is its own), in order.
/// Past `timeout`, kills them all and panics with what each printed.
pub fn wait_all(mut runs: Vec<PacmanRun>, timeout: Duration) -> Vec<Finished> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = true;
        for run in &mut runs {
            all &= run.exited();
        }
        if all {
            return runs.into_iter().map(PacmanRun::collect).collect();
        }
        if Instant::now() >= deadline {
            let mut s = format!("pacman runs not done after {timeout:?}:\n");
            for run in runs {
                let done = run.ended.is_some();
                let fin = run.kill();
                let title = format!("{} ({})", fin.what, if done { "ended" } else { "killed" });
                s.push_str(&crate::process::describe(&fin.output, &title));
            }
            panic!("{s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `probe` every 20 ms while `runs` go on, until it returns `Some`; panics, killing
/// the runs and showing their output, if every run ended first or `timeout` passed. For
/// acting mid-transfer ("once a client has 10 MB, kill X") on an event, not after a sleep.
pub fn await_event<T>(
    runs: &mut Vec<PacmanRun>,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        let mut all_ended = true;
        for run in runs.iter_mut() {
            all_ended &= run.exited();
        }
        if all_ended || Instant::now() >= deadline {
            let why = if all_ended {
                "every pacman ended first".to_string()
            } else {
                format!("not within {timeout:?}")
            };
            let mut s = format!("never saw {what}: {why}\n");
            for run in runs.drain(..) {
                let fin = run.kill();
                s.push_str(&crate::process::describe(&fin.output, &fin.what));
            }
            panic!("{s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// pacman's stdout and stderr, one text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines where pacman reported trouble with a download or the transaction: `error:`,
/// `failed retrieving`, `warning: … failed`.
pub fn pacman_errors(out: &Output) -> Vec<String> {
    output_text(out)
        .lines()
        .filter(|l| {
            l.starts_with("error:")
                || l.contains("failed retrieving")
                || (l.starts_with("warning:") && l.contains("failed"))
        })
        .map(str::to_string)
        .collect()
}

/// Panics with pacman's whole output if it printed any [`pacman_errors`] line.
pub fn assert_clean_output(out: &Output, what: &str) {
    let errors = pacman_errors(out);
    assert!(
        errors.is_empty(),
        "{what} printed {} error line(s):\n{}\n----- whole output -----\n{}",
        errors.len(),
        errors.join("\n"),
        output_text(out)
    );
}

/// Files under any of `dirs` of `size` bytes whose SHA-256 is `sha256`.
pub fn files_with_sha256(dirs: &[&Path], size: u64, sha256: &str) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| files_under(d))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == size))
        .filter(|p| sha256_file(p) == sha256)
        .collect()
}

/// Lines of `text` containing every one of `needles`.
pub fn count_lines(text: &str, needles: &[&str]) -> usize {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}
