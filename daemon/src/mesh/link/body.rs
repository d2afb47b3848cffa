//! The bytes of one upload after its header, from either source: a cache
//! file (`crate::cachefile`) or a download still arriving on this host
//! (`mesh::inflight`). One loop sends both, so the byte counters, the
//! yield to the runtime and the stream resets are the same for either.

use std::io;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use quinn::{SendStream, VarInt};

use super::serve::{RESET_BAD_BYTES, RESET_FILE_ERROR, RESET_STALLED, YIELD_EVERY};
use super::{Inner, Link};
use crate::cachefile::ChunkReader;
use crate::mesh::inflight::{GrowingChunks, GrowingError};

/// Where an upload's bytes come from.
pub(super) enum Source {
    File(ChunkReader),
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
            Source::File(reader) => Ok(reader.next().await?),
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
    #[error("test stall")]
    TestStall,
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
            Cut::Asker(_) | Cut::TestStall => None,
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
    let counters = inner.peer_bytes(link.peer);
    while *sent < len {
        let Some(chunk) = source.next().await? else {
            return Err(Cut::Short {
                missing: len - *sent,
            });
        };
        if chunk.len() as u64 > len - *sent {
            return Err(Cut::Long);
        }
        if let Some(limit) = inner.test_stall_after {
            if *sent + chunk.len() as u64 >= limit {
                let head = chunk.slice(..(limit - *sent) as usize);
                let _ = send.write_chunk(head).await;
                // Test only: hold the stream open and send nothing more,
                // until the asker gives up.
                let _ = send.stopped().await;
                return Err(Cut::TestStall);
            }
        }
        let n = chunk.len() as u64;
        // A peer that asks and never reads would hold the slot for ever.
        let stall = inner.upload_stall_timeout;
        tokio::time::timeout(stall, send.write_chunk(chunk))
            .await
            .map_err(|_| Cut::Stalled(stall))??;
        counters.sent.fetch_add(n, Relaxed);
        inner.bytes_to_peers.fetch_add(n, Relaxed);
        if (*sent + n) / YIELD_EVERY != *sent / YIELD_EVERY {
            tokio::task::yield_now().await;
        }
        *sent += n;
    }
    Ok(())
}
