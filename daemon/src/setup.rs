//! What the daemon learns from the host before it serves: pacman.conf's
//! repos, mirrors and cache dirs, and the dirs it may write. A fresh
//! machine without pacman still gets a working daemon.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use pacmesh_conf::{OwnServers, PacmanConf};
use tracing::{info, warn};

use crate::admin::AdminToken;
use crate::config::{Config, MirrorConfig, MirrorRepo, Mode};
use crate::identity::Identity;
use crate::index::MAX_CACHE_DIRS;
use crate::mesh::link::MeshKey;
use crate::mirrors::{MirrorTable, Upstreams, DEFAULT_MIRROR};

/// The resolved environment `run` works in.
#[derive(Debug)]
pub struct Environment {
    pub identity: Arc<Identity>,
    /// `None`: an open mesh.
    pub mesh_key: Option<MeshKey>,
    /// Package architectures this host uses: pacman.conf's `Architecture`
    /// (or this machine's) and `any`; announced to peers.
    pub archs: Vec<String>,
    /// pacman's sync databases (`DBPath/sync`), against which every byte
    /// from a peer is verified; `None` without a pacman.conf.
    pub sync_dir: Option<PathBuf>,
    /// From the config: `!verified_only`.
    pub unverified_from_peers: bool,
    /// From the config: `pages_lan`.
    pub pages_lan: bool,
    pub cache_dirs: Vec<PathBuf>,
    pub mirrors: MirrorTable,
    /// pacmesh's own HTTP addresses, never an upstream.
    pub own_servers: OwnServers,
    /// Caching-mirror mode, and its `[mirror]` settings.
    pub mirror_mode: Option<MirrorConfig>,
    /// Mirror mode's admin token (`mirror.admin_token_file`).
    pub admin_token: Option<AdminToken>,
    pub state_dir: PathBuf,
    pub store_dir: PathBuf,
}

/// A problem with what the user configured (exit status 64), as opposed
/// to a runtime failure.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SetupError(pub anyhow::Error);

pub fn resolve(config: &Config) -> Result<Environment, SetupError> {
    resolve_inner(config).map_err(SetupError)
}

fn resolve_inner(config: &Config) -> anyhow::Result<Environment> {
    let pacman = load_pacman_conf(config)?;
    let store_dir = writable_dir(&config.store_dir, config.store_dir_is_default, "store_dir")?;
    let state_dir = writable_dir(&config.state_dir, config.state_dir_is_default, "state_dir")?;

    let own = OwnServers::new(&config.http_listen);
    let mirrors = mirror_table(config, pacman.as_ref(), &own)?;

    let mut cache_dirs = Vec::new();
    for dir in pacman.iter().flat_map(|c| c.options.cache_dirs.iter()) {
        match dir.canonicalize() {
            Ok(dir) if dir.is_dir() => cache_dirs.push(dir),
            _ => warn!(dir = %dir.display(), "pacman CacheDir missing; not shared"),
        }
    }
    for dir in &config.extra_cache_dirs {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cache_dir {}", dir.display()))?;
        anyhow::ensure!(dir.is_dir(), "cache_dir {}: not a directory", dir.display());
        cache_dirs.push(dir);
    }
    if cache_dirs.is_empty() {
        let own_cache = store_dir.join("pkg");
        std::fs::create_dir_all(&own_cache)
            .with_context(|| format!("creating {}", own_cache.display()))?;
        info!(dir = %own_cache.display(), "no pacman cache dir; sharing the daemon's own");
        cache_dirs.push(own_cache);
    }
    dedup_in_order(&mut cache_dirs);
    if cache_dirs.len() > MAX_CACHE_DIRS {
        warn!(
            max = MAX_CACHE_DIRS,
            "too many cache dirs; the rest are not shared"
        );
        cache_dirs.truncate(MAX_CACHE_DIRS);
    }
    let identity = Arc::new(Identity::load_or_create(&state_dir)?);
    info!(node_id = %identity.node_id(), "identity");
    let archs = announced_archs(pacman.as_ref().map(|c| c.options.architectures.as_slice()));
    let mesh_key = match &config.mesh_key {
        Some(path) => {
            Some(MeshKey::load(path).with_context(|| format!("mesh_key {}", path.display()))?)
        }
        None => None,
    };
    let admin_token = match (&config.mode, &config.mirror.admin_token_file) {
        (Mode::Mirror, Some(path)) => {
            Some(AdminToken::load(path).context("mirror.admin_token_file")?)
        }
        _ => None,
    };
    Ok(Environment {
        admin_token,
        identity,
        mesh_key,
        archs,
        sync_dir: pacman.as_ref().map(|c| c.options.sync_dir()),
        unverified_from_peers: !config.verified_only,
        pages_lan: config.pages_lan,
        cache_dirs,
        mirrors,
        own_servers: own,
        mirror_mode: (config.mode == Mode::Mirror).then(|| config.mirror.clone()),
        state_dir,
        store_dir,
    })
}

/// Each repo's upstreams: pacman.conf's real mirrors, and in mirror mode
/// the `[[mirror.repo]]` entries (which replace pacman.conf's servers for
/// the repos they name). With neither, every repo goes to the fallback.
fn mirror_table(
    config: &Config,
    pacman: Option<&PacmanConf>,
    own: &OwnServers,
) -> anyhow::Result<MirrorTable> {
    let mut repos: Vec<(String, Upstreams)> = pacman
        .iter()
        .flat_map(|conf| conf.repos.iter())
        .map(|repo| {
            let urls = repo
                .real_mirrors(own)
                .into_iter()
                .map(|s| s.url.clone())
                .collect();
            (repo.name.clone(), Upstreams::servers(urls))
        })
        .collect();
    let configured: &[MirrorRepo] = match config.mode {
        Mode::Mirror => &config.mirror.repos,
        Mode::Local => &[],
    };
    if pacman.is_none() && configured.is_empty() {
        return Ok(MirrorTable::fallback_only(DEFAULT_MIRROR));
    }
    for (i, repo) in configured.iter().enumerate() {
        if let Some(url) = repo.servers.iter().find(|u| own.is_own_url(u)) {
            anyhow::bail!(
                "mirror.repo[{i}].servers: {url} is this daemon; a mirror cannot be its own upstream"
            );
        }
        let listed = match &repo.mirrorlist {
            Some(path) => crate::mirrorlist::read(path, own)
                .with_context(|| format!("mirror.repo[{i}].mirrorlist"))?,
            None => Vec::new(),
        };
        repos.retain(|(name, _)| *name != repo.name);
        repos.push((
            repo.name.clone(),
            Upstreams {
                servers: repo.servers.clone(),
                mirrorlist: repo.mirrorlist.clone(),
                listed,
                archs: repo.archs.clone(),
            },
        ));
    }
    Ok(MirrorTable::with_upstreams(repos))
}

fn load_pacman_conf(config: &Config) -> anyhow::Result<Option<PacmanConf>> {
    let path = &config.pacman_conf;
    if !config.pacman_conf_explicit && !path.exists() {
        warn!(
            pacman_conf = %path.display(),
            mirror = DEFAULT_MIRROR,
            "no pacman.conf: every repo is redirected to the default mirror"
        );
        return Ok(None);
    }
    let conf = PacmanConf::load(path).with_context(|| format!("pacman_conf {}", path.display()))?;
    info!(pacman_conf = %path.display(), repos = conf.repos.len(), "read pacman.conf");
    Ok(Some(conf))
}

/// Creates `dir` if needed. A default dir the user may not write (a
/// developer running pacmeshd unprivileged) falls back to one under
/// `$XDG_CACHE_HOME` or `~/.cache`, so a fresh checkout just runs.
fn writable_dir(dir: &Path, is_default: bool, key: &str) -> anyhow::Result<PathBuf> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(dir.to_owned()),
        Err(e) if is_default && e.kind() == io::ErrorKind::PermissionDenied => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .context("no HOME to fall back to")?;
            let fallback = base.join("pacmesh").join(key.trim_end_matches("_dir"));
            std::fs::create_dir_all(&fallback)
                .with_context(|| format!("{key}: creating {}", fallback.display()))?;
            warn!(key, default = %dir.display(), using = %fallback.display(), "default dir not writable");
            Ok(fallback)
        }
        Err(e) => Err(e).with_context(|| format!("{key}: creating {}", dir.display())),
    }
}

/// The architectures announced to peers: pacman.conf's (or this
/// machine's) and `any`, keeping only names the wire protocol carries
/// (`[A-Za-z0-9_]{1,32}`, at most 16).
fn announced_archs(configured: Option<&[String]>) -> Vec<String> {
    let machine = [std::env::consts::ARCH.to_owned()];
    let mut archs: Vec<String> = configured.unwrap_or(&machine).to_vec();
    archs.push("any".to_owned());
    let valid = |a: &String| {
        (1..=pacmesh_proto::MAX_ARCH_LEN).contains(&a.len())
            && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    archs.retain(|a| {
        let ok = valid(a);
        if !ok {
            warn!(arch = %a, "architecture name not announced to peers");
        }
        ok
    });
    dedup_in_order(&mut archs);
    archs.truncate(pacmesh_proto::MAX_ARCHS);
    archs
}

fn dedup_in_order<T: Clone + Eq + std::hash::Hash>(dirs: &mut Vec<T>) {
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_archs_are_valid_unique_and_include_any() {
        let table: &[(&[&str], &[&str])] = &[
            (&["x86_64"], &["x86_64", "any"]),
            (&["x86_64", "any"], &["x86_64", "any"]),
            (&["x86_64", "i686", "x86_64"], &["x86_64", "i686", "any"]),
            (&["bad arch", "arm/v7", ""], &["any"]),
        ];
        for (configured, want) in table {
            let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
            assert_eq!(announced_archs(Some(&configured)), *want, "{configured:?}");
        }
        assert_eq!(announced_archs(None), vec![std::env::consts::ARCH, "any"]);
    }

    fn config(toml: &str, dir: &Path) -> Config {
        let path = dir.join("pacmeshd.toml");
        std::fs::write(&path, toml).unwrap();
        let raw = crate::config::RawConfig {
            config: Some(path),
            ..Default::default()
        };
        crate::config::load(raw).expect("valid config")
    }

    #[test]
    fn a_caching_mirror_s_upstreams() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("mirrorlist");
        std::fs::write(&list, "Server = http://listed/$repo/os/$arch\n").unwrap();
        let pacman = PacmanConf::parse(
            "[core]\nServer = http://pacman-conf/$repo/os/$arch\n\
             [extra]\nServer = http://pacman-conf/$repo/os/$arch\n",
            dir.path().join("pacman.conf"),
        )
        .unwrap();
        let toml = format!(
            "mode = \"mirror\"\n[[mirror.repo]]\nname = \"extra\"\n\
             servers = [\"http://own/$repo\"]\nmirrorlist = \"{}\"\n\
             [[mirror.repo]]\nname = \"alarm\"\narch = [\"aarch64\"]\n\
             servers = [\"http://arm/$arch/$repo\"]\n",
            list.display()
        );
        let mirror = config(&toml, dir.path());
        let own = OwnServers::new(&mirror.http_listen);
        let table = mirror_table(&mirror, Some(&pacman), &own).unwrap();
        let urls = |repo, arch| table.file_urls(repo, arch, "f");
        assert_eq!(
            urls("core", "x86_64"),
            ["http://pacman-conf/core/os/x86_64/f"]
        );
        assert_eq!(
            urls("extra", "x86_64"),
            ["http://own/extra/f", "http://listed/extra/os/x86_64/f"]
        );
        assert_eq!(urls("alarm", "aarch64"), ["http://arm/aarch64/alarm/f"]);
        assert!(urls("alarm", "x86_64").is_empty());
        assert!(urls("unknown", "x86_64").is_empty());
        // Without pacman.conf, only the configured repos.
        let table = mirror_table(&mirror, None, &own).unwrap();
        assert!(table.file_urls("core", "x86_64", "f").is_empty());
        // In local mode the [mirror] table is not used.
        let local = config(&toml.replace("\"mirror\"\n[[", "\"local\"\n[["), dir.path());
        let table = mirror_table(&local, None, &own).unwrap();
        assert_eq!(table.first("extra"), Some(DEFAULT_MIRROR));
        // A mirror cannot be its own upstream; a missing mirrorlist is an error.
        let looped = config(
            &toml.replace("http://own/$repo", "http://localhost:15680/$repo"),
            dir.path(),
        );
        let err = mirror_table(&looped, None, &own).unwrap_err().to_string();
        assert!(err.contains("mirror.repo[0].servers"), "{err}");
        std::fs::remove_file(&list).unwrap();
        let err = format!("{:#}", mirror_table(&mirror, None, &own).unwrap_err());
        assert!(
            err.contains("mirror.repo[0].mirrorlist") && err.contains("mirrorlist"),
            "{err}"
        );
    }
}
