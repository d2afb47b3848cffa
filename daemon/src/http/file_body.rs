//! A response body that streams a byte range of an open file.
//!
//! Reads are attempted with `preadv2(RWF_NOWAIT)` on the runtime thread:
//! cache hits are almost always in the page cache, and this saves a thread
//! hop per chunk. Only when the kernel says the data is not cached does the
//! read go to tokio's blocking pool, so a slow disk never stalls other
//! connections.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use rustix::io::{Errno, ReadWriteFlags};
use tokio::task::JoinHandle;

/// Bytes read per frame: large enough to keep syscalls per GB low, small
/// enough that 64 concurrent downloads hold little memory (hyper buffers
/// about one frame per connection, see `http::serve`).
pub const CHUNK: usize = 64 * 1024;

/// Called once when the body is dropped: bytes produced, and whether that
/// was the whole range.
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send>;

pub struct FileBody {
    file: Arc<File>,
    pos: u64,
    start: u64,
    end: u64,
    nowait: bool,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    on_done: Option<OnDone>,
}

impl FileBody {
    /// Streams bytes `start..end` (end exclusive) of `file`.
    pub fn new(file: File, start: u64, end: u64, on_done: OnDone) -> Self {
        FileBody {
            file: Arc::new(file),
            pos: start,
            start,
            end,
            nowait: true,
            pending: None,
            on_done: Some(on_done),
        }
    }

    fn emit(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if chunk.is_empty() {
            // The file shrank under us: cut the response rather than send
            // fewer bytes than Content-Length promised.
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being sent",
            ))));
        }
        self.pos += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn want(&self) -> usize {
        (self.end - self.pos).min(CHUNK as u64) as usize
    }

    /// Reads without blocking; `None` when the data is not in the page cache.
    fn read_nowait(&mut self) -> Option<io::Result<Bytes>> {
        let mut buf = BytesMut::zeroed(self.want());
        let flags = ReadWriteFlags::NOWAIT;
        match rustix::io::preadv2(
            &*self.file,
            &mut [io::IoSliceMut::new(&mut buf)],
            self.pos,
            flags,
        ) {
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf.freeze()))
            }
            Err(Errno::AGAIN) => None,
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                // Filesystem or kernel without RWF_NOWAIT: always use the pool.
                self.nowait = false;
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    fn read_on_pool(&mut self) -> JoinHandle<io::Result<Bytes>> {
        let (file, pos, want) = (self.file.clone(), self.pos, self.want());
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(want);
            let n = file.read_at(&mut buf, pos)?;
            buf.truncate(n);
            Ok(buf.freeze())
        })
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(task) = &mut this.pending {
                let result = ready!(Pin::new(task).poll(cx));
                this.pending = None;
                return match result {
                    Ok(Ok(chunk)) => this.emit(chunk),
                    Ok(Err(e)) => Poll::Ready(Some(Err(e))),
                    Err(e) => Poll::Ready(Some(Err(io::Error::other(e)))),
                };
            }
            if this.pos >= this.end {
                return Poll::Ready(None);
            }
            if this.nowait {
                match this.read_nowait() {
                    Some(Ok(chunk)) => return this.emit(chunk),
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => {}
                }
            }
            this.pending = Some(this.read_on_pool());
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(on_done) = self.on_done.take() {
            on_done(self.pos - self.start, self.pos >= self.end);
        }
    }
}
