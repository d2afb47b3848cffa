//! The bounds a sync database must stay within (docs/DESIGN.md, "Sync
//! database bounds"). Arch's databases are not signed, so a hostile or
//! broken mirror decides what pacman writes to `DBPath/sync`: a file that
//! inflates without end, a tar header claiming gigabytes of "long name",
//! millions of entries. A database past any bound is refused whole and
//! the repo keeps its previous table, as for any other unreadable
//! database.
//!
//! The bounds sit far above what real databases need (Arch's largest,
//! `extra.db`, lists about 14 000 packages in about 8 MiB compressed and
//! 45 MiB unpacked; libalpm reckons 3 015 unpacked bytes per package).

use std::cell::Cell;
use std::io::{self, Read};

/// The largest database file read: pacman's own hard limit for a database
/// download (`payload->max_size = 128 MiB` in libalpm's `be_sync.c`), so
/// nothing pacman accepted is refused.
pub const MAX_DB_FILE: u64 = 128 << 20;

/// The most bytes a database may unpack to: about 170 000 packages at
/// libalpm's 3 015 bytes each, a dozen times `extra.db`. Bounds the time a
/// decompression bomb costs (the unpacked bytes are streamed, never held).
pub const MAX_DB_UNPACKED: u64 = 512 << 20;

/// The most tar members (headers, extension headers included) a database
/// may hold: a package has two (its directory and its `desc`). Bounds the
/// table's memory (about 150 bytes per listed file) independently of how
/// small a hostile archive packs its members.
pub const MAX_DB_MEMBERS: u64 = 400_000;

/// The largest GNU long-name or long-link member (`L`, `K`): `PATH_MAX`.
/// Such a member's data is held in memory whole, so it is refused from its
/// header, before a byte of it is read.
pub const MAX_LONG_NAME: u64 = 4096;

/// The largest PAX extended header (`x`, `g`), held in memory whole like
/// a long name. bsdtar writes a few hundred bytes at most.
pub const MAX_PAX_HEADER: u64 = 64 << 10;

/// zstd's largest window accepted, as a power of two (32 MiB, allocated by
/// the decoder). `zstd -19`, the highest level without `--ultra`, uses
/// 2^23; repo-add uses zstd's default level.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// liblzma's memory limit for an xz database: `xz -9`, the largest preset,
/// needs 65 MiB to decompress (liblzma would otherwise allocate whatever
/// dictionary the header names, up to 4 GiB).
pub const XZ_MEMORY_LIMIT: u64 = 72 << 20;

/// Which bound a database broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Bound {
    #[error("the file is {0} bytes, over the {MAX_DB_FILE}-byte limit")]
    File(u64),
    #[error("it unpacks to more than {MAX_DB_UNPACKED} bytes")]
    Unpacked,
    #[error("it holds more than {MAX_DB_MEMBERS} tar members")]
    Members,
    #[error("a long-name member of {0} bytes (the limit is {MAX_LONG_NAME})")]
    LongName(u64),
    #[error("a PAX header of {0} bytes (the limit is {MAX_PAX_HEADER})")]
    PaxHeader(u64),
    #[error("a PAX header overrides a member's size")]
    PaxSize,
    #[error("a GNU sparse member")]
    Sparse,
}

/// The unpacked bytes still allowed, shared between the [`Budget`]
/// reader under the tar walker and the walker itself, which refuses a
/// member whose declared size cannot fit before reading any of it.
#[derive(Debug)]
pub struct Meter {
    left: Cell<u64>,
    tripped: Cell<bool>,
}

impl Meter {
    pub fn new(limit: u64) -> Self {
        Meter {
            left: Cell::new(limit),
            tripped: Cell::new(false),
        }
    }

    /// Bytes that may still be unpacked.
    pub fn left(&self) -> u64 {
        self.left.get()
    }

    /// Whether a read failed for going past the limit (as opposed to the
    /// archive being corrupt).
    pub fn tripped(&self) -> bool {
        self.tripped.get()
    }
}

/// Counts the unpacked bytes through it and fails the read that would go
/// past its [`Meter`]'s limit, noting that it did.
pub struct Budget<'a, R> {
    inner: R,
    meter: &'a Meter,
}

impl<'a, R: Read> Budget<'a, R> {
    pub fn new(inner: R, meter: &'a Meter) -> Self {
        Budget { inner, meter }
    }
}

impl<R: Read> Read for Budget<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.meter.left.get();
        // One byte past the budget is asked for, so an archive that ends
        // exactly at the limit still reads to its end.
        let want = buf
            .len()
            .min(usize::try_from(left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])? as u64;
        if n > left {
            self.meter.tripped.set(true);
            return Err(io::Error::other(Bound::Unpacked));
        }
        self.meter.left.set(left - n);
        Ok(n as usize)
    }
}
