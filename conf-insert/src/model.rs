//! What pacmesh needs to know from pacman.conf: the paths and architectures
//! of `[options]`, and every repository with its servers in pacman's order.
//! Built by `parse`; the answers here are pure functions of it.

use std::path::PathBuf;

use crate::own::OwnServers;

/// pacman's defaults, used when pacman.conf does not say.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/pacman/pkg/";
pub const DEFAULT_DB_PATH: &str = "/var/lib/pacman/";

/// A parsed pacman.conf, includes expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacmanConf {
    /// The file it was read from.
    pub path: PathBuf,
    pub options: Options,
    /// In file order, as `pacman-conf --repo-list` lists them (a repeated
    /// section appears twice; pacman only uses the first).
    pub repos: Vec<Repo>,
    /// Every file read, the main one first, then includes in the order
    /// pacman reads them: what to watch to notice a change.
    pub files: Vec<PathBuf>,
}

/// The `[options]` values pacmesh uses, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Every `CacheDir` value in order (one line may hold several,
    /// space-separated); `/var/cache/pacman/pkg/` when there is none.
    pub cache_dirs: Vec<PathBuf>,
    /// `DBPath` (the first one wins, as in pacman); default
    /// `/var/lib/pacman/`, under `RootDir` when that is set.
    pub db_path: PathBuf,
    /// `Architecture` values in order without repeats, `auto` replaced by
    /// this machine's; `[auto]` when the file sets none.
    pub architectures: Vec<String>,
    /// `RootDir`, if set (the first one wins).
    pub root_dir: Option<PathBuf>,
}

impl Options {
    /// Where pacman keeps the sync databases (`{repo}.db`).
    pub fn sync_dir(&self) -> PathBuf {
        self.db_path.join("sync")
    }

    /// The architecture pacman puts in `$arch`: the first one listed.
    pub fn arch(&self) -> &str {
        self.architectures
            .first()
            .map_or(std::env::consts::ARCH, String::as_str)
    }
}

/// A repository section (`[core]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    /// In the order pacman tries them: `Server` lines and included files
    /// expanded where they appear.
    ///
    /// `CacheServer` lines (pacman ≥ 6.1; pacmesh's own include says
    /// `CacheServer` there) are not in this list. pacman asks them first,
    /// for packages only, and they may answer 404 for whatever they do not
    /// hold; pacmesh redirects only to servers that hold every file of the
    /// repository, databases included, which are the `Server` lines. So
    /// neither pacmesh's own `CacheServer` nor another cache's is ever a
    /// redirect target.
    pub servers: Vec<Server>,
}

impl Repo {
    /// The servers pacmesh may send a client to: all but pacmesh's own (see
    /// [`OwnServers`]), so that the daemon never redirects to itself.
    pub fn real_mirrors(&self, own: &OwnServers) -> Vec<&Server> {
        self.servers.iter().filter(|s| !own.is_own(s)).collect()
    }
}

/// One `Server` line, `$repo`/`$arch` not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub url: String,
    pub source: Source,
}

/// Where a directive was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file as pacman opened it: the main file, or an include path as
    /// the `Include` line (or its glob) named it.
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl PacmanConf {
    /// The first repository called `name` (the one pacman uses).
    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// The servers of repository `repo` that are not pacmesh's own; empty
    /// when the repository is unknown.
    pub fn real_mirrors(&self, repo: &str, own: &OwnServers) -> Vec<&Server> {
        self.repo(repo)
            .map_or_else(Vec::new, |r| r.real_mirrors(own))
    }
}

/// A server URL with pacman's variables replaced, as pacman does before
/// downloading: `$repo` by the repository name, `$arch` by the architecture.
pub fn expand_server(url: &str, repo: &str, arch: &str) -> String {
    url.replace("$repo", repo).replace("$arch", arch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn expand_server_replaces_every_variable() {
        assert_eq!(
            expand_server("https://m/$repo/os/$arch/$repo", "core", "x86_64"),
            "https://m/core/os/x86_64/core"
        );
        assert_eq!(
            expand_server("file:///srv/custom", "c", "a"),
            "file:///srv/custom"
        );
    }

    #[test]
    fn sync_dir_is_under_db_path() {
        let options = Options {
            cache_dirs: vec![],
            db_path: PathBuf::from("/r/var/lib/pacman/"),
            architectures: vec![],
            root_dir: None,
        };
        assert_eq!(options.sync_dir(), Path::new("/r/var/lib/pacman/sync"));
        assert_eq!(options.arch(), std::env::consts::ARCH);
    }
}
