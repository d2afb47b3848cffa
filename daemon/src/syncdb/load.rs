//! The IO side: reading `DBPath/sync/*.db` into the shared [`Table`].
//!
//! The table sits behind `RwLock<Arc<Table>>`: a lookup clones the `Arc`
//! under a brief read lock; a reload parses the file first, outside any
//! lock, and then swaps in a whole new table. A database that fails to
//! read or parse leaves that repo's previous entries in force.

use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::{info, warn};

use super::archive::{parse_db, DbError, ParsedDb};
use super::bounds::{Bound, MAX_DB_FILE};
use super::table::{repo_of_db_file, RepoDb, Table};
use super::Expected;

/// Skipped entries logged one by one per load; the rest are counted.
const SKIPPED_LOGGED: usize = 10;

/// The sync databases of this host, kept current by [`super::watch`].
#[derive(Debug)]
pub struct SyncDbs {
    dir: PathBuf,
    table: RwLock<Arc<Table>>,
    /// Reload attempts so far, failed ones included.
    reloads: AtomicU64,
}

/// What a reload of one repo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// Its entries were replaced; this many files are listed now.
    Loaded(usize),
    /// Its database is gone, and so are its entries.
    Removed,
}

impl SyncDbs {
    /// Reads every `*.db` file in `sync_dir`. A missing dir (a machine
    /// without pacman) or an unreadable database is logged, not an error:
    /// lookups then answer `None` and packages come from the mirror.
    pub fn load(sync_dir: &Path) -> SyncDbs {
        let dbs = SyncDbs::empty(sync_dir);
        dbs.reload_all();
        dbs
    }

    /// No databases yet (nothing read).
    pub fn empty(sync_dir: &Path) -> SyncDbs {
        SyncDbs {
            dir: sync_dir.to_owned(),
            table: RwLock::new(Arc::new(Table::default())),
            reloads: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The table in force now.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// See [`Table::lookup`]: `None` for files not listed, listed without
    /// size or checksum, and for package signatures.
    pub fn lookup(&self, file_name: &str) -> Option<Expected> {
        self.table().lookup(file_name)
    }

    /// See [`Table::lookup_in`].
    pub fn lookup_in(&self, repo: &str, file_name: &str) -> Option<Expected> {
        self.table().lookup_in(repo, file_name)
    }

    /// How many reloads were attempted, failed ones included.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Acquire)
    }

    /// Reads `repo`'s database again; a database that is gone drops the
    /// repo. On any other error the previous entries stay.
    pub fn reload(&self, repo: &str) -> Result<Reloaded, DbError> {
        let outcome = self.reload_inner(repo);
        match &outcome {
            Ok(Reloaded::Loaded(packages)) => {
                info!(target: "pacmesh::syncdb", repo, packages, "sync database loaded");
            }
            Ok(Reloaded::Removed) => {
                info!(target: "pacmesh::syncdb", repo, "sync database gone; its entries dropped");
            }
            Err(e) => {
                warn!(target: "pacmesh::syncdb", repo, error = %e, "sync database not loaded; keeping the previous one");
            }
        }
        self.reloads.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    fn reload_inner(&self, repo: &str) -> Result<Reloaded, DbError> {
        let file = format!("{repo}.db");
        let bytes = match read_bounded(&self.dir.join(&file)) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(size)) => {
                return Err(DbError::Refused {
                    db: file,
                    bound: Bound::File(size),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.swap(|t| t.without_repo(repo));
                return Ok(Reloaded::Removed);
            }
            Err(source) => return Err(DbError::Read { db: file, source }),
        };
        let parsed = parse_db(&file, &bytes)?;
        log_skipped(repo, &parsed);
        let db = Arc::new(RepoDb::new(parsed.entries));
        let packages = db.len();
        self.swap(|t| t.with_repo(repo, db));
        Ok(Reloaded::Loaded(packages))
    }

    /// Drops `repo`'s entries (its database was removed or renamed away).
    fn remove(&self, repo: &str) {
        if self.table().has_repo(repo) {
            self.swap(|t| t.without_repo(repo));
            info!(target: "pacmesh::syncdb", repo, "sync database gone; its entries dropped");
        }
        self.reloads.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads every database in the dir again and drops repos whose file is
    /// gone (after the watcher lost events, and at startup).
    pub fn reload_all(&self) {
        let on_disk = match list_dbs(&self.dir) {
            Ok(repos) => repos,
            Err(e) => {
                warn!(target: "pacmesh::syncdb", dir = %self.dir.display(), error = %e,
                    "cannot list the sync dir; packages will not be taken from peers");
                BTreeSet::new()
            }
        };
        let known: Vec<String> = self.table().repos().map(|(r, _)| r.to_owned()).collect();
        for repo in known.iter().filter(|r| !on_disk.contains(*r)) {
            self.remove(repo);
        }
        for repo in &on_disk {
            let _ = self.reload(repo);
        }
    }

    /// Replaces the table by `next(current)` under the write lock; `next`
    /// only clones a map of `Arc`s, so the lock is held for microseconds.
    fn swap(&self, next: impl FnOnce(&Table) -> Table) {
        let mut guard = self.table.write();
        *guard = Arc::new(next(&guard));
    }
}

/// The whole file, or its size when that is over [`MAX_DB_FILE`].
fn read_bounded(path: &Path) -> io::Result<Result<Vec<u8>, u64>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_DB_FILE {
        return Ok(Err(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow while it is read.
    file.take(MAX_DB_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DB_FILE {
        return Ok(Err(bytes.len() as u64));
    }
    Ok(Ok(bytes))
}

/// Repos with a `*.db` regular file (or a symlink to one) in `dir`.
fn list_dbs(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut repos = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(repo) = repo_of_db_file(&name) else {
            continue;
        };
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            repos.insert(repo.to_owned());
        }
    }
    Ok(repos)
}

fn log_skipped(repo: &str, parsed: &ParsedDb) {
    for skipped in parsed.skipped.iter().take(SKIPPED_LOGGED) {
        warn!(target: "pacmesh::syncdb", repo, entry = %skipped.entry, error = %skipped.error,
            "sync database entry skipped");
    }
    if parsed.skipped_total > SKIPPED_LOGGED {
        let more = parsed.skipped_total - SKIPPED_LOGGED;
        warn!(target: "pacmesh::syncdb", repo, more, "more sync database entries skipped");
    }
}
