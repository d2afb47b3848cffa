//! A download on disk while it arrives: one hidden file in the daemon's
//! `incoming` dir (which no cache dir includes), written by the engine's
//! driver and read, as it grows, by the HTTP responses streaming it to
//! pacman and by peers joining the fetch.
//!
//! Readers never get ahead of the writer, and never get the last byte
//! before the whole file verified (or was found unverifiable): a reader
//! of a file that turns out bad ends with an error instead of a clean end,
//! so nobody takes a bad file for a complete one. When the writer throws
//! its bytes away (a source sent bad ones) the file's generation changes
//! and every reader of the old one fails with `BadBytes`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::mesh::inflight::{BoxFuture, GrowingChunks, GrowingError};

/// Bytes per read by a reader.
const READ_CHUNK: usize = crate::cachefile::CHUNK;

/// How far a download has come, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Bytes written so far.
    pub len: u64,
    /// The whole file's size, once known.
    pub size: Option<u64>,
    /// Bumped whenever the bytes are thrown away.
    pub generation: u32,
    /// Every byte so far came from a mirror, so it may be streamed to
    /// pacman before it verifies.
    pub streamable: bool,
    /// Where this host's claim to fetch the file from the WAN stands.
    pub claim: ClaimState,
    /// When the last bytes were written (or the download began).
    pub last_write: tokio::time::Instant,
    pub end: End,
}

/// This host's claim on a download (see `fetch::claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Never claimed: the download comes from peers.
    None,
    /// Announced; the claim window is open.
    Pending,
    /// We fetch from the WAN: peers may join us.
    Won,
    /// Another host fetches it; we join it.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Running,
    /// Complete and verified (or allowed unverified): every byte readable.
    Complete,
    Failed(GrowingError),
}

/// The shared half: the file to read and the progress to watch.
#[derive(Debug)]
pub struct Growing {
    file: File,
    shown: watch::Sender<Shown>,
    /// [`Reader`]s alive: only they need to wake for every write. Others
    /// watching (requests waiting for the end, a claim, a size) are woken
    /// by those changes alone, not once per ~75 KB from a peer.
    byte_readers: AtomicUsize,
    /// Unix seconds the download started, announced as its mtime.
    pub started_unix: i64,
}

/// The writing half, owned by the driver.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    shared: Arc<Growing>,
    /// Set once the file was moved away (kept) or handed over.
    kept: bool,
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Bytes of a file's name its temp file's name starts with: with the dot
/// before it and `.{pid}.{n}` after (at most 1 + 10 + 1 + 20 bytes), the
/// temp name stays within `MAX_NAME_LEN` (255) for any valid name.
const TEMP_PREFIX_MAX: usize = 200;

/// The hidden temp file's name for a download of `name`: `.{prefix}.{pid}.{n}`,
/// the prefix cut to at most [`TEMP_PREFIX_MAX`] bytes at a character
/// boundary (a name of 255 bytes in multi-byte characters has as many
/// bytes as an ASCII one).
fn temp_name(name: &str, pid: u32, n: u64) -> String {
    let mut end = name.len().min(TEMP_PREFIX_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.{pid}.{n}", &name[..end])
}

/// Creates the hidden temp file for `name` under `incoming`.
pub fn create(incoming: &Path, name: &str) -> std::io::Result<Writer> {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let path = incoming.join(temp_name(name, std::process::id(), n));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let reader = File::open(&path)?;
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (shown, _) = watch::channel(Shown {
        len: 0,
        size: None,
        generation: 0,
        streamable: false,
        claim: ClaimState::None,
        last_write: tokio::time::Instant::now(),
        end: End::Running,
    });
    Ok(Writer {
        path,
        file,
        shared: Arc::new(Growing {
            file: reader,
            shown,
            byte_readers: AtomicUsize::new(0),
            started_unix,
        }),
        kept: false,
    })
}

impl Writer {
    pub fn shared(&self) -> &Arc<Growing> {
        &self.shared
    }

    pub fn len(&self) -> u64 {
        self.shared.shown.borrow().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_size(&self, size: u64) {
        self.shared.shown.send_modify(|s| s.size = Some(size));
    }

    pub fn set_streamable(&self, streamable: bool) {
        self.shared.shown.send_if_modified(|s| {
            let changed = s.streamable != streamable;
            s.streamable = streamable;
            changed
        });
    }

    pub fn set_claim(&self, claim: ClaimState) {
        self.shared.shown.send_modify(|s| s.claim = claim);
    }

    /// Appends `chunk`. A small blocking write: chunks are at most a
    /// stream frame's or a socket read's worth, and go to the page cache.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.write_chunks(&[chunk])
    }

    /// Appends `chunks`, in order, with as few `writev`s as the kernel
    /// takes them in (one, as a rule: at most ~75 KB of a peer's packets).
    pub fn write_chunks<B: AsRef<[u8]>>(&mut self, chunks: &[B]) -> std::io::Result<()> {
        let mut slices: Vec<std::io::IoSlice<'_>> = chunks
            .iter()
            .map(|c| std::io::IoSlice::new(c.as_ref()))
            .collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            match self.file.write_vectored(left) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => std::io::IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let n: u64 = chunks.iter().map(|c| c.as_ref().len() as u64).sum();
        let byte_readers = &self.shared.byte_readers;
        self.shared.shown.send_if_modified(|s| {
            s.len += n;
            s.last_write = tokio::time::Instant::now();
            // Read under the watch's lock: a reader counted after this
            // borrows the new length when it starts.
            byte_readers.load(Ordering::Relaxed) > 0
        });
        Ok(())
    }

    /// Throws every byte away; readers of the old bytes fail.
    pub fn restart(&mut self) -> std::io::Result<()> {
        // The generation first: a reader that finds the file shorter than
        // it was told then also finds the new generation (`BadBytes`),
        // never a "shrank" disk error.
        self.shared.shown.send_modify(|s| {
            s.len = 0;
            s.generation += 1;
        });
        self.file.set_len(0)?;
        std::io::Seek::rewind(&mut self.file)?;
        Ok(())
    }

    /// Lets readers have the last bytes: the download verified, or there
    /// is nothing to verify it against. Kept by [`Writer::complete_and_flush`]
    /// and [`Writer::rename_to`]; if not, its name is removed when the
    /// writer drops, and open handles still read it.
    pub fn complete(&self) {
        self.shared.shown.send_modify(|s| s.end = End::Complete);
    }

    /// Keeping a verified download, first half: readers are let have the
    /// last bytes, then the file is flushed to disk. Readers read through
    /// their own handle, so the flush (a quarter of a second for 256 MiB
    /// here) is for later requests and peers and does not hold up the
    /// responses waiting now; if keeping fails, those still end whole.
    pub fn complete_and_flush(&mut self) -> std::io::Result<()> {
        self.complete();
        self.file.sync_data()
    }

    /// Second half: the rename to `dest` (same filesystem: atomic, so
    /// nobody ever sees part of the file there).
    pub fn rename_to(mut self, dest: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.kept = true;
        Ok(())
    }

    /// Ends the download for every reader with `why`.
    pub fn fail(self, why: GrowingError) {
        self.shared.shown.send_modify(|s| s.end = End::Failed(why));
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
        // A writer dropped without an end (its task was cancelled) leaves
        // its readers a clear failure, never a hang.
        self.shared.shown.send_if_modified(|s| {
            if s.end == End::Running {
                s.end = End::Failed(GrowingError::Abandoned);
                true
            } else {
                false
            }
        });
    }
}

impl Growing {
    /// The progress as it is now.
    pub fn shown(&self) -> Shown {
        self.shown.borrow().clone()
    }

    /// Readers of the download now (responses, peers, waiting requests).
    pub fn readers(&self) -> usize {
        self.shown.receiver_count()
    }

    pub fn watch(&self) -> watch::Receiver<Shown> {
        self.shown.subscribe()
    }

    /// A handle on the whole file and its metadata once the download is
    /// complete (verified, or allowed unverified), to be sent as a cache
    /// file is, with `sendfile`; `None` while it arrives or if it failed.
    pub fn complete_file(&self) -> Option<std::io::Result<(File, std::fs::Metadata)>> {
        if self.shown.borrow().end != End::Complete {
            return None;
        }
        Some(self.file.try_clone().and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        }))
    }

    /// Reads the bytes from `offset` on, of the generation there is now,
    /// verified or not (for a peer joining the download: it verifies).
    pub fn reader(self: &Arc<Self>, offset: u64) -> Reader {
        self.make_reader(offset, false)
    }

    /// Like [`Growing::reader`], but only bytes that may reach pacman:
    /// bytes from mirrors as they arrive, anything else once verified.
    pub fn reader_for_pacman(self: &Arc<Self>, offset: u64) -> Reader {
        self.make_reader(offset, true)
    }

    fn make_reader(self: &Arc<Self>, offset: u64, for_pacman: bool) -> Reader {
        self.byte_readers.fetch_add(1, Ordering::Relaxed);
        let rx = self.shown.subscribe();
        let generation = rx.borrow().generation;
        Reader {
            growing: self.clone(),
            rx,
            pos: offset,
            generation,
            for_pacman,
        }
    }

    /// Waits until this host's claim (made or about to be) is settled: `Ok` when it won (peers
    /// may join), an error when it lost or the download ended first.
    pub async fn claim_won(&self) -> Result<(), GrowingError> {
        let mut rx = self.shown.subscribe();
        let shown = rx
            .wait_for(|s| {
                matches!(s.claim, ClaimState::Won | ClaimState::Lost) || s.end != End::Running
            })
            .await
            .map_err(|_| GrowingError::Abandoned)?;
        match (shown.claim, &shown.end) {
            (_, End::Failed(e)) => Err(e.clone()),
            (ClaimState::Won, _) => Ok(()),
            _ => Err(GrowingError::Abandoned),
        }
    }

    /// Waits until the size is known (or the download ended without one).
    pub async fn size(&self) -> Result<u64, GrowingError> {
        let mut rx = self.shown.subscribe();
        let shown = rx
            .wait_for(|s| s.size.is_some() || s.end != End::Running)
            .await
            .map_err(|_| GrowingError::Abandoned)?;
        match (&shown.size, &shown.end) {
            (Some(size), _) => Ok(*size),
            (None, End::Failed(e)) => Err(e.clone()),
            (None, _) => Err(GrowingError::Abandoned),
        }
    }
}

/// One reader of a growing download.
#[derive(Debug)]
pub struct Reader {
    growing: Arc<Growing>,
    rx: watch::Receiver<Shown>,
    pos: u64,
    generation: u32,
    for_pacman: bool,
}

impl Reader {
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The next bytes, waiting for them; `Ok(None)` after the last one.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, GrowingError> {
        loop {
            let shown = self.rx.borrow_and_update().clone();
            if shown.generation != self.generation {
                return Err(GrowingError::BadBytes);
            }
            if let End::Failed(e) = &shown.end {
                return Err(e.clone());
            }
            let complete = shown.end == End::Complete;
            if complete && self.pos >= shown.len {
                return Ok(None);
            }
            // The last byte waits for the verdict, and pacman gets bytes
            // from peers only once they verified.
            let readable = match shown.size {
                _ if self.for_pacman && !complete && !shown.streamable => 0,
                Some(size) if !complete => shown.len.min(size.saturating_sub(1)),
                _ => shown.len,
            };
            if self.pos < readable {
                let want = (readable - self.pos).min(READ_CHUNK as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                let n = self
                    .growing
                    .file
                    .read_at(&mut buf, self.pos)
                    .map_err(|e| GrowingError::Io(e.to_string()))?;
                // The writer may have thrown its bytes away (truncated the
                // file) since the look above: that is bad bytes, not a
                // disk error.
                if self.growing.shown.borrow().generation != self.generation {
                    return Err(GrowingError::BadBytes);
                }
                if n == 0 {
                    return Err(GrowingError::Io("the download shrank".into()));
                }
                buf.truncate(n);
                self.pos += n as u64;
                return Ok(Some(buf.freeze()));
            }
            if self.rx.changed().await.is_err() {
                return Err(GrowingError::Abandoned);
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.growing.byte_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GrowingChunks for Reader {
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, GrowingError>> {
        Box::pin(Reader::next_chunk(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacmesh_proto::{validate_name, MAX_NAME_LEN};

    #[test]
    fn temp_names_stay_within_255_bytes_for_the_longest_valid_names() {
        let suffix = "-1:1.0-1-x86_64.pkg.tar.zst";
        let ascii = format!("{}{suffix}", "a".repeat(MAX_NAME_LEN - suffix.len()));
        // 3-byte characters, the cut falling inside one.
        let wide = format!(
            "{}{suffix}",
            "\u{20ac}".repeat((MAX_NAME_LEN - suffix.len()) / 3)
        );
        let dir = tempfile::tempdir().unwrap();
        for name in [&ascii, &wide] {
            assert!(validate_name(name).is_ok(), "{name}");
            assert!(name.len() >= MAX_NAME_LEN - 2, "{}", name.len());
            let temp = temp_name(name, u32::MAX, u64::MAX);
            assert!(temp.len() <= MAX_NAME_LEN, "{} bytes: {temp}", temp.len());
            assert!(temp.starts_with('.'));
            // And the filesystem takes it.
            create(dir.path(), name).unwrap();
        }
        assert_eq!(temp_name("a.pkg", 7, 3), ".a.pkg.7.3");
    }

    #[tokio::test]
    async fn readers_follow_the_writer_and_get_the_last_byte_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = create(dir.path(), "a-1-1-any.pkg.tar.zst").unwrap();
        w.set_size(6);
        let mut r = w.shared().reader(0);
        w.write(b"abc").unwrap();
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), &b"abc"[..]);
        w.write(b"def").unwrap();
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), &b"de"[..]);
        let dest = dir.path().join("kept");
        let last = tokio::spawn(async move { r.next_chunk().await });
        tokio::task::yield_now().await;
        w.complete_and_flush().unwrap();
        w.rename_to(&dest).unwrap();
        assert_eq!(last.await.unwrap().unwrap().unwrap(), &b"f"[..]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"abcdef");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn chunks_are_written_in_order_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = create(dir.path(), "e.pkg.tar.zst").unwrap();
        let chunks = [
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ];
        w.write_chunks(&chunks).unwrap();
        w.write_chunks::<Bytes>(&[]).unwrap();
        assert_eq!(w.len(), 5);
        let mut r = w.shared().reader(0);
        w.complete();
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), &b"abcde"[..]);
    }

    #[tokio::test]
    async fn only_readers_wake_for_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = create(dir.path(), "d.pkg.tar.zst").unwrap();
        let mut waiting = w.shared().watch();
        w.write(b"ab").unwrap();
        assert!(
            !waiting.has_changed().unwrap(),
            "a waiter was woken by bytes"
        );
        // It still sees how far the download came when it looks.
        assert_eq!(waiting.borrow().len, 2);
        let mut r = w.shared().reader(0);
        // A reader that starts after silent writes reads them.
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), &b"ab"[..]);
        let next = tokio::spawn(async move { (r.next_chunk().await, r) });
        tokio::task::yield_now().await;
        w.write(b"c").unwrap();
        let (chunk, r) = next.await.unwrap();
        assert_eq!(chunk.unwrap().unwrap(), &b"c"[..]);
        drop(r);
        let _ = waiting.borrow_and_update();
        w.write(b"d").unwrap();
        assert!(
            !waiting.has_changed().unwrap(),
            "woken by bytes with no reader left"
        );
        // Changes other than bytes still wake it.
        w.set_size(4);
        assert!(waiting.has_changed().unwrap());
    }

    #[tokio::test]
    async fn readers_of_thrown_away_bytes_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = create(dir.path(), "b.pkg.tar.zst").unwrap();
        w.write(b"xyz").unwrap();
        let mut r = w.shared().reader(0);
        w.restart().unwrap();
        assert_eq!(r.next_chunk().await, Err(GrowingError::BadBytes));
        let mut fresh = w.shared().reader(0);
        w.write(b"ok").unwrap();
        w.complete();
        drop(w);
        assert_eq!(fresh.next_chunk().await.unwrap().unwrap(), &b"ok"[..]);
        assert_eq!(fresh.next_chunk().await, Ok(None));
        // Not kept: the name is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_dropped_writer_fails_its_readers_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = create(dir.path(), "c.pkg.tar.zst").unwrap();
        w.write(b"12").unwrap();
        let shared = w.shared().clone();
        let mut r = shared.reader(2);
        drop(w);
        assert_eq!(r.next_chunk().await, Err(GrowingError::Abandoned));
        assert_eq!(shared.size().await, Err(GrowingError::Abandoned));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
