//! Request and byte counters by source, shown by `/_pacmesh/status`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Where an answer came from, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    MirrorRedirect,
    NotFound,
    BadRequest,
    Status,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::MirrorRedirect => "mirror_redirect",
            Source::NotFound => "not_found",
            Source::BadRequest => "bad_request",
            Source::Status => "status",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    local: AtomicU64,
    peer: AtomicU64,
    mirror_redirect: AtomicU64,
    mirror_fetch: AtomicU64,
    not_found: AtomicU64,
    bad_request: AtomicU64,
    bytes_local: AtomicU64,
    bytes_peer: AtomicU64,
    bytes_mirror_fetch: AtomicU64,
    bytes_to_peers: AtomicU64,
}

/// `requests` in the status JSON (DESIGN.md, "Observability").
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RequestCounts {
    pub local: u64,
    pub peer: u64,
    pub mirror_redirect: u64,
    pub mirror_fetch: u64,
    pub not_found: u64,
    pub bad_request: u64,
}

/// `bytes` in the status JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ByteCounts {
    pub local: u64,
    pub peer: u64,
    pub mirror_fetch: u64,
    pub to_peers: u64,
}

impl Stats {
    pub fn count(&self, source: Source) {
        let counter = match source {
            Source::Local => &self.local,
            Source::MirrorRedirect => &self.mirror_redirect,
            Source::NotFound => &self.not_found,
            Source::BadRequest => &self.bad_request,
            Source::Status => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn add_local_bytes(&self, n: u64) {
        self.bytes_local.fetch_add(n, Relaxed);
    }

    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            local: self.local.load(Relaxed),
            peer: self.peer.load(Relaxed),
            mirror_redirect: self.mirror_redirect.load(Relaxed),
            mirror_fetch: self.mirror_fetch.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            bad_request: self.bad_request.load(Relaxed),
        }
    }

    pub fn bytes(&self) -> ByteCounts {
        ByteCounts {
            local: self.bytes_local.load(Relaxed),
            peer: self.bytes_peer.load(Relaxed),
            mirror_fetch: self.bytes_mirror_fetch.load(Relaxed),
            to_peers: self.bytes_to_peers.load(Relaxed),
        }
    }
}
