//! The one body type every response uses: nothing, a small buffer, or a
//! file stream. An enum rather than a boxed trait object, so the hot path
//! allocates nothing for it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::file_body::FileBody;

pub enum Body {
    Bytes(Option<Bytes>),
    File(FileBody),
    /// Bytes handed over by a task (a download streamed as it arrives).
    Channel(tokio::sync::mpsc::Receiver<io::Result<Bytes>>),
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
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Bytes(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Body::File(f) => Pin::new(f).poll_frame(cx),
            Body::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            Body::File(f) => f.is_end_stream(),
            Body::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File(f) => f.size_hint(),
            // Content-Length is set by whoever made the channel.
            Body::Channel(_) => SizeHint::default(),
        }
    }
}
