//! The IO side of the cache index: the startup scan of every cache dir and
//! an inotify watch that keeps the index current.
//!
//! A file counts as complete when the writer closed it (`CLOSE_WRITE`) or
//! renamed it into place (pacman renames `*.part`); creating or writing a
//! file takes its name out until then.
//!
//! The `inotify` crate is used directly, not `notify`: notify always asks
//! the kernel for `IN_OPEN`, so every file served (every request) woke its
//! thread for an event it then dropped. The mask here names only the events
//! that change what is servable, so serving a file costs the watch nothing.

use parking_lot::RwLock;
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{is_indexable, CacheIndex, Change};

/// What the watch asks the kernel for: the events that change whether a
/// complete file sits under a name, and the dir itself going away.
const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// Bytes read from the inotify fd at once (an event is 16 bytes plus a
/// name of at most 256).
const EVENT_BUFFER: usize = 4096;

/// The index shared between the watcher and request handlers. Lock holds
/// are a hash lookup or insert, never IO.
pub type SharedIndex = Arc<RwLock<CacheIndex>>;

/// Lists the complete package files directly in `dir`. Only regular files
/// count: symlinks could point outside the cache dirs, and directories are
/// pacman's temporary `download-*` dirs.
pub fn scan_dir(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_indexable(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// What an event says about the file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Gone, or being written (`writing`): not servable.
    Absent {
        writing: bool,
    },
    /// Possibly complete now: servable if it is a regular file.
    Check,
    /// The dir itself went away, or events were lost: list it again.
    Rescan,
    Ignore,
}

/// Maps an inotify event mask to its effect on the index (pure).
pub fn effect_of(mask: EventMask) -> Effect {
    let lost =
        EventMask::Q_OVERFLOW | EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF;
    if mask.intersects(lost) {
        Effect::Rescan
    } else if mask.intersects(EventMask::CREATE | EventMask::MODIFY) {
        Effect::Absent { writing: true }
    } else if mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
        Effect::Absent { writing: false }
    } else if mask.intersects(EventMask::MOVED_TO | EventMask::CLOSE_WRITE) {
        Effect::Check
    } else {
        Effect::Ignore
    }
}

/// Told of every change to the set of servable names (the mesh publishes
/// them to peers as digest deltas).
pub type ChangeSink = Arc<dyn Fn(&[Change]) + Send + Sync>;

/// Scans the dirs and keeps watching them until `shutdown`; every change,
/// the initial scan's included, goes to `on_change`.
pub async fn start(
    dirs: Vec<PathBuf>,
    on_change: ChangeSink,
    shutdown: CancellationToken,
) -> anyhow::Result<SharedIndex> {
    let index: SharedIndex = Arc::new(RwLock::new(CacheIndex::new(dirs.clone())));
    // Watch before scanning, so nothing that happens during the scan is lost.
    let inotify = Inotify::init()?;
    let mut watches = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        match inotify.watches().add(dir, MASK) {
            Ok(wd) => watches.push((wd, i)),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch cache dir; changes will not be seen")
            }
        }
    }
    let mut events = inotify.into_event_stream(vec![0u8; EVENT_BUFFER])?;
    let mut watch = Watch {
        index: index.clone(),
        dirs,
        watches,
        writing: HashSet::new(),
        on_change,
    };
    let started = std::time::Instant::now();
    watch.rescan().await;
    let files = index.read().len();
    let ms = started.elapsed().as_millis() as u64;
    info!(files, dirs = watch.dirs.len(), ms, "cache index loaded");

    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => watch.apply(event).await,
                Some(Err(e)) => {
                    warn!(error = %e, "cache watcher error; rescanning");
                    watch.rescan().await;
                }
                None => break,
            }
        }
    });
    Ok(index)
}

/// The watcher task's state.
struct Watch {
    index: SharedIndex,
    dirs: Vec<PathBuf>,
    /// Each watch and the index of the dir it watches.
    watches: Vec<(WatchDescriptor, usize)>,
    /// Files created or written to and not yet closed: a rescan (after the
    /// kernel's event queue overflowed) must not list them as complete.
    writing: HashSet<PathBuf>,
    on_change: ChangeSink,
}

impl Watch {
    async fn rescan(&mut self) {
        for (i, dir) in self.dirs.iter().enumerate() {
            let path = dir.clone();
            let listing = tokio::task::spawn_blocking(move || scan_dir(&path)).await;
            let mut names = match listing {
                Ok(Ok(names)) => names,
                Ok(Err(e)) => {
                    warn!(dir = %dir.display(), error = %e, "cannot list cache dir");
                    Vec::new()
                }
                Err(e) => {
                    warn!(error = %e, "cache scan task failed");
                    continue;
                }
            };
            names.retain(|name| !self.writing.contains(&dir.join(name)));
            let changes = self.index.write().replace_dir(i, &names);
            self.publish(&changes);
        }
    }

    async fn apply(&mut self, event: Event<OsString>) {
        let effect = effect_of(event.mask);
        if effect == Effect::Rescan {
            self.rescan().await;
            return;
        }
        let dir = self.watches.iter().find(|(w, _)| *w == event.wd);
        let name = event.name.as_deref().and_then(|n| n.to_str());
        if let (Some(&(_, dir)), Some(name)) = (dir, name) {
            self.apply_to_file(dir, name, effect);
        }
    }

    fn apply_to_file(&mut self, dir: usize, name: &str, effect: Effect) {
        if effect == Effect::Ignore || !is_indexable(name) {
            return;
        }
        let path = self.dirs[dir].join(name);
        if effect == (Effect::Absent { writing: true }) {
            self.writing.insert(path.clone());
        } else {
            self.writing.remove(&path);
        }
        let present = effect == Effect::Check
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        let change = self.index.write().set(dir, name, present);
        if let Some(change) = change {
            self.publish(&[change]);
        }
    }

    /// Passes changes on, outside the index lock.
    fn publish(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        for change in changes {
            debug!(target: "pacmesh::index", ?change, "index change");
        }
        (self.on_change)(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_effects() {
        let table = [
            (EventMask::CREATE, Effect::Absent { writing: true }),
            (EventMask::MODIFY, Effect::Absent { writing: true }),
            (EventMask::CLOSE_WRITE, Effect::Check),
            (EventMask::CLOSE_NOWRITE, Effect::Ignore),
            (EventMask::OPEN, Effect::Ignore),
            (EventMask::ACCESS, Effect::Ignore),
            (EventMask::ATTRIB, Effect::Ignore),
            (EventMask::MOVED_TO, Effect::Check),
            (EventMask::MOVED_FROM, Effect::Absent { writing: false }),
            (EventMask::DELETE, Effect::Absent { writing: false }),
            (
                EventMask::CREATE | EventMask::ISDIR,
                Effect::Absent { writing: true },
            ),
            (EventMask::DELETE_SELF, Effect::Rescan),
            (EventMask::MOVE_SELF, Effect::Rescan),
            (EventMask::IGNORED, Effect::Rescan),
            (EventMask::Q_OVERFLOW, Effect::Rescan),
        ];
        for (mask, want) in table {
            assert_eq!(effect_of(mask), want, "{mask:?}");
        }
    }
}
