//! One download as its waiters see it: a [`Transfer`] is shared by every
//! request that wants the file, and [`Transfer::answer`] decides, within
//! pacman's redirect budget (`fetch::wait`), what a request gets.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::growing::{ClaimState, End, Growing};
use super::{wait, ABANDONED};

/// How often [`abandoned`] looks: a third of [`ABANDONED`], so a download
/// nobody wants goes at most a third late.
const ABANDONED_CHECK: Duration = Duration::from_secs(ABANDONED.as_secs() / 3);

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
    pub(super) growing: Arc<Growing>,
    pub(super) started: Instant,
    pub(super) wanted: Mutex<Instant>,
    pub(super) cancel: CancellationToken,
    /// The outcome once ended: `Some(true)` kept (or complete), false failed.
    pub(super) outcome: tokio::sync::watch::Receiver<Option<bool>>,
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

    /// Waits for the download to end: `true` if it completed (kept, when
    /// its job asked for that and room was made).
    pub async fn finished(&self) -> bool {
        let mut outcome = self.outcome.clone();
        let ended = outcome.wait_for(Option::is_some).await;
        ended.is_ok_and(|o| *o == Some(true))
    }
}

/// Completes when nobody has wanted a verify-first download for
/// [`ABANDONED`]. A WAN fetch of our own is never abandoned this way:
/// peers may be joining it.
pub(super) async fn abandoned(transfer: &Transfer) {
    loop {
        tokio::time::sleep(ABANDONED_CHECK).await;
        if transfer.droppable() && transfer.idle() >= ABANDONED {
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
    /// Whether the download may be stopped when its own requests no longer
    /// want it: never our WAN fetch, nor one that became the network's
    /// (it won a claim), nor one that a reader holds (a response streaming
    /// it, a peer joining it).
    fn droppable(&self) -> bool {
        let claimed = self.growing.shown().claim != ClaimState::None;
        self.kind != Kind::Fetch && !claimed && self.growing.readers() == 0
    }

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
                        if self.droppable() {
                            self.cancel();
                        }
                        Answer::Elsewhere
                    }
                }
            }
        }
    }
}
