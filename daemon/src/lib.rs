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
pub mod http;
pub mod identity;
pub mod index;
pub mod log;
pub mod mesh;
pub mod mirror_client;
pub mod mirrorlist;
pub mod mirrors;
pub mod plan;
pub mod prefetch;
pub mod sd_notify;
pub mod setup;
pub mod snapshot;
pub mod stats;
pub mod syncdb;

use parking_lot::RwLock;
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
    pub mesh: mesh::link::Mesh,
    /// This host's sync databases, against which peers' bytes are checked;
    /// `None` without a pacman.conf (then nothing verifies).
    pub syncdb: Option<Arc<syncdb::SyncDbs>>,
    /// Caching-mirror mode: the databases proxied for clients, against
    /// which the packages they ask for are verified first. `None` in local
    /// mode.
    pub dbproxy: Option<Arc<dbproxy::DbProxy>>,
    /// Mirror mode's admin token; `None`: admin actions are off.
    pub admin_token: Option<admin::AdminToken>,
    /// Every download under way (from peers, peers' fetches, mirrors).
    pub engine: fetch::Engine,
    /// The mirror sources of those downloads.
    pub mirror_client: mirror_client::MirrorClient,
    /// Whether files the sync databases cannot verify may come from peers.
    pub unverified_from_peers: bool,
    /// Whether pacmesh's own pages are answered to clients other than
    /// loopback (`pages_lan`).
    pub pages_lan: bool,
    pub index: SharedIndex,
    /// Replaced whole on reload (SIGHUP), and when a mirrorlist changes;
    /// requests read it under a brief read lock.
    pub mirrors: Arc<RwLock<Arc<MirrorTable>>>,
    pub stats: Arc<Stats>,
    /// What prefetch did (mirror mode).
    pub prefetch: Arc<prefetch::Report>,
    pub started: Instant,
}

impl State {
    /// Where a complete local copy of `name` is, if any.
    pub fn locate(&self, name: &str) -> Option<PathBuf> {
        self.index.read().locate(name)
    }

    /// What the databases say `file` must be: in mirror mode the proxied
    /// database of the request's repo and architecture first, then this
    /// host's own sync databases.
    pub fn expected(&self, file: &http::target::FileTarget) -> Option<syncdb::Expected> {
        if let (Some(proxy), Some(repo), Some(arch)) = (&self.dbproxy, &file.repo, &file.arch) {
            if let Some(expected) = proxy.fed().lookup_in(arch, repo, &file.name) {
                return Some(expected);
            }
        }
        let db = self.syncdb.as_ref()?;
        match &file.repo {
            Some(repo) => db
                .lookup_in(repo, &file.name)
                .or_else(|| db.lookup(&file.name)),
            None => db.lookup(&file.name),
        }
    }

    /// Where `file` comes from (`plan::plan`, with what this host knows
    /// now). `local`: the cache index's answer.
    pub fn plan(
        &self,
        file: &http::target::FileTarget,
        local: Option<PathBuf>,
        get: bool,
    ) -> plan::Plan {
        let urls = self.mirror_urls(file);
        let cacheable = file.kind.is_cacheable() && get;
        let running = cacheable && self.engine.find(&file.name).is_some();
        let (holders, fetchers, linked) = if cacheable && local.is_none() && !running {
            let fetchers: Vec<identity::NodeId> = self
                .mesh
                .fetchers(&file.name)
                .iter()
                .map(|f| f.node)
                .collect();
            (
                self.mesh.candidates(&file.name),
                fetchers,
                self.mesh.has_links(),
            )
        } else {
            (Vec::new(), Vec::new(), false)
        };
        let facts = plan::Facts {
            get,
            local,
            running,
            holders: &holders,
            fetchers: &fetchers,
            linked,
            fetch_misses: self.dbproxy.is_some(),
            peers_allowed: self.unverified_from_peers || self.expected(file).is_some(),
            mirror_urls: &urls,
        };
        plan::plan(file, &facts)
    }

    /// The download of `file`: the one under way, or a new one as the
    /// plan says. `None` when neither can be had (too many downloads, or
    /// the plan changed to something else meanwhile).
    pub fn download(&self, file: &http::target::FileTarget) -> Option<Arc<fetch::Transfer>> {
        if let Some(t) = self.engine.find(&file.name) {
            return Some(t);
        }
        let plan::Plan::Download { kind, order } = self.plan(file, None, true) else {
            return self.engine.find(&file.name);
        };
        let sources = fetch::source::MeshSources {
            mesh: self.mesh.clone(),
            client: self.mirror_client.clone(),
            mirror_urls: self.mirror_urls(file),
        };
        let expected = self.expected(file);
        self.engine.start(fetch::Job {
            name: file.name.clone(),
            kind,
            sources,
            order,
            keep: expected.is_some(),
            expected,
        })
    }

    /// The URL of `file` at each of its repo's mirrors.
    pub fn mirror_urls(&self, file: &http::target::FileTarget) -> Vec<String> {
        match (&file.repo, &file.arch) {
            (Some(repo), Some(arch)) => self.mirrors().file_urls(repo, arch, &file.name),
            _ => Vec::new(),
        }
    }

    /// The mirror table in force now.
    pub fn mirrors(&self) -> Arc<MirrorTable> {
        self.mirrors.read().clone()
    }

    /// The cache dirs and how many files they hold, for status.
    pub fn index_summary(&self) -> (Vec<String>, usize) {
        let ix = self.index.read();
        (
            ix.dirs().iter().map(|d| d.display().to_string()).collect(),
            ix.len(),
        )
    }
}

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
    let mut cache_dirs = env.cache_dirs.clone();
    // Kept downloads are served and offered to peers like pacman's cache.
    cache_dirs.push(engine.store().dir().to_path_buf());
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
    let table = state.clone();
    let prefetcher = mirror.prefetch_window.map(|window| prefetch::Prefetcher {
        engine: state.engine.clone(),
        fed: proxy.fed().clone(),
        client: state.mirror_client.clone(),
        report: state.prefetch.clone(),
        window,
        limit: mirror.prefetch_rate,
    });
    tokio::spawn(fullsync::refresh_loop(
        syncer,
        prefetcher,
        move || table.mirrors(),
        fullsync::full_repos(mirror),
        mirror.refresh_interval,
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

/// Applies a reloaded environment without touching connections or
/// downloads in flight: the mirror table is swapped; cache dirs and
/// listening addresses only change at restart, and the log says so.
fn reload(state: &State, env: setup::Environment) {
    let repos = env.mirrors.repo_count();
    *state.mirrors.write() = Arc::new(env.mirrors);
    let (dirs, _) = state.index_summary();
    let new_dirs: Vec<String> = env
        .cache_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if dirs != new_dirs {
        tracing::warn!(?new_dirs, "cache dirs changed: they take effect at restart");
    }
    if env.mirror_mode.is_some() != state.dbproxy.is_some() {
        tracing::warn!("mode changed: it takes effect at restart");
    }
    tracing::info!(repos, "reloaded configuration");
}
