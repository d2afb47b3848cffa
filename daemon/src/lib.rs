//! pacmeshd: serves this host's pacman cache to pacman and redirects
//! everything else to the real mirror (docs/DESIGN.md, "Request flow").
//!
//! The daemon is built from pure decisions (`http::target`, `http::range`,
//! `plan`, `index::CacheIndex`) and an IO edge (`http::serve`,
//! `index::watch`) that is handed bound sockets by `main`, so tests run
//! whole daemons in-process on port 0.

pub mod admin;
pub mod cachefile;
pub mod config;
pub mod dbproxy;
pub mod fetch;
pub mod fullsync;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod index;
pub mod log;
pub mod mesh;
pub mod mirror_client;
pub mod mirror_health;
pub mod mirrorlist;
pub mod mirrors;
pub mod plan;
pub mod prefetch;
pub mod sd_notify;
pub mod setup;
pub mod snapshot;
mod state;
pub mod stats;
pub mod syncdb;

pub use state::State;

use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use stats::Stats;

/// What the edge (signals, in `main`) asks of a running daemon.
#[derive(Debug)]
pub enum Control {
    /// SIGHUP: the configuration and pacman.conf were read again.
    Reload(Box<setup::Environment>),
    /// SIGUSR1: write the peer table to the log.
    LogPeers,
}

/// Runs the daemon on already-bound listeners until `shutdown` is
/// cancelled: loads the cache index, then serves HTTP. Returns once
/// in-flight responses are done or cut.
pub async fn run(
    env: setup::Environment,
    listeners: Vec<TcpListener>,
    mut mesh_parts: mesh::service::MeshParts,
    control: tokio::sync::mpsc::Receiver<Control>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // One daemon (or `--sync-once`) per store in mirror mode.
    let _lock = match &env.mirror_mode {
        Some(_) => Some(fullsync::once::lock_store(&env.store_dir)?),
        None => None,
    };
    let stats = Arc::new(Stats::default());
    let engine = open_engine(&env, stats.clone())?;
    let cache_dirs = indexed_dirs(&env.cache_dirs, &engine);
    let mirror_client = mirror_client::MirrorClient::new();
    let dbproxy = match &env.mirror_mode {
        Some(mirror) => Some(open_dbproxy(&env, mirror, &engine, &mirror_client).await?),
        None => None,
    };
    // Peers may join this host's WAN fetches while they arrive.
    mesh_parts.in_flight = Arc::new(engine.clone());
    let publisher = Arc::new(mesh::publish::Publisher::default());
    let sink = publisher.clone();
    let on_change: index::watch::ChangeSink = Arc::new(move |changes| sink.change(changes));
    let index = index::watch::start(cache_dirs, on_change, shutdown.clone()).await?;
    let service = mesh::service::MeshService::start(
        mesh_parts,
        env.identity.clone(),
        env.mesh_key,
        env.archs,
        publisher,
        index.clone(),
        shutdown.clone(),
    )?;
    let syncdb = match env.sync_dir {
        Some(dir) => Some(syncdb::watch::start(dir, shutdown.clone()).await),
        None => None,
    };
    let state = Arc::new(State {
        node_id: env.identity.node_id(),
        mesh: service.mesh.clone(),
        syncdb,
        dbproxy,
        admin_token: env.admin_token,
        engine,
        mirror_client,
        unverified_from_peers: env.unverified_from_peers,
        pages_lan: env.pages_lan,
        index,
        mirrors: Arc::new(RwLock::new(Arc::new(env.mirrors))),
        stats,
        prefetch: Arc::default(),
        full_sync: Arc::default(),
        started: Instant::now(),
    });
    tell_systemd(&state, &shutdown);
    tokio::spawn(apply_controls(state.clone(), control));
    let swept = state.clone();
    tokio::spawn(state.engine.store().clone().sweep_loop(
        move |name, dir| swept.index.read().held_outside(name, dir),
        shutdown.clone(),
    ));
    if let (Some(mirror), Some(proxy)) = (&env.mirror_mode, &state.dbproxy) {
        spawn_refresh(&state, mirror, proxy, &shutdown);
    }
    tokio::spawn(mirrorlist::follow(
        state.mirrors.clone(),
        env.own_servers,
        shutdown.clone(),
    ));
    http::serve(state, listeners, shutdown).await;
    service.stopped().await;
    Ok(())
}

/// Ready (with how many files are served), stopping once shutdown is
/// asked, and the watchdog fed while the runtime answers.
fn tell_systemd(state: &State, shutdown: &CancellationToken) {
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
    tokio::spawn(sd_notify::watchdog(shutdown.clone()));
}

/// A caching mirror's periodic refresh: full mirrors synced, then newer
/// versions of what clients fetched prefetched (when configured).
fn spawn_refresh(
    state: &Arc<State>,
    mirror: &config::mirror::MirrorConfig,
    proxy: &Arc<dbproxy::DbProxy>,
    shutdown: &CancellationToken,
) {
    let syncer = fullsync::Syncer {
        engine: state.engine.clone(),
        proxy: proxy.clone(),
        client: state.mirror_client.clone(),
    };
    let full = fullsync::full_repos(mirror);
    // Pinned before anything is served: a client's miss making room must
    // never take a file a full mirror's served database lists.
    for (repo, arch) in &full {
        syncer.pin_current(repo, arch);
    }
    let table = state.clone();
    let prefetcher = mirror.prefetch_window.map(|window| prefetch::Prefetcher {
        engine: state.engine.clone(),
        fed: proxy.fed().clone(),
        client: state.mirror_client.clone(),
        report: state.prefetch.clone(),
        window,
        limit: mirror.prefetch_rate,
    });
    // Known before anything is served, so an admin refresh at start-up is
    // answered as later ones are.
    (state.full_sync).set_work(!full.is_empty(), prefetcher.is_some());
    tokio::spawn(fullsync::refresh_loop(
        syncer,
        prefetcher,
        move || table.mirrors(),
        full,
        (mirror.refresh_interval, state.full_sync.clone()),
        shutdown.clone(),
    ));
}

async fn apply_controls(state: Arc<State>, mut control: tokio::sync::mpsc::Receiver<Control>) {
    while let Some(message) = control.recv().await {
        match message {
            Control::Reload(env) => reload(&state, *env),
            Control::LogPeers => log_peers(&state),
        }
    }
}

/// The download engine and its store (`STORE/fetched`, with mirror
/// mode's limits), as the daemon and `--sync-once` open them.
pub fn open_engine(env: &setup::Environment, stats: Arc<Stats>) -> std::io::Result<fetch::Engine> {
    let incoming = env.store_dir.join("incoming");
    clean_incoming(&incoming)?;
    let mut store = fetch::store::Store::new(env.store_dir.join("fetched"))?;
    if let Some(mirror) = &env.mirror_mode {
        // A caching mirror keeps what it fetched for its clients.
        store.max_age = fetch::store::MIRROR_MAX_AGE;
        store.max_bytes = mirror.store_max_bytes;
        store.keep_versions = mirror.keep_versions;
    }
    Ok(fetch::Engine::new(incoming, store, stats))
}

/// Mirror mode's databases, loaded from the store; files they list are
/// removed last by the store's policy.
pub async fn open_dbproxy(
    env: &setup::Environment,
    mirror: &config::mirror::MirrorConfig,
    engine: &fetch::Engine,
    client: &mirror_client::MirrorClient,
) -> anyhow::Result<Arc<dbproxy::DbProxy>> {
    let fed = Arc::new(syncdb::FedDbs::default());
    engine.store().set_listing(fed.clone());
    let full = mirror
        .repos
        .iter()
        .filter(|r| r.full)
        .map(|r| r.name.clone())
        .collect();
    let (dir, client, interval) = (env.store_dir.clone(), client.clone(), mirror.db_revalidate);
    let proxy = tokio::task::spawn_blocking(move || {
        dbproxy::DbProxy::open(&dir, fed, client, interval, full)
    })
    .await??;
    Ok(Arc::new(proxy))
}

/// Empties the incoming dir at start: leftovers of a crash are partial or
/// unverified, never to be served.
fn clean_incoming(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let _ = std::fs::remove_file(entry?.path());
    }
    Ok(())
}

/// SIGUSR1: the peer table, one line per peer.
fn log_peers(state: &State) {
    let peers = state.mesh.peers();
    tracing::info!(target: "pacmesh::peers", peers = peers.len(), "peer table");
    for p in peers {
        tracing::info!(
            target: "pacmesh::peers",
            peer = %p.node_id,
            addr = %p.addr,
            rtt_ms = p.rtt_ms,
            packages = p.packages,
            bytes_received = p.bytes_received,
            bytes_sent = p.bytes_sent,
            "peer table entry"
        );
    }
}

/// The dirs the cache index follows: `cache_dirs`, and the store's kept
/// downloads, served and offered to peers like pacman's cache.
fn indexed_dirs(cache_dirs: &[PathBuf], engine: &fetch::Engine) -> Vec<PathBuf> {
    let mut dirs = cache_dirs.to_vec();
    dirs.push(engine.store().dir().to_path_buf());
    dirs
}

/// Applies a reloaded environment without touching connections or
/// downloads in flight: the mirror table is swapped. pacman.conf's cache
/// dirs only change at restart, and the log says so (as `main` says of
/// the daemon's own keys).
fn reload(state: &State, env: setup::Environment) {
    let repos = env.mirrors.repo_count();
    *state.mirrors.write() = Arc::new(env.mirrors);
    let (dirs, _) = state.index_summary();
    let new_dirs: Vec<String> = indexed_dirs(&env.cache_dirs, &state.engine)
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if dirs != new_dirs {
        tracing::warn!(?new_dirs, "cache dirs changed: they take effect at restart");
    }
    tracing::info!(repos, "reloaded configuration");
}
