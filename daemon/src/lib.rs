//! pacmeshd: serves this host's pacman cache to pacman and redirects
//! everything else to the real mirror (DESIGN.md, "Request flow").
//!
//! The daemon is built from pure decisions (`http::target`, `http::range`,
//! `plan`, `index::CacheIndex`) and an IO edge (`http::serve`,
//! `index::watch`) that is handed bound sockets by `main`, so tests run
//! whole daemons in-process on port 0.

pub mod config;
pub mod http;
pub mod identity;
pub mod index;
pub mod mirrors;
pub mod plan;
pub mod sd_notify;
pub mod setup;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use index::watch::SharedIndex;
use mirrors::MirrorTable;
use stats::Stats;

/// Everything a request handler reads.
pub struct State {
    pub node_id: identity::NodeId,
    pub index: SharedIndex,
    pub mirrors: MirrorTable,
    pub stats: Arc<Stats>,
    pub started: Instant,
}

impl State {
    /// Where a complete local copy of `name` is, if any.
    pub fn locate(&self, name: &str) -> Option<PathBuf> {
        self.index.read().ok()?.locate(name)
    }

    /// The cache dirs and how many files they hold, for status.
    pub fn index_summary(&self) -> (Vec<String>, usize) {
        match self.index.read() {
            Ok(ix) => (
                ix.dirs().iter().map(|d| d.display().to_string()).collect(),
                ix.len(),
            ),
            Err(_) => (Vec::new(), 0),
        }
    }
}

/// Runs the daemon on already-bound listeners until `shutdown` is
/// cancelled: loads the cache index, then serves HTTP. Returns once
/// in-flight responses are done or cut.
pub async fn run(
    env: setup::Environment,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let index = index::watch::start(env.cache_dirs, shutdown.clone()).await?;
    let state = Arc::new(State {
        node_id: env.identity.node_id(),
        index,
        mirrors: env.mirrors,
        stats: Arc::new(Stats::default()),
        started: Instant::now(),
    });
    let files = state.index_summary().1;
    let ready = format!("READY=1\nSTATUS=serving {files} cached files");
    if let Err(e) = sd_notify::notify(&ready) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        let _ = sd_notify::notify("STOPPING=1");
    });
    http::serve(state, listeners, shutdown).await;
    Ok(())
}
