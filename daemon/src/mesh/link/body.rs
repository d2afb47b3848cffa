//! The bytes of one upload after its header, from either source: a cache
//! file (opened through [`UploadFiles`]; [`CacheFiles`] reads it with
//! `crate::cachefile`) or a download still arriving on this host
//! (`mesh::inflight`). One loop sends both, so the byte counters, the
//! yield to the runtime and the stream resets are the same for either.

use std::io;
use std::path::PathBuf;
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::{SendStream, VarInt};

use super::serve::{RESET_BAD_BYTES, RESET_FILE_ERROR, RESET_STALLED, YIELD_EVERY};
use super::{Inner, Link};
use crate::cachefile::{open_regular, ChunkReader};
use crate::mesh::inflight::{BoxFuture, GrowingChunks, GrowingError};

/// Opens the cached files that uploads send: the index has located a
/// requested file at a path, and this opens it. The daemon's is
/// [`CacheFiles`]; a test may wrap it to shape the bytes (a holder that
/// stops sending, say) without the upload loop knowing.
pub trait UploadFiles: Send + Sync + 'static {
    /// Opens `path` to be read from `offset` to its end. An error means
    /// the file is gone (or is not a regular file) since the index saw it.
    /// `offset` past the end is the caller's to refuse (by the size).
    fn open(&self, path: PathBuf, offset: u64) -> BoxFuture<'static, io::Result<UploadFile>>;
}

/// A cached file opened for an upload.
pub struct UploadFile {
    pub size: u64,
    /// Seconds since the Unix epoch (negative before it).
    pub mtime: i64,
    /// The bytes from the offset asked for to the end.
    pub chunks: Box<dyn FileChunks>,
}

/// The bytes of an opened file, in order.
pub trait FileChunks: Send {
    /// The next chunk, `Ok(None)` at the end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>>;
}

impl FileChunks for ChunkReader {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        ChunkReader::poll_next(self, cx)
    }
}

/// Cache files as they are on disk: opened on the blocking pool, without
/// following a symlink, and read by [`ChunkReader`].
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheFiles;

impl UploadFiles for CacheFiles {
    fn open(&self, path: PathBuf, offset: u64) -> BoxFuture<'static, io::Result<UploadFile>> {
        Box::pin(async move {
            let (file, meta) = tokio::task::spawn_blocking(move || open_regular(&path))
                .await
                .map_err(io::Error::other)??;
            let size = meta.len();
            Ok(UploadFile {
                size,
                mtime: unix_secs(&meta),
                chunks: Box::new(ChunkReader::new(file, offset.min(size), size)),
            })
        })
    }
}

/// A file's modification time in Unix seconds (negative before 1970).
fn unix_secs(meta: &std::fs::Metadata) -> i64 {
    match meta
        .modified()
        .map(|t| t.duration_since(std::time::UNIX_EPOCH))
    {
        Ok(Ok(after)) => after.as_secs() as i64,
        Ok(Err(before)) => -(before.duration().as_secs() as i64),
        Err(_) => 0,
    }
}

/// Where an upload's bytes come from.
pub(super) enum Source {
    File(Box<dyn FileChunks>),
    Growing(Box<dyn GrowingChunks>),
}

impl Source {
    /// For the log.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Source::File(_) => "file",
            Source::Growing(_) => "download",
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, Cut> {
        match self {
            Source::File(chunks) => Ok(std::future::poll_fn(|cx| chunks.poll_next(cx)).await?),
            Source::Growing(chunks) => Ok(chunks.next_chunk().await?),
        }
    }
}

/// Why an upload stopped before its last byte.
#[derive(Debug, thiserror::Error)]
pub(super) enum Cut {
    #[error("reading the file: {0}")]
    File(#[from] io::Error),
    #[error("reading the download: {0}")]
    Growing(#[from] GrowingError),
    /// The download ended before the size it was announced with.
    #[error("the source ended {missing} bytes short")]
    Short { missing: u64 },
    /// The download went on past the size it was announced with.
    #[error("the source sent more bytes than its size")]
    Long,
    #[error("the asker went away: {0}")]
    Asker(#[from] quinn::WriteError),
    /// The asker's flow control took nothing for the upload stall timeout.
    #[error("the asker took nothing for {0:?}")]
    Stalled(std::time::Duration),
}

impl Cut {
    /// The reset code that tells the asker what happened; `None` when the
    /// stream is gone already.
    fn reset_code(&self) -> Option<VarInt> {
        match self {
            // The asker must drop every byte it got from this download.
            Cut::Growing(GrowingError::BadBytes) => Some(RESET_BAD_BYTES),
            Cut::File(_) | Cut::Growing(_) | Cut::Short { .. } | Cut::Long => {
                Some(RESET_FILE_ERROR)
            }
            Cut::Stalled(_) => Some(RESET_STALLED),
            Cut::Asker(_) => None,
        }
    }
}

/// Sends `len` bytes from `source`, counting them for `link`'s peer;
/// resets the stream when the source fails. Returns the bytes sent, and
/// why it stopped early if it did.
pub(super) async fn send_body(
    inner: &Inner,
    link: &Link,
    send: &mut SendStream,
    mut source: Source,
    len: u64,
) -> (u64, Result<(), Cut>) {
    let mut sent = 0u64;
    let result = send_all(inner, link, send, &mut source, len, &mut sent).await;
    if let Err(cut) = &result {
        if let Some(code) = cut.reset_code() {
            let _ = send.reset(code);
        }
    }
    (sent, result)
}

async fn send_all(
    inner: &Inner,
    link: &Link,
    send: &mut SendStream,
    source: &mut Source,
    len: u64,
    sent: &mut u64,
) -> Result<(), Cut> {
    let counters = inner.scores.bytes_of(link.peer);
    while *sent < len {
        let Some(chunk) = source.next().await? else {
            return Err(Cut::Short {
                missing: len - *sent,
            });
        };
        if chunk.len() as u64 > len - *sent {
            return Err(Cut::Long);
        }
        let n = chunk.len() as u64;
        // A peer that asks and never reads would hold the slot for ever.
        let stall = inner.uploads.stall_timeout;
        tokio::time::timeout(stall, send.write_chunk(chunk))
            .await
            .map_err(|_| Cut::Stalled(stall))??;
        inner.scores.sent(&counters, n);
        if (*sent + n) / YIELD_EVERY != *sent / YIELD_EVERY {
            tokio::task::yield_now().await;
        }
        *sent += n;
    }
    Ok(())
}
