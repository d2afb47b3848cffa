//! Request flow step 2.2: a package this host lacks, fetched from the peers
//! whose digests list it into a hidden temp file, verified against this
//! host's own sync database, then served like a local file.
//!
//! Why fetch first instead of streaming to pacman as bytes arrive: a
//! package's SHA-256 can only be checked once its last byte is in, and bytes
//! already sent to pacman cannot be taken back. libalpm resumes every
//! package download at its next server from the end of its `.part` file
//! (`curl_retry_next_server`: `allow_resume` is set for packages), so after
//! a cut it would append the mirror's bytes to the bad prefix and the
//! install would fail. So nothing reaches pacman before it is verified.
//! How a fetch longer than pacman's 10 s silence limit still reaches it:
//! see [`flights`].

mod flights;
mod temp;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::target::FileTarget;
use crate::mesh::link::Mesh;
use crate::mesh::NodeId;
use crate::mirror_client::MirrorClient;
use crate::syncdb::{Expected, Mismatch, Verifier};
use crate::State;

pub use flights::{keep_waiting, Answer, Flights, Progress, BUDGET, MIN_RATE, WAIT_PER_REQUEST};
use temp::TempFile;
pub use temp::{clean_incoming, Fetched};

/// Holders tried for one file.
const MAX_ATTEMPTS: usize = 3;

/// What the peers can do for `target` within one request's wait: the
/// verified file, a "come back" while it is still arriving, or nothing (no
/// peer holds it, it cannot be verified and unverified files are not
/// allowed, or every holder failed) — then the caller redirects to the
/// mirror, at once when no peer holds it. `mirror`: the URL the redirect
/// would name, where a download no holder can finish is continued.
pub async fn obtain(state: &State, target: &FileTarget, mirror: Option<&str>) -> Answer {
    let flight = match state.flights.find(&target.name) {
        Some(flight) => flight,
        None => match start(state, target, mirror) {
            Some(flight) => flight,
            None => return Answer::Elsewhere,
        },
    };
    flight.wait().await
}

fn start(state: &State, target: &FileTarget, mirror: Option<&str>) -> Option<Arc<flights::Flight>> {
    let candidates = state.mesh.candidates(&target.name);
    if candidates.is_empty() {
        return None;
    }
    let expected = state.expected(target);
    if expected.is_none() && !state.unverified_from_peers {
        info!(file = %target.name, "held by peers but not in the sync databases; not fetched");
        return None;
    }
    let sources = Sources {
        mesh: state.mesh.clone(),
        candidates,
        mirror: mirror.map(|url| (state.mirror_client.clone(), url.to_owned())),
    };
    let incoming = state.flights.incoming().to_path_buf();
    let name = target.name.clone();
    let stats = state.stats.clone();
    state
        .flights
        .start(&target.name, move |progress| async move {
            let started = Instant::now();
            let job = Job::new(&incoming, &name, expected, &progress);
            let fetched = match job {
                Ok(job) => fetch(&sources, job).await,
                Err(e) => {
                    warn!(error = %e, "cannot create a temp file for a peer download");
                    Err("cannot create a temp file")
                }
            };
            match &fetched {
                Ok(fetched) => {
                    stats.add_mirror_fetch_bytes(fetched.from_mirror);
                    info!(
                        file = %name,
                        bytes = fetched.meta.len(),
                        from_mirror = fetched.from_mirror,
                        verified = fetched.verified,
                        ms = started.elapsed().as_millis() as u64,
                        "fetched from peers"
                    );
                }
                Err(why) => warn!(file = %name, why, "no peer could provide it; redirecting"),
            }
            fetched
        })
}

/// Where one file can come from: its holders, best first, and the mirror
/// that finishes what they started.
struct Sources {
    mesh: Mesh,
    candidates: Vec<NodeId>,
    mirror: Option<(MirrorClient, String)>,
}

/// Why one attempt at one source ended.
enum Pull {
    /// The source sent wrong bytes: penalise the peers among them.
    Bad(String),
    /// The transfer broke or stalled: continue elsewhere from the byte reached.
    Broke(String),
    /// Our own disk failed.
    Disk(std::io::Error),
}

fn broke(e: impl std::fmt::Display) -> Pull {
    Pull::Broke(e.to_string())
}

/// Our own disk failed: no source can help, the mirror's redirect must.
fn disk_error(e: &std::io::Error) -> &'static str {
    warn!(error = %e, "cannot write a peer download");
    "disk error"
}

async fn fetch(sources: &Sources, mut job: Job<'_>) -> Result<Fetched, &'static str> {
    let mesh = &sources.mesh;
    for &peer in sources.candidates.iter().take(MAX_ATTEMPTS) {
        job.contributors.push(peer);
        match pull(mesh, peer, &mut job).await {
            Ok(()) => match job.verdict() {
                Ok(verified) => return job.into_fetched(verified),
                Err(why) => {
                    reject(mesh, &job.contributors, job.name, &why);
                    job.restart()?;
                }
            },
            Err(Pull::Broke(e)) => {
                warn!(%peer, file = job.name, error = %e, at = job.temp.len, "peer transfer broke; next holder");
            }
            Err(Pull::Bad(why)) => {
                reject(mesh, &job.contributors, job.name, &why);
                job.restart()?;
            }
            Err(Pull::Disk(e)) => return Err(disk_error(&e)),
        }
    }
    // No holder finished it. Bytes already here are continued from at the
    // mirror; with none, pacman is better off going there itself.
    let Some((client, url)) = sources.mirror.as_ref().filter(|_| job.temp.len > 0) else {
        return Err("every holder failed");
    };
    match from_mirror(client, url, &mut job).await {
        Ok(()) => {}
        Err(Pull::Disk(e)) => return Err(disk_error(&e)),
        Err(Pull::Bad(why) | Pull::Broke(why)) => {
            warn!(file = job.name, %url, at = job.temp.len, why, "the mirror could not finish a peer download");
            return Err("every holder failed, and the mirror could not finish it");
        }
    }
    match job.verdict() {
        Ok(verified) => job.into_fetched(verified),
        Err(why) => {
            reject(mesh, &job.contributors, job.name, &why);
            Err("the peers' bytes and the mirror's did not verify together")
        }
    }
}

/// Penalises the peers whose bytes failed verification. Bytes from two
/// peers (after a switch mid-file) cannot be told apart, so both are.
fn reject(mesh: &Mesh, contributors: &[NodeId], name: &str, why: &str) {
    for peer in contributors {
        warn!(%peer, file = name, why, "peer sent a file that does not verify; penalised");
        mesh.penalise(*peer, format!("{name}: {why}"));
    }
}

/// Fetches from `peer`, starting where the download stands, to the end.
async fn pull(mesh: &Mesh, peer: NodeId, job: &mut Job<'_>) -> Result<(), Pull> {
    let mut download = mesh
        .fetch(peer, job.name, job.temp.len)
        .await
        .map_err(broke)?;
    job.check_size(download.size)?;
    while let Some(chunk) = download.next_chunk().await.map_err(broke)? {
        job.take(&chunk)?;
    }
    job.complete()
}

/// Fetches the rest from the mirror with a ranged GET (all of it again if
/// the mirror ignores the Range).
async fn from_mirror(client: &MirrorClient, url: &str, job: &mut Job<'_>) -> Result<(), Pull> {
    info!(file = job.name, %url, from = job.temp.len, "no holder left; continuing at the mirror");
    let mut body = client.get_from(url, job.temp.len).await.map_err(broke)?;
    if body.start != job.temp.len {
        job.restart().map_err(|why| Pull::Broke(why.to_owned()))?;
    }
    while let Some(chunk) = body.next_chunk().await.map_err(broke)? {
        job.take(&chunk)?;
        job.from_mirror += chunk.len() as u64;
    }
    job.complete()
}

/// One file's download: where it is written, what it must turn out to be,
/// and who sent the bytes so far.
struct Job<'a> {
    name: &'a str,
    temp: TempFile,
    expected: Option<Expected>,
    verifier: Option<Verifier>,
    /// From the sync database, else from the first peer's header.
    size: Option<u64>,
    contributors: Vec<NodeId>,
    from_mirror: u64,
    progress: &'a Progress,
}

impl<'a> Job<'a> {
    fn new(
        incoming: &Path,
        name: &'a str,
        expected: Option<Expected>,
        progress: &'a Progress,
    ) -> std::io::Result<Job<'a>> {
        Ok(Job {
            name,
            temp: TempFile::create(incoming, name)?,
            verifier: expected.clone().map(Verifier::new),
            size: expected.as_ref().map(|e| e.size),
            expected,
            contributors: Vec::new(),
            from_mirror: 0,
            progress,
        })
    }

    /// A source announced `size`: it must be the size expected.
    fn check_size(&mut self, size: u64) -> Result<(), Pull> {
        match self.size {
            Some(want) if want != size => Err(Pull::Bad(format!(
                "size {size} where the database says {want}"
            ))),
            Some(_) => Ok(()),
            None => {
                self.size = Some(size);
                Ok(())
            }
        }
    }

    fn take(&mut self, chunk: &[u8]) -> Result<(), Pull> {
        if let Some(v) = self.verifier.as_mut() {
            v.update(chunk)
                .map_err(|m: Mismatch| Pull::Bad(m.to_string()))?;
        }
        let size = self.size.unwrap_or(0);
        if self.temp.len + chunk.len() as u64 > size {
            return Err(Pull::Bad(format!("more than the {size} bytes announced")));
        }
        self.temp.write(chunk).map_err(Pull::Disk)?;
        self.progress.set(self.temp.len, size);
        Ok(())
    }

    /// A source's stream ended: was that the whole file?
    fn complete(&self) -> Result<(), Pull> {
        if Some(self.temp.len) == self.size {
            Ok(())
        } else {
            Err(Pull::Broke(format!("ended at byte {}", self.temp.len)))
        }
    }

    /// Whether the whole file verified (`Ok(false)`: nothing to verify it
    /// against). Called once the last byte is in.
    fn verdict(&mut self) -> Result<bool, String> {
        match self.verifier.take() {
            Some(v) => v.finish().map(|()| true).map_err(|m| m.to_string()),
            None => Ok(false),
        }
    }

    /// Starts over from byte 0 for the next source.
    fn restart(&mut self) -> Result<(), &'static str> {
        self.temp
            .truncate()
            .map_err(|_| "cannot reset the temp file")?;
        self.verifier = self.expected.clone().map(Verifier::new);
        self.contributors.clear();
        self.from_mirror = 0;
        self.progress.set(0, self.size.unwrap_or(0));
        Ok(())
    }

    fn into_fetched(self, verified: bool) -> Result<Fetched, &'static str> {
        let from_mirror = self.from_mirror;
        self.temp
            .into_fetched(verified, from_mirror)
            .map_err(|_| "cannot reopen the download")
    }
}
