//! One download's failover decisions, as a pure state machine: events in
//! (a source answered, bytes arrived, it ended, it failed, the whole file
//! verified or not, a claim was settled), the next action out (open this
//! source from byte N, start over, penalise these peers, settle a claim,
//! verify, done, give up). No IO, no clock: the driver (`fetch::drive`)
//! does what it is told and reports back, so every decision is tested
//! with plain tables (see the tests below).
//!
//! The rules, in one place:
//! - Sources are tried in the order given: peers holding a complete copy
//!   (best first), a peer fetching it right now, then the repo's mirrors.
//! - A source that breaks (link lost, stalled, refused) is left and the
//!   next one continues from the byte reached: nothing is thrown away.
//! - When a peer that was *fetching* the file breaks, the hosts that were
//!   joining it settle who continues (a claim, see `fetch::claim`) before
//!   anyone goes to a mirror, so the WAN still carries the file once.
//! - Bytes that turn out wrong (more than the size, a size the database
//!   contradicts, a checksum mismatch at the end) are thrown away and the
//!   download starts over at the next source from byte 0. Exactly the
//!   peers whose bytes were in the file are penalised: a peer that never
//!   sent a byte (it answered `Busy`, or had no link) is not.
//! - A file the database does not size (a signature, an unlisted file)
//!   takes the size of the source whose bytes are in it. A source that
//!   states another size is not blamed (nothing says which is right): the
//!   file starts over from byte 0 at that source, with its size.
//! - A fetching peer that reports its own upstream sent bad bytes is not
//!   penalised: everything from it is thrown away and it is asked again
//!   (its download restarts at its next mirror).
//! - After bad bytes the mirrors are queued again (a mirror whose bytes
//!   alone were bad is not: its copy is corrupt).
//! - A mirror that ignores a Range request (its bytes start at 0 again):
//!   when every byte so far is a mirror's, its first bytes are skipped up
//!   to the byte reached, so readers streaming the download go on
//!   undisturbed (the verifier still checks the whole file); when a peer's
//!   bytes are in the file they are thrown away instead, and the file is
//!   read from the mirror's byte 0 (then it may be streamed to pacman).
//! - Every source is tried at most [`MAX_OPENS`] times in one download.

use std::collections::VecDeque;

use pacmesh_proto::NodeId;

/// How often one source may be opened in one download (a fetching peer
/// may be asked again after it restarted; nothing else is retried).
pub const MAX_OPENS: u8 = 3;

/// Where bytes can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// A linked peer whose digest lists the file: it has it whole.
    Holder(NodeId),
    /// A linked peer fetching the file from its mirror right now.
    Fetcher(NodeId),
    /// The repo's n-th mirror (pacman.conf's order after pacmesh's own).
    Mirror(usize),
}

impl SourceId {
    /// The peer behind this source, if it is one.
    pub fn peer(self) -> Option<NodeId> {
        match self {
            SourceId::Holder(p) | SourceId::Fetcher(p) => Some(p),
            SourceId::Mirror(_) => None,
        }
    }

    /// Bytes from here are what pacman would have got from its own
    /// `Server` lines: they may reach pacman before they verify.
    pub fn is_mirror(self) -> bool {
        matches!(self, SourceId::Mirror(_))
    }
}

/// How an attempt at a source failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No bytes could be had from it now (no link, `Busy`, not found,
    /// refused connection, HTTP error): try the next source.
    Unavailable(String),
    /// The transfer broke or stalled after it began: continue elsewhere
    /// from the byte reached.
    Broke(String),
    /// The source sent something that cannot be right (a size the
    /// database contradicts, more bytes than the size): start over.
    Bad(String),
    /// A fetching peer's own upstream sent bytes that did not verify:
    /// drop what came from it, blame nobody, ask it again.
    SourceBad,
}

/// What the driver tells the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The source opened by the last `Open` answered: the whole file is
    /// `size` bytes and its first byte is at `start` (the offset asked
    /// for, or 0 when a mirror ignored the Range).
    Opened {
        size: u64,
        start: u64,
    },
    /// `n` more bytes from the current source were written.
    Bytes(u64),
    /// The current source's stream ended.
    Ended,
    Failed(Failure),
    /// The result of `Verify`: `Ok(true)` verified, `Ok(false)` nothing
    /// to verify against, `Err` why it did not match.
    Verified(Result<bool, String>),
    /// The result of `Claim`: who fetches from the mirrors now.
    Claimed(Claimant),
    /// The bytes of a `Skip` were read and discarded.
    Skipped,
}

/// Who won a claim to fetch a file from the WAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant {
    Us,
    Peer(NodeId),
}

/// What the machine tells the driver to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open `source` and read from byte `offset` to the end.
    Open { source: SourceId, offset: u64 },
    /// Go on reading the source opened last.
    Read,
    /// Read and discard this many bytes of the source opened last (it
    /// ignored our Range and starts at 0), then answer `Event::Skipped`.
    Skip(u64),
    /// Throw away every byte written (truncate to 0), then ask again
    /// (feed nothing: call [`Machine::resume`]).
    Restart,
    /// These peers' bytes were in a file that did not verify.
    Penalise { peers: Vec<NodeId>, why: String },
    /// Settle with the other hosts who fetches from the WAN (the fetcher
    /// we joined is gone); answer with `Event::Claimed`. `exclude`: the
    /// fetchers that failed us (their announcements may outlive them by a
    /// moment).
    Claim { exclude: Vec<NodeId> },
    /// Every byte is in: check the whole file, answer `Event::Verified`.
    Verify,
    /// The file is complete (and verified, or allowed unverified).
    Done { verified: bool },
    /// No source is left.
    GiveUp(String),
}

/// One download's position and sources.
#[derive(Debug, Clone)]
pub struct Machine {
    queue: VecDeque<SourceId>,
    current: Option<SourceId>,
    /// Bytes written, all from sources in `contributors`.
    pos: u64,
    /// From the database, else from the answer of the source whose bytes
    /// are in the file.
    size: Option<u64>,
    /// `size` is the database's: a source that disagrees is wrong.
    size_listed: bool,
    /// Sources whose bytes are in the file now (only those that sent at
    /// least one byte).
    contributors: Vec<SourceId>,
    opens: Vec<(SourceId, u8)>,
    /// Mirrors still to try when a claim sends us to the WAN.
    mirrors: Vec<SourceId>,
    /// Mirrors whose copy turned out bad: never asked again.
    bad_mirrors: Vec<SourceId>,
    /// Fetching peers that failed us: never joined again.
    gone_fetchers: Vec<NodeId>,
    /// Set by an action that needs a `resume` before the next decision.
    pending: Option<Action>,
}

impl Machine {
    /// A download of a file of `size` (when the database knows it) from
    /// `sources`, in order.
    pub fn new(sources: impl IntoIterator<Item = SourceId>, size: Option<u64>) -> Machine {
        let queue: VecDeque<SourceId> = sources.into_iter().collect();
        let mirrors = queue.iter().copied().filter(|s| s.is_mirror()).collect();
        Machine {
            queue,
            current: None,
            pos: 0,
            size,
            size_listed: size.is_some(),
            contributors: Vec::new(),
            opens: Vec::new(),
            mirrors,
            bad_mirrors: Vec::new(),
            gone_fetchers: Vec::new(),
            pending: None,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn size(&self) -> Option<u64> {
        self.size
    }

    pub fn current(&self) -> Option<SourceId> {
        self.current
    }

    /// Whether every byte in the file so far came from mirrors, so the
    /// file may be streamed to pacman before it verifies.
    pub fn only_mirror_bytes(&self) -> bool {
        self.contributors.iter().all(|s| s.is_mirror())
    }

    /// The first action.
    pub fn start(&mut self) -> Action {
        self.next_source()
    }

    /// A claim, leaving out the fetchers that failed us.
    pub fn claim(&self) -> Action {
        Action::Claim {
            exclude: self.gone_fetchers.clone(),
        }
    }

    /// The action after one that needed no answer (`Restart`, `Penalise`).
    pub fn resume(&mut self) -> Action {
        self.pending.take().unwrap_or_else(|| self.next_source())
    }

    /// The next action after `event`.
    pub fn on(&mut self, event: Event) -> Action {
        match event {
            Event::Opened { size, start } => self.opened(size, start),
            Event::Bytes(n) => self.bytes(n),
            Event::Ended => self.ended(),
            Event::Failed(failure) => self.failed(failure),
            Event::Verified(result) => self.verified(result),
            Event::Skipped => Action::Read,
            Event::Claimed(Claimant::Us) => {
                // We fetch: the mirrors go next, whatever was queued, but
                // not one whose copy turned out corrupt.
                self.queue.retain(|s| !s.is_mirror());
                let good = self
                    .mirrors
                    .iter()
                    .filter(|m| !self.bad_mirrors.contains(m));
                self.queue.extend(good.copied());
                self.next_source()
            }
            Event::Claimed(Claimant::Peer(peer)) if !self.gone_fetchers.contains(&peer) => {
                self.queue.push_front(SourceId::Fetcher(peer));
                self.next_source()
            }
            // A claim must not send us back to a fetcher that failed us;
            // if it does, the mirrors are what is left.
            Event::Claimed(Claimant::Peer(_)) => self.next_source(),
        }
    }

    fn opened(&mut self, size: u64, start: u64) -> Action {
        match self.size {
            Some(want) if want != size && self.size_listed => {
                return self.bad(format!("size {size} where {want} was expected"));
            }
            Some(want) if want != size => {
                // No listing says which of two sources is right: the
                // bytes of the one that said `want` go, and this one is
                // asked again from byte 0, its size taken. Blaming it
                // would let one wrong size fail every honest source after.
                tracing::info!(
                    want,
                    size,
                    "sources disagree on an unlisted size; starting over"
                );
                let source = self.current.take();
                return self.start_over_at(source);
            }
            _ => {}
        }
        self.size = Some(size);
        if start != self.pos {
            // A mirror ignored our Range: its bytes start at 0 again.
            let mirror = self.current.is_some_and(SourceId::is_mirror);
            if start == 0 && mirror && self.only_mirror_bytes() {
                // Skip what we have: readers streaming it go on.
                return Action::Skip(self.pos);
            }
            // A peer's bytes are in the file: empty it, and read the
            // mirror's stream from the start.
            self.throw_away();
            return self.restart_then(Action::Read);
        }
        Action::Read
    }

    fn bytes(&mut self, n: u64) -> Action {
        let Some(source) = self.current else {
            return self.next_source();
        };
        if n > 0 && !self.contributors.contains(&source) {
            self.contributors.push(source);
        }
        self.pos += n;
        if let Some(size) = self.size {
            if self.pos > size {
                return self.bad(format!("more than the {size} bytes expected"));
            }
        }
        Action::Read
    }

    fn ended(&mut self) -> Action {
        match self.size {
            Some(size) if self.pos == size => Action::Verify,
            _ => self.failed(Failure::Broke(format!("ended at byte {}", self.pos))),
        }
    }

    fn failed(&mut self, failure: Failure) -> Action {
        let source = self.current.take();
        match failure {
            Failure::Unavailable(_) | Failure::Broke(_) => {
                if let Some(SourceId::Fetcher(peer)) = source {
                    // The fetch we joined is gone: settle who goes on.
                    if !self.gone_fetchers.contains(&peer) {
                        self.gone_fetchers.push(peer);
                    }
                    return self.claim();
                }
                self.next_source()
            }
            Failure::Bad(why) => {
                self.current = source;
                self.bad(why)
            }
            // Everything from the fetching peer goes; it restarted its own
            // download, so it may be asked again.
            Failure::SourceBad => self.start_over_at(source),
        }
    }

    fn verified(&mut self, result: Result<bool, String>) -> Action {
        match result {
            Ok(verified) => Action::Done { verified },
            Err(why) => self.bad(why),
        }
    }

    /// The file holds wrong bytes: penalise the peers among their
    /// sources, throw everything away, start over at the next source.
    fn bad(&mut self, why: String) -> Action {
        if let Some(source) = self.current.take() {
            if !self.contributors.contains(&source) && source.peer().is_some() {
                // It announced a wrong size or overran before its first
                // byte was written: its answer alone was wrong.
                self.contributors.push(source);
            }
        }
        let peers: Vec<NodeId> = self.contributors.iter().filter_map(|s| s.peer()).collect();
        self.requeue_mirrors(!peers.is_empty());
        self.throw_away();
        if peers.is_empty() {
            return self.restart_then_next();
        }
        self.pending = Some(Action::Restart);
        Action::Penalise { peers, why }
    }

    /// After bad bytes every mirror may serve again from byte 0, except
    /// a mirror whose bytes were in the file with no peer's beside them
    /// (its copy is bad). With a peer's bytes beside a mirror's, the peer
    /// is the likelier culprit: that mirror goes last.
    fn requeue_mirrors(&mut self, peers_contributed: bool) {
        let guilty: Vec<SourceId> = self
            .contributors
            .iter()
            .copied()
            .filter(|s| s.is_mirror())
            .collect();
        if !peers_contributed {
            self.bad_mirrors.extend(guilty.iter().copied());
        }
        for &m in &self.mirrors {
            if !guilty.contains(&m) && !self.bad_mirrors.contains(&m) && !self.queue.contains(&m) {
                self.queue.push_back(m);
            }
        }
        if peers_contributed {
            for m in guilty {
                if !self.queue.contains(&m) {
                    self.queue.push_back(m);
                }
            }
        }
    }

    fn throw_away(&mut self) {
        self.pos = 0;
        self.contributors.clear();
        if !self.size_listed {
            // Only the source whose bytes were thrown away said it.
            self.size = None;
        }
    }

    /// Throws the file's bytes away and starts over from byte 0 at
    /// `source`, asked first again.
    fn start_over_at(&mut self, source: Option<SourceId>) -> Action {
        self.throw_away();
        if let Some(source) = source {
            self.queue.push_front(source);
        }
        self.restart_then_next()
    }

    fn restart_then(&mut self, then: Action) -> Action {
        self.pending = Some(then);
        Action::Restart
    }

    /// Throws the file's bytes away, then goes on at the next source, or
    /// gives up. The restart comes first even then: readers of the bytes
    /// (pacman, peers that joined) learn they were bad (`BadBytes`), not
    /// merely that the download ended, so a joined peer throws them away
    /// instead of blaming us for them later.
    fn restart_then_next(&mut self) -> Action {
        let next = self.next_source();
        self.restart_then(next)
    }

    fn next_source(&mut self) -> Action {
        while let Some(source) = self.queue.pop_front() {
            let opens = match self.opens.iter_mut().find(|(s, _)| *s == source) {
                Some((_, n)) => n,
                None => {
                    self.opens.push((source, 0));
                    &mut self.opens.last_mut().expect("just pushed").1
                }
            };
            if *opens >= MAX_OPENS {
                continue;
            }
            *opens += 1;
            self.current = Some(source);
            return Action::Open {
                source,
                offset: self.pos,
            };
        }
        self.current = None;
        Action::GiveUp(format!("no source left at byte {}", self.pos))
    }
}

#[cfg(test)]
mod tests;
