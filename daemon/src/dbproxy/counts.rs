//! A caching mirror's database counters, and what it keeps, for status
//! and metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;

use super::store::Generation;
use super::DbProxy;

/// Counters for status and metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) served: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) refreshed: AtomicU64,
    pub(super) not_modified: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) bytes_upstream: AtomicU64,
}

/// `mirror.databases` in the status JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DbCounts {
    /// Database and signature responses with a body or a 304.
    pub served: u64,
    /// Of `served`: a stale copy, with a `Warning` header.
    pub stale_served: u64,
    /// New pairs fetched and kept.
    pub fetched: u64,
    /// Checks answered 304.
    pub not_modified: u64,
    /// Checks where every upstream failed.
    pub failed_checks: u64,
    /// Body bytes fetched from upstreams for databases.
    pub bytes_upstream: u64,
    /// Databases kept (pairs).
    pub kept: usize,
    /// Their bytes on disk.
    pub kept_bytes: u64,
}

impl DbProxy {
    /// Counters and what is kept, for status and metrics.
    pub fn counts(&self) -> DbCounts {
        let kept: Vec<Arc<Generation>> = self
            .entries()
            .values()
            .filter_map(|e| e.current.clone())
            .collect();
        DbCounts {
            served: self.counters.served.load(Relaxed),
            stale_served: self.counters.stale.load(Relaxed),
            fetched: self.counters.refreshed.load(Relaxed),
            not_modified: self.counters.not_modified.load(Relaxed),
            failed_checks: self.counters.failed.load(Relaxed),
            bytes_upstream: self.counters.bytes_upstream.load(Relaxed),
            kept: kept.len(),
            kept_bytes: kept.iter().map(|g| g.bytes()).sum(),
        }
    }
}
