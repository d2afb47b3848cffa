//! Which packages the local cache dirs hold, kept current as pacman and
//! paccache change them.
//!
//! [`CacheIndex`] is the pure part: names in, changes out. [`watch`] does the
//! IO: the startup scan and the `notify` watcher feeding it. A name is in the
//! index only while a complete file sits under it, so a download in progress
//! (`*.part`, pacman's `download-*` dirs, a file still open for writing) is
//! never served.

pub mod watch;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pacmesh_proto::{classify, validate_name};

/// At most this many cache dirs: each file's dirs are kept as a bit set.
pub const MAX_CACHE_DIRS: usize = 64;

/// A change to the set of names the host can serve, for digest deltas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Box<str>),
    Removed(Box<str>),
}

/// Names of complete package files, and which cache dirs hold each.
#[derive(Debug, Default)]
pub struct CacheIndex {
    dirs: Vec<PathBuf>,
    files: HashMap<Box<str>, u64>,
}

/// `dir/name` as `Path::join` makes it for a plain file name, without its
/// walk over components (on every cache hit).
fn child(dir: &Path, name: &str) -> PathBuf {
    let dir = dir.as_os_str();
    let mut path = OsString::with_capacity(dir.len() + 1 + name.len());
    path.push(dir);
    if needs_separator(dir) {
        path.push("/");
    }
    path.push(name);
    PathBuf::from(path)
}

/// Whether a name joined to `dir` needs a `/` between them.
fn needs_separator(dir: &std::ffi::OsStr) -> bool {
    !dir.is_empty() && !dir.as_encoded_bytes().ends_with(b"/")
}

/// The file name of `path` when it is a path [`CacheIndex::locate`] makes
/// for `dir` (`dir` joined with a plain name), compared as bytes: on every
/// cache hit, where `Path::parent` and `Path`'s `==` walked components.
pub fn name_in<'a>(dir: &Path, path: &'a Path) -> Option<&'a str> {
    let dir = dir.as_os_str();
    let rest = path.as_os_str().as_encoded_bytes();
    let rest = rest.strip_prefix(dir.as_encoded_bytes())?;
    let rest = if needs_separator(dir) {
        rest.strip_prefix(b"/")?
    } else {
        rest
    };
    if rest.is_empty() || rest.contains(&b'/') {
        return None;
    }
    std::str::from_utf8(rest).ok()
}

/// True for names the index keeps: packages and package signatures with a
/// safe name. `*.part` and anything else is never indexed.
pub fn is_indexable(name: &str) -> bool {
    validate_name(name).is_ok() && classify(name).is_cacheable()
}

impl CacheIndex {
    /// An empty index over `dirs` (at most [`MAX_CACHE_DIRS`], the rest are
    /// dropped by the caller with a warning).
    pub fn new(mut dirs: Vec<PathBuf>) -> Self {
        dirs.truncate(MAX_CACHE_DIRS);
        CacheIndex {
            dirs,
            files: HashMap::new(),
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Records that cache dir `dir` now does (`present`) or does not hold a
    /// complete file `name`. Returns a change when the set of names the host
    /// can serve grew or shrank.
    pub fn set(&mut self, dir: usize, name: &str, present: bool) -> Option<Change> {
        if dir >= self.dirs.len() || !is_indexable(name) {
            return None;
        }
        let bit = 1u64 << dir;
        if present {
            match self.files.get_mut(name) {
                Some(mask) => {
                    *mask |= bit;
                    None
                }
                None => {
                    self.files.insert(name.into(), bit);
                    Some(Change::Added(name.into()))
                }
            }
        } else {
            let mask = self.files.get_mut(name)?;
            *mask &= !bit;
            if *mask == 0 {
                self.files.remove(name);
                Some(Change::Removed(name.into()))
            } else {
                None
            }
        }
    }

    /// Replaces everything known about one dir by a fresh listing of it:
    /// removals first, then additions, and nothing for a name listed
    /// before and after. Allocates only for the changes (the startup scan
    /// of 10 000 files once removed and re-added copies of every name,
    /// which peak memory showed).
    pub fn replace_dir(&mut self, dir: usize, names: &[String]) -> Vec<Change> {
        if dir >= self.dirs.len() {
            return Vec::new();
        }
        let bit = 1u64 << dir;
        let gone: Vec<Box<str>> = if self.files.values().any(|mask| mask & bit != 0) {
            let listed: std::collections::HashSet<&str> =
                names.iter().map(String::as_str).collect();
            self.files
                .iter()
                .filter(|(name, mask)| **mask & bit != 0 && !listed.contains(&***name))
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut changes: Vec<Change> = gone
            .iter()
            .filter_map(|name| self.set(dir, name, false))
            .collect();
        changes.extend(names.iter().filter_map(|name| self.set(dir, name, true)));
        changes
    }

    /// Where a complete copy of `name` is, first cache dir first.
    pub fn locate(&self, name: &str) -> Option<PathBuf> {
        let mask = *self.files.get(name)?;
        let dir = mask.trailing_zeros() as usize;
        self.dirs.get(dir).map(|d| child(d, name))
    }

    /// Whether a cache dir other than `dir` holds `name`.
    pub fn held_outside(&self, name: &str, dir: &std::path::Path) -> bool {
        let Some(&mask) = self.files.get(name) else {
            return false;
        };
        let own = self
            .dirs
            .iter()
            .position(|d| d == dir)
            .map_or(0, |i| 1u64 << i);
        mask & !own != 0
    }

    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// All names, for a full digest.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(|k| &**k)
    }
}

#[cfg(test)]
mod tests;
