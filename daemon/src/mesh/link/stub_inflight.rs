//! TEMPORARY stand-ins for the in-flight API built on branch `mesh`;
//! removed at the merge.

use std::time::Instant;

use pacmesh_proto::NodeId;

use super::{FetchError, Mesh, PeerDownload};
use crate::mesh::inflight::Announcement;

pub struct Fetcher {
    pub node: NodeId,
    pub size: u64,
    pub since: Instant,
}

impl Mesh {
    pub fn announce(&self, _a: Announcement) {}
    pub fn fetchers(&self, _name: &str) -> Vec<Fetcher> {
        Vec::new()
    }
    pub fn has_links(&self) -> bool {
        !self.peers().is_empty()
    }
    pub fn is_keyed(&self) -> bool {
        false
    }
    pub async fn fetch_growing(
        &self,
        peer: NodeId,
        name: &str,
        offset: u64,
    ) -> Result<PeerDownload, FetchError> {
        self.fetch(peer, name, offset).await
    }
}
