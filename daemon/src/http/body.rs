//! The one body type every response uses: nothing, a small buffer, a
//! range of an open file (sent with `sendfile`, see `send`), or chunks
//! handed over by a task. An enum rather than a boxed trait object, so the
//! hot path allocates nothing for it.

use std::io;

use bytes::Bytes;

use super::file_body::FileBody;

pub enum Body {
    Bytes(Option<Bytes>),
    File(FileBody),
    /// `len` bytes handed over by a task (a download streamed as it
    /// arrives). Fewer (the task ended early, or failed) cut the
    /// connection: the client must not take a short body for a whole one.
    Channel {
        chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
        len: u64,
    },
}

impl Body {
    pub fn empty() -> Self {
        Body::Bytes(None)
    }

    pub fn text(s: impl Into<String>) -> Self {
        Body::Bytes(Some(Bytes::from(s.into())))
    }

    pub fn bytes(b: impl Into<Bytes>) -> Self {
        Body::Bytes(Some(b.into()))
    }

    pub fn file(f: FileBody) -> Self {
        Body::File(f)
    }

    pub fn channel(chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>, len: u64) -> Self {
        Body::Channel { chunks, len }
    }

    /// The body's length, when known before it is sent.
    pub fn known_length(&self) -> Option<u64> {
        match self {
            Body::Bytes(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File(f) => Some(f.remaining()),
            Body::Channel { len, .. } => Some(*len),
        }
    }
}
