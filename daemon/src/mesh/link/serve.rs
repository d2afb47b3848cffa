//! The serving end of transfer streams: every bi stream a linked peer opens
//! after the control stream carries one `FetchRequest`; the answer is a
//! `FetchHeader`, then (when `Ok`) the file's raw bytes from the offset to
//! the end.
//!
//! A file comes from the cache index or, when the index does not have it,
//! from a download under way on this host (`mesh::inflight`), whose bytes
//! go out as they arrive; a peer that joins our WAN fetch this way reads
//! at the WAN's pace. If that download's bytes turn out not to verify,
//! the stream is reset with [`RESET_BAD_BYTES`], so the asker drops
//! everything it got from it without blaming us.
//!
//! Uploads never starve this host's own pacman. What that means here:
//! - at most `max_uploads` uploads of cached files run at once (for all
//!   peers together), and at most `max_uploads_per_peer` for one peer; a
//!   request beyond that is answered `Busy` at once, so the asker goes to
//!   another holder or the mirror instead of waiting on us. Uploads of
//!   files still arriving (peers joining our WAN fetch) have their own,
//!   larger limit: they go at the WAN's pace;
//! - an upload whose asker takes no bytes for `upload_stall_timeout`
//!   ([`UPLOAD_STALL_TIMEOUT`]) is reset with [`RESET_STALLED`], so a peer
//!   that asks and never reads cannot hold a slot for longer;
//! - an upload's stream has a lower quinn priority than the control
//!   stream, so digests, deltas and goodbyes are never queued behind file
//!   bytes on a busy link;
//! - file reads go to the blocking pool whenever they would wait on the
//!   disk, and an upload yields to the runtime after every [`YIELD_EVERY`]
//!   bytes, so the tasks serving the local pacman get a worker thread
//!   between chunks however fast the link drains;
//! - uploads stop at shutdown (their streams are reset).
//!
//! There is no bandwidth cap: on a LAN the upload direction is not what
//! the host's own downloads use, and the bounded count keeps CPU use (QUIC
//! is CPU-bound here: docs/DESIGN.md, "QUIC throughput") to at most
//! `max_uploads` streams.

use std::path::PathBuf;
use std::sync::Arc;

use pacmesh_proto::{
    classify, encode_frame, DecodeError, FetchHeader, FetchRequest, FetchStatus, FrameDecoder,
    Message, MAX_TRANSFER_FRAME,
};
use quinn::{RecvStream, SendStream, VarInt};
use tracing::Instrument as _;

use super::body::{send_body, Source};
use super::close::CloseCode;
use super::uploads::{Kind, Slot};
use super::{Inner, Link, TARGET};
use crate::mesh::inflight::{BoxFuture, GrowingError, GrowingRead};

/// Send priority of upload streams; the control stream keeps quinn's 0.
pub const UPLOAD_PRIORITY: i32 = -1;

/// An upload lets other tasks run after this many bytes.
pub const YIELD_EVERY: u64 = 1 << 20;

/// An upload whose asker takes nothing for this long is cut. An honest
/// asker gives up on a silent holder after 3 s (`stall_timeout`), so a
/// stream blocked this long on the asker's flow control is one nobody
/// reads.
pub const UPLOAD_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Uploads of cached files one peer may hold at once: half the default
/// eight, so two peers are always served.
pub const MAX_UPLOADS_PER_PEER: usize = 4;

/// Reset codes of a transfer stream, for the asker's log.
pub const RESET_SHUTDOWN: VarInt = VarInt::from_u32(1);
pub const RESET_FILE_ERROR: VarInt = VarInt::from_u32(2);
pub const RESET_NO_REQUEST: VarInt = VarInt::from_u32(3);
/// The download being served as it grew did not verify here: the asker
/// must drop every byte it got on this stream (and not blame this host;
/// its source sent them). Seen by the asker as `FetchError::SourceBad`.
pub const RESET_BAD_BYTES: VarInt = VarInt::from_u32(4);
/// The asker took no bytes for [`UPLOAD_STALL_TIMEOUT`].
pub const RESET_STALLED: VarInt = VarInt::from_u32(5);

/// Accepts the peer's transfer streams for as long as the link lasts; each
/// is served by its own task. Returns the connection's end.
pub(super) async fn accept_transfers(inner: Arc<Inner>, link: Arc<Link>) -> quinn::ConnectionError {
    loop {
        let (send, recv) = match link.conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => return e,
        };
        let span = tracing::debug_span!("upload", peer = %link.peer);
        inner
            .tasks
            .spawn(serve_stream(inner.clone(), link.clone(), send, recv).instrument(span));
    }
}

#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("expected FetchRequest, got another message")]
    NotRequest,
    #[error("stream ended before the request")]
    Finished,
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
}

async fn read_request(recv: &mut RecvStream) -> Result<FetchRequest, RequestError> {
    let mut decoder = FrameDecoder::transfer();
    let mut buf = [0u8; 512];
    loop {
        match decoder.next_message()? {
            Some(Message::FetchRequest(request)) => return Ok(request),
            Some(_) => return Err(RequestError::NotRequest),
            None => {}
        }
        match recv.read(&mut buf).await? {
            Some(n) => decoder.feed(&buf[..n])?,
            None => return Err(RequestError::Finished),
        }
    }
}

async fn serve_stream(
    inner: Arc<Inner>,
    link: Arc<Link>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let request = match tokio::time::timeout(inner.idle_timeout, read_request(&mut recv)).await {
        Ok(Ok(request)) => request,
        Ok(Err(e @ (RequestError::Decode(_) | RequestError::NotRequest))) => {
            // A malformed frame closes that link, never anything else.
            tracing::warn!(target: TARGET, peer = %link.peer, reason = %e, "link closed: bad frame from peer");
            link.close(CloseCode::Protocol);
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(reason = %e, "transfer stream without a request");
            let _ = send.reset(RESET_NO_REQUEST);
            return;
        }
        Err(_) => {
            tracing::debug!("no request in time on a transfer stream");
            let _ = send.reset(RESET_NO_REQUEST);
            return;
        }
    };
    // Nothing more is read from the asker.
    drop(recv);
    let (file, offset) = (request.file_name.clone(), request.offset);
    tokio::select! {
        () = upload(&inner, &link, &mut send, request) => {}
        () = inner.shutdown.cancelled() => {
            tracing::debug!(%file, "upload cut: shutting down");
            let _ = send.reset(RESET_SHUTDOWN);
        }
    }
    tracing::trace!(%file, offset, "upload task done");
}

/// Answers one request: a refusal, or the header and the bytes.
async fn upload(inner: &Inner, link: &Link, send: &mut SendStream, request: FetchRequest) {
    let _ = send.set_priority(UPLOAD_PRIORITY);
    let FetchRequest { file_name, offset } = request;
    let (opened, _slot) = match open(inner, link, &file_name, offset).await {
        Ok(opened) => opened,
        Err(status) => return refuse(inner, send, &file_name, status).await,
    };
    let header = Message::FetchHeader(FetchHeader::ok(opened.size, opened.mtime));
    if !write_header(inner, send, &header).await {
        return;
    }
    let source = opened.source.kind();
    let started = tokio::time::Instant::now();
    let len = opened.size - offset;
    let (bytes, result) = send_body(inner, link, send, opened.source, len).await;
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => {
            let _ = send.finish();
            tracing::debug!(file = %file_name, source, offset, bytes, ms, "upload done");
        }
        Err(reason) => {
            tracing::debug!(file = %file_name, source, offset, bytes, ms, %reason, "upload cut")
        }
    }
}

/// A file ready to be sent from an offset already checked.
struct Opened {
    size: u64,
    mtime: i64,
    source: Source,
}

/// Where a requested file is.
enum Found {
    Cached(PathBuf),
    Growing(BoxFuture<'static, Result<GrowingRead, GrowingError>>),
}

/// Finds the file, takes an upload slot and opens it from `offset`; the
/// status to refuse with otherwise.
async fn open<'a>(
    inner: &'a Inner,
    link: &Link,
    file_name: &str,
    offset: u64,
) -> Result<(Opened, Slot<'a>), FetchStatus> {
    if !classify(file_name).is_cacheable() {
        return Err(FetchStatus::NotFound);
    }
    // A download of ours comes first: a peer asking for a file we are
    // fetching is joining that fetch, and a copy of the same name in a
    // cache dir meanwhile may be one pacman is about to reject (it writes
    // a corrupt download there before checking it).
    let found = match inner.uploads.in_flight.open(file_name, offset) {
        Some(growing) => Found::Growing(growing),
        None => {
            let cached = inner.uploads.index.read().locate(file_name);
            match cached {
                Some(path) => Found::Cached(path),
                None => return Err(FetchStatus::NotFound),
            }
        }
    };
    let kind = match found {
        Found::Cached(_) => Kind::Cached,
        Found::Growing(_) => Kind::Growing,
    };
    let slot = inner.uploads.take(kind, link.peer).map_err(|busy| {
        tracing::debug!(file = %file_name, ?busy, "upload refused: busy");
        FetchStatus::Busy
    })?;
    let opened = match found {
        Found::Cached(path) => open_cached(inner, path, offset).await?,
        Found::Growing(growing) => open_growing(inner, file_name, growing, offset).await?,
    };
    Ok((opened, slot))
}

async fn open_cached(inner: &Inner, path: PathBuf, offset: u64) -> Result<Opened, FetchStatus> {
    // An error: gone since the index saw it.
    let file = inner
        .uploads
        .files
        .open(path, offset)
        .await
        .map_err(|_| FetchStatus::NotFound)?;
    check_offset(offset, file.size)?;
    Ok(Opened {
        size: file.size,
        mtime: file.mtime,
        source: Source::File(file.chunks),
    })
}

/// Waits for the download's size, at most the idle timeout (10 s by
/// default): shorter than the asker's growing stall timeout (15 s), so it
/// hears `NotFound` before it gives up on us.
async fn open_growing(
    inner: &Inner,
    file_name: &str,
    growing: BoxFuture<'static, Result<GrowingRead, GrowingError>>,
    offset: u64,
) -> Result<Opened, FetchStatus> {
    let read = match tokio::time::timeout(inner.idle_timeout, growing).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::debug!(file = %file_name, error = %e, "download to serve ended before its size");
            return Err(FetchStatus::NotFound);
        }
        Err(_) => {
            tracing::debug!(file = %file_name, "download to serve: no size in time");
            return Err(FetchStatus::NotFound);
        }
    };
    check_offset(offset, read.size)?;
    Ok(Opened {
        size: read.size,
        mtime: read.mtime,
        source: Source::Growing(read.chunks),
    })
}

fn check_offset(offset: u64, size: u64) -> Result<(), FetchStatus> {
    if offset > size {
        return Err(FetchStatus::BadOffset);
    }
    Ok(())
}

/// Writes a header, within the upload stall timeout (the asker's flow
/// control may leave no room even for that).
async fn write_header(inner: &Inner, send: &mut SendStream, header: &Message) -> bool {
    match encode_frame(header, MAX_TRANSFER_FRAME) {
        Ok(frame) => {
            match tokio::time::timeout(inner.uploads.stall_timeout, send.write_all(&frame)).await {
                Ok(written) => written.is_ok(),
                Err(_) => {
                    let _ = send.reset(RESET_STALLED);
                    false
                }
            }
        }
        Err(e) => {
            // A header always fits; this would be a bug here.
            tracing::error!(error = %e, "cannot encode a fetch header");
            let _ = send.reset(RESET_FILE_ERROR);
            false
        }
    }
}

async fn refuse(inner: &Inner, send: &mut SendStream, file_name: &str, status: FetchStatus) {
    tracing::debug!(file = %file_name, ?status, "fetch refused");
    if write_header(
        inner,
        send,
        &Message::FetchHeader(FetchHeader::refused(status)),
    )
    .await
    {
        let _ = send.finish();
    }
}
