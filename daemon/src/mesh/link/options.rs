//! What the mesh is started with: [`MeshOptions`] and its defaults.

use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;

use super::body::{CacheFiles, UploadFiles};
use super::key::MeshKey;
use super::serve::{MAX_UPLOADS_PER_PEER, UPLOAD_STALL_TIMEOUT};

/// Links kept at once by default: far more pacmesh hosts than one LAN
/// segment holds, and at most about 300 MiB of peers' digests at their
/// largest.
pub const MAX_LINKS: usize = 256;

/// Keep-alive pings on an idle link.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A link with nothing heard for this long is closed (`peer silent`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Uploads of cached files at once, for all peers.
pub const MAX_UPLOADS: usize = 8;
/// Uploads of files still arriving here (peers joining our WAN fetch) at
/// once: they go at the WAN's pace, so more of them than of cached files.
pub const MAX_GROWING_UPLOADS: usize = 64;
/// A download from a peer's cached file that brings no byte for this long
/// moves on to the next source.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The same for a download joining a peer's WAN fetch, which waits on
/// that peer's mirror.
pub const GROWING_STALL_TIMEOUT: Duration = Duration::from_secs(15);

use crate::identity::Identity;
use crate::index::watch::SharedIndex;
use crate::index::CacheIndex;
use crate::mesh::choice::ChoicePolicy;
use crate::mesh::inflight::{InFlightFiles, NoDownloads};

/// What the mesh needs to run.
#[derive(Clone)]
pub struct MeshOptions {
    pub identity: Arc<Identity>,
    /// `None`: an open mesh (tag [`super::OPEN_TAG`]).
    pub mesh_key: Option<MeshKey>,
    /// Sent in `Hello`.
    pub archs: Vec<String>,
    /// QUIC keep-alive interval (2 s).
    pub keep_alive: Duration,
    /// A peer silent this long is dropped (10 s).
    pub idle_timeout: Duration,
    /// The local cache index that uploads are served from (the daemon's
    /// `State::index`). Default: an empty index, so nothing is served.
    pub index: SharedIndex,
    /// Downloads under way on this host, served to peers as they grow
    /// when a requested file is not in the index. Default:
    /// [`NoDownloads`].
    pub in_flight: Arc<dyn InFlightFiles>,
    /// Uploads of cached files at once, to all peers together; more are
    /// answered `Busy` (8).
    pub max_uploads: usize,
    /// Of those, uploads one peer may hold at once
    /// ([`MAX_UPLOADS_PER_PEER`], 4): more from it are answered `Busy`,
    /// so one peer cannot take every slot.
    pub max_uploads_per_peer: usize,
    /// An upload whose asker takes nothing for this long is cut
    /// ([`UPLOAD_STALL_TIMEOUT`], 10 s), freeing its slot.
    pub upload_stall_timeout: Duration,
    /// Uploads of downloads still arriving (joined WAN fetches) at once
    /// (64): they go at the WAN's pace, so they cost little, and refusing
    /// one sends a host to the WAN for a file this host is fetching.
    pub max_growing_uploads: usize,
    /// A peer download with no bytes for this long fails `Stalled` (3 s).
    pub stall_timeout: Duration,
    /// The same for [`super::Mesh::fetch_growing`], whose bytes come at
    /// the fetching peer's WAN speed (15 s): longer than the mirror
    /// client's 10 s stall limit, so the fetching peer notices a stalled
    /// mirror (and fails over) before its readers give up on it.
    pub growing_stall_timeout: Duration,
    /// The slowest a download from a peer may go, over a window.
    pub pace: super::transfer::Pace,
    /// Links kept at once ([`MAX_LINKS`], 256): a peer linking past it is
    /// closed with `TooManyPeers`. Bounds what fresh identities can make
    /// this host hold (a peer's digest is at most about 1.2 MiB).
    pub max_links: usize,
    /// Penalty length and measurement knobs of the peer choice.
    pub choice: ChoicePolicy,
    /// Opens the cached files the index locates for uploads. Default:
    /// [`CacheFiles`], the files on disk.
    pub files: Arc<dyn UploadFiles>,
}

impl MeshOptions {
    /// The defaults: no mesh key, keep-alive 2 s, idle timeout 10 s,
    /// nothing to serve, 8 uploads (4 per peer; 64 of growing files),
    /// uploads cut after 10 s without progress, stall timeouts 3 s (15 s
    /// growing), penalties 10 min.
    pub fn new(identity: Arc<Identity>, archs: Vec<String>) -> Self {
        MeshOptions {
            identity,
            mesh_key: None,
            archs,
            keep_alive: KEEP_ALIVE,
            idle_timeout: IDLE_TIMEOUT,
            index: Arc::new(RwLock::new(CacheIndex::new(Vec::new()))),
            in_flight: Arc::new(NoDownloads),
            max_uploads: MAX_UPLOADS,
            max_uploads_per_peer: MAX_UPLOADS_PER_PEER,
            upload_stall_timeout: UPLOAD_STALL_TIMEOUT,
            max_growing_uploads: MAX_GROWING_UPLOADS,
            stall_timeout: STALL_TIMEOUT,
            growing_stall_timeout: GROWING_STALL_TIMEOUT,
            pace: super::transfer::Pace::DEFAULT,
            max_links: MAX_LINKS,
            choice: ChoicePolicy::default(),
            files: Arc::new(CacheFiles),
        }
    }
}

impl std::fmt::Debug for MeshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The index, the in-flight files and the file opener are left out:
        // large, or not `Debug`.
        f.debug_struct("MeshOptions")
            .field("identity", &self.identity)
            .field("mesh_key", &self.mesh_key)
            .field("archs", &self.archs)
            .field("keep_alive", &self.keep_alive)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_uploads", &self.max_uploads)
            .field("max_uploads_per_peer", &self.max_uploads_per_peer)
            .field("upload_stall_timeout", &self.upload_stall_timeout)
            .field("max_growing_uploads", &self.max_growing_uploads)
            .field("stall_timeout", &self.stall_timeout)
            .field("growing_stall_timeout", &self.growing_stall_timeout)
            .field("pace", &self.pace)
            .field("max_links", &self.max_links)
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}
