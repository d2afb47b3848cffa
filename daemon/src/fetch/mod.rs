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
//!
//! What a request gets ([`Answer`]): a stream of the file as it arrives
//! when all its bytes come from mirrors (pacman would have got the same
//! bytes from its own `Server` line), the verified file when bytes came
//! from peers, a "come back" while such a download is on course, or
//! "elsewhere" (the mirror's redirect).

pub mod claim;
pub mod drive;
pub mod growing;
pub mod machine;
pub mod source;
pub mod store;
pub mod wait;

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
use growing::{ClaimState, End, Growing};
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

/// What kind of download a transfer is: it decides how requests wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From peers holding the file (verify first; LAN-paced).
    Holders,
    /// Joining a peer's WAN fetch (verify first; WAN-paced).
    Join,
    /// A miss nobody holds: claimed, then fetched from the mirrors (or
    /// joined, if another host won the claim).
    Fetch,
}

/// One download and what its waiters need to know.
pub struct Transfer {
    pub name: String,
    pub kind: Kind,
    growing: Arc<Growing>,
    started: Instant,
    wanted: Mutex<Instant>,
    cancel: CancellationToken,
    /// The outcome once ended: `Some(true)` kept (or complete), false failed.
    outcome: tokio::sync::watch::Receiver<Option<bool>>,
}

impl Transfer {
    pub fn growing(&self) -> &Arc<Growing> {
        &self.growing
    }

    fn touch(&self) {
        *self.wanted.lock() = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.wanted.lock().elapsed()
    }

    /// Gives the download up (pacman went to the mirror instead).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
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
    store: store::Store,
    map: Mutex<HashMap<String, Arc<Transfer>>>,
    stats: Arc<Stats>,
}

impl Engine {
    /// Downloads write under `incoming` (a dir no cache dir includes) and
    /// finished ones are kept in `store`.
    pub fn new(incoming: PathBuf, store: store::Store, stats: Arc<Stats>) -> Engine {
        Engine {
            inner: Arc::new(EngineInner {
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
    /// that one is returned) or too many do (`None`).
    pub fn start<S: Sources>(&self, job: Job<S>) -> Option<Arc<Transfer>> {
        let mut map = self.map();
        if let Some(t) = map.get(&job.name) {
            return Some(t.clone());
        }
        if map.len() >= MAX_TRANSFERS {
            info!(file = %job.name, limit = MAX_TRANSFERS, "too many downloads under way; not fetched");
            return None;
        }
        let mut writer = match growing::create(&self.inner.incoming, &job.name) {
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
        let engine = self.clone();
        let running = transfer.clone();
        let span = tracing::info_span!("download", file = %job.name, kind = ?job.kind);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let mut machine = Machine::new(
                    job.order.iter().copied(),
                    job.expected.as_ref().map(|e| e.size),
                );
                let first = match job.kind {
                    Kind::Fetch => machine.claim(),
                    Kind::Holders | Kind::Join => machine.start(),
                };
                let work = drive::drive(
                    &job.sources,
                    &job.name,
                    job.expected.as_ref(),
                    &mut machine,
                    first,
                    &mut writer,
                );
                let result = tokio::select! {
                    r = work => Some(r),
                    () = running.cancel.cancelled() => None,
                    () = tokio::time::sleep(MAX_DURATION) => None,
                    () = abandoned(&running) => None,
                };
                let ended = engine.finish(&job, result, writer, started);
                let ok = ended != Ended::Failed;
                let _ = done_tx.send(Some(ok));
                if ended == Ended::KeptAfterClaim {
                    // Peers hear "done" once the file is in our digest, so
                    // none of them goes to the WAN in between; until then
                    // it is still served from here as a fetch.
                    tokio::time::sleep(ANNOUNCE_DONE_AFTER).await;
                    job.sources.ended(&job.name, true);
                }
                if ok {
                    tokio::time::sleep(LINGER).await;
                }
                engine.remove(&running);
            }
            .instrument(span),
        );
        Some(transfer)
    }

    /// Keeps or discards a download that ended, counts it, tells peers of
    /// a failure.
    fn finish<S: Sources>(
        &self,
        job: &Job<S>,
        result: Option<Result<drive::Finished, drive::DriveError>>,
        writer: growing::Writer,
        started: Instant,
    ) -> Ended {
        let ms = started.elapsed().as_millis() as u64;
        let finished = match result {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                warn!(error = %e, ms, "download failed");
                writer.fail(GrowingError::from(&e));
                // Whatever we announced (a claim, a fetch) is over.
                job.sources.ended(&job.name, false);
                return Ended::Failed;
            }
            None => {
                info!(
                    ms,
                    "download dropped (given up, over time, or nobody waits)"
                );
                writer.fail(GrowingError::Abandoned);
                job.sources.ended(&job.name, false);
                return Ended::Failed;
            }
        };
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
        let kept = if finished.verified && job.keep {
            match self.inner.store.keep(writer, &job.name) {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "cannot keep a finished download");
                    false
                }
            }
        } else {
            writer.complete_unkept();
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

/// Completes when nobody has wanted a verify-first download for
/// [`ABANDONED`]. A WAN fetch of our own is never abandoned this way:
/// peers may be joining it.
async fn abandoned(transfer: &Transfer) {
    loop {
        tokio::time::sleep(ABANDONED / 3).await;
        let claimed = transfer.growing.shown().claim != ClaimState::None;
        // A response streaming the download (or a peer joining it) holds
        // a reader: wanted still.
        let read = transfer.growing.readers() > 0;
        if !claimed && !read && transfer.kind != Kind::Fetch && transfer.idle() >= ABANDONED {
            return;
        }
    }
}

/// What a request for a file gets from a download.
#[derive(Debug)]
pub enum Answer {
    /// Send the file from the download (as it arrives, or whole).
    Stream(Arc<Growing>),
    /// Send the file as it arrives from an authenticated mesh member,
    /// before it verifies (a join that would outlast pacman's redirects,
    /// with a mesh key configured; pacman checks the package signature).
    StreamUnverified(Arc<Growing>),
    /// Still arriving and worth waiting for: ask pacman to come back.
    ComeBack,
    /// Nothing from here: the next source (the mirror's redirect).
    Elsewhere,
}

impl Transfer {
    /// Waits (up to [`wait::WAIT_PER_HOP`]) for what to answer a request
    /// at hop `hop`. `members_trusted`: a mesh key is configured, so a
    /// join too long for pacman's redirects may be streamed unverified.
    pub async fn answer(&self, hop: u32, members_trusted: bool) -> Answer {
        self.touch();
        let mut rx = self.growing.watch();
        let mut outcome = self.outcome.clone();
        let at_start = rx.borrow().len;
        let ready = async {
            loop {
                {
                    let shown = rx.borrow_and_update();
                    match &shown.end {
                        End::Complete => return true,
                        End::Failed(_) => return false,
                        End::Running if shown.streamable && shown.size.is_some() => return true,
                        End::Running => {}
                    }
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return false },
                    r = outcome.changed() => if r.is_err() { return false },
                }
            }
        };
        match tokio::time::timeout(wait::WAIT_PER_HOP, ready).await {
            Ok(true) => Answer::Stream(self.growing.clone()),
            Ok(false) => Answer::Elsewhere,
            Err(_) => {
                self.touch();
                let shown = self.growing.shown();
                let course = wait::Course {
                    elapsed: self.started.elapsed(),
                    done: shown.len,
                    size: shown.size.unwrap_or(0),
                    wan_paced: self.kind != Kind::Holders,
                    moved: shown.len > at_start || shown.generation > 0,
                    idle: shown.last_write.elapsed(),
                };
                match wait::after_wait(hop, course) {
                    wait::AfterWait::ComeBack => {
                        info!(file = %self.name, done = shown.len, hop, "still arriving; pacman asked back");
                        Answer::ComeBack
                    }
                    // Our own fetch streams already; a join of a member's
                    // fetch (from the start, or after a lost claim) may.
                    wait::AfterWait::OutOfHops if members_trusted && self.kind != Kind::Holders => {
                        info!(file = %self.name, done = shown.len, hop,
                            "join longer than pacman's redirects; streaming the member's bytes");
                        Answer::StreamUnverified(self.growing.clone())
                    }
                    wait::AfterWait::GiveUp | wait::AfterWait::OutOfHops => {
                        info!(file = %self.name, done = shown.len, hop, "download too slow for pacman; given up for the mirror");
                        if self.kind != Kind::Fetch {
                            self.cancel();
                        }
                        Answer::Elsewhere
                    }
                }
            }
        }
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
