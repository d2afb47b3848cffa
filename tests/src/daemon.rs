//! The real `pacmeshd` binary on loopback: started with temp state/store dirs and free ports, stopped with SIGTERM, killed on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::{free_tcp_port, free_udp_port};

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

/// A running `pacmeshd`. Its stdout and stderr go to a log file ([`Daemon::log`]),
/// printed when a test panics with the daemon alive.
pub struct Daemon {
    child: Option<Child>,
    http_port: u16,
    quic_port: u16,
    dir: TempDir,
    state_dir: PathBuf,
    store_dir: PathBuf,
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
        let bin = args.binary.clone().unwrap_or_else(Self::binary);
        assert!(
            bin.is_file(),
            "{} not found: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("pacmesh-daemon-")
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
        for d in [&state_dir, &store_dir] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        let (http_port, quic_port) = (free_tcp_port(), free_udp_port());
        let mut cmd = Command::new(&bin);
        if let Some(conf) = &args.pacman_conf {
            cmd.arg("--pacman-conf").arg(conf);
        }
        for cache in &args.cache_dirs {
            cmd.arg("--cache-dir").arg(cache);
        }
        cmd.arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"));
        if !args.extra_args.iter().any(|a| a == "--quic-listen") {
            cmd.arg("--quic-listen")
                .arg(format!("127.0.0.1:{quic_port}"));
        }
        cmd.arg("--state-dir").arg(&state_dir);
        cmd.arg("--store-dir").arg(&store_dir);
        cmd.arg("--no-mdns");
        cmd.args(&args.extra_args);
        cmd.envs(args.env.iter().map(|(k, v)| (k, v)));
        let log =
            std::fs::File::create(dir.path().join("daemon.log")).expect("creating daemon.log");
        let log2 = log
            .try_clone()
            .expect("sharing daemon.log between stdout and stderr");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut daemon = Daemon {
            child: Some(child),
            http_port,
            quic_port,
            dir,
            state_dir,
            store_dir,
        };
        daemon.wait_ready(&crate::process::show_command(&cmd));
        daemon
    }

    fn wait_ready(&mut self, command: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/_pacmesh/status", self.url());
        loop {
            let child = self.child.as_mut().expect("a starting daemon has a child");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pacmeshd exited {status} while starting: {command}\n{}",
                    self.log()
                );
            }
            if crate::http::try_get(&url, &[]).is_ok_and(|r| r.status == 200) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{url} not 200 after {START_TIMEOUT:?}: {command}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
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
        &self.state_dir
    }
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET /_pacmesh/status` as JSON; panics unless it is a 200 with valid JSON.
    pub fn status(&self) -> serde_json::Value {
        crate::http::get(&format!("{}/_pacmesh/status", self.url()), &[]).status_json()
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits ≤10 s for exit; panics (after SIGKILL) if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("pacmeshd already stopped");
        let pid =
            rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"))
                .expect("a child's pid is positive");
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            panic!("sending SIGTERM to pacmeshd ({pid:?}): {e}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for pacmeshd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pacmeshd did not exit {STOP_TIMEOUT:?} after SIGTERM\n{}",
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- pacmeshd {} log (last 200 lines) -----\n{}\n----- end -----",
                self.url(),
                crate::process::tail(&self.log(), 200)
            );
        }
    }
}
