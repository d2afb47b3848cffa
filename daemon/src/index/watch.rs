//! The IO side of the cache index: the startup scan of every cache dir and
//! a `notify` watcher that keeps the index current.
//!
//! A file counts as complete when the writer closed it (`CLOSE_WRITE`) or
//! renamed it into place (pacman renames `*.part`); creating or writing a
//! file takes its name out until then.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{is_indexable, CacheIndex, Change};

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
    /// Gone, or being written: not servable.
    Absent,
    /// Possibly complete now: servable if it is a regular file.
    Check,
    Ignore,
}

/// Maps a `notify` event kind to its effect on the index (pure).
pub fn effect_of(kind: &EventKind) -> Effect {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => Effect::Absent,
        EventKind::Modify(ModifyKind::Data(_)) => Effect::Absent,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Effect::Absent,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Effect::Check,
        // inotify reports a rename as From and To, then Both: the first two
        // already said everything.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Effect::Ignore,
        EventKind::Modify(ModifyKind::Name(_)) => Effect::Check,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Effect::Check,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => Effect::Ignore,
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => Effect::Check,
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Watch before scanning, so nothing that happens during the scan is lost.
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // Every file served opens it, and notify always reports opens: drop
        // those here, on notify's thread, rather than wake the watcher task
        // once per request.
        if let Ok(e) = &event {
            if effect_of(&e.kind) == Effect::Ignore && !e.need_rescan() {
                return;
            }
        }
        let _ = tx.send(event);
    })?;
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            warn!(dir = %dir.display(), error = %e, "cannot watch cache dir; changes will not be seen");
        }
    }
    let mut watch = Watch {
        index: index.clone(),
        dirs,
        writing: HashSet::new(),
        on_change,
    };
    let started = std::time::Instant::now();
    watch.rescan().await;
    let files = index.read().map(|ix| ix.len()).unwrap_or(0);
    let ms = started.elapsed().as_millis() as u64;
    info!(files, dirs = watch.dirs.len(), ms, "cache index loaded");

    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = rx.recv() => match event {
                    Some(Ok(event)) => watch.apply(event).await,
                    Some(Err(e)) => {
                        warn!(error = %e, "cache watcher error; rescanning");
                        watch.rescan().await;
                    }
                    None => break,
                },
            }
        }
    });
    Ok(index)
}

/// The watcher task's state.
struct Watch {
    index: SharedIndex,
    dirs: Vec<PathBuf>,
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
            let changes = match self.index.write() {
                Ok(mut ix) => ix.replace_dir(i, &names),
                Err(_) => continue,
            };
            self.publish(&changes);
        }
    }

    async fn apply(&mut self, event: Event) {
        if event.need_rescan() {
            self.rescan().await;
            return;
        }
        // Ignored kinds (opens, reads, metadata) were dropped in notify's
        // callback already.
        let effect = effect_of(&event.kind);
        for path in &event.paths {
            if self.dirs.contains(path) {
                // The cache dir itself was removed or moved.
                self.rescan().await;
                return;
            }
            self.apply_to_file(path, &event.kind, effect);
        }
    }

    fn apply_to_file(&mut self, path: &Path, kind: &EventKind, effect: Effect) {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let Some(dir) = self.dirs.iter().position(|d| d == parent) else {
            return;
        };
        if !is_indexable(name) {
            return;
        }
        match kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
                self.writing.insert(path.to_owned());
            }
            _ => {
                self.writing.remove(path);
            }
        }
        let present = effect == Effect::Check
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        let change = match self.index.write() {
            Ok(mut ix) => ix.set(dir, name, present),
            Err(_) => None,
        };
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
    use notify::event::{CreateKind, DataChange, RemoveKind};

    #[test]
    fn event_effects() {
        let table = [
            (EventKind::Create(CreateKind::File), Effect::Absent),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                Effect::Absent,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                Effect::Check,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                Effect::Ignore,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                Effect::Check,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                Effect::Absent,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                Effect::Ignore,
            ),
            (EventKind::Remove(RemoveKind::File), Effect::Absent),
            (EventKind::Other, Effect::Check),
        ];
        for (kind, want) in table {
            assert_eq!(effect_of(&kind), want, "{kind:?}");
        }
    }
}
