//! Request flow step 2.2: a package this host lacks, fetched from the peers
//! whose digests list it into a hidden temp file, verified against this
//! host's own sync database, then served like a local file.
//!
//! Why fetch first instead of streaming to pacman as bytes arrive: a
//! package's SHA-256 can only be checked once its last byte is in, and bytes
//! already sent to pacman cannot be taken back. After a cut, pacman resumes
//! at its next server on top of the bad prefix and the install fails. So
//! nothing reaches pacman before it is verified. The cost is the fetch time
//! before pacman's first byte; it is capped by [`PEER_DEADLINE`], well inside
//! pacman's 10 s silence limit, and past the cap, as after any failure, the
//! answer is still the redirect to the mirror, since nothing was sent.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::target::FileTarget;
use crate::mesh::link::{FetchError, Mesh};
use crate::mesh::NodeId;
use crate::syncdb::{Expected, Mismatch, Verifier};
use crate::State;

/// The longest a peer fetch may take before pacman gets its answer.
pub const PEER_DEADLINE: Duration = Duration::from_secs(6);

/// Holders tried for one file.
const MAX_ATTEMPTS: usize = 3;

/// A verified (or, where allowed, unverifiable) download, open for reading,
/// its name already unlinked so nothing else can ever see it.
pub struct Fetched {
    pub file: File,
    pub meta: std::fs::Metadata,
    /// False when the sync database has no checksum for it.
    pub verified: bool,
}

/// Fetches `target` from the best peers, or `None` when no peer holds it,
/// it cannot be verified (and unverified files are not allowed), or every
/// attempt failed: the caller then redirects to the mirror.
pub async fn fetch(state: &State, target: &FileTarget) -> Option<Fetched> {
    let candidates = state.mesh.candidates(&target.name);
    if candidates.is_empty() {
        return None;
    }
    let expected = state.expected(target);
    if expected.is_none() && !state.unverified_from_peers {
        info!(file = %target.name, "held by peers but not in the sync databases; not fetched");
        return None;
    }
    let started = Instant::now();
    let work = fetch_from(
        &state.mesh,
        &state.incoming,
        &target.name,
        expected,
        candidates,
    );
    match tokio::time::timeout(PEER_DEADLINE, work).await {
        Ok(Ok(fetched)) => {
            info!(
                file = %target.name,
                bytes = fetched.meta.len(),
                verified = fetched.verified,
                ms = started.elapsed().as_millis() as u64,
                "fetched from peers"
            );
            Some(fetched)
        }
        Ok(Err(why)) => {
            warn!(file = %target.name, why, "no peer could provide it; redirecting");
            None
        }
        Err(_) => {
            warn!(file = %target.name, deadline_s = PEER_DEADLINE.as_secs(), "peers too slow; redirecting");
            None
        }
    }
}

/// Why one attempt at one peer ended.
enum Pull {
    /// The peer sent wrong bytes: penalise it.
    Bad(String),
    /// The transfer broke or stalled: continue elsewhere from the byte reached.
    Broke(FetchError),
    /// Our own disk failed.
    Disk(std::io::Error),
}

async fn fetch_from(
    mesh: &Mesh,
    incoming: &Path,
    name: &str,
    expected: Option<Expected>,
    candidates: Vec<NodeId>,
) -> Result<Fetched, &'static str> {
    let mut temp = TempFile::create(incoming, name).map_err(|_| "cannot create a temp file")?;
    let mut verifier = expected.clone().map(Verifier::new);
    let mut contributors: Vec<NodeId> = Vec::new();
    let mut size = expected.as_ref().map(|e| e.size);
    for peer in candidates.into_iter().take(MAX_ATTEMPTS) {
        contributors.push(peer);
        match pull(mesh, peer, name, &mut temp, verifier.as_mut(), &mut size).await {
            Ok(()) => {}
            Err(Pull::Broke(e)) => {
                warn!(%peer, file = name, error = %e, at = temp.len, "peer transfer broke; next holder");
                continue;
            }
            Err(Pull::Bad(why)) => {
                reject(mesh, &contributors, name, &why);
                restart(&mut temp, &mut verifier, &expected, &mut contributors)?;
                continue;
            }
            Err(Pull::Disk(e)) => {
                warn!(error = %e, "cannot write a peer download");
                return Err("disk error");
            }
        }
        let verdict = match verifier.take() {
            Some(v) => v.finish().map(|()| true).map_err(|m| m.to_string()),
            None => Ok(false),
        };
        match verdict {
            Ok(verified) => {
                return temp
                    .into_fetched(verified)
                    .map_err(|_| "cannot reopen the download")
            }
            Err(why) => {
                reject(mesh, &contributors, name, &why);
                restart(&mut temp, &mut verifier, &expected, &mut contributors)?;
            }
        }
    }
    Err("every holder failed")
}

/// Penalises the peers whose bytes failed verification. Bytes from two
/// peers (after a switch mid-file) cannot be told apart, so both are.
fn reject(mesh: &Mesh, contributors: &[NodeId], name: &str, why: &str) {
    for peer in contributors {
        warn!(%peer, file = name, why, "peer sent a file that does not verify; penalised");
        mesh.penalise(*peer, format!("{name}: {why}"));
    }
}

/// Starts the download over from byte 0 for the next holder.
fn restart(
    temp: &mut TempFile,
    verifier: &mut Option<Verifier>,
    expected: &Option<Expected>,
    contributors: &mut Vec<NodeId>,
) -> Result<(), &'static str> {
    temp.truncate().map_err(|_| "cannot reset the temp file")?;
    *verifier = expected.clone().map(Verifier::new);
    contributors.clear();
    Ok(())
}

/// Fetches from `peer`, starting where the temp file ends, until the end.
async fn pull(
    mesh: &Mesh,
    peer: NodeId,
    name: &str,
    temp: &mut TempFile,
    mut verifier: Option<&mut Verifier>,
    size: &mut Option<u64>,
) -> Result<(), Pull> {
    let mut download = mesh
        .fetch(peer, name, temp.len)
        .await
        .map_err(Pull::Broke)?;
    match *size {
        Some(want) if want != download.size => {
            return Err(Pull::Bad(format!(
                "size {} where the database says {want}",
                download.size
            )));
        }
        Some(_) => {}
        None => *size = Some(download.size),
    }
    while let Some(chunk) = download.next_chunk().await.map_err(Pull::Broke)? {
        if let Some(v) = verifier.as_deref_mut() {
            v.update(&chunk)
                .map_err(|m: Mismatch| Pull::Bad(m.to_string()))?;
        }
        temp.write(&chunk).map_err(Pull::Disk)?;
    }
    if Some(temp.len) == *size {
        Ok(())
    } else {
        Err(Pull::Broke(FetchError::Link(format!(
            "ended at byte {}",
            temp.len
        ))))
    }
}

/// A download in the daemon's `incoming` dir, which no cache dir includes;
/// removed when dropped unless handed over (already unlinked) as `Fetched`.
struct TempFile {
    path: PathBuf,
    file: File,
    len: u64,
}

static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    fn create(dir: &Path, name: &str) -> std::io::Result<TempFile> {
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
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        std::io::Seek::rewind(&mut self.file)?;
        self.len = 0;
        Ok(())
    }

    fn into_fetched(self, verified: bool) -> std::io::Result<Fetched> {
        let file = File::open(&self.path)?;
        let meta = file.metadata()?;
        // Dropping `self` unlinks the name; the open handle keeps the data.
        Ok(Fetched {
            file,
            meta,
            verified,
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
