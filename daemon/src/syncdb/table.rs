//! Every repo's database entries, looked up by file name. A [`Table`] is
//! never edited in place: reloading one repo builds a new table that
//! shares the other repos' entries (`Arc`), and the new table replaces the
//! old one whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{DbEntry, Expected};

/// One repo's entries, by `%FILENAME%`.
#[derive(Debug, Default)]
pub struct RepoDb {
    entries: HashMap<Box<str>, DbEntry>,
}

impl RepoDb {
    pub fn new(entries: HashMap<Box<str>, DbEntry>) -> Self {
        RepoDb { entries }
    }

    pub fn get(&self, file_name: &str) -> Option<&DbEntry> {
        self.entries.get(file_name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by file name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DbEntry)> {
        self.entries.iter().map(|(n, e)| (&**n, e))
    }
}

/// All repos, by name (`core` for `core.db`).
#[derive(Debug, Default, Clone)]
pub struct Table {
    repos: BTreeMap<String, Arc<RepoDb>>,
}

impl Table {
    /// What `file_name` must be, per the repo whose database lists it with
    /// a size and checksum. A name listed by several repos (a package
    /// moving from `core-testing` to `core`) is answered by the first of
    /// them in name order; each is this host's own database, so any is a
    /// sound reference. Prefer [`Table::lookup_in`] when the repo is known.
    pub fn lookup(&self, file_name: &str) -> Option<Expected> {
        self.repos
            .iter()
            .find_map(|(repo, db)| db.get(file_name)?.expected(repo))
    }

    /// What `file_name` must be, per `repo`'s database only.
    pub fn lookup_in(&self, repo: &str, file_name: &str) -> Option<Expected> {
        self.repos.get(repo)?.get(file_name)?.expected(repo)
    }

    /// Whether any repo's database lists `file_name`.
    pub fn lists(&self, file_name: &str) -> bool {
        self.repos.values().any(|db| db.get(file_name).is_some())
    }

    /// The entry as written, fields possibly missing (for diagnostics).
    pub fn entry(&self, repo: &str, file_name: &str) -> Option<DbEntry> {
        self.repos.get(repo)?.get(file_name).copied()
    }

    /// This table with `repo`'s entries replaced.
    pub fn with_repo(&self, repo: &str, db: Arc<RepoDb>) -> Table {
        let mut next = self.clone();
        next.repos.insert(repo.to_owned(), db);
        next
    }

    /// This table without `repo`.
    pub fn without_repo(&self, repo: &str) -> Table {
        let mut next = self.clone();
        next.repos.remove(repo);
        next
    }

    /// `repo`'s entries.
    pub fn repo(&self, repo: &str) -> Option<&Arc<RepoDb>> {
        self.repos.get(repo)
    }

    pub fn has_repo(&self, repo: &str) -> bool {
        self.repos.contains_key(repo)
    }

    /// Repo names with how many files each lists (for status and logs).
    pub fn repos(&self) -> impl Iterator<Item = (&str, usize)> {
        self.repos
            .iter()
            .map(|(name, db)| (name.as_str(), db.len()))
    }
}

/// The repo a file in the sync dir is the database of: `core.db` → `core`.
/// `core.files`, `core.db.sig` and anything else → `None`.
pub fn repo_of_db_file(file_name: &str) -> Option<&str> {
    let repo = file_name.strip_suffix(".db")?;
    let safe = !repo.is_empty() && !repo.starts_with('.') && !repo.contains('/');
    safe.then_some(repo)
}
