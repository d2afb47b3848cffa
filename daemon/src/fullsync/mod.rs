//! Full mirrors of chosen repos (`[[mirror.repo]] full = true`;
//! docs/DESIGN.md, "Full mirrors"): every package a repo's database lists
//! is fetched (through the download engine, from the repo's upstreams,
//! verified against that database), and the database is switched
//! (`dbproxy::staged`) only once all of them are kept; then the files it
//! no longer lists are removed. Run at start and after each periodic
//! refresh by the daemon ([`refresh_loop`]), or once from a terminal
//! (`pacmeshd --sync-once`, `progress`).
//!
//! - `plan` (pure): what a run fetches and removes.
//! - `once`: `pacmeshd --sync-once`, with a progress bar and a summary.
//! - `report`: the last runs, for status and the page; an admin's "run now".
//! - `timer`: the daemon's refresh loop ([`refresh_loop`]).

pub mod once;
pub mod plan;
pub mod report;
#[cfg(test)]
mod tests;
mod timer;

pub use report::{Report, SyncStatus};
pub use timer::{full_repos, refresh_loop};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tracing::warn;

use crate::dbproxy::{upstream::RefreshError, DbKey, DbProxy};
use crate::fetch::store::on_blocking_pool;
use crate::fetch::{self, machine::SourceId, source::MirrorSources, Engine};
use crate::mirror_client::MirrorClient;
use crate::mirrors::MirrorTable;
use crate::syncdb::Expected;

/// Packages fetched at once by one sync.
pub const PARALLEL: usize = 4;

/// How long a sync waits when the engine takes no more downloads (as
/// many as [`fetch::MAX_TRANSFERS`] run, or their room on disk is taken)
/// before asking again...
const ENGINE_BUSY: Duration = Duration::from_millis(500);

/// ...at most this many times for one file (5 minutes), then the file
/// counts as failed for this run.
const ENGINE_BUSY_TRIES: u32 = 600;

/// How often a download's progress is reported.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// What a sync run reports, per repo and architecture.
pub trait Progress: Send + Sync {
    /// The run will fetch `files` packages, `bytes` in all.
    fn begin(&self, what: &str, files: usize, bytes: u64);
    /// `n` more bytes arrived (a file's total, once it is kept).
    fn bytes(&self, n: u64);
    /// One package fetched (`ok`) or failed.
    fn done(&self, name: &str, ok: bool);
}

/// One run's outcome for a repo and architecture.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub repo: String,
    pub arch: String,
    /// Packages the database lists.
    pub listed: usize,
    /// Of those, already kept.
    pub present: usize,
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Packages that could not be had: the database was not switched.
    pub failed: Vec<String>,
    /// Entries without a size and SHA-256 (not mirrored: nothing to
    /// verify them against).
    pub unverifiable: usize,
    /// A new database is served from now on.
    pub switched: bool,
    /// Kept packages removed (listed by the old database only).
    pub removed: usize,
}

/// Why a run did not get as far as fetching packages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("the database: {0}")]
    Database(#[from] RefreshError),
    #[error("the store: {0}")]
    Store(#[from] std::io::Error),
}

/// What a sync works with.
#[derive(Clone)]
pub struct Syncer {
    pub engine: Engine,
    pub proxy: Arc<DbProxy>,
    pub client: MirrorClient,
}

fn db_key(repo: &str, arch: &str) -> DbKey {
    DbKey {
        arch: arch.to_owned(),
        repo: repo.to_owned(),
        name: format!("{repo}.db"),
    }
}

impl Syncer {
    /// Protects what the served database of `repo`/`arch` lists from the
    /// store's policy (at start, before any run).
    pub fn pin_current(&self, repo: &str, arch: &str) {
        let key = db_key(repo, arch);
        let names = self.proxy.current_entries(&key).unwrap_or_default();
        let names = names.keys().map(|n| n.to_string()).collect();
        self.engine
            .store()
            .pin(&format!("{arch}/{repo}"), Arc::new(names));
    }

    /// One run for `repo` on `arch`.
    pub async fn sync(
        &self,
        mirrors: &MirrorTable,
        repo: &str,
        arch: &str,
        progress: &Arc<dyn Progress>,
    ) -> Result<Summary, SyncError> {
        let key = db_key(repo, arch);
        let staged = self
            .proxy
            .stage(
                &key,
                &self.client.order(mirrors.file_urls(repo, arch, &key.name)),
            )
            .await?;
        // The old database parsed (megabytes of archive) and the store
        // listed (tens of thousands of files): on the blocking pool.
        let (proxy, old_key) = (self.proxy.clone(), key.clone());
        let old = on_blocking_pool(move || Ok(proxy.current_entries(&old_key).unwrap_or_default()))
            .await?;
        let entries = staged.as_ref().map_or(&old, |s| s.entries());
        let expected: BTreeMap<String, Expected> = entries
            .iter()
            .filter_map(|(n, e)| Some((n.to_string(), e.expected(repo)?)))
            .collect();
        let old_names: HashSet<String> = old.keys().map(|n| n.to_string()).collect();
        let new_names: HashSet<String> = entries.keys().map(|n| n.to_string()).collect();
        let store = self.engine.store();
        let pin = format!("{arch}/{repo}");
        store.pin(
            &pin,
            Arc::new(old_names.union(&new_names).cloned().collect()),
        );
        let kept = store
            .listed()
            .await?
            .into_iter()
            .map(|f| (f.name, f.size))
            .collect();
        let sizes = expected.iter().map(|(n, e)| (n.clone(), e.size)).collect();
        let todo = plan::plan(&sizes, &kept);
        let mut summary = Summary {
            repo: repo.to_owned(),
            arch: arch.to_owned(),
            listed: entries.len(),
            present: todo.present,
            unverifiable: entries.len() - expected.len(),
            ..Summary::default()
        };
        progress.begin(&pin, todo.fetch.len(), todo.fetch_bytes);
        let jobs: Vec<(String, Expected)> = todo
            .fetch
            .iter()
            .map(|n| (n.clone(), expected[n].clone()))
            .collect();
        let (fetched, failed) = self.fetch_all(mirrors, repo, arch, jobs, progress).await;
        summary.fetched = fetched.len();
        summary.fetched_bytes = fetched.iter().map(|n| expected[n].size).sum();
        summary.failed = failed;
        if !summary.failed.is_empty() {
            return Ok(summary);
        }
        if let Some(staged) = staged {
            self.proxy.install(staged).await?;
            summary.switched = true;
            // Unpinned first: what only the old database listed may go.
            let gone: HashSet<String> =
                plan::leaving(&old_names, &new_names, |n| self.proxy.fed().lists(n))
                    .into_iter()
                    .collect();
            store.pin(&pin, Arc::new(new_names));
            summary.removed = store.removed_where(move |n| gone.contains(n)).await?.len();
        } else {
            store.pin(&pin, Arc::new(new_names));
        }
        Ok(summary)
    }

    /// Fetches `jobs`, [`PARALLEL`] at a time; returns those kept and
    /// those not. Once the engine refused one for [`ENGINE_BUSY_TRIES`]
    /// tries (no room on disk, most likely), the rest are not tried: they
    /// count as failed, and the run ends in minutes, not days.
    async fn fetch_all(
        &self,
        mirrors: &MirrorTable,
        repo: &str,
        arch: &str,
        jobs: Vec<(String, Expected)>,
        progress: &Arc<dyn Progress>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut kept, mut failed) = (Vec::new(), Vec::new());
        let mut jobs = jobs.into_iter();
        let mut running = JoinSet::new();
        // Each task's file, so that one that panicked still counts.
        let mut names = HashMap::new();
        let mut refused = false;
        loop {
            while running.len() < PARALLEL && !refused {
                let Some((name, expected)) = jobs.next() else {
                    break;
                };
                let sources = MirrorSources {
                    client: self.client.clone(),
                    mirror_urls: self.client.order(mirrors.file_urls(repo, arch, &name)),
                };
                let (engine, progress) = (self.engine.clone(), progress.clone());
                let file = name.clone();
                let task = running.spawn(async move {
                    let on_bytes = |n| progress.bytes(n);
                    fetch_and_keep(&engine, &file, sources, &expected, &on_bytes).await
                });
                names.insert(task.id(), name);
            }
            let Some(ended) = running.join_next_with_id().await else {
                failed.extend(jobs.map(|(name, _)| name));
                return (kept, failed);
            };
            let (id, fetched) = ended.unwrap_or_else(|e| {
                warn!(error = %e, "full mirror: a package's task failed");
                (e.id(), Fetched::Failed)
            });
            if fetched == Fetched::Refused && !refused {
                refused = true;
                let waited_s = (ENGINE_BUSY * ENGINE_BUSY_TRIES).as_secs();
                warn!(waited_s, "full mirror: the download engine took no download (no room on disk, or too many downloads); the rest of this run is not tried");
            }
            let name = names.remove(&id).unwrap_or_default();
            let ok = fetched == Fetched::Kept;
            progress.done(&name, ok);
            if ok {
                kept.push(name)
            } else {
                failed.push(name)
            }
        }
    }
}

/// How a [`fetch_and_keep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Kept at its listed size.
    Kept,
    /// Not kept: every source failed, or sent bad bytes.
    Failed,
    /// Never started: the engine took no download for
    /// [`ENGINE_BUSY_TRIES`] tries (no room on disk, or as many downloads
    /// as it runs at once).
    Refused,
}

/// Fetches `name` from the mirrors through the engine (joining a
/// client's download of it if one runs), to keep it at its listed size.
/// `on_bytes` hears of the bytes as they arrive, adding up to the file's
/// size once it is kept. Used by full mirrors and prefetch.
pub async fn fetch_and_keep(
    engine: &Engine,
    name: &str,
    sources: MirrorSources,
    expected: &Expected,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Fetched {
    let order: Vec<SourceId> = (0..sources.mirror_urls.len())
        .map(SourceId::Mirror)
        .collect();
    let make = || fetch::Job {
        name: name.to_owned(),
        kind: fetch::Kind::Fetch,
        sources: sources.clone(),
        order: order.clone(),
        expected: Some(expected.clone()),
        keep: true,
    };
    let mut tries = 0;
    let transfer = loop {
        match engine.start(make()) {
            Some(t) => break t,
            None if tries < ENGINE_BUSY_TRIES => {
                tries += 1;
                tokio::time::sleep(ENGINE_BUSY).await;
            }
            None => return Fetched::Refused,
        }
    };
    let finished = transfer.finished();
    tokio::pin!(finished);
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = &mut finished => break,
            () = tokio::time::sleep(PROGRESS_TICK) => {
                let len = transfer.growing().shown().len.min(expected.size);
                if len > reported {
                    on_bytes(len - reported);
                    reported = len;
                }
            }
        }
    }
    let path = engine.store().dir().join(name);
    let kept = std::fs::metadata(path).is_ok_and(|m| m.len() == expected.size);
    if kept && expected.size > reported {
        on_bytes(expected.size - reported);
    }
    if kept {
        Fetched::Kept
    } else {
        Fetched::Failed
    }
}
