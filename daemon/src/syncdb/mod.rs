//! What this host's own pacman sync databases say each package file must
//! be: its size and SHA-256 (docs/DESIGN.md, "Verification against the
//! sync databases"). Every
//! byte received from a peer is checked against them, never against
//! anything a peer says.
//!
//! - [`desc`] (pure): one package's `desc` file → file name, size, checksum.
//! - [`archive`] (pure): a whole `*.db` file's bytes (a tar archive, plain
//!   or compressed with gzip, zstd or xz, told apart by magic bytes) →
//!   the entries it holds, plus the entries skipped and why.
//! - [`bounds`]: how large, deep and long a database may be before it is
//!   refused (a hostile mirror writes what pacman saves).
//! - [`table`] (pure): every repo's entries, looked up by file name; it is
//!   replaced whole, never edited in place.
//! - [`load`] (IO): [`SyncDbs`] reads `DBPath/sync/*.db` and holds the
//!   current table behind `RwLock<Arc<Table>>`.
//! - [`watch`] (IO): a `notify` watcher that reloads a db when pacman
//!   renames a fresh copy into place or closes it after writing.
//! - [`verify`] (pure): [`Verifier`] hashes a download as it arrives.
//! - [`fed`]: in caching-mirror mode, the databases the daemon proxies,
//!   per architecture, fed in as they are fetched (`crate::dbproxy`).
//!
//! A file the database lists without `%CSIZE%` or without `%SHA256SUM%`
//! cannot be verified, so [`SyncDbs::lookup`] treats it exactly like a
//! file the database does not list: `None`, and the caller must not take
//! it from a peer. The same holds for package signatures (`*.sig`): the
//! database has no checksum for them.

pub mod archive;
pub mod bounds;
pub mod desc;
pub mod fed;
pub mod load;
pub mod table;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod tests;

pub use archive::{parse_db, parse_db_within, Compression, DbError, FormatError, Limits};
pub use archive::{ParsedDb, Skipped};
pub use bounds::Bound;
pub use desc::{parse_desc, Desc, EntryError};
pub use fed::{repo_of_proxied_db, FedDbs};
pub use load::SyncDbs;
pub use table::{repo_of_db_file, RepoDb, Table};
pub use verify::{for_client, Mismatch, Verifier};

/// What one package file must be, from a sync database entry that has both
/// a size and a checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `%CSIZE%`: the package file's size in bytes.
    pub size: u64,
    /// `%SHA256SUM%`.
    pub sha256: [u8; 32],
    /// The repo whose database said so (`core` for `core.db`).
    pub repo: String,
}

/// A database entry as written: either field may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbEntry {
    pub size: Option<u64>,
    pub sha256: Option<[u8; 32]>,
}

impl DbEntry {
    /// The entry as something a download can be verified against, if it
    /// has both fields.
    pub fn expected(&self, repo: &str) -> Option<Expected> {
        Some(Expected {
            size: self.size?,
            sha256: self.sha256?,
            repo: repo.to_owned(),
        })
    }
}

/// Lowercase hex of a SHA-256, as pacman writes it.
pub fn to_hex(sum: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    sum.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
