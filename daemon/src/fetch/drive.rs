//! The thin async layer under [`Machine`]: it does what the machine says
//! (open a source, read, throw bytes away, settle a claim, verify) and
//! reports what happened, writing bytes to the growing file and feeding
//! the verifier on the way. Every decision stays in the machine.

use crate::mesh::inflight::GrowingError;
use crate::syncdb::{Expected, Verifier};

use super::growing::{ClaimState, Writer};
use super::machine::{Action, Event, Failure, Machine, SourceId};
use super::source::{Sources, Stream};

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub verified: bool,
    /// Bytes of the final file by where they came from.
    pub from_mirrors: u64,
    pub from_holders: u64,
    pub from_fetchers: u64,
    /// Whether this host fetched from the WAN on its claim (and so
    /// announced it).
    pub claimed: bool,
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    #[error("{0}")]
    NoSource(String),
    #[error("writing the download: {0}")]
    Disk(String),
}

/// Bytes in the file by kind of source, reset when they are thrown away.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    mirrors: u64,
    holders: u64,
    fetchers: u64,
}

impl Tally {
    fn add(&mut self, source: Option<SourceId>, n: u64) {
        match source {
            Some(SourceId::Mirror(_)) => self.mirrors += n,
            Some(SourceId::Holder(_)) => self.holders += n,
            Some(SourceId::Fetcher(_)) => self.fetchers += n,
            None => {}
        }
    }
}

/// Runs one download to its end. `first` is the machine's first action
/// (`start()`, or `Claim` for a miss nobody holds).
pub async fn drive<S: Sources>(
    sources: &S,
    name: &str,
    expected: Option<&Expected>,
    machine: &mut Machine,
    first: Action,
    writer: &mut Writer,
) -> Result<Finished, DriveError> {
    let mut verifier = expected.cloned().map(Verifier::new);
    let mut stream: Option<S::Stream> = None;
    // What a `Skip` read past the bytes it discarded: the next `Read`'s.
    let mut carry: Option<bytes::Bytes> = None;
    let mut tally = Tally::default();
    let mut claimed = false;
    let mut action = first;
    loop {
        // pacman may see the bytes as they come only while every one of
        // them is a mirror's (see `fetch`), and only once a mirror
        // answered: until then a request can still get the redirect. Judged
        // while a source is open, so a download that ends (or fails over)
        // with mirror bytes only stays streamable: a request joining it then
        // is still a mirror fetch, not a peer download.
        if stream.is_some() {
            let from_mirror = machine.current().is_some_and(SourceId::is_mirror);
            writer.set_streamable(from_mirror && machine.only_mirror_bytes());
        }
        action = match action {
            Action::Open { source, offset } => {
                stream = None;
                carry = None;
                match sources.open(source, name, offset, machine.size()).await {
                    Ok((s, opened)) => {
                        stream = Some(s);
                        writer.set_size(opened.size);
                        machine.on(Event::Opened {
                            size: opened.size,
                            start: opened.start,
                        })
                    }
                    Err(failure) => {
                        tracing::info!(?source, offset, ?failure, "source unavailable");
                        machine.on(Event::Failed(failure))
                    }
                }
            }
            Action::Skip(n) => {
                let Some(s) = stream.as_mut() else {
                    return Err(DriveError::NoSource("skip with no source open".into()));
                };
                match skip(s, n).await {
                    Ok(rest) => {
                        carry = rest;
                        machine.on(Event::Skipped)
                    }
                    Err(failure) => {
                        let source = machine.current();
                        tracing::info!(
                            ?source,
                            at = machine.pos(),
                            ?failure,
                            "source failed while skipping"
                        );
                        machine.on(Event::Failed(failure))
                    }
                }
            }
            Action::Read => {
                let Some(s) = stream.as_mut() else {
                    return Err(DriveError::NoSource("read with no source open".into()));
                };
                let next = match carry.take() {
                    Some(rest) => Ok(Some(rest)),
                    None => s.next_chunk().await,
                };
                match next {
                    Ok(Some(bytes)) => {
                        let checked = match verifier.as_mut() {
                            Some(v) => v.update(&bytes).map_err(|m| m.to_string()),
                            None => Ok(()),
                        };
                        match checked {
                            Err(why) => {
                                let source = machine.current();
                                tracing::warn!(
                                    why,
                                    ?source,
                                    "the download does not match the database"
                                );
                                machine.on(Event::Failed(Failure::Bad(why)))
                            }
                            Ok(()) => {
                                writer
                                    .write(&bytes)
                                    .map_err(|e| DriveError::Disk(e.to_string()))?;
                                let n = bytes.len() as u64;
                                tally.add(machine.current(), n);
                                machine.on(Event::Bytes(n))
                            }
                        }
                    }
                    Ok(None) => machine.on(Event::Ended),
                    Err(failure) => {
                        let source = machine.current();
                        tracing::info!(?source, at = machine.pos(), ?failure, "source failed");
                        machine.on(Event::Failed(failure))
                    }
                }
            }
            Action::Restart => {
                // The source stays open: after a mirror that ignored our
                // Range, its stream is read from its byte 0 next; after bad
                // bytes, the next action opens another source anyway.
                carry = None;
                writer
                    .restart()
                    .map_err(|e| DriveError::Disk(e.to_string()))?;
                verifier = expected.cloned().map(Verifier::new);
                tally = Tally::default();
                machine.resume()
            }
            Action::Penalise { peers, why } => {
                sources.penalise(&peers, name, &why);
                machine.resume()
            }
            Action::Claim { exclude } => {
                stream = None;
                let size = machine.size().or(expected.map(|e| e.size)).unwrap_or(0);
                writer.set_claim(ClaimState::Pending);
                let claimant = sources.claim(name, size, &exclude).await;
                tracing::info!(?claimant, at = machine.pos(), "claim settled");
                claimed = claimant == super::machine::Claimant::Us;
                writer.set_claim(if claimed {
                    ClaimState::Won
                } else {
                    ClaimState::Lost
                });
                machine.on(Event::Claimed(claimant))
            }
            Action::Verify => {
                stream = None;
                let verdict = match verifier.take() {
                    Some(v) => v.finish().map(|()| true).map_err(|m| m.to_string()),
                    None => Ok(false),
                };
                if let Err(why) = &verdict {
                    let source = machine.current();
                    tracing::warn!(why, ?source, "the download does not match the database");
                }
                machine.on(Event::Verified(verdict))
            }
            Action::Done { verified } => {
                return Ok(Finished {
                    verified,
                    from_mirrors: tally.mirrors,
                    from_holders: tally.holders,
                    from_fetchers: tally.fetchers,
                    claimed,
                })
            }
            Action::GiveUp(why) => return Err(DriveError::NoSource(why)),
        };
    }
}

/// Reads and discards `n` bytes of `stream`; returns what it read past
/// them. A stream that ends first broke.
async fn skip<T: Stream>(stream: &mut T, n: u64) -> Result<Option<bytes::Bytes>, Failure> {
    let mut left = n;
    while left > 0 {
        let Some(mut chunk) = stream.next_chunk().await? else {
            return Err(Failure::Broke(format!(
                "ended {left} bytes before the byte reached"
            )));
        };
        let len = chunk.len() as u64;
        if len > left {
            return Ok(Some(chunk.split_off(left as usize)));
        }
        left -= len;
    }
    Ok(None)
}

impl From<&DriveError> for GrowingError {
    fn from(e: &DriveError) -> Self {
        match e {
            DriveError::NoSource(_) => GrowingError::Abandoned,
            DriveError::Disk(why) => GrowingError::Io(why.clone()),
        }
    }
}
