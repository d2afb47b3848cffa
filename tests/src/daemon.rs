//! The real `pacmeshd` binary: [`DaemonProcess`] is one run of it wherever it runs (this
//! machine's loopback, or a LAN host's namespace: [`Place`]) with its temp dirs and log;
//! [`Daemon`] is the loopback one, started with free ports and `--no-mdns`
//! (`crate::lan::NsDaemon` is the one in a namespace).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::lan::Host;
use crate::net::{free_tcp_port, free_udp_port};
use crate::process::show_command;

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to start `pacmeshd` with. Unset dirs become temp dirs owned by the [`Daemon`];
/// pass your own `state_dir` to keep the identity across a restart.
#[derive(Clone, Debug, Default)]
pub struct DaemonArgs {
    /// The program to run instead of [`Daemon::binary`] (e.g. another build, or a stand-in).
    pub binary: Option<PathBuf>,
    pub pacman_conf: Option<PathBuf>,
    pub cache_dirs: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub store_dir: Option<PathBuf>,
    /// Appended after the harness's own flags. A `--quic-listen` here replaces the harness's.
    pub extra_args: Vec<OsString>,
    /// Extra environment, e.g. `RUST_LOG`.
    pub env: Vec<(OsString, OsString)>,
}

impl DaemonArgs {
    /// Args reading `pacman_conf` (e.g. [`crate::pacman::PacmanRoot::conf_path`]).
    pub fn new(pacman_conf: &Path) -> Self {
        Self {
            pacman_conf: Some(pacman_conf.to_path_buf()),
            ..Self::default()
        }
    }
    /// Adds a `--cache-dir`.
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dirs.push(dir.to_path_buf());
        self
    }
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }
    pub fn store_dir(mut self, dir: &Path) -> Self {
        self.store_dir = Some(dir.to_path_buf());
        self
    }
    /// Adds one extra argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Where a daemon process runs.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    /// This machine, on loopback.
    Root,
    /// A LAN host's namespace.
    Host(&'a Host),
}

impl Place<'_> {
    fn command(&self, bin: &Path) -> Command {
        match self {
            Place::Root => Command::new(bin),
            // `ip netns exec` execs the program: the child's pid is pacmeshd's.
            Place::Host(host) => host.exec(bin),
        }
    }

    fn answers_200(&self, url: &str) -> bool {
        match self {
            Place::Root => crate::http::try_get(url, &[]).is_ok_and(|r| r.status == 200),
            Place::Host(host) => host.http_get(url).is_ok_and(|r| r.status == 200),
        }
    }

    fn describe(&self) -> String {
        match self {
            Place::Root => "on loopback".to_owned(),
            Place::Host(host) => format!("in {} ({})", host.name(), host.ip()),
        }
    }
}

/// One `pacmeshd` process and its files: a temp dir holding its log (kept across restarts)
/// and, unless given, its state and store dirs. Started with [`DaemonProcess::launch`],
/// ready once its status URL answers 200; stopped with SIGTERM, killed on drop, its log's
/// tail printed when a test panics while it runs.
pub struct DaemonProcess<'a> {
    place: Place<'a>,
    child: Option<Child>,
    dir: TempDir,
    state_dir: PathBuf,
    store_dir: PathBuf,
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    status_url: String,
}

impl<'a> DaemonProcess<'a> {
    /// Makes the temp dir (named `prefix…`) and the state and store dirs `args` gives or
    /// temp ones; nothing runs yet.
    pub fn prepare(place: Place<'a>, prefix: &str, args: &DaemonArgs) -> Self {
        let bin = args.binary.clone().unwrap_or_else(Daemon::binary);
        assert!(
            bin.is_file(),
            "{} not found: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("creating the daemon's temp dir");
        let state_dir = (args.state_dir.clone()).unwrap_or_else(|| dir.path().join("state"));
        let store_dir = (args.store_dir.clone()).unwrap_or_else(|| dir.path().join("store"));
        for d in [&state_dir, &store_dir] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        DaemonProcess {
            place,
            child: None,
            dir,
            state_dir,
            store_dir,
            bin,
            args: Vec::new(),
            env: args.env.clone(),
            status_url: String::new(),
        }
    }

    /// The flags every harness passes: `args`' cache dirs, the listen addresses (`quic`
    /// unless `args.extra_args` has its own `--quic-listen`), the state and store dirs. The
    /// caller appends `args.extra_args` last.
    pub fn common_cli(&self, args: &DaemonArgs, http: &str, quic: &str) -> Vec<OsString> {
        let mut cli: Vec<OsString> = Vec::new();
        for cache in &args.cache_dirs {
            cli.extend(["--cache-dir".into(), cache.into()]);
        }
        cli.extend(["--http-listen".into(), http.into()]);
        if !args.extra_args.iter().any(|a| a == "--quic-listen") {
            cli.extend(["--quic-listen".into(), quic.into()]);
        }
        cli.extend([
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--store-dir".into(),
            self.store_dir.clone().into(),
        ]);
        cli
    }

    /// The temp dir the process owns.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Starts it with `cli` and waits ≤10 s for `status_url` to answer 200 (panics, with the
    /// log, if it exits first or never answers).
    pub fn launch(&mut self, cli: Vec<OsString>, status_url: String) {
        self.args = cli;
        self.status_url = status_url;
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
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
        let mut cmd = self.place.command(&self.bin);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let what = show_command(&cmd);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {what}: {e}")),
        );
        self.wait_ready(&what);
    }

    fn wait_ready(&mut self, command: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("a starting daemon has a child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "pacmeshd exited {status} while starting {}: {command}\n{}",
                    self.place.describe(),
                    self.log()
                );
            }
            if self.place.answers_200(&self.status_url) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} {} not 200 after {START_TIMEOUT:?}: {command}\n{}",
                    self.status_url,
                    self.place.describe(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it printed so far (all runs, restarts included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Its pid (in the root namespace's numbering), if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `sig` to it; panics if it does not run.
    pub fn signal(&self, sig: rustix::process::Signal) {
        let child = self.child.as_ref().expect("pacmeshd is not running");
        let pid = i32::try_from(child.id()).expect("a pid fits in i32");
        let pid = rustix::process::Pid::from_raw(pid).expect("a child's pid is positive");
        if let Err(e) = rustix::process::kill_process(pid, sig) {
            panic!("sending {sig:?} to pacmeshd ({pid:?}): {e}");
        }
    }

    /// SIGTERM, then waits ≤10 s for exit; panics (after SIGKILL) if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        let mut child = self.child.take().expect("pacmeshd already stopped");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for pacmeshd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pacmeshd {} did not exit {STOP_TIMEOUT:?} after SIGTERM\n{}",
                    self.place.describe(),
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

    /// Stops it (SIGTERM, which must succeed) if it runs and starts it again with the same
    /// flags and dirs, so the same identity; waits until ready as [`DaemonProcess::launch`].
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(
                status.success(),
                "pacmeshd {} exited {status} on SIGTERM before restart\n{}",
                self.place.describe(),
                self.log()
            );
        }
        self.spawn();
    }
}

impl Drop for DaemonProcess<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "----- pacmeshd {} log (last 200 lines) -----\n{}\n----- end -----",
                    self.place.describe(),
                    crate::process::tail(&self.log(), 200)
                );
            }
        }
    }
}

/// A running `pacmeshd` on loopback. Its stdout and stderr go to a log file
/// ([`Daemon::log`]), printed when a test panics with the daemon alive.
pub struct Daemon {
    process: DaemonProcess<'static>,
    http_port: u16,
    quic_port: u16,
}

impl Daemon {
    /// Path of the `pacmeshd` binary built next to this test (`PACMESHD_BIN` overrides).
    pub fn binary() -> PathBuf {
        std::env::var_os("PACMESHD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace::bin_path("pacmeshd"))
    }

    /// Spawns `pacmeshd` with `--http-listen 127.0.0.1:PORT`, `--quic-listen 127.0.0.1:PORT`
    /// (UDP) and `--no-mdns`, then waits ≤10 s for `GET /_pacmesh/status` to answer 200.
    pub fn start(args: DaemonArgs) -> Daemon {
        let mut process = DaemonProcess::prepare(Place::Root, "pacmesh-daemon-", &args);
        let (http_port, quic_port) = (free_tcp_port(), free_udp_port());
        let mut cli: Vec<OsString> = Vec::new();
        if let Some(conf) = &args.pacman_conf {
            cli.extend(["--pacman-conf".into(), conf.into()]);
        }
        let (http, quic) = (
            format!("127.0.0.1:{http_port}"),
            format!("127.0.0.1:{quic_port}"),
        );
        cli.extend(process.common_cli(&args, &http, &quic));
        cli.push("--no-mdns".into());
        cli.extend(args.extra_args.iter().cloned());
        let status_url = format!("http://127.0.0.1:{http_port}/_pacmesh/status");
        process.launch(cli, status_url);
        Daemon {
            process,
            http_port,
            quic_port,
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
    /// The pacman `Server` value for this daemon: `http://127.0.0.1:PORT/$repo/os/$arch`.
    pub fn server_url(&self) -> String {
        format!("{}/$repo/os/$arch", self.url())
    }
    pub fn port(&self) -> u16 {
        self.http_port
    }
    /// The UDP port given to `--quic-listen` (unless `extra_args` set its own).
    pub fn quic_port(&self) -> u16 {
        self.quic_port
    }
    pub fn state_dir(&self) -> &Path {
        self.process.state_dir()
    }
    pub fn store_dir(&self) -> &Path {
        self.process.store_dir()
    }
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// `GET /_pacmesh/status` as JSON; panics unless it is a 200 with valid JSON.
    pub fn status(&self) -> serde_json::Value {
        crate::http::get(&format!("{}/_pacmesh/status", self.url()), &[]).status_json()
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends SIGTERM and waits ≤10 s for exit; panics (after SIGKILL) if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.process.stop()
    }

    /// SIGKILL, as a crash would; returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }

    /// Stops it and starts it again on the same ports and dirs (the same identity).
    pub fn restart(&mut self) {
        self.process.restart();
    }
}
