//! A response body that streams a byte range of an open file, read by
//! `cachefile::ChunkReader` (page-cache reads on the runtime, the blocking
//! pool only on a miss).

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::cachefile::ChunkReader;

/// Called once when the body is dropped: bytes produced, and whether that
/// was the whole range.
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send>;

pub struct FileBody {
    reader: ChunkReader,
    start: u64,
    on_done: Option<OnDone>,
}

impl FileBody {
    /// Streams bytes `start..end` (end exclusive) of `file`.
    pub fn new(file: File, start: u64, end: u64, on_done: OnDone) -> Self {
        FileBody {
            reader: ChunkReader::new(file, start, end),
            start,
            on_done: Some(on_done),
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        // A file that shrank under us is an error, which cuts the response
        // rather than send fewer bytes than Content-Length promised.
        let chunk = ready!(self.get_mut().reader.poll_next(cx));
        Poll::Ready(chunk.transpose().map(|c| c.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.reader.remaining())
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(on_done) = self.on_done.take() {
            let sent = self.reader.position() - self.start;
            on_done(sent, self.reader.remaining() == 0);
        }
    }
}
