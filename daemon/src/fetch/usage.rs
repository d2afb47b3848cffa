//! When each kept file was last served, and which are being sent now, for
//! the store's least-recently-used rule (`fetch::evict`).
//!
//! Last use is kept in memory and written to `STORE/last-used` (one
//! `UNIX_SECONDS NAME` line per file, temp file + rename) at each sweep
//! when it changed, and read back at start: a file's access time is not
//! used, since most hosts mount with `noatime` or `relatime`. A file with
//! no record counts as last used when it was kept (its mtime). Lost
//! records (a crash between sweeps) cost at most a minute of history.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's name under the store dir.
pub const FILE_NAME: &str = "last-used";

/// Records past this many are not read back (the file is ours, but it may
/// be damaged: a bound on what it can cost).
const MAX_RECORDS: usize = 1 << 20;

#[derive(Debug, Default)]
struct Inner {
    last: HashMap<String, SystemTime>,
    sending: HashMap<String, usize>,
    dirty: bool,
}

/// Last-use times and responses in progress. Shared (`Arc`).
#[derive(Debug)]
pub struct Usage {
    path: PathBuf,
    inner: Mutex<Inner>,
}

/// A response sending a kept file: while it lives the file is in use.
#[derive(Debug)]
pub struct Lease {
    usage: Arc<Usage>,
    name: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut inner = self.usage.lock();
        if let Some(n) = inner.sending.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                inner.sending.remove(&self.name);
            }
        }
    }
}

impl Usage {
    /// Reads the records in `path` (none if missing or unreadable).
    pub fn load(path: PathBuf) -> Usage {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let last = text
            .lines()
            .take(MAX_RECORDS)
            .filter_map(|line| {
                let (secs, name) = line.split_once(' ')?;
                let at = UNIX_EPOCH + Duration::from_secs(secs.parse().ok()?);
                Some((name.to_owned(), at))
            })
            .collect();
        Usage {
            path,
            inner: Mutex::new(Inner {
                last,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// A response starts sending `name`: used now, in use until the lease
    /// is dropped.
    pub fn begin(self: &Arc<Self>, name: &str) -> Lease {
        let mut inner = self.lock();
        inner.last.insert(name.to_owned(), SystemTime::now());
        *inner.sending.entry(name.to_owned()).or_default() += 1;
        inner.dirty = true;
        Lease {
            usage: self.clone(),
            name: name.to_owned(),
        }
    }

    /// When `name` was last served, if it was.
    pub fn last_used(&self, name: &str) -> Option<SystemTime> {
        self.lock().last.get(name).copied()
    }

    /// Whether a response is sending `name` now.
    pub fn in_use(&self, name: &str) -> bool {
        self.lock().sending.contains_key(name)
    }

    /// Forgets the records of files no longer kept.
    pub fn retain(&self, kept: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        let before = inner.last.len();
        inner.last.retain(|name, _| kept(name));
        if inner.last.len() != before {
            inner.dirty = true;
        }
    }

    /// Writes the records if they changed since the last write; after a
    /// failed write they count as changed, so the next sweep tries again.
    pub fn save(&self) -> std::io::Result<()> {
        let text = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            // Under the lock the hit path's leases take: one buffer, no
            // allocation per record (a full mirror has tens of thousands).
            let mut text = String::with_capacity(inner.last.len() * 80);
            for (name, at) in &inner.last {
                let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let _ = writeln!(text, "{secs} {name}");
            }
            text
        };
        let written = write_atomically(&self.path, text.as_bytes());
        if written.is_err() {
            self.lock().dirty = true;
        }
        written
    }
}

/// Writes `path` whole or not at all (a temp file renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_and_records_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let usage = Arc::new(Usage::load(path.clone()));
        assert_eq!(usage.last_used("a"), None);
        let one = usage.begin("a");
        let two = usage.begin("a");
        drop(one);
        assert!(usage.in_use("a"));
        drop(two);
        assert!(!usage.in_use("a"));
        let _b = usage.begin("b");
        usage.retain(|n| n == "a");
        usage.save().unwrap();
        let again = Usage::load(path);
        let secs =
            |t: Option<SystemTime>| t.map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(secs(again.last_used("a")), secs(usage.last_used("a")));
        assert_eq!(again.last_used("b"), None);
        assert!(!again.in_use("a"));
    }

    #[test]
    fn a_failed_write_is_tried_again_at_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join(FILE_NAME);
        let usage = Arc::new(Usage::load(path.clone()));
        drop(usage.begin("a"));
        assert!(usage.save().is_err(), "its dir does not exist yet");
        std::fs::create_dir(dir.path().join("gone")).unwrap();
        usage.save().unwrap();
        assert!(Usage::load(path).last_used("a").is_some());
    }
}
