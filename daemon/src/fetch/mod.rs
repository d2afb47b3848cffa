//! The download engine: every download the daemon makes — from peers
//! holding a file, from a peer still fetching it, from the repo's
//! mirrors — is one [`Transfer`] here, shared by every request that
//! wants the file and by peers joining it.
//!
//! - `machine`: the pure failover decisions of one download.
//! - `drive`: the async layer that carries them out.
//! - `source`: the byte sources (mesh, mirrors) behind a small trait.
//! - `growing`: the download on disk, readable while it arrives.
//! - `claim`: who fetches from the WAN when hosts miss a file at once.
//! - `wait`: how long pacman is kept waiting, within its redirect limit.
//! - `store`: where finished downloads are kept for peers, and for how
//!   long.
//! - `transfer`: one download as its waiters see it, and what a request
//!   gets from it.
//!
//! What a request gets ([`Answer`]): a stream of the file as it arrives
//! when all its bytes come from mirrors (pacman would have got the same
//! bytes from its own `Server` line), the verified file when bytes came
//! from peers, a "come back" while such a download is on course, or
//! "elsewhere" (the mirror's redirect).

pub mod claim;
pub mod drive;
pub mod evict;
pub mod growing;
pub mod machine;
pub mod room;
pub mod source;
pub mod store;
mod transfer;
pub mod usage;
pub mod vercmp;
pub mod wait;

use transfer::abandoned;
pub use transfer::{Answer, Kind, Transfer};

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument as _};

use crate::mesh::inflight::{BoxFuture, GrowingError, GrowingRead, InFlightFiles};
use crate::stats::Stats;
use crate::syncdb::Expected;
use growing::ClaimState;
use machine::{Machine, SourceId};
use source::Sources;

/// Downloads under way at once; past this, requests go to the mirror.
pub const MAX_TRANSFERS: usize = 32;

/// A download that only waiting requests keep alive (one whose bytes
/// must verify first) is dropped when nobody asked about it for this long
/// (pacman was interrupted, or went to its next server).
const ABANDONED: Duration = Duration::from_secs(15);

/// The longest any download may run.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// How long a finished download stays in the table for the request pacman
/// sends right after a `307` to itself (later ones find the kept file in
/// the cache index).
const LINGER: Duration = Duration::from_secs(10);

/// How long after keeping a file it fetched on its claim a host tells its
/// peers the fetch is done: long enough for the cache index to see the
/// file and the digest delta to go out (milliseconds, normally).
const ANNOUNCE_DONE_AFTER: Duration = Duration::from_secs(1);

/// How a download ended, for what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Failed,
    Done,
    /// Kept, and fetched on our claim: peers are told, a little later.
    KeptAfterClaim,
}

/// A new download's particulars.
pub struct Job<S> {
    pub name: String,
    pub kind: Kind,
    pub sources: S,
    pub order: Vec<SourceId>,
    pub expected: Option<Expected>,
    /// Keep the verified file in the store (and so offer it to peers).
    pub keep: bool,
}

/// The engine: the table of downloads under way. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    incoming: PathBuf,
    room: Arc<room::Room>,
    store: store::Store,
    map: Mutex<HashMap<String, Arc<Transfer>>>,
    stats: Arc<Stats>,
}

impl Engine {
    /// Downloads write under `incoming` (a dir no cache dir includes) and
    /// finished ones are kept in `store`.
    pub fn new(incoming: PathBuf, store: store::Store, stats: Arc<Stats>) -> Engine {
        Engine::with_room(incoming, store, stats, room::Limits::default())
    }

    /// [`Engine::new`] with the incoming dir's room bounded by `limits`.
    pub fn with_room(
        incoming: PathBuf,
        store: store::Store,
        stats: Arc<Stats>,
        limits: room::Limits,
    ) -> Engine {
        Engine {
            inner: Arc::new(EngineInner {
                room: room::Room::new(incoming.clone(), limits),
                incoming,
                store,
                map: Mutex::new(HashMap::new()),
                stats,
            }),
        }
    }

    pub fn store(&self) -> &store::Store {
        &self.inner.store
    }

    /// The download of `name` under way, if any.
    pub fn find(&self, name: &str) -> Option<Arc<Transfer>> {
        self.map().get(name).cloned()
    }

    fn map(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Arc<Transfer>>> {
        self.inner.map.lock()
    }

    /// Downloads under way now.
    pub fn running(&self) -> usize {
        self.map().len()
    }

    /// Starts `job`, unless a download of the file runs already (then
    /// that one is returned) or too many do (`None`). A download to be
    /// kept has its room made in the store first; if none can be made it
    /// is still served, but not kept.
    pub fn start<S: Sources>(&self, job: Job<S>) -> Option<Arc<Transfer>> {
        let mut map = self.map();
        if let Some(t) = map.get(&job.name) {
            return Some(t.clone());
        }
        if map.len() >= MAX_TRANSFERS {
            info!(file = %job.name, limit = MAX_TRANSFERS, "too many downloads under way; not fetched");
            return None;
        }
        // A size the database gives is reserved before anything is
        // written; otherwise the first source's, as it answers.
        let reservation = match job
            .expected
            .as_ref()
            .map(|e| self.inner.room.reserve(e.size))
        {
            Some(Err(no_room)) => {
                info!(file = %job.name, %no_room, "no room for the download; not fetched");
                return None;
            }
            Some(Ok(r)) => Some(r),
            None => None,
        };
        let writer = match growing::create(&self.inner.incoming, &job.name) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot create a download's temp file");
                return None;
            }
        };
        if let Some(e) = &job.expected {
            writer.set_size(e.size);
        }
        let (done_tx, done_rx) = tokio::sync::watch::channel(None);
        let transfer = Arc::new(Transfer {
            name: job.name.clone(),
            kind: job.kind,
            growing: writer.shared().clone(),
            started: Instant::now(),
            wanted: Mutex::new(Instant::now()),
            cancel: CancellationToken::new(),
            outcome: done_rx,
        });
        map.insert(job.name.clone(), transfer.clone());
        drop(map);
        let span = tracing::info_span!("download", file = %job.name, kind = ?job.kind);
        let run = self
            .clone()
            .run(job, writer, reservation, transfer.clone(), done_tx);
        tokio::spawn(run.instrument(span));
        Some(transfer)
    }

    /// One download from its first action to its removal from the map:
    /// driven until it ends, is cancelled, runs out of time or is
    /// abandoned; then kept or discarded, its end told, and left in the
    /// map a moment so late readers still find it.
    async fn run<S: Sources>(
        self,
        job: Job<S>,
        mut writer: growing::Writer,
        reservation: Option<room::Reservation>,
        running: Arc<Transfer>,
        done_tx: tokio::sync::watch::Sender<Option<bool>>,
    ) {
        let started = Instant::now();
        // Room in the store is made while the download runs, on a blocking
        // thread: at the cap it lists the store (tens of thousands of
        // files in a full mirror's) and removes some.
        let admitted = match (job.keep, &job.expected) {
            (true, Some(e)) => {
                let (store, name, size) = (self.inner.store.clone(), job.name.clone(), e.size);
                Admission::Running(tokio::task::spawn_blocking(move || {
                    store.admit(&name, size)
                }))
            }
            _ => Admission::None,
        };
        let mut machine = Machine::new(
            job.order.iter().copied(),
            job.expected.as_ref().map(|e| e.size),
        );
        let first = match job.kind {
            Kind::Fetch => machine.claim(),
            Kind::Holders | Kind::Join => machine.start(),
        };
        let work = drive::caught(drive::drive(
            &job.sources,
            &job.name,
            job.expected.as_ref(),
            &mut machine,
            first,
            &mut writer,
            drive::Placed {
                room: &self.inner.room,
                reservation,
            },
        ));
        let result = tokio::select! {
            r = work => Some(r),
            () = running.cancel.cancelled() => None,
            () = tokio::time::sleep(MAX_DURATION) => None,
            () = abandoned(&running) => None,
        };
        let ended = self.finish(&job, result, writer, admitted, started).await;
        let ok = ended != Ended::Failed;
        let _ = done_tx.send(Some(ok));
        if ended == Ended::KeptAfterClaim {
            // Peers hear "done" once the file is in our digest, so none of
            // them goes to the WAN in between; until then it is still
            // served from here as a fetch.
            tokio::time::sleep(ANNOUNCE_DONE_AFTER).await;
            job.sources.ended(&job.name, true);
        }
        if ok {
            tokio::time::sleep(LINGER).await;
        }
        self.remove(&running);
    }

    /// Keeps or discards a download that ended, counts it, tells peers of
    /// a failure.
    async fn finish<S: Sources>(
        &self,
        job: &Job<S>,
        result: Option<Result<drive::Finished, drive::DriveError>>,
        writer: growing::Writer,
        admitted: Admission,
        started: Instant,
    ) -> Ended {
        let ms = started.elapsed().as_millis() as u64;
        let why = match result {
            Some(Ok(finished)) => return self.finished(job, finished, writer, admitted, ms).await,
            Some(Err(e)) => {
                warn!(error = %e, ms, "download failed");
                GrowingError::from(&e)
            }
            None => {
                info!(
                    ms,
                    "download dropped (given up, over time, or nobody waits)"
                );
                GrowingError::Abandoned
            }
        };
        writer.fail(why);
        // Whatever we announced (a claim, a fetch) is over.
        job.sources.ended(&job.name, false);
        admitted.give_back(&self.inner.store, &job.name).await;
        Ended::Failed
    }

    /// A download that ended with every byte: counted, then kept or not.
    async fn finished<S: Sources>(
        &self,
        job: &Job<S>,
        finished: drive::Finished,
        writer: growing::Writer,
        admitted: Admission,
        ms: u64,
    ) -> Ended {
        let stats = &self.inner.stats;
        stats.add_mirror_fetch_bytes(finished.from_mirrors);
        stats.add_peer_bytes(finished.from_holders + finished.from_fetchers);
        stats.add_peer_inflight_bytes(finished.from_fetchers);
        let bytes = finished.from_mirrors + finished.from_holders + finished.from_fetchers;
        info!(
            bytes,
            from_mirrors = finished.from_mirrors,
            from_holders = finished.from_holders,
            from_fetchers = finished.from_fetchers,
            verified = finished.verified,
            ms,
            "download done"
        );
        // Readers have every byte while room in the store is settled.
        writer.complete();
        let room = admitted.settle().await;
        let kept = if finished.verified && job.keep && room {
            self.keep(writer, &job.name).await
        } else {
            // Not kept: its name goes with the writer, open handles still
            // read it; room made for it is given back.
            drop(writer);
            self.inner.store.release(&job.name);
            false
        };
        match (finished.claimed, kept) {
            (true, true) => Ended::KeptAfterClaim,
            (true, false) => {
                job.sources.ended(&job.name, false);
                Ended::Done
            }
            (false, _) => Ended::Done,
        }
    }

    /// Keeps a verified download in the store; whether it was. The flush
    /// to disk and the rename block: the blocking pool's thread waits for
    /// them, not a runtime thread (a large file takes a good fraction of a
    /// second).
    async fn keep(&self, writer: growing::Writer, name: &str) -> bool {
        let (store, name) = (self.inner.store.clone(), name.to_owned());
        match tokio::task::spawn_blocking(move || store.keep(writer, &name)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot keep a finished download");
                false
            }
            Err(e) => {
                warn!(error = %e, "keeping a finished download was cut short");
                false
            }
        }
    }

    fn remove(&self, transfer: &Arc<Transfer>) {
        let mut map = self.map();
        if map
            .get(&transfer.name)
            .is_some_and(|t| Arc::ptr_eq(t, transfer))
        {
            map.remove(&transfer.name);
        }
    }
}

/// Room in the store for a download to be kept, made on a blocking thread
/// while it runs (`Store::admit`).
enum Admission {
    /// Not to be kept, or nothing to verify it against.
    None,
    Running(tokio::task::JoinHandle<bool>),
}

impl Admission {
    /// Whether room was made (waits for the store's listing if it runs).
    async fn settle(self) -> bool {
        match self {
            Admission::None => false,
            Admission::Running(task) => task.await.unwrap_or(false),
        }
    }

    /// The download will not be kept: any room made for it is given back,
    /// once made (a reservation made after the release would stay).
    async fn give_back(self, store: &store::Store, name: &str) {
        self.settle().await;
        store.release(name);
    }
}

impl InFlightFiles for Engine {
    fn open(
        &self,
        name: &str,
        offset: u64,
    ) -> Option<BoxFuture<'static, Result<GrowingRead, GrowingError>>> {
        let transfer = self.find(name)?;
        // Peers join only a fetch of our own from the WAN (claimed, or
        // about to be: the claim window may still be open).
        if transfer.kind != Kind::Fetch && transfer.growing.shown().claim == ClaimState::None {
            return None;
        }
        let growing = transfer.growing.clone();
        Some(Box::pin(async move {
            growing.claim_won().await?;
            let size = growing.size().await?;
            Ok(GrowingRead {
                size,
                mtime: growing.started_unix,
                chunks: Box::new(growing.reader(offset)),
            })
        }))
    }
}

#[cfg(test)]
mod tests;
