//! The thin async layer under [`Machine`]: it does what the machine says
//! (open a source, read, throw bytes away, settle a claim, verify) and
//! reports what happened, writing bytes to the growing file and feeding
//! the verifier on the way. Every decision stays in the machine.

use std::sync::Arc;

use crate::mesh::inflight::GrowingError;
use crate::syncdb::{Expected, Verifier};

use super::growing::{ClaimState, Writer};
use super::machine::{Action, Event, Failure, Machine, SourceId};
use super::room::{NoRoom, Reservation, Room};
use super::source::{Sources, Stream};

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub verified: bool,
    /// Bytes of the final file by where they came from.
    pub from_mirrors: u64,
    pub from_holders: u64,
    pub from_fetchers: u64,
    /// Whether this host fetched from the WAN on its claim (and so
    /// announced it).
    pub claimed: bool,
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    #[error("{0}")]
    NoSource(String),
    #[error("writing the download: {0}")]
    Disk(String),
    /// A bug: something the download ran panicked. It ends as a failure
    /// like any other (readers told, room given back, the file free to be
    /// fetched again) instead of leaving the download in the engine's map
    /// until the daemon restarts.
    #[error("the download panicked: {0}")]
    Panicked(String),
}

/// Bytes in the file by kind of source, reset when they are thrown away.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    mirrors: u64,
    holders: u64,
    fetchers: u64,
}

impl Tally {
    fn add(&mut self, source: Option<SourceId>, n: u64) {
        match source {
            Some(SourceId::Mirror(_)) => self.mirrors += n,
            Some(SourceId::Holder(_)) => self.holders += n,
            Some(SourceId::Fetcher(_)) => self.fetchers += n,
            None => {}
        }
    }
}

/// Runs one download to its end. `first` is the machine's first action
/// (`start()`, or `Claim` for a miss nobody holds).
pub async fn drive<S: Sources>(
    sources: &S,
    name: &str,
    expected: Option<&Expected>,
    machine: &mut Machine,
    first: Action,
    writer: &mut Writer,
    room: Placed<'_>,
) -> Result<Finished, DriveError> {
    let mut run = Run {
        sources,
        name,
        expected,
        machine,
        writer,
        room,
        verifier: expected.cloned().map(Verifier::new),
        stream: None,
        carry: None,
        batch: Vec::new(),
        tally: Tally::default(),
        claimed: false,
    };
    let mut action = first;
    loop {
        // Not before a restart: the machine has forgotten the bytes it
        // throws away, but they are in the file until the restart empties
        // it, and a reader on another thread could take them for a
        // mirror's in between.
        if action != Action::Restart {
            run.judge_streamable();
        }
        action = match action {
            Action::Open { source, offset } => run.open(source, offset).await,
            Action::Skip(n) => run.skip(n).await?,
            Action::Read => run.read().await?,
            Action::Restart => run.restart()?,
            Action::Penalise { peers, why } => {
                sources.penalise(&peers, name, &why);
                run.machine.resume()
            }
            Action::Claim { exclude } => run.claim(&exclude).await,
            Action::Verify => run.verify(),
            Action::Done { verified } => return Ok(run.finished(verified)),
            Action::GiveUp(why) => return Err(DriveError::NoSource(why)),
        };
    }
}

/// `drive` (or any future) with a panic on the way turned into
/// [`DriveError::Panicked`]: a bug in one download ends it as a failure
/// like any other, instead of leaving it in the engine's map until the
/// daemon restarts.
pub fn caught<F>(future: F) -> CatchPanic<F>
where
    F: std::future::Future<Output = Result<Finished, DriveError>>,
{
    CatchPanic(Box::pin(future))
}

/// See [`caught`].
pub struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F> std::future::Future for CatchPanic<F>
where
    F: std::future::Future<Output = Result<Finished, DriveError>>,
{
    type Output = Result<Finished, DriveError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let future = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx))) {
            Ok(polled) => polled,
            Err(panic) => {
                let why = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                std::task::Poll::Ready(Err(DriveError::Panicked(why)))
            }
        }
    }
}

/// A download's room on disk: reserved at its start when its size was
/// known (the database's), else on the first size a source gives, and
/// again should a later source give a larger one (the file started over).
pub struct Placed<'a> {
    pub room: &'a Arc<Room>,
    pub reservation: Option<Reservation>,
}

impl Placed<'_> {
    fn reserve(&mut self, size: u64) -> Result<(), NoRoom> {
        if self.reservation.as_ref().is_some_and(|r| r.size() >= size) {
            return Ok(());
        }
        self.reservation = None;
        self.reservation = Some(self.room.reserve(size)?);
        Ok(())
    }
}

/// One download's state while [`drive`] carries out its machine's actions.
struct Run<'a, S: Sources> {
    sources: &'a S,
    name: &'a str,
    expected: Option<&'a Expected>,
    machine: &'a mut Machine,
    writer: &'a mut Writer,
    room: Placed<'a>,
    verifier: Option<Verifier>,
    stream: Option<S::Stream>,
    /// What a `Skip` read past the bytes it discarded: the next `Read`'s.
    carry: Option<bytes::Bytes>,
    /// The chunks of one `Read` (kept for its capacity).
    batch: Vec<bytes::Bytes>,
    tally: Tally,
    claimed: bool,
}

impl<S: Sources> Run<'_, S> {
    /// pacman may see the bytes as they come only while every one of them
    /// is a mirror's (see `fetch`), and only once a mirror answered: until
    /// then a request can still get the redirect. Judged while a source is
    /// open, so a download that ends (or fails over) with mirror bytes
    /// only stays streamable: a request joining it then is still a mirror
    /// fetch, not a peer download.
    fn judge_streamable(&mut self) {
        if self.stream.is_some() {
            let from_mirror = self.machine.current().is_some_and(SourceId::is_mirror);
            (self.writer).set_streamable(from_mirror && self.machine.only_mirror_bytes());
        }
    }

    fn failed(&mut self, failure: Failure, doing: &str) -> Action {
        let source = self.machine.current();
        tracing::info!(?source, at = self.machine.pos(), ?failure, "{doing}");
        self.machine.on(Event::Failed(failure))
    }

    async fn open(&mut self, source: SourceId, offset: u64) -> Action {
        self.stream = None;
        self.carry = None;
        let size = self.machine.size();
        match self.sources.open(source, self.name, offset, size).await {
            Ok((stream, opened)) => {
                if let Err(no_room) = self.room.reserve(opened.size) {
                    tracing::info!(?source, size = opened.size, %no_room, "no room for the download");
                    return self
                        .machine
                        .on(Event::Failed(Failure::Unavailable(no_room.to_string())));
                }
                self.stream = Some(stream);
                self.writer.set_size(opened.size);
                self.machine.on(Event::Opened {
                    size: opened.size,
                    start: opened.start,
                })
            }
            Err(failure) => {
                tracing::info!(?source, offset, ?failure, "source unavailable");
                self.machine.on(Event::Failed(failure))
            }
        }
    }

    async fn skip(&mut self, n: u64) -> Result<Action, DriveError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(DriveError::NoSource("skip with no source open".into()));
        };
        Ok(match skip(stream, n).await {
            Ok(rest) => {
                self.carry = rest;
                self.machine.on(Event::Skipped)
            }
            Err(failure) => self.failed(failure, "source failed while skipping"),
        })
    }

    async fn read(&mut self) -> Result<Action, DriveError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(DriveError::NoSource("read with no source open".into()));
        };
        // Taken while `take` borrows the run; always left empty.
        let mut batch = std::mem::take(&mut self.batch);
        let next = match self.carry.take() {
            Some(rest) => {
                batch.push(rest);
                Ok(true)
            }
            None => stream.next_chunks(&mut batch).await,
        };
        let action = match next {
            Ok(true) => self.take(&batch),
            Ok(false) => Ok(self.machine.on(Event::Ended)),
            Err(failure) => Ok(self.failed(failure, "source failed")),
        };
        batch.clear();
        self.batch = batch;
        action
    }

    /// Bytes read: checked against the database as they come, written.
    fn take(&mut self, chunks: &[bytes::Bytes]) -> Result<Action, DriveError> {
        let checked = match self.verifier.as_mut() {
            Some(v) => chunks
                .iter()
                .try_for_each(|chunk| v.update(chunk))
                .map_err(|m| m.to_string()),
            None => Ok(()),
        };
        if let Err(why) = checked {
            let source = self.machine.current();
            tracing::warn!(why, ?source, "the download does not match the database");
            return Ok(self.machine.on(Event::Failed(Failure::Bad(why))));
        }
        (self.writer)
            .write_chunks(chunks)
            .map_err(|e| DriveError::Disk(e.to_string()))?;
        let n = chunks.iter().map(|c| c.len() as u64).sum();
        self.tally.add(self.machine.current(), n);
        Ok(self.machine.on(Event::Bytes(n)))
    }

    /// The source stays open: after a mirror that ignored our Range, its
    /// stream is read from its byte 0 next; after bad bytes, the next
    /// action opens another source anyway.
    fn restart(&mut self) -> Result<Action, DriveError> {
        self.carry = None;
        (self.writer)
            .restart()
            .map_err(|e| DriveError::Disk(e.to_string()))?;
        self.verifier = self.expected.cloned().map(Verifier::new);
        self.tally = Tally::default();
        Ok(self.machine.resume())
    }

    async fn claim(&mut self, exclude: &[pacmesh_proto::NodeId]) -> Action {
        self.stream = None;
        let expected_size = self.expected.map(|e| e.size);
        let size = self.machine.size().or(expected_size).unwrap_or(0);
        self.writer.set_claim(ClaimState::Pending);
        let claimant = self.sources.claim(self.name, size, exclude).await;
        tracing::info!(?claimant, at = self.machine.pos(), "claim settled");
        self.claimed = claimant == super::machine::Claimant::Us;
        self.writer.set_claim(if self.claimed {
            ClaimState::Won
        } else {
            ClaimState::Lost
        });
        self.machine.on(Event::Claimed(claimant))
    }

    fn verify(&mut self) -> Action {
        self.stream = None;
        let verdict = match self.verifier.take() {
            Some(v) => v.finish().map(|()| true).map_err(|m| m.to_string()),
            None => Ok(false),
        };
        if let Err(why) = &verdict {
            let source = self.machine.current();
            tracing::warn!(why, ?source, "the download does not match the database");
        }
        self.machine.on(Event::Verified(verdict))
    }

    fn finished(&self, verified: bool) -> Finished {
        Finished {
            verified,
            from_mirrors: self.tally.mirrors,
            from_holders: self.tally.holders,
            from_fetchers: self.tally.fetchers,
            claimed: self.claimed,
        }
    }
}

/// Reads and discards `n` bytes of `stream`; returns what it read past
/// them. A stream that ends first broke.
async fn skip<T: Stream>(stream: &mut T, n: u64) -> Result<Option<bytes::Bytes>, Failure> {
    let mut left = n;
    while left > 0 {
        let Some(mut chunk) = stream.next_chunk().await? else {
            return Err(Failure::Broke(format!(
                "ended {left} bytes before the byte reached"
            )));
        };
        let len = chunk.len() as u64;
        if len > left {
            return Ok(Some(chunk.split_off(left as usize)));
        }
        left -= len;
    }
    Ok(None)
}

impl From<&DriveError> for GrowingError {
    fn from(e: &DriveError) -> Self {
        match e {
            DriveError::NoSource(_) | DriveError::Panicked(_) => GrowingError::Abandoned,
            DriveError::Disk(why) => GrowingError::Io(why.clone()),
        }
    }
}
