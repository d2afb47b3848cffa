//! The `[mirror]` table of the config file: caching-mirror mode's own
//! repositories and their upstreams (docs/DESIGN.md, "Caching-mirror
//! mode"). File only: a table of repositories has no sensible flag form.
//!
//! ```toml
//! mode = "mirror"
//!
//! [mirror]
//! db_revalidate_s = 60
//! store_max_gib = 16
//! keep_versions = 3
//! refresh_interval_s = 3600
//! admin_token_file = "/etc/pacmesh/admin.token"
//!
//! [[mirror.repo]]
//! name = "core"
//! arch = ["aarch64"]
//! servers = ["http://mirror.archlinuxarm.org/$arch/$repo"]
//!
//! [[mirror.repo]]
//! name = "extra"
//! mirrorlist = "/etc/pacman.d/mirrorlist"
//!
//! [[mirror.repo]]
//! name = "core"
//! arch = ["x86_64"]
//! servers = ["https://geo.mirror.pkgbuild.com/$repo/os/$arch"]
//! full = true
//! ```
//!
//! [`RawMirror`] is the table as written; [`validate`] checks every key
//! (pure) and names the key and the file in its errors.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{ConfigError, Origin};

/// How long a proxied database is served before it is checked upstream
/// again, when `db_revalidate_s` is not set.
pub const DEFAULT_DB_REVALIDATE: Duration = Duration::from_secs(60);

/// The longest `db_revalidate_s` accepted: a day. Longer would leave a
/// mirror's clients on old databases for days.
pub const MAX_DB_REVALIDATE: Duration = Duration::from_secs(24 * 3600);

/// The store's size cap in mirror mode, when `store_max_gib` is not set.
pub const DEFAULT_STORE_MAX_GIB: u64 = 16;

/// The largest `store_max_gib` accepted (1 PiB: anything more is a typo).
const MAX_STORE_GIB: u64 = 1 << 20;

/// Versions of each package kept, when `keep_versions` is not set (as
/// `paccache -r`, whose default is 3).
pub const DEFAULT_KEEP_VERSIONS: usize = 3;

/// The largest `keep_versions` accepted.
const MAX_KEEP_VERSIONS: u64 = 1000;

/// How often the databases are refreshed (and full-mirror repos synced),
/// when `refresh_interval_s` is not set.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Prefetch's average rate when `prefetch_kib_s` is not set (KiB/s).
pub const DEFAULT_PREFETCH_KIB_S: u64 = 4096;

/// The longest `prefetch_days` accepted.
const MAX_PREFETCH_DAYS: u64 = 365;

/// The longest `refresh_interval_s` accepted: a week.
const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The variables pacman expands in a `Server` URL, and so do we.
const VARIABLES: [&str; 2] = ["$repo", "$arch"];

/// `[mirror]` as written.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    /// Seconds a proxied database is served before `If-Modified-Since`
    /// asks upstream again (0: at every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_revalidate_s: Option<u64>,
    /// The packages kept for clients, at most this many GiB (least
    /// recently used go first; 30 days unused at most, unless a current
    /// database lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_max_gib: Option<u64>,
    /// The same cap in MiB (small stores, tests); not with `store_max_gib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_max_mib: Option<u64>,
    /// Versions of each package kept (`paccache -rk N`); 0: no such rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_versions: Option<u64>,
    /// Seconds between refreshes of every kept database, each followed by
    /// the sync of the full-mirror repos (0: no periodic refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval_s: Option<u64>,
    /// After each periodic refresh, prefetch newer versions of what
    /// clients fetched in the last this many days (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_days: Option<u64>,
    /// Prefetch's average rate, KiB a second (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_kib_s: Option<u64>,
    /// A file holding the token admin actions (`/_pacmesh/admin/…`) need;
    /// none: admin actions are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// `[[mirror.repo]]`: repositories served with upstreams of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo: Vec<RawMirrorRepo>,
}

/// One `[[mirror.repo]]` as written.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirrorRepo {
    pub name: String,
    /// Architectures served for this repo; empty: whatever a request names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    /// Upstream URL templates (`$repo` and `$arch` expanded per request),
    /// tried in order, before the mirrorlist's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// A pacman mirrorlist (`Server = URL` lines), read again when it
    /// changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrorlist: Option<PathBuf>,
    /// Mirror every package the repo's database lists (needs `arch`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// The checked `[mirror]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub db_revalidate: Duration,
    pub store_max_bytes: u64,
    pub keep_versions: usize,
    /// `None`: no periodic refresh.
    pub refresh_interval: Option<Duration>,
    /// `None`: no prefetch.
    pub prefetch_window: Option<Duration>,
    /// Bytes a second; 0: no limit.
    pub prefetch_rate: u64,
    pub admin_token_file: Option<PathBuf>,
    pub repos: Vec<MirrorRepo>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            db_revalidate: DEFAULT_DB_REVALIDATE,
            store_max_bytes: DEFAULT_STORE_MAX_GIB << 30,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            refresh_interval: Some(DEFAULT_REFRESH_INTERVAL),
            prefetch_window: None,
            prefetch_rate: DEFAULT_PREFETCH_KIB_S << 10,
            admin_token_file: None,
            repos: Vec::new(),
        }
    }
}

/// One checked `[[mirror.repo]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRepo {
    pub name: String,
    /// Empty: every architecture.
    pub archs: Vec<String>,
    pub servers: Vec<String>,
    pub mirrorlist: Option<PathBuf>,
    /// Every package its databases list is mirrored (`mirror::full`).
    pub full: bool,
}

impl MirrorRepo {
    /// Whether requests for `arch` are served from this repo's upstreams.
    pub fn serves_arch(&self, arch: &str) -> bool {
        self.archs.is_empty() || self.archs.iter().any(|a| a == arch)
    }
}

/// Checks `raw` (read from the file `origin` names).
pub fn validate(raw: &RawMirror, origin: &Origin) -> Result<MirrorConfig, ConfigError> {
    checked(raw).map_err(|bad| ConfigError::Invalid {
        key: bad.key,
        value: bad.value,
        origin: origin.clone(),
        reason: bad.reason,
    })
}

/// A value refused: its key, the value as written, and why.
struct Bad {
    key: String,
    value: String,
    reason: String,
}

fn err(key: String, value: String, reason: &str) -> Bad {
    Bad {
        key,
        value,
        reason: reason.to_owned(),
    }
}

fn checked(raw: &RawMirror) -> Result<MirrorConfig, Bad> {
    let db_revalidate = match raw.db_revalidate_s {
        None => DEFAULT_DB_REVALIDATE,
        Some(s) if Duration::from_secs(s) > MAX_DB_REVALIDATE => {
            return Err(err(
                "mirror.db_revalidate_s".into(),
                s.to_string(),
                &format!("at most {} seconds", MAX_DB_REVALIDATE.as_secs()),
            ))
        }
        Some(s) => Duration::from_secs(s),
    };
    let store_max_bytes = store_max_bytes(raw)?;
    let keep_versions = match raw.keep_versions {
        None => DEFAULT_KEEP_VERSIONS,
        Some(n) if n <= MAX_KEEP_VERSIONS => n as usize,
        Some(n) => {
            return Err(err(
                "mirror.keep_versions".into(),
                n.to_string(),
                &format!("from 0 (no limit) to {MAX_KEEP_VERSIONS}"),
            ))
        }
    };
    let refresh_interval = match raw.refresh_interval_s {
        None => Some(DEFAULT_REFRESH_INTERVAL),
        Some(0) => None,
        Some(s) if Duration::from_secs(s) <= MAX_REFRESH_INTERVAL => Some(Duration::from_secs(s)),
        Some(s) => {
            return Err(err(
                "mirror.refresh_interval_s".into(),
                s.to_string(),
                &format!("from 0 (off) to {} seconds", MAX_REFRESH_INTERVAL.as_secs()),
            ))
        }
    };
    let prefetch_window = match raw.prefetch_days {
        None | Some(0) => None,
        Some(d) if d <= MAX_PREFETCH_DAYS => Some(Duration::from_secs(d * 24 * 3600)),
        Some(d) => {
            return Err(err(
                "mirror.prefetch_days".into(),
                d.to_string(),
                &format!("from 0 (off) to {MAX_PREFETCH_DAYS}"),
            ))
        }
    };
    let prefetch_rate = raw
        .prefetch_kib_s
        .unwrap_or(DEFAULT_PREFETCH_KIB_S)
        .saturating_mul(1024);
    if let Some(path) = &raw.admin_token_file {
        if !path.is_absolute() {
            return Err(err(
                "mirror.admin_token_file".into(),
                path.display().to_string(),
                "must be an absolute path",
            ));
        }
    }
    let mut repos: Vec<MirrorRepo> = Vec::new();
    for (i, r) in raw.repo.iter().enumerate() {
        let checked = repo(i, r, &repos)?;
        repos.push(checked);
    }
    Ok(MirrorConfig {
        db_revalidate,
        store_max_bytes,
        keep_versions,
        refresh_interval,
        prefetch_window,
        prefetch_rate,
        admin_token_file: raw.admin_token_file.clone(),
        repos,
    })
}

/// `store_max_gib` or `store_max_mib` (one of them), in bytes.
fn store_max_bytes(raw: &RawMirror) -> Result<u64, Bad> {
    Ok(match (raw.store_max_gib, raw.store_max_mib) {
        (None, None) => DEFAULT_STORE_MAX_GIB << 30,
        (Some(gib), None) if (1..=MAX_STORE_GIB).contains(&gib) => gib << 30,
        (Some(gib), None) => {
            return Err(err(
                "mirror.store_max_gib".into(),
                gib.to_string(),
                &format!("from 1 to {MAX_STORE_GIB}"),
            ))
        }
        (None, Some(mib)) if (1..=MAX_STORE_GIB << 10).contains(&mib) => mib << 20,
        (None, Some(mib)) => {
            return Err(err(
                "mirror.store_max_mib".into(),
                mib.to_string(),
                &format!("from 1 to {}", MAX_STORE_GIB << 10),
            ))
        }
        (Some(_), Some(mib)) => {
            return Err(err(
                "mirror.store_max_mib".into(),
                mib.to_string(),
                "set `store_max_gib` or `store_max_mib`, not both",
            ))
        }
    })
}

/// `[[mirror.repo]]` number `i`, checked; `seen` are the ones before it.
fn repo(i: usize, r: &RawMirrorRepo, seen: &[MirrorRepo]) -> Result<MirrorRepo, Bad> {
    let key = |field: &str| format!("mirror.repo[{i}].{field}");
    if let Err(e) = pacmesh_proto::validate_name(&r.name) {
        return Err(err(key("name"), r.name.clone(), &e.to_string()));
    }
    if seen.iter().any(|s| s.name == r.name) {
        return Err(err(
            key("name"),
            r.name.clone(),
            "a repo is configured once (list all its servers in one entry)",
        ));
    }
    for (j, arch) in r.arch.iter().enumerate() {
        if !valid_arch(arch) {
            return Err(err(
                format!("mirror.repo[{i}].arch[{j}]"),
                arch.clone(),
                "an architecture is 1 to 32 of A-Z, a-z, 0-9 and _",
            ));
        }
    }
    for (j, url) in r.servers.iter().enumerate() {
        if let Err(why) = check_server(url) {
            return Err(err(
                format!("mirror.repo[{i}].servers[{j}]"),
                url.clone(),
                &why,
            ));
        }
    }
    if let Some(path) = &r.mirrorlist {
        if !path.is_absolute() {
            return Err(err(
                key("mirrorlist"),
                path.display().to_string(),
                "must be an absolute path",
            ));
        }
    }
    if r.full && r.arch.is_empty() {
        return Err(err(
            key("arch"),
            String::new(),
            "a full mirror names the architectures it mirrors",
        ));
    }
    if r.servers.is_empty() && r.mirrorlist.is_none() {
        return Err(err(
            key("servers"),
            String::new(),
            "a repo needs `servers`, a `mirrorlist`, or both",
        ));
    }
    Ok(MirrorRepo {
        name: r.name.clone(),
        archs: r.arch.clone(),
        servers: r.servers.clone(),
        mirrorlist: r.mirrorlist.clone(),
        full: r.full,
    })
}

impl MirrorConfig {
    /// The table as `--print-config` writes it (loads back to the same).
    pub fn to_raw(&self) -> RawMirror {
        RawMirror {
            db_revalidate_s: Some(self.db_revalidate.as_secs()),
            store_max_gib: self
                .store_max_bytes
                .is_multiple_of(1 << 30)
                .then_some(self.store_max_bytes >> 30),
            store_max_mib: (!self.store_max_bytes.is_multiple_of(1 << 30))
                .then_some(self.store_max_bytes >> 20),
            keep_versions: Some(self.keep_versions as u64),
            refresh_interval_s: Some(self.refresh_interval.map_or(0, |d| d.as_secs())),
            prefetch_days: Some(
                self.prefetch_window
                    .map_or(0, |d| d.as_secs() / (24 * 3600)),
            ),
            prefetch_kib_s: Some(self.prefetch_rate >> 10),
            admin_token_file: self.admin_token_file.clone(),
            repo: self
                .repos
                .iter()
                .map(|r| RawMirrorRepo {
                    name: r.name.clone(),
                    arch: r.archs.clone(),
                    servers: r.servers.clone(),
                    mirrorlist: r.mirrorlist.clone(),
                    full: r.full,
                })
                .collect(),
        }
    }
}

/// An architecture name as pacman and the mesh's `Hello` carry it.
fn valid_arch(arch: &str) -> bool {
    (1..=pacmesh_proto::MAX_ARCH_LEN).contains(&arch.len())
        && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `url` is an upstream template the daemon can fetch from: HTTP
/// or HTTPS with a host, and no variable pacman would not expand either.
/// Also used for the `Server` lines of a mirrorlist.
pub fn check_server(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err("an upstream is an http:// or https:// URL".into());
    }
    let expanded = VARIABLES
        .iter()
        .fold(url.to_owned(), |u, v| u.replace(v, "x"));
    if expanded.contains('$') {
        return Err("only $repo and $arch are expanded".into());
    }
    match expanded.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err("not a URL with a host".into()),
    }
}
