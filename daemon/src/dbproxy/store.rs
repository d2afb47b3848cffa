//! Proxied databases on disk, kept as pairs: a database and its signature
//! (when the upstream has one) live in one generation directory,
//! `STORE/db/{arch}/{repo}/{name}/{generation}/`, which is written in
//! `STORE/db/.incoming/` and renamed into place whole. A client therefore
//! never sees a new database with an old signature, across restarts too.
//!
//! The newest generation is the current one; an older one is removed once
//! the last request holding it lets go ([`Generation`]'s drop), so a
//! response being sent is never cut short.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use tracing::warn;

use super::DbKey;

/// The directory under the store dir.
pub const DIR: &str = "db";
/// Where pairs are written before they are renamed into place.
const INCOMING: &str = ".incoming";

/// One kept copy of a database, with its signature if it has one.
#[derive(Debug)]
pub struct Generation {
    dir: PathBuf,
    db: PathBuf,
    sig: Option<PathBuf>,
    /// The database's date (the upstream's `Last-Modified`), also its
    /// file's mtime.
    pub modified: SystemTime,
    /// Set when a newer generation replaced it: removed when dropped.
    retired: AtomicBool,
}

impl Generation {
    pub fn db(&self) -> &Path {
        &self.db
    }

    pub fn sig(&self) -> Option<&Path> {
        self.sig.as_deref()
    }

    /// Bytes on disk (database and signature).
    pub fn bytes(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.db) + self.sig.as_deref().map_or(0, len)
    }

    /// Marks it replaced; it goes when the last holder drops it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                warn!(dir = %self.dir.display(), error = %e, "cannot remove an old database copy");
            }
        }
    }
}

/// A pair being written: a directory under `.incoming`, removed on drop
/// unless committed.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    committed: bool,
}

impl Pending {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `STORE/db`.
#[derive(Debug)]
pub struct DbStore {
    dir: PathBuf,
    next: AtomicU64,
}

static PENDING: AtomicU64 = AtomicU64::new(0);

impl DbStore {
    /// Opens the store under `store_dir`: removes pairs left half-written,
    /// keeps each database's newest generation and removes the others.
    pub fn open(store_dir: &Path) -> std::io::Result<(DbStore, Vec<(DbKey, Generation)>)> {
        let dir = store_dir.join(DIR);
        let incoming = dir.join(INCOMING);
        let _ = std::fs::remove_dir_all(&incoming);
        std::fs::create_dir_all(&incoming)?;
        let mut found = Vec::new();
        for arch in subdirs(&dir)? {
            for repo in subdirs(&dir.join(&arch))? {
                for name in subdirs(&dir.join(&arch).join(&repo))? {
                    let key = DbKey {
                        arch: arch.clone(),
                        repo: repo.clone(),
                        name,
                    };
                    if let Some(generation) = newest(&dir, &key)? {
                        found.push((key, generation));
                    }
                }
            }
        }
        let next = found
            .iter()
            .filter_map(|(_, g)| g.dir.file_name()?.to_str()?.parse::<u64>().ok())
            .max()
            .map_or_else(now_nanos, |n| n.max(now_nanos()));
        let store = DbStore {
            dir,
            next: AtomicU64::new(next + 1),
        };
        Ok((store, found))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory to write a pair into.
    pub fn pending(&self) -> std::io::Result<Pending> {
        let n = PENDING.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .dir
            .join(INCOMING)
            .join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Pending {
            dir,
            committed: false,
        })
    }

    /// Moves a complete pair into place as `key`'s newest generation: the
    /// database `key.name` (its mtime `modified`), and `{name}.sig` when
    /// `has_sig`.
    pub fn commit(
        &self,
        key: &DbKey,
        mut pending: Pending,
        modified: SystemTime,
        has_sig: bool,
    ) -> std::io::Result<Generation> {
        let parent = self.dir.join(&key.arch).join(&key.repo).join(&key.name);
        std::fs::create_dir_all(&parent)?;
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{generation:020}"));
        // The directory holds the pair: one rename makes both visible.
        std::fs::File::open(&pending.dir)?.sync_all()?;
        std::fs::rename(&pending.dir, &dir)?;
        pending.committed = true;
        Ok(generation_at(dir, key, modified, has_sig))
    }
}

fn generation_at(dir: PathBuf, key: &DbKey, modified: SystemTime, has_sig: bool) -> Generation {
    Generation {
        db: dir.join(&key.name),
        sig: has_sig.then(|| dir.join(format!("{}.sig", key.name))),
        dir,
        modified,
        retired: AtomicBool::new(false),
    }
}

/// The newest complete generation of `key` (older ones and broken ones
/// removed).
fn newest(dir: &Path, key: &DbKey) -> std::io::Result<Option<Generation>> {
    let parent = dir.join(&key.arch).join(&key.repo).join(&key.name);
    let mut generations: Vec<String> = subdirs(&parent)?
        .into_iter()
        .filter(|g| g.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    generations.sort();
    let mut current = None;
    while let Some(g) = generations.pop() {
        let dir = parent.join(&g);
        let db = dir.join(&key.name);
        match (&current, std::fs::metadata(&db)) {
            (None, Ok(meta)) if meta.is_file() => {
                let has_sig = dir.join(format!("{}.sig", key.name)).is_file();
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                current = Some(generation_at(dir, key, modified, has_sig));
            }
            _ => {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    Ok(current)
}

/// Names of the directories in `dir` that are plain, safe names.
fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if pacmesh_proto::validate_name(&name).is_ok() && entry.file_type()?.is_dir() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DbKey {
        DbKey {
            arch: "x86_64".into(),
            repo: "core".into(),
            name: "core.db".into(),
        }
    }

    fn write_pair(store: &DbStore, db: &[u8], sig: Option<&[u8]>) -> Generation {
        let pending = store.pending().unwrap();
        std::fs::write(pending.dir().join("core.db"), db).unwrap();
        if let Some(sig) = sig {
            std::fs::write(pending.dir().join("core.db.sig"), sig).unwrap();
        }
        store
            .commit(&key(), pending, SystemTime::UNIX_EPOCH, sig.is_some())
            .unwrap()
    }

    #[test]
    fn pairs_are_kept_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, found) = DbStore::open(dir.path()).unwrap();
        assert!(found.is_empty());
        let old = write_pair(&store, b"old db", Some(b"old sig"));
        let new = write_pair(&store, b"new db", None);
        assert_eq!(std::fs::read(new.db()).unwrap(), b"new db");
        assert!(new.sig().is_none());
        // A retired generation goes when dropped; the current one stays.
        let old_dir = old.dir.clone();
        old.retire();
        drop(old);
        assert!(!old_dir.exists());
        drop(new);
        // A half-written pair is dropped at start.
        let abandoned = store.pending().unwrap();
        std::fs::write(abandoned.dir().join("core.db"), b"half").unwrap();
        std::mem::forget(abandoned);
        let (_, found) = DbStore::open(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        let (k, g) = &found[0];
        assert_eq!(k, &key());
        assert_eq!(std::fs::read(g.db()).unwrap(), b"new db");
        assert!(g.sig().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join(DIR).join(INCOMING))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn at_start_only_the_newest_generation_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = DbStore::open(dir.path()).unwrap();
        let a = write_pair(&store, b"a", Some(b"a sig"));
        let b = write_pair(&store, b"b", Some(b"b sig"));
        let (a_dir, b_dir) = (a.dir.clone(), b.dir.clone());
        drop((a, b));
        let (store, found) = DbStore::open(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(std::fs::read(found[0].1.sig().unwrap()).unwrap(), b"b sig");
        assert!(!a_dir.exists() && b_dir.exists());
        // Generations keep increasing after a restart.
        let c = write_pair(&store, b"c", None);
        assert!(c.dir > b_dir, "{:?} after {:?}", c.dir, b_dir);
    }
}
