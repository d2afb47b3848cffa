//! What status, metrics and the page show, gathered once from [`State`]
//! by [`gather`]: `http::status`, `http::metrics` and `http::page` render
//! it as pure functions, so each is tested with a snapshot made by hand.

use serde::Serialize;

use crate::mesh::link::PeerStatus;
use crate::stats::{
    ByteCounts, HistogramSnapshot, MirrorPackages, MirrorStatus, ProxiedRepo, RequestCounts,
};
use crate::State;

/// One moment of the daemon. Serialized, it is the status JSON
/// (docs/DESIGN.md, "Status JSON"): the field names are that page's.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// 64 hex digits.
    pub node_id: String,
    pub version: String,
    pub uptime_s: u64,
    pub peers: Vec<PeerStatus>,
    pub requests: RequestCounts,
    pub bytes: ByteCounts,
    pub cache: Cache,
    /// Repositories in the mirror table.
    pub repos: usize,
    /// Caching-mirror mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStatus>,
    /// Transfer durations, for metrics only.
    #[serde(skip)]
    pub transfer: Transfers,
}

/// `cache` in the status JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cache {
    /// The shared cache dirs.
    pub dirs: Vec<String>,
    /// Package files the index holds.
    pub files: usize,
}

/// The transfer-duration histograms, by source.
#[derive(Debug, Clone, Default)]
pub struct Transfers {
    pub local: HistogramSnapshot,
    pub peer: HistogramSnapshot,
}

impl Transfers {
    /// Each histogram with its `source` label.
    pub fn iter(&self) -> [(&'static str, &HistogramSnapshot); 2] {
        [("local", &self.local), ("peer", &self.peer)]
    }
}

/// What a caching mirror's store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    pub files: usize,
    pub bytes: u64,
}

impl Kept {
    /// Lists `store` (on the blocking pool: a full mirror's store holds
    /// tens of thousands of files).
    pub async fn list(store: &crate::fetch::store::Store) -> Kept {
        let kept = store.listed().await.unwrap_or_default();
        Kept {
            files: kept.len(),
            bytes: kept.iter().map(|k| k.size).sum(),
        }
    }
}

/// Reads everything shown from `state`, once; `kept`: what the store
/// holds (mirror mode), listed by the caller.
pub fn gather(state: &State, kept: Kept) -> Snapshot {
    let (dirs, files) = state.index_summary();
    let requests = state.stats.requests();
    let bytes = state.stats.bytes(state.mesh.bytes_to_peers());
    let mirror = mirror(state, &requests, &bytes, kept);
    Snapshot {
        node_id: state.node_id.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        peers: state.mesh.peers(),
        requests,
        bytes,
        cache: Cache { dirs, files },
        repos: state.mirrors().repo_count(),
        mirror,
        transfer: Transfers {
            local: state.stats.local_transfer.snapshot(),
            peer: state.stats.peer_transfer.snapshot(),
        },
    }
}

/// Caching-mirror mode's counters and what it keeps; `None` in local mode.
fn mirror(
    state: &State,
    requests: &RequestCounts,
    bytes: &ByteCounts,
    kept: Kept,
) -> Option<MirrorStatus> {
    use crate::stats::Source;
    let proxy = state.dbproxy.as_ref()?;
    Some(MirrorStatus {
        packages: MirrorPackages {
            hits: requests.get(Source::Local),
            misses: requests.get(Source::MirrorFetch),
            bytes_upstream: bytes.mirror_fetch,
            kept: kept.files,
            kept_bytes: kept.bytes,
            max_bytes: state.engine.store().max_bytes,
        },
        databases: proxy.counts(),
        repos: proxy
            .fed()
            .repos()
            .into_iter()
            .map(|(arch, repo, files)| ProxiedRepo { arch, repo, files })
            .collect(),
        prefetch: state.prefetch.status(),
        full_sync: state.full_sync.status(),
    })
}

/// Snapshots made by hand, for the renderers' tests.
#[cfg(test)]
pub mod sample {
    use super::*;
    use crate::dbproxy::DbCounts;
    use crate::stats::Source;

    /// A snapshot in which every counter has a value of its own (so a
    /// view that shows one in another's place, or not at all, is caught):
    /// request `i` of [`Source::COUNTED`] is `1000 + i`, byte source `i`
    /// is `5_000_000 + i`.
    pub fn snapshot(mirror: bool) -> Snapshot {
        let mut requests = RequestCounts::default();
        for (i, source) in Source::COUNTED.iter().enumerate() {
            requests.set(*source, 1000 + i as u64);
        }
        let bytes = ByteCounts {
            local: 5_000_000,
            peer: 5_000_001,
            mirror_fetch: 5_000_002,
            peer_inflight: 5_000_003,
            to_peers: 5_000_004,
            wan_saved: 10_000_001,
        };
        let peer = PeerStatus {
            node_id: crate::identity::NodeId([0xab; 32]),
            addr: "192.0.2.7:7878".parse().unwrap(),
            rtt_ms: 1.5,
            packages: 321,
            bytes_received: 4096,
            bytes_sent: 2048,
            file_bytes_received: 1024,
            file_bytes_sent: 512,
            archs: vec!["x86_64".into()],
            penalised_until_s: Some(1e9),
            penalty_reason: Some("bad <bytes>".into()),
        };
        let mirror = mirror.then(|| MirrorStatus {
            packages: MirrorPackages {
                hits: requests.get(Source::Local),
                misses: requests.get(Source::MirrorFetch),
                bytes_upstream: bytes.mirror_fetch,
                kept: 17,
                kept_bytes: 7_000_000,
                max_bytes: 8_000_000,
            },
            databases: DbCounts {
                served: 2001,
                stale_served: 2002,
                fetched: 2003,
                not_modified: 2004,
                failed_checks: 2005,
                bytes_upstream: 2006,
                kept: 2007,
                kept_bytes: 2008,
            },
            repos: vec![ProxiedRepo {
                arch: "x86_64".into(),
                repo: "core".into(),
                files: 271,
            }],
            prefetch: crate::prefetch::PrefetchStatus {
                files: 3,
                bytes: 3003,
                last: vec!["pre-2-1-any.pkg.tar.zst".into()],
            },
            full_sync: vec![crate::fullsync::SyncStatus {
                repo: "core".into(),
                arch: "x86_64".into(),
                ended_unix: 1_700_000_000,
                error: None,
                listed: 301,
                present: 302,
                fetched: 303,
                fetched_bytes: 304,
                failed: 2,
                failed_names: vec!["<bad>-1-1-any.pkg.tar.zst".into()],
                unverifiable: 305,
                switched: false,
                removed: 306,
            }],
        });
        Snapshot {
            node_id: "ab".repeat(32),
            version: "9.9.9".into(),
            uptime_s: 4242,
            peers: vec![peer],
            requests,
            bytes,
            cache: Cache {
                dirs: vec!["/var/cache/pacman/pkg".into(), "/srv/<odd>&dir".into()],
                files: 77,
            },
            repos: 5,
            mirror,
            transfer: Transfers {
                local: HistogramSnapshot {
                    cumulative: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                    sum_s: 0.25,
                    count: 11,
                },
                peer: HistogramSnapshot::default(),
            },
        }
    }
}
