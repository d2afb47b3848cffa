//! The asking end of a transfer: [`Mesh::fetch`] opens a stream on the
//! peer's link, sends a `FetchRequest`, reads the `FetchHeader`, and hands
//! back a [`PeerDownload`] yielding the bytes as they arrive, with a stall
//! timeout. Each download keeps the peer's record in `mesh::choice` up to
//! date by itself: in flight while it lives, then its throughput and, when
//! the peer failed it, a failure.
//!
//! [`Mesh::fetch_growing`] reads from a peer that is itself downloading the
//! file from the WAN: its bytes come at the WAN's pace, so it waits longer
//! for each, and it measures no throughput (that would rate the peer by
//! its mirror). When the peer's download does not verify there, the
//! stream ends in [`FetchError::SourceBad`], which is the mirror's fault
//! and never counts against the peer; nor does its `NotFound` (it has no
//! such download any more: ended, or its claim lost to another host's).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pacmesh_proto::{
    encode_frame, FetchHeader, FetchRequest, FetchStatus, FrameDecoder, Message, NodeId,
    MAX_TRANSFER_FRAME,
};
use quinn::{RecvStream, VarInt};

use super::close::{describe, CloseCode};
use super::scores::PeerBytes;
use super::serve::RESET_BAD_BYTES;
use super::{Inner, Link, Mesh};

/// Most QUIC chunks (about one packet's payload each) taken at once, from
/// those already received, by [`PeerDownload::next_chunks`] (or gathered
/// into one by [`PeerDownload::next_chunk`]): what follows (a write to the
/// download's file, waking its readers) then runs once per ~75 KB
/// instead of once per ~1.2 KB.
const GATHER_CHUNKS: usize = 64;

/// The offset [`Mesh::is_fetching`] asks for: past the end of any file,
/// so a peer that has the file (or is fetching it) refuses it with
/// `BadOffset` and sends none of it.
const PROBE_OFFSET: u64 = u64::MAX;

/// Stop code sent when the asker gives up on a stream.
const STOP_GAVE_UP: VarInt = VarInt::from_u32(1);

/// Why a fetch from a peer failed, by where it failed. Every variant but
/// [`FetchError::SourceBad`] means "continue from the bytes received so
/// far at another source".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No link to that peer (it went away since `candidates`).
    #[error("no link to the peer")]
    NoLink,
    /// The peer answered with a refusal.
    #[error("peer refused the fetch: {0:?}")]
    Refused(FetchStatus),
    /// Nothing arrived from the peer for the stall timeout.
    #[error("peer sent nothing for the stall timeout")]
    Stalled,
    /// Bytes arrived, but fewer than the pace floor asks ([`Pace`]).
    #[error("peer sent {bytes} bytes in {secs} s, under the floor of {floor} bytes a second")]
    TooSlow { bytes: u64, secs: u64, floor: u64 },
    /// The link or the stream broke (connection lost, stream reset).
    #[error("transfer broke: {0}")]
    Link(String),
    /// The peer broke the protocol (bad header, wrong byte count); a bad
    /// frame also closes the link.
    #[error("peer broke the transfer protocol: {0}")]
    Protocol(String),
    /// The fetching peer's source sent bytes that did not verify; drop
    /// everything from it. Not the peer's fault: not recorded against it.
    #[error("the fetching peer's source sent bytes that did not verify")]
    SourceBad,
}

impl FetchError {
    /// Whether the failure is the peer's, and counts against it in
    /// `mesh::choice`: not when there was no link to ask, nor when the
    /// peer's own source (its mirror) sent bad bytes.
    pub fn is_peer_failure(&self) -> bool {
        !matches!(self, FetchError::NoLink | FetchError::SourceBad)
    }
}

impl From<quinn::ConnectionError> for FetchError {
    fn from(e: quinn::ConnectionError) -> Self {
        FetchError::Link(describe(&e))
    }
}

impl From<quinn::ReadError> for FetchError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            quinn::ReadError::Reset(code) if code == RESET_BAD_BYTES => FetchError::SourceBad,
            quinn::ReadError::Reset(code) => {
                FetchError::Link(format!("peer reset the transfer stream (code {code})"))
            }
            other => FetchError::Link(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for FetchError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => FetchError::Link(other.to_string()),
        }
    }
}

/// Keeps the peer's choice record: in flight while alive, then the outcome.
struct Outcome {
    inner: Arc<Inner>,
    peer: NodeId,
    started: Instant,
    bytes: u64,
    /// `Some(ok)` once the transfer ended on its own; `None` at drop means
    /// the asker abandoned it, or the peer's source failed it, which says
    /// nothing about the peer's health.
    ended: Option<bool>,
    /// Whether the throughput says something about the peer (not when its
    /// bytes come at its mirror's pace).
    measured: bool,
}

impl Outcome {
    fn start(inner: &Arc<Inner>, peer: NodeId, measured: bool) -> Self {
        inner.scores.started(peer);
        Outcome {
            inner: inner.clone(),
            peer,
            started: Instant::now(),
            bytes: 0,
            ended: None,
            measured,
        }
    }

    /// Ended by `err`: a failure of the peer, unless its source failed.
    fn failed(&mut self, err: &FetchError) {
        self.ended = if err.is_peer_failure() {
            Some(false)
        } else {
            None
        };
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let now = Instant::now();
        let took = now.saturating_duration_since(self.started);
        // Bytes 0: counts a failure without a throughput sample.
        let bytes = if self.measured { self.bytes } else { 0 };
        self.inner.scores.ended(self.peer, bytes, took, self.ended);
    }
}

/// A file arriving from a peer: the header's facts, then the bytes from
/// the requested offset to `size`, through [`PeerDownload::next_chunk`].
pub struct PeerDownload {
    /// The whole file's size.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    offset: u64,
    received: u64,
    first: Option<Bytes>,
    recv: RecvStream,
    /// Where `read_chunks` puts what it read ([`GATHER_CHUNKS`] slots).
    gathered: Vec<Bytes>,
    stall: Duration,
    paced: Paced,
    counters: Arc<PeerBytes>,
    outcome: Outcome,
    failed: Option<FetchError>,
}

impl std::fmt::Debug for PeerDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerDownload")
            .field("peer", &self.outcome.peer)
            .field("size", &self.size)
            .field("offset", &self.offset)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl PeerDownload {
    pub fn peer(&self) -> NodeId {
        self.outcome.peer
    }

    /// The offset asked for: the first byte's position in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes handed out so far; the next one is at `offset + received`.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn remaining(&self) -> u64 {
        self.size - self.offset - self.received
    }

    /// The next bytes, in order, as one chunk; `Ok(None)` once all `size -
    /// offset` bytes came. Waits at most the stall timeout. After an error
    /// every call returns that error again; after
    /// [`FetchError::SourceBad`], every byte this download handed out must
    /// be dropped. Cancel-safe.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let mut chunks = Vec::new();
        if !self.next_chunks(&mut chunks).await? {
            return Ok(None);
        }
        Ok(Some(gather(&mut chunks)))
    }

    /// [`PeerDownload::next_chunk`], the chunks as they came (none
    /// copied), appended to `out`; `Ok(false)` once all bytes came.
    pub async fn next_chunks(&mut self, out: &mut Vec<Bytes>) -> Result<bool, FetchError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(first) = self.first.take().filter(|b| !b.is_empty()) {
            self.take(first.len() as u64)?;
            out.push(first);
            return Ok(true);
        }
        if self.remaining() == 0 {
            self.outcome.ended = Some(true);
            return Ok(false);
        }
        let read =
            tokio::time::timeout(self.stall, self.recv.read_chunks(&mut self.gathered)).await;
        let err = match read {
            Ok(Ok(Some(n))) => {
                let len = self.gathered[..n].iter().map(|c| c.len() as u64).sum();
                self.take(len)?;
                if let Err(e) = self.paced.count(len) {
                    return Err(self.fail(e));
                }
                out.extend(self.gathered[..n].iter_mut().map(std::mem::take));
                return Ok(true);
            }
            Ok(Ok(None)) => self.ended_early(),
            Ok(Err(e)) => e.into(),
            Err(_) => FetchError::Stalled,
        };
        Err(self.fail(err))
    }

    /// Counts `len` bytes received; more than announced fails.
    fn take(&mut self, len: u64) -> Result<(), FetchError> {
        if len > self.remaining() {
            return Err(self.fail(FetchError::Protocol(format!(
                "more bytes than the {} announced",
                self.size
            ))));
        }
        self.received += len;
        self.outcome.bytes += len;
        self.counters.received.fetch_add(len, Relaxed);
        if self.remaining() == 0 {
            self.outcome.ended = Some(true);
        }
        Ok(())
    }

    fn ended_early(&self) -> FetchError {
        FetchError::Protocol(format!(
            "stream ended after {} of {} bytes",
            self.received,
            self.size - self.offset
        ))
    }

    fn fail(&mut self, err: FetchError) -> FetchError {
        tracing::debug!(peer = %self.outcome.peer, received = self.received, error = %err, "peer download failed");
        let _ = self.recv.stop(STOP_GAVE_UP);
        self.outcome.failed(&err);
        self.failed = Some(err.clone());
        err
    }
}

/// How long a download waits for the peer, and whether it measures it.
#[derive(Debug, Clone, Copy)]
struct Patience {
    stall: Duration,
    measured: bool,
}

/// The slowest a peer download may go, measured over `window`: per-chunk
/// stall timeouts alone let a peer that sends a byte now and then (just
/// inside the timeout) hold one of our downloads for its whole hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub window: Duration,
    pub bytes_per_s: u64,
}

impl Pace {
    /// 1 KiB/s over a minute: far below any real link, even a slow WAN
    /// shared by every download of the fetch a peer joined.
    pub const DEFAULT: Pace = Pace {
        window: Duration::from_secs(60),
        bytes_per_s: 1024,
    };
}

/// A download's progress in its current [`Pace`] window.
#[derive(Debug)]
struct Paced {
    pace: Pace,
    since: tokio::time::Instant,
    bytes: u64,
}

impl Paced {
    fn new(pace: Pace) -> Self {
        Paced {
            pace,
            since: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `len` bytes; an error once a whole window went under the
    /// floor.
    fn count(&mut self, len: u64) -> Result<(), FetchError> {
        self.bytes += len;
        let took = self.since.elapsed();
        if took < self.pace.window {
            return Ok(());
        }
        let floor = self.pace.bytes_per_s;
        if self.bytes < floor.saturating_mul(took.as_secs()) {
            let (bytes, secs) = (self.bytes, took.as_secs());
            return Err(FetchError::TooSlow { bytes, secs, floor });
        }
        *self = Paced::new(self.pace);
        Ok(())
    }
}

impl Mesh {
    /// Asks `peer` for `file_name` from byte `offset` on. Waits at most the
    /// stall timeout for the header. Refusals, stalls and broken links are
    /// recorded against the peer (see `mesh::choice`); [`FetchError::NoLink`]
    /// and [`FetchError::SourceBad`] are not.
    pub async fn fetch(
        &self,
        peer: NodeId,
        file_name: &str,
        offset: u64,
    ) -> Result<PeerDownload, FetchError> {
        let patience = Patience {
            stall: self.inner.stall_timeout,
            measured: true,
        };
        self.fetch_with(peer, file_name, offset, patience).await
    }

    /// [`Mesh::fetch`] from a peer that announced it is downloading
    /// `file_name` from the WAN ([`Mesh::fetchers`]): its bytes are served
    /// as they reach it, so the header and each chunk may take up to
    /// `MeshOptions::growing_stall_timeout` (15 s), and the transfer's
    /// throughput is not measured against the peer.
    pub async fn fetch_growing(
        &self,
        peer: NodeId,
        file_name: &str,
        offset: u64,
    ) -> Result<PeerDownload, FetchError> {
        let patience = Patience {
            stall: self.inner.growing_stall_timeout,
            measured: false,
        };
        self.fetch_with(peer, file_name, offset, patience).await
    }

    /// Whether `peer` is downloading `file_name` from the WAN on a claim it
    /// won (or holds it). Asked with a `FetchRequest` from an offset past
    /// any file's end, which the peer answers once its own claim settled
    /// and the size is known: `BadOffset` if it won (no byte of the file
    /// is sent), `NotFound` if it lost or has no such download. Nothing is
    /// recorded against the peer: this is no transfer. No answer within
    /// `wait` counts as "no". What a claim's winner asks the worse-ranked
    /// claimants whose claims crossed its own (see `crate::fetch::claim`).
    pub async fn is_fetching(&self, peer: NodeId, file_name: &str, wait: Duration) -> bool {
        let Ok((link, request)) = self.request(peer, file_name, PROBE_OFFSET) else {
            return false;
        };
        match tokio::time::timeout(wait, ask(&link, &request)).await {
            Ok(Ok((mut recv, header, _))) => {
                let _ = recv.stop(STOP_GAVE_UP);
                header.status == FetchStatus::BadOffset
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }

    /// The link to `peer` and the encoded request for `file_name` from
    /// byte `offset`.
    fn request(
        &self,
        peer: NodeId,
        file_name: &str,
        offset: u64,
    ) -> Result<(Arc<Link>, Vec<u8>), FetchError> {
        let link = self
            .inner
            .table
            .read()
            .get(&peer)
            .cloned()
            .ok_or(FetchError::NoLink)?;
        let request = Message::FetchRequest(FetchRequest {
            file_name: file_name.to_owned(),
            offset,
        });
        // Only a name no peer could hold (validate_name) fails here.
        let request = encode_frame(&request, MAX_TRANSFER_FRAME)
            .map_err(|e| FetchError::Protocol(format!("cannot ask for {file_name:?}: {e}")))?;
        Ok((link, request))
    }

    async fn fetch_with(
        &self,
        peer: NodeId,
        file_name: &str,
        offset: u64,
        patience: Patience,
    ) -> Result<PeerDownload, FetchError> {
        let (link, request) = self.request(peer, file_name, offset)?;
        let mut outcome = Outcome::start(&self.inner, peer, patience.measured);
        let stall = patience.stall;
        let asked = tokio::time::timeout(stall, ask(&link, &request)).await;
        let (recv, header, first) = match asked {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                outcome.failed(&e);
                return Err(e);
            }
            Err(_) => {
                outcome.ended = Some(false);
                return Err(FetchError::Stalled);
            }
        };
        let err = match header.status {
            FetchStatus::Ok if offset <= header.size => None,
            FetchStatus::Ok => Some(FetchError::Protocol(format!(
                "Ok for offset {offset} of a {}-byte file",
                header.size
            ))),
            refused => Some(FetchError::Refused(refused)),
        };
        if let Some(err) = err {
            tracing::debug!(peer = %peer, file = %file_name, error = %err, "fetch refused");
            // A peer fetching from the WAN that has no such download now
            // (it ended, or the peer's claim lost to another host's) says
            // nothing about its health: not a failure.
            let gone = !patience.measured && header.status == FetchStatus::NotFound;
            outcome.ended = if gone { None } else { Some(false) };
            return Err(err);
        }
        tracing::debug!(peer = %peer, file = %file_name, offset, size = header.size, "fetch started");
        Ok(PeerDownload {
            size: header.size,
            mtime: header.mtime,
            offset,
            received: 0,
            first: Some(first),
            recv,
            gathered: vec![Bytes::new(); GATHER_CHUNKS],
            stall,
            paced: Paced::new(self.inner.pace),
            counters: self.inner.scores.bytes_of(peer),
            outcome,
            failed: None,
        })
    }
}

/// `chunks` as one (moved out, leaving empty ones): the only chunk itself,
/// else one copy of all of them.
fn gather(chunks: &mut [Bytes]) -> Bytes {
    if let [one] = chunks {
        return std::mem::take(one);
    }
    let len = chunks.iter().map(Bytes::len).sum();
    let mut all = bytes::BytesMut::with_capacity(len);
    for chunk in chunks {
        all.extend_from_slice(&std::mem::take(chunk));
    }
    all.freeze()
}

/// Opens the stream, sends the request, reads the header; returns the
/// stream and any body bytes that came with the header.
async fn ask(link: &Link, request: &[u8]) -> Result<(RecvStream, FetchHeader, Bytes), FetchError> {
    let (mut send, mut recv) = link.conn.open_bi().await?;
    send.write_all(request).await?;
    let _ = send.finish();
    let mut decoder = FrameDecoder::transfer();
    // Small reads: what follows the header is the body, better left to
    // zero-copy reads.
    let mut buf = [0u8; 64];
    loop {
        let message = match decoder.next_message() {
            Ok(message) => message,
            Err(e) => return Err(bad_frame(link, e.to_string())),
        };
        match message {
            Some(Message::FetchHeader(header)) => {
                return Ok((recv, header, Bytes::from(decoder.take_remaining())))
            }
            Some(_) => return Err(bad_frame(link, "expected FetchHeader".into())),
            None => {}
        }
        match recv.read(&mut buf).await? {
            Some(n) => {
                if let Err(e) = decoder.feed(&buf[..n]) {
                    return Err(bad_frame(link, e.to_string()));
                }
            }
            None => {
                return Err(FetchError::Protocol(
                    "stream ended before the header".into(),
                ))
            }
        }
    }
}

/// A malformed frame closes the link it came on.
fn bad_frame(link: &Link, reason: String) -> FetchError {
    tracing::warn!(target: super::TARGET, peer = %link.peer, %reason, "link closed: bad frame from peer");
    link.close(CloseCode::Protocol);
    FetchError::Protocol(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_source_is_not_the_peers_failure() {
        let table = [
            (FetchError::NoLink, false),
            (FetchError::SourceBad, false),
            (FetchError::Stalled, true),
            (FetchError::Refused(FetchStatus::Busy), true),
            (FetchError::Link("reset".into()), true),
            (FetchError::Protocol("bad header".into()), true),
            (
                FetchError::TooSlow {
                    bytes: 1,
                    secs: 60,
                    floor: 1024,
                },
                true,
            ),
        ];
        for (err, want) in table {
            assert_eq!(err.is_peer_failure(), want, "{err:?}");
        }
    }

    /// A window under the floor fails; one over it starts the next.
    #[tokio::test(start_paused = true)]
    async fn the_pace_floor_is_judged_per_window() {
        let mut paced = Paced::new(Pace::DEFAULT);
        let window = Pace::DEFAULT.window;
        assert_eq!(paced.count(10), Ok(()), "inside the window");
        tokio::time::advance(window).await;
        assert_eq!(paced.count(61 * 1024), Ok(()), "a minute at the floor");
        tokio::time::advance(window / 2).await;
        assert_eq!(paced.count(1), Ok(()), "the next window has only begun");
        tokio::time::advance(window / 2).await;
        assert!(matches!(
            paced.count(1),
            Err(FetchError::TooSlow { bytes: 2, .. })
        ));
    }

    #[test]
    fn the_bad_bytes_reset_is_source_bad() {
        let err = FetchError::from(quinn::ReadError::Reset(RESET_BAD_BYTES));
        assert_eq!(err, FetchError::SourceBad);
        let other = FetchError::from(quinn::ReadError::Reset(super::super::RESET_FILE_ERROR));
        assert!(matches!(other, FetchError::Link(_)), "{other:?}");
    }
}
