//! Holders that misbehave on purpose: uploads of cached files whose bytes
//! stop after a number of them while the stream stays open, as a stalled
//! peer's would, or come one at a time. Plugged in through the mesh's
//! `UploadFiles` seam (`MeshOptions::files`), so the daemon ships nothing
//! of them.

use std::io;
use std::path::PathBuf;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use pacmeshd::mesh::inflight::BoxFuture;
use pacmeshd::mesh::link::{CacheFiles, FileChunks, UploadFile, UploadFiles};

/// The upload [`CacheFiles`] opens, its bytes passed through `wrap`.
fn open_wrapped(
    path: PathBuf,
    offset: u64,
    wrap: impl FnOnce(Box<dyn FileChunks>) -> Box<dyn FileChunks> + Send + 'static,
) -> BoxFuture<'static, io::Result<UploadFile>> {
    let open = CacheFiles.open(path, offset);
    Box::pin(async move {
        let mut file = open.await?;
        file.chunks = wrap(file.chunks);
        Ok(file)
    })
}

/// The files on disk ([`CacheFiles`]), of which every upload sends
/// `bytes` body bytes and then nothing more.
pub struct StallAfter {
    bytes: u64,
}

impl StallAfter {
    pub fn new(bytes: u64) -> Self {
        StallAfter { bytes }
    }
}

impl UploadFiles for StallAfter {
    fn open(&self, path: PathBuf, offset: u64) -> BoxFuture<'static, io::Result<UploadFile>> {
        let left = self.bytes;
        open_wrapped(path, offset, move |chunks| {
            Box::new(Stalling { chunks, left })
        })
    }
}

struct Stalling {
    chunks: Box<dyn FileChunks>,
    left: u64,
}

impl FileChunks for Stalling {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if self.left == 0 {
            // Never woken: the upload waits here, its stream open, until
            // the mesh shuts down.
            return Poll::Pending;
        }
        let next = ready!(self.chunks.poll_next(cx));
        Poll::Ready(next.map(|chunk| {
            chunk.map(|chunk| {
                let n = chunk.len().min(self.left as usize);
                self.left -= n as u64;
                chunk.slice(..n)
            })
        }))
    }
}

/// A holder that trickles: uploads of cached files send one byte every
/// `every` (inside any stall timeout), as a peer holding our download
/// slot on purpose would.
pub struct Trickle {
    every: std::time::Duration,
}

impl Trickle {
    pub fn new(every: std::time::Duration) -> Self {
        Trickle { every }
    }
}

impl UploadFiles for Trickle {
    fn open(&self, path: PathBuf, offset: u64) -> BoxFuture<'static, io::Result<UploadFile>> {
        let every = self.every;
        open_wrapped(path, offset, move |chunks| {
            Box::new(Trickling {
                chunks,
                rest: Bytes::new(),
                sleep: Box::pin(tokio::time::sleep(every)),
                every,
            })
        })
    }
}

struct Trickling {
    chunks: Box<dyn FileChunks>,
    rest: Bytes,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    every: std::time::Duration,
}

impl FileChunks for Trickling {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        ready!(std::future::Future::poll(self.sleep.as_mut(), cx));
        if self.rest.is_empty() {
            match ready!(self.chunks.poll_next(cx)) {
                Ok(Some(chunk)) => self.rest = chunk,
                other => return Poll::Ready(other),
            }
        }
        let one = self.rest.split_to(1.min(self.rest.len()));
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Ok(Some(one)))
    }
}
