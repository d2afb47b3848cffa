//! Peer downloads on disk before they verify: hidden files in the daemon's
//! `incoming` dir, which no cache dir includes, removed on every exit path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A verified (or, where allowed, unverifiable) download, open for reading,
/// its name already unlinked so nothing else can ever see it.
#[derive(Debug)]
pub struct Fetched {
    pub file: File,
    pub meta: std::fs::Metadata,
    /// False when the sync database has no checksum for it.
    pub verified: bool,
    /// Bytes the mirror sent to finish what no holder could.
    pub from_mirror: u64,
}

/// A download being written; removed when dropped unless handed over
/// (already unlinked) as [`Fetched`].
pub struct TempFile {
    path: PathBuf,
    file: File,
    pub len: u64,
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    pub fn create(dir: &Path, name: &str) -> std::io::Result<TempFile> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.{}.{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile { path, file, len: 0 })
    }

    /// A small blocking write: peer chunks are at most a QUIC stream
    /// frame's worth and the page cache takes them without waiting.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    pub fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        std::io::Seek::rewind(&mut self.file)?;
        self.len = 0;
        Ok(())
    }

    pub fn into_fetched(self, verified: bool, from_mirror: u64) -> std::io::Result<Fetched> {
        let file = File::open(&self.path)?;
        let meta = file.metadata()?;
        // Dropping `self` unlinks the name; the open handle keeps the data.
        Ok(Fetched {
            file,
            meta,
            verified,
            from_mirror,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Empties the incoming dir at start: leftovers of a crash are partial or
/// unverified, never to be served.
pub fn clean_incoming(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let _ = std::fs::remove_file(entry?.path());
    }
    Ok(())
}
