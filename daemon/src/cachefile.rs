//! Reading cache files, for pacman (`http::file_body`) and for peers
//! (`mesh::link::serve`) alike: opened without following a symlink planted
//! in their place, and read in chunks that first try `preadv2(RWF_NOWAIT)`
//! on the runtime thread (cache hits are almost always in the page cache,
//! and this saves a thread hop per chunk). Only when the kernel says the
//! data is not cached does a read go to tokio's blocking pool, so a slow
//! disk never stalls other connections.

use std::fs::{File, Metadata, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use rustix::io::{Errno, ReadWriteFlags};
use tokio::task::JoinHandle;

/// Bytes per read: large enough to keep syscalls per GB low, small enough
/// that 64 concurrent downloads hold little memory (hyper buffers about one
/// chunk per connection, see `http::serve`), and under glibc's mmap
/// threshold, so buffers come from the heap.
pub const CHUNK: usize = 64 * 1024;

/// Opens a cache file without following a symlink, and only if it is a
/// regular file. The open itself does not wait: a FIFO renamed into a
/// cache dir would block a plain open until a writer came (and a device
/// may too), holding a serving thread, so it is opened `O_NONBLOCK` and
/// refused by its type before anything reads it (Linux ignores
/// `O_NONBLOCK` on the regular files that pass).
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Whether the page holding byte `offset` of `file` is in the page cache
/// (a one-byte `preadv2(RWF_NOWAIT)`). Where the kernel or filesystem
/// cannot tell, it answers true (the bytes are then sent as nginx would).
pub fn page_cached(file: &File, offset: u64) -> bool {
    let mut byte = [0u8; 1];
    !matches!(read_cached(file, &mut byte, offset), Ok(None))
}

/// Reads bytes at `offset` into `buf` from the page cache only
/// (`preadv2(RWF_NOWAIT)`): `None` when the first of them is not cached,
/// or the kernel cannot read that way; fewer bytes than asked where the
/// cached part or the file ends.
pub fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> io::Result<Option<usize>> {
    let flags = ReadWriteFlags::NOWAIT;
    match rustix::io::preadv2(file, &mut [io::IoSliceMut::new(buf)], offset, flags) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Bytes `pos..end` of a file, in chunks of at most [`CHUNK`]. A file that
/// ends before `end` (it shrank) is an error, never a short transfer.
pub struct ChunkReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
    nowait: bool,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl ChunkReader {
    pub fn new(file: File, start: u64, end: u64) -> Self {
        ChunkReader {
            file: Arc::new(file),
            pos: start,
            end,
            nowait: true,
            pending: None,
        }
    }

    /// The offset of the next byte.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes still to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.end && self.pending.is_none()
    }

    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polled form of [`ChunkReader::next`].
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        loop {
            if let Some(task) = &mut self.pending {
                let result = ready!(Pin::new(task).poll(cx));
                self.pending = None;
                let chunk = result.map_err(io::Error::other).and_then(|r| r);
                return Poll::Ready(chunk.and_then(|c| self.advance(c)).map(Some));
            }
            if self.pos >= self.end {
                return Poll::Ready(Ok(None));
            }
            if let Some(read) = self.read_nowait() {
                return Poll::Ready(read.and_then(|c| self.advance(c)).map(Some));
            }
            let (file, pos, want) = (self.file.clone(), self.pos, self.want());
            self.pending = Some(tokio::task::spawn_blocking(move || {
                let mut buf = BytesMut::zeroed(want);
                let n = file.read_at(&mut buf, pos)?;
                buf.truncate(n);
                Ok(buf.freeze())
            }));
        }
    }

    fn want(&self) -> usize {
        (self.end - self.pos).min(CHUNK as u64) as usize
    }

    fn advance(&mut self, chunk: Bytes) -> io::Result<Bytes> {
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being sent",
            ));
        }
        self.pos += chunk.len() as u64;
        Ok(chunk)
    }

    /// Reads without blocking; `None` when the data is not in the page cache.
    fn read_nowait(&mut self) -> Option<io::Result<Bytes>> {
        if !self.nowait {
            return None;
        }
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
                // Filesystem or kernel without RWF_NOWAIT: always the pool.
                self.nowait = false;
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[tokio::test]
    async fn reads_the_range_in_chunks_and_refuses_a_shrunk_file() {
        let mut tmp = tempfile::NamedTempFile::new().expect("tmp");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).expect("write");
        let (file, meta) = open_regular(tmp.path()).expect("open");
        assert_eq!(meta.len(), data.len() as u64);
        let mut chunks = ChunkReader::new(file, 1000, meta.len());
        let mut got = Vec::new();
        while let Some(c) = chunks.next().await.expect("read") {
            assert!(c.len() <= CHUNK);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data[1000..]);
        assert!(chunks.is_done());

        let (file, _) = open_regular(tmp.path()).expect("open");
        let mut past = ChunkReader::new(file, 0, data.len() as u64 + 10);
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = past.next().await {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn symlinks_and_dirs_are_not_opened() {
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("a-1-1-any.pkg.tar.zst");
        std::fs::write(&target, b"x").expect("write");
        let link = dir.path().join("b-1-1-any.pkg.tar.zst");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(open_regular(&link).is_err());
        assert!(open_regular(dir.path()).is_err());
        assert!(open_regular(&target).is_ok());
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = "fifo-1-1-any.pkg.tar.zst";
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join(name),
            rustix::fs::FileType::Fifo,
            mode,
            0,
        )
        .expect("mkfifo");
        // In a thread, so a blocking open fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().join(name);
        std::thread::spawn(move || {
            let _ = tx.send(open_regular(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        let opened = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the open of a FIFO returned");
        assert_eq!(opened, Err("not a regular file".to_string()));
    }
}
