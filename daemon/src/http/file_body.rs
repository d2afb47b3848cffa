//! A response body that is a byte range of an open file. The connection
//! sends it with `sendfile` (`send::file`), so its bytes never pass
//! through this process.

use std::fs::File;

/// Called once when the body is dropped: bytes sent, and whether that was
/// the whole range.
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send>;

pub struct FileBody {
    file: File,
    start: u64,
    pos: u64,
    end: u64,
    on_done: Option<OnDone>,
}

impl FileBody {
    /// Bytes `start..end` (end exclusive) of `file`.
    pub fn new(file: File, start: u64, end: u64, on_done: OnDone) -> Self {
        FileBody {
            file,
            start,
            pos: start,
            end,
            on_done: Some(on_done),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The offset of the next byte to send.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Records that the bytes up to `pos` were sent.
    pub fn sent_to(&mut self, pos: u64) {
        self.pos = pos.min(self.end);
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(on_done) = self.on_done.take() {
            on_done(self.pos - self.start, self.pos == self.end);
        }
    }
}
