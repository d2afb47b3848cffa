//! [`State`]: everything a request handler reads, and the lookups over it
//! that the HTTP layer and the planner share (where a local copy is, what
//! the databases say a file must be, the mirror table in force).

use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::index::watch::SharedIndex;
use crate::mirrors::MirrorTable;
use crate::stats::Stats;
use crate::{
    admin, dbproxy, fetch, fullsync, http, identity, mesh, mirror_client, plan, prefetch, syncdb,
};

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
    /// The full mirrors' last runs, and an admin's "run now" (mirror mode).
    pub full_sync: Arc<fullsync::Report>,
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

    /// The URL of `file` at each of its repo's mirrors, in the order to
    /// try them (mirrors that failed lately last, faster ones first:
    /// `mirror_health`); the redirect names the first.
    pub fn mirror_urls(&self, file: &http::target::FileTarget) -> Vec<String> {
        match (&file.repo, &file.arch) {
            (Some(repo), Some(arch)) => {
                let urls = self.mirrors().file_urls(repo, arch, &file.name);
                self.mirror_client.order(urls)
            }
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
