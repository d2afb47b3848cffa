//! A throwaway pacman installation: its own root, databases, cache, log, GnuPG and hook dirs, and a pacman.conf pointing at them.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::process::{describe, show_command};

/// A pacman setup confined to a temp dir (`--root` alone would leave CacheDir, GPGDir
/// and HookDir on the host: docs/DESIGN.md, "makepkg, repo-add and pacman in tests"),
/// with one `[repo]` section.
/// The config file is rewritten by every setter; the dir is removed on drop.
pub struct PacmanRoot {
    dir: TempDir,
    repo: String,
    servers: Vec<String>,
    cache_dir: PathBuf,
    options: Vec<String>,
    repo_lines: Vec<String>,
}

impl PacmanRoot {
    /// A fresh root whose `[repo_name]` lists `servers` (e.g. `http://127.0.0.1:PORT/$repo/os/$arch`) in order.
    pub fn new(repo_name: &str, servers: &[String]) -> PacmanRoot {
        let dir = tempfile::Builder::new()
            .prefix("pacmesh-pacman-")
            .tempdir()
            .expect("creating a pacman temp root");
        // `db/sync` exists from the start, as `/var/lib/pacman/sync` does on an installed
        // host: pacmeshd watches it for `-Sy` and cannot watch a dir that is not there yet.
        for sub in ["root", "db", "db/sync", "cache", "gnupg", "hooks"] {
            std::fs::create_dir(dir.path().join(sub)).expect("creating a pacman root subdir");
        }
        let cache_dir = dir.path().join("cache");
        let root = PacmanRoot {
            dir,
            repo: repo_name.to_string(),
            servers: servers.to_vec(),
            cache_dir,
            options: Vec::new(),
            repo_lines: Vec::new(),
        };
        root.write_conf();
        root
    }

    /// Replaces the repo's `Server` lines.
    pub fn set_servers(&mut self, servers: &[String]) {
        self.servers = servers.to_vec();
        self.write_conf();
    }

    /// Points `CacheDir` at `dir` (created if missing), e.g. a cache the daemon shares.
    pub fn set_cache_dir(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        self.cache_dir = dir.to_path_buf();
        self.write_conf();
    }

    /// Adds a line to `[options]`, e.g. `ParallelDownloads = 4`.
    pub fn add_option(&mut self, line: &str) {
        self.options.push(line.to_string());
        self.write_conf();
    }

    /// Adds a line at the top of the repo section, before the `Server` lines
    /// (e.g. `Include = /path/to/pacmesh`, as `pacman.conf-insert` does).
    pub fn add_repo_line(&mut self, line: &str) {
        self.repo_lines.push(line.to_string());
        self.write_conf();
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("pacman.conf")
    }
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    /// `DBPath`; the sync databases land in `db/sync/`.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("db")
    }
    /// `RootDir`, where packages are installed.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pacman.log")
    }
    pub fn repo_name(&self) -> &str {
        &self.repo
    }

    /// pacman's arguments for `args` with this root's config: `--config FILE --noconfirm
    /// --color never ARGS…` (for wrapping, e.g. in `ip netns exec NS pacman …`).
    pub fn pacman_args(&self, args: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["--config".into(), self.conf_path().into()];
        v.extend(["--noconfirm", "--color", "never"].map(OsString::from));
        v.extend(args.iter().map(OsString::from));
        v
    }

    /// A `pacman` command for `args` with this root's config, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("pacman");
        cmd.args(self.pacman_args(args));
        cmd
    }

    /// Runs pacman with `args`, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        crate::process::run(&mut self.command(args))
    }

    /// Runs pacman with `args`; panics with stdout, stderr, pacman.conf and pacman.log unless it succeeds.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        let out = crate::process::run(&mut cmd);
        if !out.status.success() {
            panic!("{}", self.report(&out, &show_command(&cmd)));
        }
        out
    }

    /// Whether `pkg` is installed in this root.
    pub fn installed(&self, pkg: &str) -> bool {
        self.run(&["-Q", pkg]).status.success()
    }

    /// The installed version of `pkg` (`pacman -Q` → `1.0-1`), if installed.
    pub fn installed_version(&self, pkg: &str) -> Option<String> {
        let out = self.run(&["-Q", pkg]);
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.split_whitespace().nth(1)?;
        out.status.success().then(|| version.to_string())
    }

    /// A readable failure report for `out`: the command's output plus this root's config and log.
    pub fn report(&self, out: &Output, what: &str) -> String {
        let mut s = describe(out, &format!("{what} failed"));
        let conf = std::fs::read_to_string(self.conf_path()).unwrap_or_default();
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let _ = write!(
            s,
            "----- pacman.conf -----\n{}\n----- pacman.log (last 30) -----\n{}\n",
            conf.trim_end(),
            crate::process::tail(&log, 30)
        );
        s
    }

    fn write_conf(&self) {
        let d = self.dir.path().display();
        let mut conf = format!(
            "[options]\n\
             RootDir = {d}/root/\n\
             DBPath = {d}/db/\n\
             CacheDir = {}/\n\
             LogFile = {d}/pacman.log\n\
             GPGDir = {d}/gnupg/\n\
             HookDir = {d}/hooks/\n\
             Architecture = auto\n\
             SigLevel = Never\n\
             LocalFileSigLevel = Never\n",
            self.cache_dir.display()
        );
        for line in &self.options {
            let _ = writeln!(conf, "{line}");
        }
        let _ = writeln!(conf, "\n[{}]", self.repo);
        for line in &self.repo_lines {
            let _ = writeln!(conf, "{line}");
        }
        for server in &self.servers {
            let _ = writeln!(conf, "Server = {server}");
        }
        std::fs::write(self.conf_path(), conf).expect("writing pacman.conf");
    }
}
