//! Reading a cache file for an upload, chunk by chunk, without blocking the
//! runtime: as `http::file_body` does for pacman, a read is first tried
//! with `preadv2(RWF_NOWAIT)` on the runtime thread (cache files are almost
//! always in the page cache), and only goes to tokio's blocking pool when
//! the kernel says the data is not cached, so a slow disk never stalls the
//! host's own requests.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::{Bytes, BytesMut};
use rustix::io::{Errno, ReadWriteFlags};

/// Bytes per read: one quinn write each; under glibc's mmap threshold, so
/// the buffers come from the heap.
pub const CHUNK: usize = 64 * 1024;

/// An open cache file, its size and modification time (Unix seconds).
pub struct Opened {
    pub file: File,
    pub size: u64,
    pub mtime: i64,
}

/// Opens a cache file without following a symlink planted in its place.
/// Blocking: call on the blocking pool.
pub fn open_regular(path: &Path) -> io::Result<Opened> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        ));
    }
    let mtime = match meta.modified()?.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    Ok(Opened {
        file,
        size: meta.len(),
        mtime,
    })
}

/// Bytes `pos..end` of a file, in chunks of at most [`CHUNK`].
pub struct FileChunks {
    file: Arc<File>,
    pos: u64,
    end: u64,
    nowait: bool,
}

impl FileChunks {
    pub fn new(file: File, start: u64, end: u64) -> Self {
        FileChunks {
            file: Arc::new(file),
            pos: start,
            end,
            nowait: true,
        }
    }

    /// The next chunk; `None` at `end`. A file that ends before `end` (it
    /// shrank) is an error, never a short transfer.
    pub async fn next(&mut self) -> io::Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = (self.end - self.pos).min(CHUNK as u64) as usize;
        let chunk = match self.read_nowait(want) {
            Some(read) => read?,
            None => {
                let (file, pos) = (self.file.clone(), self.pos);
                tokio::task::spawn_blocking(move || {
                    let mut buf = BytesMut::zeroed(want);
                    let n = file.read_at(&mut buf, pos)?;
                    buf.truncate(n);
                    Ok::<_, io::Error>(buf.freeze())
                })
                .await
                .map_err(io::Error::other)??
            }
        };
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being sent",
            ));
        }
        self.pos += chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Reads without blocking; `None` when the data is not in the page cache.
    fn read_nowait(&mut self, want: usize) -> Option<io::Result<Bytes>> {
        if !self.nowait {
            return None;
        }
        let mut buf = BytesMut::zeroed(want);
        match rustix::io::preadv2(
            &*self.file,
            &mut [io::IoSliceMut::new(&mut buf)],
            self.pos,
            ReadWriteFlags::NOWAIT,
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
        let opened = open_regular(tmp.path()).expect("open");
        assert_eq!(opened.size, data.len() as u64);
        let mut chunks = FileChunks::new(opened.file, 1000, opened.size);
        let mut got = Vec::new();
        while let Some(c) = chunks.next().await.expect("read") {
            assert!(c.len() <= CHUNK);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data[1000..]);

        let opened = open_regular(tmp.path()).expect("open");
        let mut past = FileChunks::new(opened.file, 0, data.len() as u64 + 10);
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
}
