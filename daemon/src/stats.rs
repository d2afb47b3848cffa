//! Request and byte counters by source, shown by `/_pacmesh/status`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Where an answer came from, as counted and logged. The one list of
/// request sources: `requests` in the status JSON, the `source` label of
/// `pacmesh_requests_total` and the page's rows all come from
/// [`Source::COUNTED`] and [`Source::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    /// Fetched from peers (verified or not).
    Peer,
    /// Fetched from peers; the sync databases had no checksum for it.
    /// Counted as `Peer` too.
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
    /// pacmesh's own pages and admin answers: logged, not counted.
    Status,
}

impl Source {
    /// The sources counted in `requests`, in the order every view shows
    /// them; a source's slot in [`RequestCounts`] is its place here.
    pub const COUNTED: [Source; 9] = [
        Source::Local,
        Source::Peer,
        Source::PeerUnverified,
        Source::PeerWait,
        Source::MirrorRedirect,
        Source::MirrorFetch,
        Source::Database,
        Source::NotFound,
        Source::BadRequest,
    ];

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

    /// How the page names it.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Local => "local cache",
            Source::Peer => "peers",
            Source::PeerUnverified => "of which without a checksum to verify",
            Source::PeerWait => "sent back to wait for a peer fetch",
            Source::MirrorRedirect => "mirror (redirected)",
            Source::MirrorFetch => "mirror (fetched)",
            Source::Database => "databases (caching mirror)",
            Source::NotFound => "not found",
            Source::BadRequest => "bad requests",
            Source::Status => "pacmesh pages",
        }
    }

    /// Whether it is a package answer (`PeerUnverified` is within `Peer`):
    /// the page's shares are of these.
    pub fn is_package(self) -> bool {
        matches!(
            self,
            Source::Local | Source::Peer | Source::MirrorRedirect | Source::MirrorFetch
        )
    }

    /// Its slot in [`RequestCounts`]; `None` for what is not counted.
    fn slot(self) -> Option<usize> {
        Source::COUNTED.iter().position(|&s| s == self)
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

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_s: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count: self.count.load(Relaxed),
        }
    }
}

/// A [`Histogram`] as it was at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bound of [`DURATION_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_s: f64,
    pub count: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// How long local file responses took, first byte to last.
    pub local_transfer: Histogram,
    /// How long responses served from peers took, fetch included.
    pub peer_transfer: Histogram,
    /// By slot of [`Source::COUNTED`].
    requests: [AtomicU64; Source::COUNTED.len()],
    bytes_local: AtomicU64,
    bytes_peer: AtomicU64,
    bytes_mirror_fetch: AtomicU64,
    bytes_peer_inflight: AtomicU64,
}

/// `requests` in the status JSON (docs/DESIGN.md, "Status JSON"): one
/// count per source of [`Source::COUNTED`], named by [`Source::as_str`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts([u64; Source::COUNTED.len()]);

impl RequestCounts {
    /// The count of `source` (0 for what is not counted).
    pub fn get(&self, source: Source) -> u64 {
        source.slot().map_or(0, |i| self.0[i])
    }

    /// Sets one count (snapshots made by hand, in tests).
    pub fn set(&mut self, source: Source, n: u64) {
        if let Some(i) = source.slot() {
            self.0[i] = n;
        }
    }

    /// Every counted source with its count, in [`Source::COUNTED`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Source, u64)> + '_ {
        Source::COUNTED.iter().copied().zip(self.0.iter().copied())
    }
}

impl Serialize for RequestCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (source, n) in self.iter() {
            map.serialize_entry(source.as_str(), &n)?;
        }
        map.end()
    }
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

impl ByteCounts {
    /// The byte sources (`wan_saved`, their sum, aside): the `source`
    /// label of `pacmesh_bytes_total`, how the page names it, and the
    /// count. The one list of them besides the fields.
    pub fn iter(&self) -> [(&'static str, &'static str, u64); 5] {
        [
            ("local", "sent from the local cache", self.local),
            ("peer", "downloaded from peers", self.peer),
            ("mirror_fetch", "downloaded from mirrors", self.mirror_fetch),
            (
                "peer_inflight",
                "of which from a peer's fetch under way",
                self.peer_inflight,
            ),
            ("to_peers", "uploaded to peers", self.to_peers),
        ]
    }
}

/// `mirror` in the status JSON: caching-mirror mode only
/// (docs/DESIGN.md, "Status JSON").
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MirrorStatus {
    pub packages: MirrorPackages,
    pub databases: crate::dbproxy::DbCounts,
    /// The proxied databases the verification table holds.
    pub repos: Vec<ProxiedRepo>,
    /// Newer versions fetched ahead of the clients.
    pub prefetch: crate::prefetch::PrefetchStatus,
    /// The last run of each repo mirrored whole.
    pub full_sync: Vec<crate::fullsync::SyncStatus>,
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
        if source == Source::PeerUnverified {
            // Counted as a peer request too, and separately.
            self.count(Source::Peer);
        }
        if let Some(i) = source.slot() {
            self.requests[i].fetch_add(1, Relaxed);
        }
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
        RequestCounts(std::array::from_fn(|i| self.requests[i].load(Relaxed)))
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
        let snap = h.snapshot();
        assert_eq!(snap.count, 5);
        assert_eq!(snap.cumulative, vec![1, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5]);
        assert!((snap.sum_s - 1002.0065).abs() < 1e-3, "{}", snap.sum_s);
    }

    #[test]
    fn each_source_counts_in_its_own_slot() {
        let stats = Stats::default();
        for (i, source) in Source::COUNTED.iter().enumerate() {
            for _ in 0..=i {
                stats.count(*source);
            }
        }
        stats.count(Source::Status);
        let r = stats.requests();
        for (i, (source, n)) in r.iter().enumerate() {
            // An unverified peer answer is a peer answer too.
            let extra = u64::from(source == Source::Peer) * 3;
            assert_eq!(n, i as u64 + 1 + extra, "{}", source.as_str());
        }
        assert_eq!(r.get(Source::Status), 0);
    }

    #[test]
    fn request_counts_serialize_by_source_name() {
        let mut r = RequestCounts::default();
        r.set(Source::MirrorFetch, 7);
        let json = serde_json::to_value(&r).unwrap();
        let names: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        let mut expected: Vec<_> = Source::COUNTED.iter().map(|s| s.as_str()).collect();
        expected.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(json["mirror_fetch"], 7);
        assert_eq!(json["local"], 0);
    }
}
