//! `/_pacmesh/status`: what this daemon knows and has done, as JSON.

use http::Response;
use serde::Serialize;

use super::Body;
use crate::mesh::link::PeerStatus;
use crate::stats::{ByteCounts, MirrorStatus, RequestCounts};
use crate::State;

#[derive(Serialize)]
struct Status<'a> {
    node_id: String,
    version: &'a str,
    uptime_s: u64,
    peers: Vec<PeerStatus>,
    requests: RequestCounts,
    bytes: ByteCounts,
    cache: Cache,
    repos: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<MirrorStatus>,
}

#[derive(Serialize)]
struct Cache {
    dirs: Vec<String>,
    files: usize,
}

pub fn response(state: &State) -> Response<Body> {
    let (dirs, files) = state.index_summary();
    let status = Status {
        node_id: state.node_id.to_string(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started.elapsed().as_secs(),
        peers: state.mesh.peers(),
        requests: state.stats.requests(),
        bytes: state.stats.bytes(state.mesh.bytes_to_peers()),
        cache: Cache { dirs, files },
        repos: state.mirrors().repo_count(),
        mirror: state.mirror_status(),
    };
    let json = serde_json::to_vec_pretty(&status).unwrap_or_default();
    super::live_page("application/json", json)
}
