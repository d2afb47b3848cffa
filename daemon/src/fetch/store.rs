//! Where finished downloads are kept so peers can fetch them: one dir
//! under the daemon's store (`STORE/fetched`), watched by the cache index
//! like pacman's own cache dirs, so a kept file is served locally and
//! listed in this host's digest.
//!
//! The policy ([`sweep`], pure): a kept file goes as soon as one of
//! pacman's cache dirs holds the same file (pacman downloaded it from us,
//! so the network still has it), or once it is older than `max_age`, and
//! the oldest go first while the dir holds more than `max_bytes`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::growing::Writer;

/// Kept files older than this are removed.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
/// The kept files' total size cap.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// A caching mirror keeps what it fetched this long (its size cap is the
/// config's `mirror.store_max_gib`).
pub const MIRROR_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The kept-downloads dir and its limits.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// One kept file, as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub name: String,
    pub size: u64,
    pub age: Duration,
    /// One of pacman's cache dirs holds the same name.
    pub elsewhere: bool,
}

/// Which kept files to remove (pure).
pub fn sweep(mut kept: Vec<Kept>, max_age: Duration, max_bytes: u64) -> Vec<String> {
    let mut gone = Vec::new();
    kept.retain(|k| {
        if k.elsewhere || k.age > max_age {
            gone.push(k.name.clone());
            false
        } else {
            true
        }
    });
    // Oldest first until under the cap.
    kept.sort_by_key(|k| std::cmp::Reverse(k.age));
    let mut total: u64 = kept.iter().map(|k| k.size).sum();
    for k in kept {
        if total <= max_bytes {
            break;
        }
        total -= k.size;
        gone.push(k.name);
    }
    gone
}

impl Store {
    pub fn new(dir: PathBuf) -> std::io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        Ok(Store {
            dir,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves a finished, verified download in under its name.
    pub fn keep(&self, writer: Writer, name: &str) -> std::io::Result<()> {
        writer.keep_as(&self.dir.join(name))
    }

    /// Lists the kept files; `elsewhere(name)` says whether a pacman
    /// cache dir holds the same name.
    pub fn list(&self, elsewhere: impl Fn(&str) -> bool) -> std::io::Result<Vec<Kept>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            out.push(Kept {
                elsewhere: elsewhere(&name),
                name,
                size: meta.len(),
                age,
            });
        }
        Ok(out)
    }

    /// Removes the kept files `unwanted` names; returns those removed (a
    /// response still reading one finishes: its handle keeps the data).
    pub fn remove_where(&self, unwanted: impl Fn(&str) -> bool) -> std::io::Result<Vec<String>> {
        let mut gone = Vec::new();
        for kept in self.list(|_| false)? {
            if unwanted(&kept.name) && std::fs::remove_file(self.dir.join(&kept.name)).is_ok() {
                gone.push(kept.name);
            }
        }
        gone.sort();
        Ok(gone)
    }

    /// Applies [`sweep`] once; returns what was removed.
    pub fn sweep_once(&self, elsewhere: impl Fn(&str) -> bool) -> std::io::Result<Vec<String>> {
        let gone = sweep(self.list(elsewhere)?, self.max_age, self.max_bytes);
        for name in &gone {
            // An open handle (a response being sent) keeps the data.
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(name: &str, size: u64, age_s: u64, elsewhere: bool) -> Kept {
        Kept {
            name: name.into(),
            size,
            age: Duration::from_secs(age_s),
            elsewhere,
        }
    }

    #[test]
    fn policy() {
        let h = 3600;
        let table: Vec<(Vec<Kept>, u64, Vec<&str>)> = vec![
            // In pacman's cache already, or too old: gone.
            (
                vec![
                    kept("a", 1, 10, true),
                    kept("b", 1, 7 * h, false),
                    kept("c", 1, 10, false),
                ],
                100,
                vec!["a", "b"],
            ),
            // Over the cap: oldest first, until under it.
            (
                vec![
                    kept("new", 40, 10, false),
                    kept("old", 40, 300, false),
                    kept("mid", 40, 100, false),
                ],
                90,
                vec!["old"],
            ),
            (vec![kept("x", 10, 1, false)], 100, vec![]),
        ];
        for (files, cap, want) in table {
            assert_eq!(
                sweep(files.clone(), DEFAULT_MAX_AGE, cap),
                want,
                "{files:?}"
            );
        }
    }
}
