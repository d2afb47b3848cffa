//! `pacmeshd` in a host.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use super::{Host, PORT};
use crate::daemon::{DaemonArgs, DaemonProcess, Place};
use crate::http::Response;

/// The real `pacmeshd` running in a [`Host`]: `--http-listen 127.0.0.1:15680` (the host's own
/// loopback), `--quic-listen <host ip>:15680`, its own state, store and cache dirs and a
/// `pacman.conf` (`[options]` + `CacheDir = <cache dir>` unless `args.pacman_conf` is set —
/// then that file is passed with `--pacman-conf` and its first `CacheDir` is the cache dir), all
/// under one temp dir kept across [`NsDaemon::restart`] (so the identity stays). `args`'
/// `state_dir`/`store_dir`/`cache_dirs`/`extra_args`/`env`/`binary` apply as for
/// [`crate::daemon::Daemon`]; a `--quic-listen` in `extra_args` replaces the harness's. mDNS is
/// left on (add `--no-mdns` to `extra_args` to turn it off). The process itself is a
/// [`DaemonProcess`] (log, stop, kill, restart), as the loopback [`crate::daemon::Daemon`]'s is.
pub struct NsDaemon<'a> {
    host: &'a Host,
    process: DaemonProcess<'a>,
    cache_dir: PathBuf,
}

impl<'a> NsDaemon<'a> {
    pub(super) fn start(host: &'a Host, args: DaemonArgs) -> NsDaemon<'a> {
        let prefix = format!("pacmesh-{}-", host.name);
        let mut process = DaemonProcess::prepare(Place::Host(host), &prefix, &args);
        let cache_dir = process.dir().join("cache");
        std::fs::create_dir_all(&cache_dir).expect("creating the cache dir");
        let cache_dir = args
            .pacman_conf
            .as_deref()
            .and_then(conf_cache_dir)
            .unwrap_or(cache_dir);
        let pacman_conf = args.pacman_conf.clone().unwrap_or_else(|| {
            let conf = process.dir().join("pacman.conf");
            std::fs::write(
                &conf,
                format!("[options]\nCacheDir = {}\n", cache_dir.display()),
            )
            .expect("writing pacman.conf");
            conf
        });
        let mut cli: Vec<OsString> = vec!["--pacman-conf".into(), pacman_conf.into()];
        let (http, quic) = (format!("127.0.0.1:{PORT}"), format!("{}:{PORT}", host.ip));
        cli.extend(process.common_cli(&args, &http, &quic));
        cli.extend(args.extra_args.iter().cloned());
        process.launch(cli, format!("http://127.0.0.1:{PORT}/_pacmesh/status"));
        NsDaemon {
            host,
            process,
            cache_dir,
        }
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
        self.process.log()
    }
    /// The cache dir named in its pacman.conf (the harness's, or the first `CacheDir` of
    /// `args.pacman_conf`): what it shares.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    pub fn state_dir(&self) -> &Path {
        self.process.state_dir()
    }
    pub fn store_dir(&self) -> &Path {
        self.process.store_dir()
    }
    /// pacmeshd's pid (in the root namespace's numbering), if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
    /// SIGTERM, then waits ≤10 s for exit; panics (after SIGKILL) if it does not exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.process.stop()
    }
    /// SIGKILL, as a crash would; returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }
    /// SIGSTOP: it stays linked as far as the kernel is concerned but sends nothing more — a
    /// peer that stalls. [`NsDaemon::resume`] undoes it; drop (SIGKILL) works either way.
    pub fn pause(&self) {
        self.process.signal(rustix::process::Signal::STOP);
    }
    /// SIGCONT after [`NsDaemon::pause`].
    pub fn resume(&self) {
        self.process.signal(rustix::process::Signal::CONT);
    }
    /// Stops it (SIGTERM) if it runs and starts it again with the same flags and dirs, so
    /// the same identity; waits for its status page as [`Host::start_daemon`] does.
    pub fn restart(&mut self) {
        self.process.restart();
    }
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
