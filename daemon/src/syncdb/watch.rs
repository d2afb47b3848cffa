//! Reloads a sync database when pacman refreshes it (`pacman -Sy`):
//! pacman downloads into a temporary file and renames it into place, so a
//! rename *to* `repo.db` or a close after writing it means "read it
//! again". A removal or a rename *away* is read the same way: the reload
//! finds the file gone and drops the repo, or finds a newer one, without
//! trusting the order events arrive in. Creating or writing a file means
//! nothing yet: it is read once it is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::load::SyncDbs;
use super::table::repo_of_db_file;

/// What an event on a `*.db` file asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the file as it is now (gone → drop the repo).
    Reload,
    Ignore,
}

/// Maps a `notify` event kind to what it means for the database it names
/// (pure).
pub fn action_of(kind: &EventKind) -> Action {
    match kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Action::Reload,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Action::Reload,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Action::Reload,
        EventKind::Remove(_) => Action::Reload,
        // inotify reports a rename as From and To, then Both: the first two
        // already said everything.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Action::Ignore,
        // Other backends' renames and unknown changes: the reload reads the
        // file as it is now (and drops the repo if the file is gone).
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Any | EventKind::Other => {
            Action::Reload
        }
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(_) => Action::Ignore,
    }
}

/// How often a sync dir missing at start is looked for again (a host whose
/// pacman has never synced yet).
const MISSING_DIR_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Loads the databases in `sync_dir` and keeps them current until
/// `shutdown`. Never fails: a sync dir missing at start (pacman never
/// synced, or a machine without pacman) is looked for again every few
/// seconds and watched from when it appears.
pub async fn start(sync_dir: PathBuf, shutdown: CancellationToken) -> Arc<SyncDbs> {
    // Watch before loading, so a refresh during the load is not lost.
    let watched = watch(&sync_dir);
    let dir = sync_dir.clone();
    let dbs = match tokio::task::spawn_blocking(move || SyncDbs::load(&dir)).await {
        Ok(dbs) => Arc::new(dbs),
        Err(e) => {
            warn!(target: "pacmesh::syncdb", error = %e, "sync database load task failed");
            Arc::new(SyncDbs::empty(&sync_dir))
        }
    };
    match watched {
        Ok((watcher, rx)) => {
            tokio::spawn(run(watcher, rx, dbs.clone(), shutdown));
        }
        Err(e) => {
            warn!(target: "pacmesh::syncdb", dir = %sync_dir.display(), error = %e,
                "cannot watch the sync dir yet; looking again every few seconds");
            tokio::spawn(wait_for_dir(dbs.clone(), shutdown));
        }
    }
    dbs
}

type Events = mpsc::UnboundedReceiver<notify::Result<Event>>;

fn watch(dir: &std::path::Path) -> notify::Result<(notify::RecommendedWatcher, Events)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// Waits for a missing sync dir, then loads it and watches it.
async fn wait_for_dir(dbs: Arc<SyncDbs>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MISSING_DIR_RETRY) => {}
        }
        if let Ok((watcher, rx)) = watch(dbs.dir()) {
            info!(target: "pacmesh::syncdb", dir = %dbs.dir().display(), "sync dir appeared; watching it");
            blocking(&dbs, |dbs| dbs.reload_all()).await;
            run(watcher, rx, dbs, shutdown).await;
            return;
        }
    }
}

async fn run(
    watcher: notify::RecommendedWatcher,
    mut rx: Events,
    dbs: Arc<SyncDbs>,
    shutdown: CancellationToken,
) {
    let _watcher = watcher;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = rx.recv() => match event {
                Some(Ok(event)) => apply(&dbs, event).await,
                Some(Err(e)) => {
                    warn!(target: "pacmesh::syncdb", error = %e, "sync dir watcher error; reloading all");
                    blocking(&dbs, |dbs| dbs.reload_all()).await;
                }
                None => break,
            },
        }
    }
}

async fn apply(dbs: &Arc<SyncDbs>, event: Event) {
    if event.need_rescan() {
        blocking(dbs, |dbs| dbs.reload_all()).await;
        return;
    }
    // Checked first: every read of the dir or a database (ours included)
    // is an event too, and must not start a reload.
    if action_of(&event.kind) == Action::Ignore {
        return;
    }
    if event.paths.iter().any(|p| p == dbs.dir()) {
        // The sync dir itself was removed or moved.
        blocking(dbs, |dbs| dbs.reload_all()).await;
        return;
    }
    for path in &event.paths {
        let Some(repo) = repo_of(dbs.dir(), path) else {
            continue;
        };
        blocking(dbs, move |dbs| {
            let _ = dbs.reload(&repo);
        })
        .await;
    }
}

/// The repo whose database `path` is, if it is directly in `dir`.
fn repo_of(dir: &Path, path: &Path) -> Option<String> {
    if path.parent()? != dir {
        return None;
    }
    repo_of_db_file(path.file_name()?.to_str()?).map(str::to_owned)
}

/// Runs a load on the blocking pool: parsing a large database takes tens
/// of milliseconds.
async fn blocking(dbs: &Arc<SyncDbs>, f: impl FnOnce(&SyncDbs) + Send + 'static) {
    let dbs = dbs.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || f(&dbs)).await {
        warn!(target: "pacmesh::syncdb", error = %e, "sync database reload task failed");
    }
}
