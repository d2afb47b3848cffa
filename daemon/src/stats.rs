//! Request and byte counters by source, shown by `/_pacmesh/status`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Where an answer came from, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    /// Fetched from peers, verified against the sync databases.
    Peer,
    /// Fetched from peers; the sync databases had no checksum for it.
    PeerUnverified,
    /// Still arriving from peers: pacman was sent back to ask again.
    PeerWait,
    MirrorRedirect,
    /// Fetched from the mirrors by this daemon and streamed to pacman.
    MirrorFetch,
    /// Caching-mirror mode: a proxied database or its signature (or why
    /// none could be had).
    Database,
    NotFound,
    BadRequest,
    Status,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Peer => "peer",
            Source::PeerUnverified => "peer_unverified",
            Source::PeerWait => "peer_wait",
            Source::MirrorRedirect => "mirror_redirect",
            Source::MirrorFetch => "mirror_fetch",
            Source::Database => "database",
            Source::NotFound => "not_found",
            Source::BadRequest => "bad_request",
            Source::Status => "status",
        }
    }
}

/// Upper bounds (seconds) of the transfer-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];

/// A Prometheus-style histogram with fixed buckets, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let slot = DURATION_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Cumulative counts per bucket bound (the last is `+Inf`), the sum in
    /// seconds, and the count.
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Relaxed);
                total
            })
            .collect();
        (
            cumulative,
            self.sum_micros.load(Relaxed) as f64 / 1e6,
            self.count.load(Relaxed),
        )
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    /// How long local file responses took, first byte to last.
    pub local_transfer: Histogram,
    /// How long responses served from peers took, fetch included.
    pub peer_transfer: Histogram,
    local: AtomicU64,
    peer: AtomicU64,
    peer_unverified: AtomicU64,
    peer_wait: AtomicU64,
    mirror_redirect: AtomicU64,
    mirror_fetch: AtomicU64,
    database: AtomicU64,
    not_found: AtomicU64,
    bad_request: AtomicU64,
    bytes_local: AtomicU64,
    bytes_peer: AtomicU64,
    bytes_mirror_fetch: AtomicU64,
    bytes_peer_inflight: AtomicU64,
}

/// `requests` in the status JSON (docs/DESIGN.md, "Status JSON").
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RequestCounts {
    pub local: u64,
    pub peer: u64,
    /// Of `peer`: files the sync databases had no checksum for.
    pub peer_unverified: u64,
    /// `307`s to the same URL while a peer fetch runs on (not requests of
    /// their own: the one that ends it is counted where it ends).
    pub peer_wait: u64,
    pub mirror_redirect: u64,
    pub mirror_fetch: u64,
    /// Caching-mirror mode: databases and their signatures.
    pub database: u64,
    pub not_found: u64,
    pub bad_request: u64,
}

/// `bytes` in the status JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ByteCounts {
    pub local: u64,
    pub peer: u64,
    /// Downloaded from mirrors by this daemon.
    pub mirror_fetch: u64,
    /// Of `peer`: bytes that came from a peer's fetch
    /// still under way (a joined WAN fetch).
    pub peer_inflight: u64,
    pub to_peers: u64,
    /// Bytes pacman got here that this host did not download from the
    /// internet: local hits and everything that came from peers.
    pub wan_saved: u64,
}

/// `mirror` in the status JSON: caching-mirror mode only
/// (docs/DESIGN.md, "Status JSON").
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MirrorStatus {
    pub packages: MirrorPackages,
    pub databases: crate::dbproxy::DbCounts,
    /// The proxied databases the verification table holds.
    pub repos: Vec<ProxiedRepo>,
}

/// `mirror.packages`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MirrorPackages {
    /// Package requests answered from a kept file (`requests.local`).
    pub hits: u64,
    /// Package requests answered from a download (`requests.mirror_fetch`:
    /// a miss, or a request joining one under way).
    pub misses: u64,
    /// Package bytes fetched from upstreams (`bytes.mirror_fetch`).
    pub bytes_upstream: u64,
    /// Packages kept in the store, and their bytes.
    pub kept: usize,
    pub kept_bytes: u64,
    /// The store's cap (`mirror.store_max_gib`).
    pub max_bytes: u64,
}

/// One proxied database in `mirror.repos`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ProxiedRepo {
    pub arch: String,
    pub repo: String,
    /// Package files it lists.
    pub files: usize,
}

impl Stats {
    pub fn count(&self, source: Source) {
        let counter = match source {
            Source::Local => &self.local,
            Source::Peer => &self.peer,
            Source::PeerUnverified => {
                // Counted as a peer request too, and separately.
                self.peer.fetch_add(1, Relaxed);
                &self.peer_unverified
            }
            Source::PeerWait => &self.peer_wait,
            Source::MirrorRedirect => &self.mirror_redirect,
            Source::MirrorFetch => &self.mirror_fetch,
            Source::Database => &self.database,
            Source::NotFound => &self.not_found,
            Source::BadRequest => &self.bad_request,
            Source::Status => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn add_local_bytes(&self, n: u64) {
        self.bytes_local.fetch_add(n, Relaxed);
    }

    pub fn add_peer_bytes(&self, n: u64) {
        self.bytes_peer.fetch_add(n, Relaxed);
    }

    /// Bytes this daemon downloaded from mirrors (its WAN traffic).
    pub fn add_mirror_fetch_bytes(&self, n: u64) {
        self.bytes_mirror_fetch.fetch_add(n, Relaxed);
    }

    /// Bytes of downloads that came from a peer's fetch still under way.
    pub fn add_peer_inflight_bytes(&self, n: u64) {
        self.bytes_peer_inflight.fetch_add(n, Relaxed);
    }

    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            local: self.local.load(Relaxed),
            peer: self.peer.load(Relaxed),
            peer_unverified: self.peer_unverified.load(Relaxed),
            peer_wait: self.peer_wait.load(Relaxed),
            mirror_redirect: self.mirror_redirect.load(Relaxed),
            mirror_fetch: self.mirror_fetch.load(Relaxed),
            database: self.database.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            bad_request: self.bad_request.load(Relaxed),
        }
    }

    /// Byte counts; `to_peers` is the mesh's to fill in (it counts uploads).
    pub fn bytes(&self, to_peers: u64) -> ByteCounts {
        ByteCounts {
            local: self.bytes_local.load(Relaxed),
            peer: self.bytes_peer.load(Relaxed),
            mirror_fetch: self.bytes_mirror_fetch.load(Relaxed),
            peer_inflight: self.bytes_peer_inflight.load(Relaxed),
            to_peers,
            wan_saved: self.bytes_local.load(Relaxed) + self.bytes_peer.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        for s in [0.0005, 0.003, 0.003, 2.0, 1000.0] {
            h.observe(s);
        }
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 5);
        assert_eq!(buckets, vec![1, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5]);
        assert!((sum - 1002.0065).abs() < 1e-3, "{sum}");
    }
}
