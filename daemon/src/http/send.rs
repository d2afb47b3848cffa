//! Writing one response on a connection: the head, then the body by kind.
//! Bytes go out with the head in one `writev`; a file range with
//! `sendfile` (its bytes never enter this process), the head first with
//! `MSG_MORE` so a small file still leaves in one segment; a channel's
//! chunks as they come. A client that accepts nothing for
//! [`super::conn::Limits::write_stall`] is given up on.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::deadline::Deadline;
use super::file_body::FileBody;
use super::Body;
use crate::cachefile;

/// Most bytes one `sendfile` call is asked for, so one fast download
/// cannot keep a runtime thread to itself (nginx's `sendfile_max_chunk`).
pub const SENDFILE_PIECE: usize = 2 * 1024 * 1024;

/// File ranges up to this size (package signatures, small packages) are
/// read from the page cache and written with the head in one `write`: one
/// syscall fewer than the head then `sendfile`, and the read is the page
/// cache probe too. Their bytes are copied once, which small ranges cost
/// less than the splice machinery.
pub const SMALL_RANGE: u64 = 16 * 1024;

/// Writes `head`, then `body` unless `with_body` is false (HEAD, 304).
/// An error means the connection must be closed: the client is gone or
/// stalled, or the body failed (a file that shrank, a download that
/// broke), and fewer bytes than promised went out.
pub async fn response(
    stream: &TcpStream,
    head: &[u8],
    body: Body,
    with_body: bool,
    stall: Duration,
) -> io::Result<()> {
    let stall = &mut Stall {
        limit: stall,
        deadline: None,
    };
    match body {
        Body::Bytes(Some(bytes)) if with_body => {
            write_all(
                stream,
                &mut [IoSlice::new(head), IoSlice::new(&bytes)],
                stall,
            )
            .await
        }
        Body::File(mut file) if with_body => {
            if file.remaining() <= SMALL_RANGE && send_small(stream, head, &mut file, stall).await?
            {
                return Ok(());
            }
            write_head_more(stream, head, stall).await?;
            send_file(stream, file, stall).await
        }
        Body::Channel { mut chunks, len } if with_body => {
            write_all(stream, &mut [IoSlice::new(head)], stall).await?;
            let mut sent = 0u64;
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk?;
                sent += chunk.len() as u64;
                write_all(stream, &mut [IoSlice::new(&chunk)], stall).await?;
            }
            if sent != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended after {sent} of its {len} bytes"),
                ));
            }
            Ok(())
        }
        _ => write_all(stream, &mut [IoSlice::new(head)], stall).await,
    }
}

/// How long one response waits for its client to take bytes: at most
/// `limit` each time the socket is full. One timer serves all of a
/// response's waits, armed at the first ([`Deadline`]).
struct Stall {
    limit: Duration,
    deadline: Option<Deadline>,
}

impl Stall {
    /// Waits until `stream` can take more bytes, at most `limit`.
    async fn writable(&mut self, stream: &TcpStream) -> io::Result<()> {
        let due = Instant::now() + self.limit;
        let deadline = match &mut self.deadline {
            Some(deadline) => {
                deadline.set(due);
                deadline
            }
            None => self.deadline.insert(Deadline::new(due)),
        };
        tokio::select! {
            biased;
            ready = stream.writable() => ready,
            () = deadline.reached() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            )),
        }
    }
}

/// Writes every byte of `bufs` (one `writev` when the socket has room).
async fn write_all(
    stream: &TcpStream,
    mut bufs: &mut [IoSlice<'_>],
    stall: &mut Stall,
) -> io::Result<()> {
    while !bufs.is_empty() {
        match stream.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stall.writable(stream).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the head of a file response with `MSG_MORE`: the kernel holds it
/// back for the file's first bytes instead of sending a segment of its own.
async fn write_head_more(stream: &TcpStream, mut head: &[u8], stall: &mut Stall) -> io::Result<()> {
    while !head.is_empty() {
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::net::send(stream, head, rustix::net::SendFlags::MORE).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stall.writable(stream).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

thread_local! {
    /// The buffer small ranges are read into with their head, kept by each
    /// serving thread (at most [`SMALL_RANGE`] and a head): filling a new
    /// one with zeros first cost a tenth of a 4 KB hit's instructions.
    static SMALL_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Sends `head` and a small `body` in one write, if the page cache holds
/// all of its bytes; false (nothing sent) otherwise.
async fn send_small(
    stream: &TcpStream,
    head: &[u8],
    body: &mut FileBody,
    stall: &mut Stall,
) -> io::Result<bool> {
    let len = body.remaining() as usize;
    let total = head.len() + len;
    // Taken, not borrowed, across the write: another connection of this
    // thread sending meanwhile starts a buffer of its own.
    let mut bytes = SMALL_BUF.take();
    if bytes.len() < total {
        bytes.resize(total, 0);
    }
    let sent = send_buffered(stream, head, body, &mut bytes[..total], stall).await;
    SMALL_BUF.set(bytes);
    sent
}

/// [`send_small`] with `bytes` to fill: exactly the head and the range.
async fn send_buffered(
    stream: &TcpStream,
    head: &[u8],
    body: &mut FileBody,
    bytes: &mut [u8],
    stall: &mut Stall,
) -> io::Result<bool> {
    let (head_part, range) = bytes.split_at_mut(head.len());
    head_part.copy_from_slice(head);
    // A short read (a page not cached, or a file that shrank) goes the
    // `sendfile` way, which tells the two apart.
    let len = range.len();
    if cachefile::read_cached(body.file(), range, body.position())? != Some(len) {
        return Ok(false);
    }
    write_all(stream, &mut [IoSlice::new(bytes)], stall).await?;
    body.sent_to(body.position() + len as u64);
    Ok(true)
}

/// Sends the rest of `body` with `sendfile`. Pieces whose first page is in
/// the page cache (almost every hit) are sent on the runtime thread; a
/// piece that would read the disk is sent from the blocking pool, so a
/// slow disk never stalls other connections. Only the first page is
/// probed: files are read and evicted front to back, and a probe per page
/// would cost more than the rare partly evicted piece read on the runtime.
async fn send_file(stream: &TcpStream, mut body: FileBody, stall: &mut Stall) -> io::Result<()> {
    while body.remaining() > 0 {
        let mut pos = body.position();
        let want = body.remaining().min(SENDFILE_PIECE as u64) as usize;
        let sent = if cachefile::page_cached(body.file(), pos) {
            stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, body.file(), Some(&mut pos), want)
                    .map_err(io::Error::from)
            })
        } else {
            send_cold(stream, body.file(), &mut pos, want).await
        };
        match sent {
            // The file ended before the range did: it shrank under us.
            // Cutting the connection tells the client (pacman resumes
            // elsewhere); sending fewer bytes than promised would not.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                ))
            }
            Ok(_) => body.sent_to(pos),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stall.writable(stream).await?,
            Err(e) => return Err(e),
        }
        tokio::task::consume_budget().await;
    }
    Ok(())
}

/// One `sendfile` from the blocking pool, for pages not in the page cache:
/// the disk read blocks that thread only. The socket stays non-blocking,
/// so a full socket still answers `WouldBlock` (the pages read are cached
/// by then, and the next piece goes out from the runtime).
async fn send_cold(
    stream: &TcpStream,
    file: &File,
    pos: &mut u64,
    want: usize,
) -> io::Result<usize> {
    let socket = stream.as_fd().try_clone_to_owned()?;
    let file = file.try_clone()?;
    let mut at = *pos;
    let (sent, at) = tokio::task::spawn_blocking(move || {
        let sent = rustix::fs::sendfile(&socket, &file, Some(&mut at), want);
        (sent.map_err(io::Error::from), at)
    })
    .await
    .map_err(io::Error::other)?;
    *pos = at;
    sent
}
