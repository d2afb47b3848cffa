//! What the mesh answers about its peers: who has a file and in what
//! order to ask them (queries: they record nothing), what each linked
//! peer looks like for status and metrics, and how much is kept of them.
//! What the caller alone learns of a peer (a penalty, a transfer it saw
//! end) is recorded here too.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pacmesh_proto::{name_hash, NodeId};
use serde::Serialize;

use super::{Mesh, TARGET};
use crate::mesh::peers::{self, LinkFacts};

/// One linked peer, for status and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    #[serde(serialize_with = "as_display")]
    pub node_id: NodeId,
    pub addr: SocketAddr,
    pub rtt_ms: f64,
    /// Packages in the peer's digest as kept in step.
    pub packages: usize,
    /// Everything on the link (UDP bytes, transfers included).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// File bytes downloaded from / uploaded to this peer since the daemon
    /// started (across links).
    pub file_bytes_received: u64,
    pub file_bytes_sent: u64,
    /// From the peer's `Hello`.
    pub archs: Vec<String>,
    /// Until when the peer is not chosen for downloads, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalised_until_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub penalty_reason: Option<String>,
}

/// How many peers the mesh keeps something of ([`Mesh::tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub links: usize,
    pub choice_records: usize,
    pub byte_counters: usize,
    pub dial_targets: usize,
}

fn as_display<S: serde::Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

impl Mesh {
    /// Linked peers (digest received, heard from within the idle timeout),
    /// by node id.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut out: Vec<PeerStatus> = self
            .inner
            .table
            .read()
            .values()
            .filter(|link| {
                let facts = LinkFacts {
                    has_digest: link.read_digest().seq().is_some(),
                    last_heard: link.heard(now),
                };
                peers::counts_as_linked(&facts, now, self.inner.idle_timeout)
            })
            .map(|link| link.status())
            .collect();
        out.sort_by_key(|p| p.node_id);
        let wall = SystemTime::now();
        for status in &mut out {
            if let Some(penalty) = self.inner.scores.penalty(&status.node_id, now) {
                let left = penalty.until.saturating_duration_since(now);
                status.penalised_until_s = (wall + left)
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64());
                status.penalty_reason = Some(penalty.reason);
            }
            let bytes = self.inner.scores.bytes_of(status.node_id);
            status.file_bytes_received = bytes.received.load(Relaxed);
            status.file_bytes_sent = bytes.sent.load(Relaxed);
        }
        out
    }

    /// The peers holding `file_name` (as [`Mesh::who_has`]), best first
    /// for a download: penalised peers left out, then ranked by recent
    /// failures, throughput, RTT and downloads in flight (`mesh::choice`).
    /// A query: it records nothing.
    pub fn candidates(&self, file_name: &str) -> Vec<NodeId> {
        let holders = self.who_has(file_name);
        let links = self.inner.table.read();
        let rtt = |id: &NodeId| links.get(id).map(|l| l.conn.rtt());
        self.inner.scores.rank(&holders, rtt, Instant::now())
    }

    /// Not chosen by [`Mesh::candidates`] for the penalty duration (10 min
    /// by default); `reason` shows in [`PeerStatus`].
    pub fn penalise(&self, peer: NodeId, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::info!(target: TARGET, peer = %peer, %reason, "peer penalised");
        self.inner.scores.penalise(peer, reason, Instant::now());
    }

    /// Records a transfer the mesh did not see end by itself. Downloads
    /// made with [`Mesh::fetch`] record their own throughput and failures;
    /// call this for what only the caller knows (the bytes did not match
    /// the sync database: `ok = false`, and usually [`Mesh::penalise`]).
    pub fn record_transfer(&self, peer: NodeId, bytes: u64, duration: Duration, ok: bool) {
        self.inner
            .scores
            .record_transfer(peer, bytes, duration, ok, Instant::now());
    }

    /// File bytes uploaded to peers since start, all peers together.
    pub fn bytes_to_peers(&self) -> u64 {
        self.inner.scores.bytes_to_peers()
    }

    /// The linked peers whose digest (probably) holds `file_name`, from
    /// memory: one hash, then one lookup per peer. A link counts as in
    /// [`Mesh::peers`] (liveness from when the link last looked).
    pub fn who_has(&self, file_name: &str) -> Vec<NodeId> {
        let hash = name_hash(file_name);
        let now = Instant::now();
        let idle = self.inner.idle_timeout;
        self.inner
            .table
            .read()
            .values()
            .filter(|link| {
                peers::is_alive(link.last_heard(), now, idle) && link.read_digest().contains(hash)
            })
            .map(|link| link.peer)
            .collect()
    }

    /// How many peers the mesh keeps something of: links, choice records,
    /// byte counters, dial targets. Bounded however many identities came
    /// and went (docs/DESIGN.md, "Limits").
    pub fn tracked(&self) -> Tracked {
        let (choice_records, byte_counters) = self.inner.scores.tracked();
        Tracked {
            links: self.inner.table.len(),
            choice_records,
            byte_counters,
            dial_targets: self.inner.dialer.count(),
        }
    }
}
