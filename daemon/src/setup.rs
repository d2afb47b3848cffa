//! What the daemon learns from the host before it serves: pacman.conf's
//! repos, mirrors and cache dirs, and the dirs it may write. A fresh
//! machine without pacman still gets a working daemon.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use pacmesh_conf::{OwnServers, PacmanConf};
use tracing::{info, warn};

use crate::config::Config;
use crate::identity::Identity;
use crate::index::MAX_CACHE_DIRS;
use crate::mesh::link::MeshKey;
use crate::mirrors::{MirrorTable, DEFAULT_MIRROR};

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
    pub cache_dirs: Vec<PathBuf>,
    pub mirrors: MirrorTable,
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
    let mirrors = match &pacman {
        Some(conf) => MirrorTable::new(conf.repos.iter().map(|repo| {
            let urls = repo
                .real_mirrors(&own)
                .into_iter()
                .map(|s| s.url.clone())
                .collect();
            (repo.name.clone(), urls)
        })),
        None => MirrorTable::fallback_only(DEFAULT_MIRROR),
    };

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
    Ok(Environment {
        identity,
        mesh_key,
        archs,
        sync_dir: pacman.as_ref().map(|c| c.options.sync_dir()),
        unverified_from_peers: !config.verified_only,
        cache_dirs,
        mirrors,
        state_dir,
        store_dir,
    })
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
}
