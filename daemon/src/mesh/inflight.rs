//! What the mesh needs from the downloads running on this host, and what
//! it tells the download engine about its peers' downloads (a host that
//! misses a file a peer is fetching right now joins that fetch instead of
//! going to the WAN itself: docs/DESIGN.md, "A peer fetching it now").
//!
//! The mesh does not know how downloads are made: the engine
//! (`crate::fetch`) implements [`InFlightFiles`], and the mesh serves a
//! peer's `FetchRequest` for a file that is not in the cache index from
//! it, the bytes going out as they arrive.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// A boxed, sendable future (the crate has no `futures` dependency).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a file still arriving could not be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrowingError {
    /// The download here stopped (every source failed, or nobody wants it
    /// any more): the reader must continue elsewhere from the byte reached.
    #[error("the download was abandoned")]
    Abandoned,
    /// The download here finished and its bytes did not verify: the
    /// reader must throw away everything it got from it.
    #[error("the download's bytes did not verify")]
    BadBytes,
    /// Reading the file on this host's disk failed.
    #[error("reading the download: {0}")]
    Io(String),
}

/// A download being read while it grows: its size, and its bytes from the
/// offset asked for on.
pub struct GrowingRead {
    /// The whole file's size.
    pub size: u64,
    /// Modification time to announce, Unix seconds (the download's start).
    pub mtime: i64,
    pub chunks: Box<dyn GrowingChunks>,
}

impl std::fmt::Debug for GrowingRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrowingRead")
            .field("size", &self.size)
            .field("mtime", &self.mtime)
            .finish_non_exhaustive()
    }
}

/// The bytes of a [`GrowingRead`], in order.
pub trait GrowingChunks: Send {
    /// The next bytes, waiting for them to arrive; `Ok(None)` once the
    /// last byte of the file was handed out.
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, GrowingError>>;
}

/// The files this host is downloading right now.
pub trait InFlightFiles: Send + Sync + 'static {
    /// `None` when no download of `name` runs here. Otherwise a future
    /// that resolves once the download's size is known (the sync database
    /// usually knows it at once; else the first source's answer does).
    fn open(
        &self,
        name: &str,
        offset: u64,
    ) -> Option<BoxFuture<'static, Result<GrowingRead, GrowingError>>>;
}

/// No downloads at all: what a mesh started without an engine serves.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDownloads;

impl InFlightFiles for NoDownloads {
    fn open(
        &self,
        _name: &str,
        _offset: u64,
    ) -> Option<BoxFuture<'static, Result<GrowingRead, GrowingError>>> {
        None
    }
}

/// What a host says on its links about its own downloads from the WAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// "I am fetching `name` (of `size` bytes, 0 when not known yet)":
    /// also the claim made before a fetch starts (see `crate::fetch::claim`).
    Fetching { name: String, size: u64 },
    /// "My fetch of `name` ended": `complete` when the file verified and
    /// is now in my digest, false when it was abandoned or failed.
    Ended { name: String, complete: bool },
}
