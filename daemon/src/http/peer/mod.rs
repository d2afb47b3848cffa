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
use std::time::Instant;

use tracing::{info, warn};

use super::target::FileTarget;
use crate::mesh::link::{FetchError, Mesh};
use crate::mesh::NodeId;
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
/// mirror, at once when no peer holds it.
pub async fn obtain(state: &State, target: &FileTarget) -> Answer {
    let flight = match state.flights.find(&target.name) {
        Some(flight) => flight,
        None => match start(state, target) {
            Some(flight) => flight,
            None => return Answer::Elsewhere,
        },
    };
    flight.wait().await
}

fn start(state: &State, target: &FileTarget) -> Option<std::sync::Arc<flights::Flight>> {
    let candidates = state.mesh.candidates(&target.name);
    if candidates.is_empty() {
        return None;
    }
    let expected = state.expected(target);
    if expected.is_none() && !state.unverified_from_peers {
        info!(file = %target.name, "held by peers but not in the sync databases; not fetched");
        return None;
    }
    let mesh = state.mesh.clone();
    let incoming = state.flights.incoming().to_path_buf();
    let name = target.name.clone();
    state
        .flights
        .start(&target.name, move |progress| async move {
            let started = Instant::now();
            let fetched =
                fetch_from(&mesh, &incoming, &name, expected, candidates, &progress).await;
            match &fetched {
                Ok(fetched) => info!(
                    file = %name,
                    bytes = fetched.meta.len(),
                    verified = fetched.verified,
                    ms = started.elapsed().as_millis() as u64,
                    "fetched from peers"
                ),
                Err(why) => warn!(file = %name, why, "no peer could provide it; redirecting"),
            }
            fetched
        })
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
    progress: &Progress,
) -> Result<Fetched, &'static str> {
    let mut temp = TempFile::create(incoming, name).map_err(|_| "cannot create a temp file")?;
    let mut verifier = expected.clone().map(Verifier::new);
    let mut contributors: Vec<NodeId> = Vec::new();
    let mut size = expected.as_ref().map(|e| e.size);
    for peer in candidates.into_iter().take(MAX_ATTEMPTS) {
        contributors.push(peer);
        let pulled = pull(
            mesh,
            peer,
            name,
            &mut temp,
            verifier.as_mut(),
            &mut size,
            progress,
        );
        match pulled.await {
            Ok(()) => {}
            Err(Pull::Broke(e)) => {
                warn!(%peer, file = name, error = %e, at = temp.len, "peer transfer broke; next holder");
                continue;
            }
            Err(Pull::Bad(why)) => {
                reject(mesh, &contributors, name, &why);
                restart(
                    &mut temp,
                    &mut verifier,
                    &expected,
                    &mut contributors,
                    progress,
                )?;
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
                restart(
                    &mut temp,
                    &mut verifier,
                    &expected,
                    &mut contributors,
                    progress,
                )?;
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
    progress: &Progress,
) -> Result<(), &'static str> {
    temp.truncate().map_err(|_| "cannot reset the temp file")?;
    progress.set(0, 0);
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
    progress: &Progress,
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
        progress.set(temp.len, download.size);
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
