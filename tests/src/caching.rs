//! A caching-mirror site: upstream mirrors (nginx, [`Upstream`]) in hosts of their own, a
//! [`MirrorHost`] — `pacmeshd --mode mirror` whose `[[mirror.repo]]` names those upstreams —
//! and [`Client`]s: pacman roots with NO pacmesh, whose only `Server` is the mirror host, as a
//! netinstall, a container build or a CI VM would have. The whole-system tests of
//! caching-mirror mode (`tests/tests/caching_mirror.rs`) are written with it.
//!
//! ```no_run
//! use pacmesh_tests::caching::{Client, MirrorHost};
//! use pacmesh_tests::fixtures::{FixtureRepo, PkgSpec};
//! use pacmesh_tests::lan::Lan;
//! use pacmesh_tests::upstream::Upstream;
//!
//! let repo = FixtureRepo::get("pmdoc", &[PkgSpec::new("one", "1.0-1", 1 << 20)]);
//! let lan = Lan::new(3);
//! let upstream = Upstream::start_in(lan.host(0), repo.root());
//! let mirror = MirrorHost::start(lan.host(1), repo.repo_name(), &[upstream.server_url()], 60);
//! let client = Client::new(lan.host(2), repo.repo_name(), &mirror);
//! client.sync();
//! let out = client.install(&[&repo.packages()[0]]);
//! client.check_installed(&[&repo.packages()[0]], &out);
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use crate::daemon::DaemonArgs;
use crate::fixtures::FixturePackage;
use crate::fleet::{assert_clean_output, files_under, sha256_file, PacmanRun};
use crate::lan::{Host, NsDaemon, PORT};
use crate::pacman::PacmanRoot;

/// `pacmeshd --mode mirror` in a host, listening on the LAN, its config file naming the
/// upstreams of one repo.
pub struct MirrorHost<'a> {
    pub daemon: NsDaemon<'a>,
    config_dir: TempDir,
}

impl<'a> MirrorHost<'a> {
    /// Starts the mirror for `repo` with `upstreams` (pacman `Server` templates), revalidating
    /// databases at most every `revalidate_s` seconds (0: at every request).
    pub fn start(host: &'a Host, repo: &str, upstreams: &[String], revalidate_s: u64) -> Self {
        Self::start_with(host, repo, upstreams, revalidate_s, "", &[])
    }

    /// [`MirrorHost::start`] with `mirror_keys` (TOML lines) added to its `[mirror]` table
    /// and `extra` daemon flags.
    pub fn start_with(
        host: &'a Host,
        repo: &str,
        upstreams: &[String],
        revalidate_s: u64,
        mirror_keys: &str,
        extra: &[OsString],
    ) -> Self {
        Self::start_repo(host, repo, upstreams, revalidate_s, mirror_keys, "", extra)
    }

    /// A full mirror of `repo` for `arch` (`full = true`): every package its database
    /// lists is kept, synced at start and every `refresh_s` seconds.
    pub fn start_full(
        host: &'a Host,
        repo: &str,
        arch: &str,
        upstreams: &[String],
        refresh_s: u64,
    ) -> Self {
        let keys = format!("refresh_interval_s = {refresh_s}");
        Self::start_full_with(host, repo, arch, upstreams, &keys)
    }

    /// [`MirrorHost::start_full`] with `mirror_keys` (TOML lines of `[mirror]`, the
    /// refresh interval among them) instead of a refresh interval.
    pub fn start_full_with(
        host: &'a Host,
        repo: &str,
        arch: &str,
        upstreams: &[String],
        mirror_keys: &str,
    ) -> Self {
        let repo_keys = format!("full = true\narch = [{arch:?}]");
        Self::start_repo(host, repo, upstreams, 3600, mirror_keys, &repo_keys, &[])
    }

    /// [`MirrorHost::start_with`] with `repo_keys` (TOML lines) added to its
    /// `[[mirror.repo]]` table.
    fn start_repo(
        host: &'a Host,
        repo: &str,
        upstreams: &[String],
        revalidate_s: u64,
        mirror_keys: &str,
        repo_keys: &str,
        extra: &[OsString],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pacmesh-mirror-conf-")
            .tempdir()
            .expect("creating the mirror's config dir");
        let servers: Vec<String> = upstreams.iter().map(|u| format!("{u:?}")).collect();
        let config = dir.path().join("pacmeshd.toml");
        std::fs::write(
            &config,
            format!(
                "mode = \"mirror\"\nno_mdns = true\n\n[mirror]\ndb_revalidate_s = {revalidate_s}\n\
                 {mirror_keys}\n\n[[mirror.repo]]\nname = \"{repo}\"\nservers = [{}]\n{repo_keys}\n",
                servers.join(", ")
            ),
        )
        .expect("writing the mirror's config");
        let args = extra.iter().fold(
            DaemonArgs::default().arg("--config").arg(&config),
            |args, a| args.arg(a),
        );
        MirrorHost {
            daemon: host.start_daemon(args),
            config_dir: dir,
        }
    }

    pub fn host(&self) -> &'a Host {
        self.daemon.host()
    }

    /// What a client's mirrorlist says: `Server = http://IP:15680/$repo/os/$arch`.
    pub fn server_url(&self) -> String {
        format!("http://{}:{PORT}/$repo/os/$arch", self.host().ip())
    }

    /// `http://IP:15680/_pacmesh/admin/ACTION`.
    pub fn admin_url(&self, action: &str) -> String {
        format!("http://{}:{PORT}/_pacmesh/admin/{action}", self.host().ip())
    }

    /// `http://IP:15680/REPO/os/ARCH/FILE`, for plain GETs from a client host.
    pub fn file_url(&self, repo: &str, arch: &str, file: &str) -> String {
        format!("http://{}:{PORT}/{repo}/os/{arch}/{file}", self.host().ip())
    }

    /// `pacmeshd --sync-once` in its host, with its config, pacman.conf and dirs (stop the
    /// daemon first: a running one holds the store's lock).
    pub fn sync_once(&self) -> Output {
        let dir = self
            .daemon
            .state_dir()
            .parent()
            .expect("the daemon's temp dir");
        let mut cmd = self.host().exec(crate::daemon::Daemon::binary());
        cmd.arg("--config")
            .arg(self.config_dir.path().join("pacmeshd.toml"))
            .arg("--pacman-conf")
            .arg(dir.join("pacman.conf"))
            .arg("--state-dir")
            .arg(self.daemon.state_dir())
            .arg("--store-dir")
            .arg(self.daemon.store_dir())
            .arg("--sync-once");
        crate::process::run(&mut cmd)
    }

    /// The packages it keeps (`STORE/fetched`), by file name.
    pub fn kept_packages(&self) -> Vec<String> {
        names_in(&self.daemon.store_dir().join("fetched"))
    }

    /// The database files it keeps (under `STORE/db`, half-written ones left out).
    pub fn kept_databases(&self) -> Vec<PathBuf> {
        files_under(&self.daemon.store_dir().join("db"))
            .into_iter()
            .filter(|p| !p.components().any(|c| c.as_os_str() == ".incoming"))
            .collect()
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// A machine without pacmesh: a pacman root in a host, its repo's only `Server` a mirror host.
pub struct Client<'a> {
    host: &'a Host,
    pub pacman: PacmanRoot,
}

impl<'a> Client<'a> {
    /// A client of `mirror` for `repo`, with `ParallelDownloads = 5` as Arch's stock
    /// pacman.conf.
    pub fn new(host: &'a Host, repo: &str, mirror: &MirrorHost<'_>) -> Self {
        let mut pacman = PacmanRoot::new(repo, &[mirror.server_url()]);
        pacman.add_option("ParallelDownloads = 5");
        Client { host, pacman }
    }

    pub fn host(&self) -> &'a Host {
        self.host
    }

    /// `pacman ARGS…` here, whatever its exit status.
    pub fn pacman(&self, args: &[&str]) -> Output {
        self.host.pacman(&self.pacman, args)
    }

    /// Starts `pacman ARGS…` here (see [`PacmanRun`]).
    pub fn spawn_pacman(&self, args: &[&str]) -> PacmanRun {
        let cmd = self.host.pacman_command(&self.pacman, args);
        PacmanRun::spawn(
            cmd,
            format!("pacman {} in client {}", args.join(" "), self.host.name()),
        )
    }

    /// `pacman -Sy`, which must succeed without an error line.
    pub fn sync(&self) -> Output {
        let out = self.host.pacman_ok(&self.pacman, &["-Sy"]);
        assert_clean_output(&out, &format!("pacman -Sy in client {}", self.host.name()));
        out
    }

    /// `pacman -S pkgs…`, whatever its exit status.
    pub fn install(&self, pkgs: &[&FixturePackage]) -> Output {
        let mut args = vec!["-S"];
        args.extend(pkgs.iter().map(|p| p.name()));
        self.pacman(&args)
    }

    /// pacman exited 0 without an error line; each of `pkgs` is installed at its version and
    /// its cached file is the package's exact bytes.
    pub fn check_installed(&self, pkgs: &[&FixturePackage], out: &Output) {
        let what = format!("pacman -S in client {}", self.host.name());
        assert!(out.status.success(), "{}", self.pacman.report(out, &what));
        assert_clean_output(out, &what);
        for pkg in pkgs {
            let listed = self.pacman(&["-Q", pkg.name()]);
            assert!(
                String::from_utf8_lossy(&listed.stdout).contains(pkg.version()),
                "{} not installed in client {}",
                pkg.name(),
                self.host.name()
            );
            let cached = self.pacman.cache_dir().join(pkg.file_name());
            assert_eq!(
                sha256_file(&cached),
                pkg.sha256(),
                "client {}'s cached {} is not the package",
                self.host.name(),
                pkg.file_name()
            );
        }
    }

    /// Removes `pkg` (installed) and its cached file, so the next `-S` downloads it again.
    pub fn forget(&self, pkg: &FixturePackage) {
        self.host.pacman_ok(&self.pacman, &["-R", pkg.name()]);
        let _ = std::fs::remove_file(self.pacman.cache_dir().join(pkg.file_name()));
    }
}
