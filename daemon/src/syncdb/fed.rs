//! The databases a caching mirror proxies (`crate::dbproxy`), fed in as
//! they are fetched and kept, rather than read from pacman's sync dir: the
//! packages its clients ask for are verified against them. One [`Table`]
//! per architecture, since a mirror may serve several (`core` for
//! `x86_64` and for `aarch64` list different files). Like [`Table`], the
//! whole map is replaced, never edited in place.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::archive::ParsedDb;
use super::table::{RepoDb, Table};
use super::Expected;

/// Every proxied database's entries, by architecture, then repo.
#[derive(Debug, Default)]
pub struct FedDbs {
    tables: RwLock<Arc<BTreeMap<String, Table>>>,
}

impl FedDbs {
    fn tables(&self) -> Arc<BTreeMap<String, Table>> {
        self.tables.read().clone()
    }

    /// Replaces `repo`'s entries for `arch` with `parsed`'s; returns how
    /// many files it lists.
    pub fn feed(&self, arch: &str, repo: &str, parsed: ParsedDb) -> usize {
        let db = Arc::new(RepoDb::new(parsed.entries));
        let files = db.len();
        let mut guard = self.tables.write();
        let mut next = (**guard).clone();
        let table = next.remove(arch).unwrap_or_default().with_repo(repo, db);
        next.insert(arch.to_owned(), table);
        *guard = Arc::new(next);
        files
    }

    /// What `file_name` must be per `repo`'s database for `arch`.
    pub fn lookup_in(&self, arch: &str, repo: &str, file_name: &str) -> Option<Expected> {
        self.tables().get(arch)?.lookup_in(repo, file_name)
    }

    /// Every file `repo`'s database for `arch` lists with a size and a
    /// checksum, and what it must be.
    pub fn listed(&self, arch: &str, repo: &str) -> Vec<(String, Expected)> {
        let tables = self.tables();
        let Some(db) = tables.get(arch).and_then(|t| t.repo(repo)) else {
            return Vec::new();
        };
        db.iter()
            .filter_map(|(name, entry)| Some((name.to_owned(), entry.expected(repo)?)))
            .collect()
    }

    /// Whether any proxied database, of any architecture, lists
    /// `file_name`.
    pub fn lists(&self, file_name: &str) -> bool {
        self.tables().values().any(|t| t.lists(file_name))
    }

    /// (architecture, repo, files listed) of every database fed in.
    pub fn repos(&self) -> Vec<(String, String, usize)> {
        let tables = self.tables();
        tables
            .iter()
            .flat_map(|(arch, table)| {
                table
                    .repos()
                    .map(|(repo, n)| (arch.clone(), repo.to_owned(), n))
            })
            .collect()
    }
}

/// The repo whose package list a proxied database file is: `core.db` and
/// `core.db.tar.gz` (the same file under another name) → `core`;
/// `core.files` (packages' file lists, much larger) and signatures → `None`.
pub fn repo_of_proxied_db(file_name: &str) -> Option<&str> {
    let (repo, rest) = file_name.rsplit_once(".db")?;
    let tail_ok = rest.is_empty()
        || rest.strip_prefix(".tar").is_some_and(|c| {
            c.is_empty()
                || c.strip_prefix('.')
                    .is_some_and(|c| !c.is_empty() && !c.contains('.'))
        });
    let repo_ok = !repo.is_empty() && !repo.starts_with('.') && !repo.contains('/');
    (tail_ok && repo_ok).then_some(repo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syncdb::DbEntry;

    #[test]
    fn which_files_feed_the_table() {
        let table = [
            ("core.db", Some("core")),
            ("core.db.tar.gz", Some("core")),
            ("core.db.tar.zst", Some("core")),
            ("core.db.tar", Some("core")),
            ("core-testing.db", Some("core-testing")),
            ("core.files", None),
            ("core.files.tar.gz", None),
            ("core.db.sig", None),
            ("core.db.tar.gz.sig", None),
            (".db", None),
            ("a.pkg.tar.zst", None),
        ];
        for (name, want) in table {
            assert_eq!(repo_of_proxied_db(name), want, "{name}");
        }
    }

    #[test]
    fn tables_per_architecture() {
        let fed = FedDbs::default();
        let parsed = |name: &str, size: u64| {
            let mut p = ParsedDb::default();
            p.entries.insert(
                name.into(),
                DbEntry {
                    size: Some(size),
                    sha256: Some([7; 32]),
                },
            );
            p
        };
        assert_eq!(
            fed.feed("x86_64", "core", parsed("a-1-1-any.pkg.tar.zst", 10)),
            1
        );
        fed.feed("aarch64", "core", parsed("a-1-1-any.pkg.tar.zst", 20));
        let size = |arch, repo| {
            fed.lookup_in(arch, repo, "a-1-1-any.pkg.tar.zst")
                .map(|e| e.size)
        };
        assert_eq!(size("x86_64", "core"), Some(10));
        assert_eq!(size("aarch64", "core"), Some(20));
        assert_eq!(size("aarch64", "extra"), None);
        assert_eq!(size("riscv64", "core"), None);
        assert!(fed.lists("a-1-1-any.pkg.tar.zst"));
        assert!(!fed.lists("b-1-1-any.pkg.tar.zst"));
        // Fed again: replaced.
        fed.feed("x86_64", "core", parsed("b-1-1-any.pkg.tar.zst", 5));
        assert_eq!(size("x86_64", "core"), None);
        assert_eq!(
            fed.repos(),
            vec![
                ("aarch64".into(), "core".into(), 1),
                ("x86_64".into(), "core".into(), 1)
            ]
        );
    }
}
