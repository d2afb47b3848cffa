//! A caching mirror's databases (docs/DESIGN.md, "Proxied databases"):
//! `{repo}.db`, `{repo}.files`, their `.tar.*` forms and signatures,
//! fetched from the repo's upstreams, kept under the store dir as pairs,
//! revalidated with `If-Modified-Since` at most every
//! `mirror.db_revalidate_s`, and served stale with a `Warning` header when
//! every upstream fails. Only databases that parse are kept or served;
//! each `.db` kept also feeds the verification table (`syncdb::FedDbs`)
//! that packages fetched for clients are checked against.
//!
//! - `fresh` (pure): when to ask upstream, and what a client gets.
//! - `store`: the pairs on disk, one generation directory each.
//! - `upstream`: asking the upstreams for a pair.
//! - `counts`: what status and metrics show.
//! - `staged`: full-mirror repos' databases, switched by their sync only.
//! - here: [`DbProxy`], one refresh per database at a time however many
//!   clients ask, and its counters.

pub mod counts;
pub mod fresh;
pub mod staged;
pub mod store;
pub mod upstream;

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::fetch::store::on_blocking_pool;
use crate::mirror_client::MirrorClient;
use crate::syncdb::{repo_of_proxied_db, FedDbs};
use counts::Counters;
pub use counts::DbCounts;
use fresh::{Check, Decision};
use store::{DbStore, Generation};
use upstream::Fetched;

/// Databases tracked at most (kept, or asked for and failed): a client
/// naming made-up architectures or databases cannot grow the table, nor
/// make the upstreams be asked for each more than once an interval. A
/// failed name is forgotten for a new one once its failure is older than
/// the revalidation interval.
pub const MAX_DATABASES: usize = 1024;

/// The longest an admin refresh waits for the upstreams.
pub const REFRESH_ALL_WAIT: Duration = Duration::from_secs(60);

/// What an admin refresh did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Refreshed {
    /// Kept databases asked about.
    pub asked: usize,
    /// Current (304) or replaced by a newer pair.
    pub fresh: usize,
    /// Every upstream failed (or still running when the wait ended).
    pub failed: usize,
}

/// One proxied database: where a request names it, and its file name
/// (`core.db`, never its `.sig`: the pair is one database).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbKey {
    pub arch: String,
    pub repo: String,
    pub name: String,
}

/// What a request for a database (or its signature) gets.
#[derive(Debug)]
pub enum DbAnswer {
    /// The file, opened, with the `Warning` to add if it is stale.
    File {
        file: File,
        meta: Metadata,
        warning: Option<&'static str>,
    },
    /// The database is kept, but its upstream has no signature for it.
    NoSignature,
    /// Still being fetched, nothing kept: ask again.
    ComeBack,
    /// No database can be had now.
    Fail(&'static str),
}

#[derive(Debug)]
struct Entry {
    current: Option<Arc<Generation>>,
    /// When the last check ended.
    checked: Option<Instant>,
    last: Check,
    /// The refresh under way: its outcome once it ends.
    refreshing: Option<watch::Receiver<Option<Check>>>,
}

impl Entry {
    fn new(current: Option<Arc<Generation>>) -> Entry {
        Entry {
            current,
            checked: None,
            last: Check::Fresh,
            refreshing: None,
        }
    }
}

/// The databases a caching mirror proxies. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct DbProxy {
    store: Arc<DbStore>,
    fed: Arc<FedDbs>,
    client: MirrorClient,
    interval: Duration,
    entries: Mutex<HashMap<DbKey, Entry>>,
    counters: Counters,
    /// Repos mirrored whole (`staged`): their package lists change only
    /// when their sync switches them.
    full: HashSet<String>,
}

impl DbProxy {
    /// Opens the store under `store_dir` and feeds `fed` from the kept
    /// databases. Blocking (it parses them): call from the blocking pool.
    /// A kept database that no longer parses is dropped.
    pub fn open(
        store_dir: &Path,
        fed: Arc<FedDbs>,
        client: MirrorClient,
        interval: Duration,
        full: HashSet<String>,
    ) -> std::io::Result<DbProxy> {
        let (store, mut found) = DbStore::open(store_dir)?;
        // Oldest first: where a repo's database was kept under two names
        // (`core.db` and its alias `core.db.tar.gz`), the newer one is fed
        // last and its list stands, whatever the names' order.
        found.sort_by_key(|(_, generation)| generation.modified);
        let mut entries = HashMap::new();
        for (key, generation) in found {
            match upstream::parse_kept(&key.name, generation.db()) {
                Ok(parsed) => {
                    if repo_of_proxied_db(&key.name) == Some(key.repo.as_str()) {
                        let files = fed.feed(&key.arch, &key.repo, parsed);
                        info!(arch = %key.arch, repo = %key.repo, files, "kept database loaded");
                    }
                    entries.insert(key, Entry::new(Some(Arc::new(generation))));
                }
                Err(why) => {
                    warn!(db = %generation.db().display(), why, "kept database does not parse; dropped");
                    generation.retire();
                }
            }
        }
        Ok(DbProxy {
            store: Arc::new(store),
            fed,
            client,
            interval,
            entries: Mutex::new(entries),
            counters: Counters::default(),
            full,
        })
    }

    fn entries(&self) -> parking_lot::MutexGuard<'_, HashMap<DbKey, Entry>> {
        self.entries.lock()
    }

    /// Answers a request for `key`'s database (`sig`: its signature).
    /// `urls`: the database's URL at each upstream; `hop`: come-backs so
    /// far.
    pub async fn answer(
        self: &Arc<Self>,
        key: &DbKey,
        sig: bool,
        urls: &[String],
        hop: u32,
    ) -> DbAnswer {
        if self.is_staged(key) {
            return self.answer_staged(key, sig);
        }
        let decision = {
            let mut entries = self.entries();
            if !entries.contains_key(key) && entries.len() >= MAX_DATABASES {
                // Room is made by forgetting a name no upstream gave when
                // last asked, longer than the revalidation interval ago (it
                // would be asked again by now anyway): made-up names fill
                // the table for that long at most.
                let interval = self.interval;
                let forgotten = entries.iter().find_map(|(k, e)| {
                    let idle = e.checked.is_some_and(|t| t.elapsed() >= interval);
                    (e.current.is_none() && e.refreshing.is_none() && idle).then(|| k.clone())
                });
                match forgotten {
                    Some(old) => {
                        entries.remove(&old);
                    }
                    None => {
                        warn!(db = %key.name, arch = %key.arch, limit = MAX_DATABASES, "too many databases; not proxied");
                        return DbAnswer::Fail("this mirror proxies too many databases already");
                    }
                }
            }
            let entry = entries
                .entry(key.clone())
                .or_insert_with(|| Entry::new(None));
            if sig && entry.current.is_some() {
                // The signature of the database the client was just
                // given (pacman asks for it right after): the copy's. A
                // signature asked for never starts or waits for a
                // refresh, whose new pair would not match that database.
                Decision::Serve(None)
            } else {
                fresh::decide(&fresh::Facts {
                    have_copy: entry.current.is_some(),
                    since_check: entry.checked.map(|t| t.elapsed()),
                    last: entry.last,
                    interval: self.interval,
                })
            }
        };
        let decision = match decision {
            Decision::Refresh => {
                let mut outcome = self.refresh(key, urls);
                let ended =
                    tokio::time::timeout(fresh::WAIT_PER_HOP, outcome.wait_for(Option::is_some))
                        .await
                        .ok()
                        .and_then(|r| r.ok().and_then(|c| *c));
                let have_copy = self.current(key).is_some();
                fresh::after_wait(have_copy, ended, hop)
            }
            other => other,
        };
        match decision {
            Decision::Serve(warning) => self.open_copy(key, sig, warning),
            Decision::ComeBack => DbAnswer::ComeBack,
            Decision::Fail(why) => DbAnswer::Fail(why),
            Decision::Refresh => DbAnswer::Fail("no decision"),
        }
    }

    fn current(&self, key: &DbKey) -> Option<Arc<Generation>> {
        self.entries().get(key)?.current.clone()
    }

    fn open_copy(&self, key: &DbKey, sig: bool, warning: Option<&'static str>) -> DbAnswer {
        let Some(generation) = self.current(key) else {
            return DbAnswer::Fail(Check::Fresh.failure());
        };
        let path = if sig {
            match generation.sig() {
                Some(path) => path,
                None => return DbAnswer::NoSignature,
            }
        } else {
            generation.db()
        };
        match crate::cachefile::open_regular(path) {
            Ok((file, meta)) => {
                self.counters.served.fetch_add(1, Relaxed);
                if let Some(warning) = warning {
                    self.counters.stale.fetch_add(1, Relaxed);
                    warn!(db = %key.name, arch = %key.arch, warning, "serving a stale database");
                }
                DbAnswer::File {
                    file,
                    meta,
                    warning,
                }
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "kept database unreadable");
                DbAnswer::Fail(Check::Fresh.failure())
            }
        }
    }

    /// The refresh of `key` under way, or a new one.
    fn refresh(self: &Arc<Self>, key: &DbKey, urls: &[String]) -> watch::Receiver<Option<Check>> {
        let mut entries = self.entries();
        let entry = entries
            .entry(key.clone())
            .or_insert_with(|| Entry::new(None));
        if let Some(rx) = &entry.refreshing {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        entry.refreshing = Some(rx.clone());
        let since = entry.current.as_ref().map(|g| g.modified);
        let (proxy, key, urls) = (self.clone(), key.clone(), urls.to_vec());
        let span =
            tracing::info_span!("database", db = %key.name, arch = %key.arch, repo = %key.repo);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let check = proxy.check_upstream(&key, &urls, since).await;
                let mut entries = proxy.entries();
                if let Some(entry) = entries.get_mut(&key) {
                    entry.checked = Some(Instant::now());
                    entry.last = check;
                    entry.refreshing = None;
                }
                drop(entries);
                let _ = tx.send(Some(check));
            },
            span,
        ));
        rx
    }

    /// Asks the upstreams; keeps a new pair (and feeds the table) before
    /// any client can see it.
    async fn check_upstream(
        &self,
        key: &DbKey,
        urls: &[String],
        since: Option<std::time::SystemTime>,
    ) -> Check {
        let pending = match self.store.pending() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot write a database");
                return Check::Unreachable;
            }
        };
        match upstream::fetch_pair(&self.client, urls, &key.name, since, &pending).await {
            Ok(Fetched::NotModified { url }) => {
                self.counters.not_modified.fetch_add(1, Relaxed);
                info!(url, "database not modified");
                Check::Fresh
            }
            Ok(Fetched::New(pair)) => match self.put(key, pending, pair).await {
                Ok(()) => Check::Fresh,
                Err(e) => {
                    warn!(error = %e, "cannot keep a database");
                    Check::Unreachable
                }
            },
            Err(e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                let check = e.check();
                warn!(error = %e, ?check, "every upstream failed for this database");
                check
            }
        }
    }

    /// Keeps a new pair as `key`'s current one (and feeds the table)
    /// before any client can see it. The pair's directory is flushed to
    /// disk and renamed into place on the blocking pool.
    async fn put(
        &self,
        key: &DbKey,
        pending: store::Pending,
        pair: upstream::NewPair,
    ) -> std::io::Result<()> {
        self.counters.bytes_upstream.fetch_add(pair.bytes, Relaxed);
        let (store, at, modified, has_sig) =
            (self.store.clone(), key.clone(), pair.modified, pair.has_sig);
        let committed = on_blocking_pool(move || store.commit(&at, pending, modified, has_sig));
        let generation = Arc::new(committed.await?);
        // Clients of the new database ask for what it lists: the table
        // knows it before they can.
        if repo_of_proxied_db(&key.name) == Some(key.repo.as_str()) {
            let files = self.fed.feed(&key.arch, &key.repo, pair.parsed);
            info!(files, "verification table fed");
        }
        self.counters.refreshed.fetch_add(1, Relaxed);
        let mut entries = self.entries();
        let entry = entries
            .entry(key.clone())
            .or_insert_with(|| Entry::new(None));
        let old = entry.current.replace(generation);
        entry.checked = Some(Instant::now());
        drop(entries);
        // Removed from disk with its last reader, which may be this one:
        // not under the lock every database request takes.
        if let Some(old) = old {
            old.retire();
        }
        Ok(())
    }

    /// Asks the upstreams about every kept database now (the admin
    /// refresh, the refresh timer), joining refreshes under way; a full
    /// mirror's package list is left to its sync; waits for all of them, at
    /// most [`REFRESH_ALL_WAIT`]. `urls`: a database's URL at each
    /// upstream.
    pub async fn refresh_all(self: &Arc<Self>, urls: impl Fn(&DbKey) -> Vec<String>) -> Refreshed {
        let keys: Vec<DbKey> = self
            .entries()
            .iter()
            .filter(|(k, e)| e.current.is_some() && !self.is_staged(k))
            .map(|(k, _)| k.clone())
            .collect();
        let mut report = Refreshed::default();
        let waits: Vec<_> = keys.iter().map(|k| self.refresh(k, &urls(k))).collect();
        let all = async {
            for mut rx in waits {
                let check = rx.wait_for(Option::is_some).await.ok().and_then(|c| *c);
                match check {
                    Some(Check::Fresh) => report.fresh += 1,
                    _ => report.failed += 1,
                }
            }
        };
        if tokio::time::timeout(REFRESH_ALL_WAIT, all).await.is_err() {
            warn!("admin refresh: some databases still being fetched");
        }
        report.asked = keys.len();
        report
    }

    /// The verification table fed from the kept databases.
    pub fn fed(&self) -> &Arc<FedDbs> {
        &self.fed
    }
}
