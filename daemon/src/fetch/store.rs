//! Where finished downloads are kept so clients and peers can fetch them:
//! one dir under the daemon's store (`STORE/fetched`), watched by the
//! cache index like pacman's own cache dirs, so a kept file is served
//! locally and listed in this host's digest.
//!
//! What is removed, and when, is `fetch::evict`'s pure decision; here it
//! is applied: every [`SWEEP_EVERY`], soon after a file is kept (keep-N
//! sees the new version), and as a download that will be kept starts
//! ([`Store::make_room`]: its size is reserved and room made while it
//! arrives, before it is moved in, so the cap holds). Each lists the whole
//! store, so callers run them on a blocking thread. A download is written
//! under `incoming`, never here, so it is never swept; a kept file a
//! response is sending ([`Store::lease`]) is not removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::evict::{evict, Policy, StoreFile};
use super::growing::Writer;
use super::usage::{Lease, Usage};
use crate::syncdb::FedDbs;

/// Kept files unused for longer than this are removed.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
/// The kept files' total size cap.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// A caching mirror keeps what it fetched this long after its last use
/// (its size cap is the config's `mirror.store_max_gib`).
pub const MIRROR_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long after a file is kept the sweep runs (files kept in a burst
/// share one sweep).
pub const SWEEP_AFTER_KEEP: Duration = Duration::from_millis(500);

/// The kept-downloads dir and its limits. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    pub max_age: Duration,
    pub max_bytes: u64,
    /// Versions kept per package (0: no such rule).
    pub keep_versions: usize,
    usage: Arc<Usage>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Held through every listing and its removals, and through a keep's
    /// rename: sweeps and admissions run one at a time, and none counts a
    /// file both kept and arriving. Taken on blocking threads only.
    sweeping: Mutex<()>,
    /// Downloads arriving to be kept, and their sizes. Held briefly, never
    /// across a listing: a download that ends gives its room back from a
    /// runtime thread without waiting for a sweep.
    reserved: Mutex<HashMap<String, u64>>,
    /// Names each full-mirror repo's databases list, by repo key.
    pins: Mutex<HashMap<String, Arc<HashSet<String>>>>,
    /// The databases whose listing protects a file (mirror mode).
    listing: Mutex<Option<Arc<FedDbs>>>,
    /// Kept bytes as of the last listing, plus what was kept since.
    total: Mutex<Option<u64>>,
    /// Wakes the sweep task: a file was kept.
    kept: Notify,
}

impl Store {
    /// The store in `dir`; last-use records live beside it.
    pub fn new(dir: PathBuf) -> std::io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        let records = dir.parent().unwrap_or(&dir).join(super::usage::FILE_NAME);
        Ok(Store {
            dir,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
            keep_versions: 0,
            usage: Arc::new(Usage::load(records)),
            shared: Arc::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files these databases list are removed last (mirror mode).
    pub fn set_listing(&self, fed: Arc<FedDbs>) {
        *self.shared.listing.lock() = Some(fed);
    }

    /// Sets the names `key`'s full-mirror databases list: never removed by
    /// the policy (the repo's sync removes what it no longer lists).
    pub fn pin(&self, key: &str, names: Arc<HashSet<String>>) {
        self.shared.pins.lock().insert(key.to_owned(), names);
    }

    fn pinned(&self, name: &str) -> bool {
        self.shared.pins.lock().values().any(|p| p.contains(name))
    }

    /// A response starts sending `path`: if it is a kept file, it is used
    /// now and in use while the lease lives.
    /// `path` as the cache index makes it: its dir joined with the name.
    pub fn lease(&self, path: &Path) -> Option<Lease> {
        let name = crate::index::name_in(&self.dir, path)?;
        Some(self.usage.begin(name))
    }

    /// Whether a response ever sent the kept `name` (as far as the
    /// last-use records go).
    pub fn served(&self, name: &str) -> bool {
        self.usage.last_used(name).is_some()
    }

    /// Resolves when a file was kept since the last call.
    pub async fn kept_since(&self) {
        self.shared.kept.notified().await
    }

    fn policy(&self) -> Policy {
        Policy {
            max_age: self.max_age,
            cap: self.max_bytes,
            keep_versions: self.keep_versions,
        }
    }

    /// Moves a finished, verified download in under its name. The flush
    /// to disk runs first, unlocked; the rename, the reservation's release
    /// and the total's update then happen under the sweep lock, so no
    /// sweep or `make_room` counts the file both kept and still arriving.
    pub fn keep(&self, mut writer: Writer, name: &str) -> std::io::Result<()> {
        let dest = self.dir.join(name);
        let flushed = writer.complete_and_flush();
        let sweeping = self.shared.sweeping.lock();
        let kept = flushed.and_then(|()| writer.rename_to(&dest));
        let size = self.shared.reserved.lock().remove(name);
        if kept.is_ok() {
            let size = std::fs::metadata(&dest).map_or(size.unwrap_or(0), |m| m.len());
            if let Some(total) = self.shared.total.lock().as_mut() {
                *total += size;
            }
        }
        drop(sweeping);
        if kept.is_ok() {
            self.shared.kept.notify_one();
        }
        kept
    }

    /// Gives up the room reserved for `name` (its download was not kept).
    pub fn release(&self, name: &str) {
        self.shared.reserved.lock().remove(name);
    }

    /// Reserves `size` bytes for `name`, a download about to arrive to be
    /// kept, removing files by policy if they would not fit. `false`: no
    /// room can be made (the download is served but not kept). A file a
    /// full-mirror repo lists is always given its room.
    pub fn make_room(&self, name: &str, size: u64) -> std::io::Result<bool> {
        let _sweeping = self.shared.sweeping.lock();
        // A download ending meanwhile only makes this count high: room is
        // made for a little more, never for less.
        let others = self.shared.reserved.lock().values().sum::<u64>();
        let known = *self.shared.total.lock();
        let fits = match known {
            Some(total) if total + others + size <= self.max_bytes => true,
            // A full mirror's file is kept anyway: all the room it can get.
            _ if self.pinned(name) => self.apply(others + size, 0, |_| false)?.0,
            _ => self.apply(others, size, |_| false)?.0,
        };
        if fits || self.pinned(name) {
            self.shared.reserved.lock().insert(name.to_owned(), size);
        }
        Ok(fits || self.pinned(name))
    }

    /// [`Store::make_room`] for a download about to start, logged: whether
    /// it will be kept.
    pub fn admit(&self, name: &str, size: u64) -> bool {
        match self.make_room(name, size) {
            Ok(true) => true,
            Ok(false) => {
                info!(
                    file = name,
                    size,
                    cap = self.max_bytes,
                    "no room under the store's cap; served but not kept"
                );
                false
            }
            Err(e) => {
                warn!(error = %e, "cannot list the store to make room; not kept");
                false
            }
        }
    }

    /// Lists the kept files as the policy sees them; `elsewhere(name)`
    /// says whether a pacman cache dir holds the same name.
    pub fn list(&self, elsewhere: impl Fn(&str) -> bool) -> std::io::Result<Vec<StoreFile>> {
        let now = SystemTime::now();
        let listing = self.shared.listing.lock().clone();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let used = self.usage.last_used(&name).or(meta.modified().ok());
            out.push(StoreFile {
                idle: used
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default(),
                listed: listing.as_ref().is_some_and(|fed| fed.lists(&name)),
                pinned: self.pinned(&name),
                in_use: self.usage.in_use(&name),
                elsewhere: elsewhere(&name),
                size: meta.len(),
                name,
            });
        }
        Ok(out)
    }

    /// [`Store::list`], with no file held elsewhere, on the blocking pool.
    pub async fn listed(&self) -> std::io::Result<Vec<StoreFile>> {
        let store = self.clone();
        on_blocking_pool(move || store.list(|_| false)).await
    }

    /// [`Store::remove_where`] on the blocking pool.
    pub async fn removed_where(
        &self,
        unwanted: impl Fn(&str) -> bool + Send + 'static,
    ) -> std::io::Result<Vec<String>> {
        let store = self.clone();
        on_blocking_pool(move || store.remove_where(unwanted)).await
    }

    /// Removes the kept files `unwanted` names, except those a full
    /// mirror's databases list; returns those removed (a response still
    /// reading one finishes: its handle keeps the data).
    pub fn remove_where(&self, unwanted: impl Fn(&str) -> bool) -> std::io::Result<Vec<String>> {
        let mut gone = Vec::new();
        for kept in self.list(|_| false)? {
            let remove = unwanted(&kept.name) && !kept.pinned;
            if remove && std::fs::remove_file(self.dir.join(&kept.name)).is_ok() {
                gone.push(kept.name);
            }
        }
        *self.shared.total.lock() = None;
        gone.sort();
        Ok(gone)
    }

    /// Applies the policy with `reserve` bytes arriving, and `arrival`
    /// more if room can be made for them (nothing is removed for bytes
    /// that will not be kept); returns whether all fit, and what was
    /// removed. The caller holds the sweep lock.
    fn apply(
        &self,
        reserve: u64,
        arrival: u64,
        elsewhere: impl Fn(&str) -> bool,
    ) -> std::io::Result<(bool, Vec<String>)> {
        let files = self.list(elsewhere)?;
        let mut reserve = reserve + arrival;
        let mut eviction = evict(&files, &self.policy(), reserve);
        if !eviction.fits && arrival > 0 {
            reserve -= arrival;
            eviction.gone = evict(&files, &self.policy(), reserve).gone;
        }
        let sizes: HashMap<&str, u64> = files.iter().map(|f| (f.name.as_str(), f.size)).collect();
        let mut total: u64 = sizes.values().sum();
        for name in &eviction.gone {
            // An open handle (a response being sent) keeps the data.
            if std::fs::remove_file(self.dir.join(name)).is_ok() {
                total -= sizes.get(name.as_str()).copied().unwrap_or(0);
            }
        }
        *self.shared.total.lock() = Some(total);
        if !eviction.gone.is_empty() {
            info!(files = ?eviction.gone, reserve, cap = self.max_bytes, "kept files removed by policy");
        }
        let gone: HashSet<&str> = eviction.gone.iter().map(String::as_str).collect();
        self.usage
            .retain(|n| sizes.contains_key(n) && !gone.contains(n));
        Ok((eviction.fits, eviction.gone))
    }

    /// Applies the policy once (room kept for downloads arriving); writes
    /// the last-use records; returns what was removed.
    pub fn sweep_once(&self, elsewhere: impl Fn(&str) -> bool) -> std::io::Result<Vec<String>> {
        let sweeping = self.shared.sweeping.lock();
        let reserve = self.shared.reserved.lock().values().sum();
        let (_, gone) = self.apply(reserve, 0, elsewhere)?;
        drop(sweeping);
        self.usage.save()?;
        Ok(gone)
    }
}

/// Runs `work` on tokio's blocking pool: listings of the store and the
/// like, which a full mirror's tens of thousands of files make long.
pub async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|done| done)
}

impl Store {
    /// Applies the policy every [`SWEEP_EVERY`], and [`SWEEP_AFTER_KEEP`]
    /// after a file is kept (a newer version may make one too many), until
    /// `shutdown`. `held_outside(name, dir)`: a pacman cache dir other
    /// than `dir` holds `name`.
    /// Each sweep runs on a blocking thread: it lists the store and
    /// writes the last-use records.
    pub async fn sweep_loop(
        self,
        held_outside: impl Fn(&str, &Path) -> bool + Send + Sync + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let held_outside = Arc::new(held_outside);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                () = self.kept_since() => tokio::time::sleep(SWEEP_AFTER_KEEP).await,
            }
            let (store, held_outside) = (self.clone(), held_outside.clone());
            let swept =
                on_blocking_pool(move || store.sweep_once(|name| held_outside(name, store.dir())));
            match swept.await {
                Ok(gone) if !gone.is_empty() => info!(files = gone.len(), "kept downloads removed"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot sweep the kept downloads"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in `dir` capped at `cap` bytes holding `files` (name, size).
    fn store_with(dir: &Path, cap: u64, files: &[(&str, usize)]) -> Store {
        let mut store = Store::new(dir.join("fetched")).unwrap();
        store.max_bytes = cap;
        for (name, size) in files {
            std::fs::write(store.dir().join(name), vec![0u8; *size]).unwrap();
        }
        store
    }

    #[test]
    fn an_arrival_that_cannot_fit_removes_nothing_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("a-1-1-any.pkg.tar.zst", "b-1-1-any.pkg.tar.zst");
        let store = store_with(dir.path(), 100, &[(a, 50), (b, 10)]);
        let _sending = store.lease(&store.dir().join(a)).unwrap();
        // 50 being sent + 60 arriving pass 100 whatever goes: not kept...
        assert!(!store.make_room("c-1-1-any.pkg.tar.zst", 60).unwrap());
        // ...and b, which fits beside what is kept, stays.
        assert!(store.dir().join(b).exists());
        // An arrival that fits once b goes still gets its room.
        assert!(store.make_room("d-1-1-any.pkg.tar.zst", 45).unwrap());
        assert!(!store.dir().join(b).exists());
    }
}
