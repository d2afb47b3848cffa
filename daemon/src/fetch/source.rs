//! Where bytes come from, behind one small trait: [`Sources`] opens a
//! source from a byte offset and settles claims; the real implementation
//! ([`MeshSources`]) asks the mesh (holders and fetching peers) and the
//! mirror client, a fake one drives the engine's tests.

use std::future::Future;

use bytes::Bytes;
use pacmesh_proto::NodeId;

use super::claim;
use super::machine::{Claimant, Failure, SourceId};
use crate::mesh::inflight::Announcement;
use crate::mesh::link::{FetchError, Mesh, PeerDownload};
use crate::mirror_client::{MirrorBody, MirrorClient, MirrorError};

/// A source's answer to an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The whole file's size.
    pub size: u64,
    /// The offset of the first byte that will come.
    pub start: u64,
}

/// An open source's bytes.
pub trait Stream: Send {
    /// The next bytes; `Ok(None)` at the end of the source's stream.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, Failure>> + Send;

    /// The next bytes as one or more chunks, in order, appended to `out`;
    /// `Ok(false)` at the end. A peer's bytes arrive in packet-sized
    /// chunks: these are hashed and written as they are instead of being
    /// copied into one (a tenth of a receiving daemon's CPU).
    fn next_chunks(
        &mut self,
        out: &mut Vec<Bytes>,
    ) -> impl Future<Output = Result<bool, Failure>> + Send {
        async move { Ok(pushed(self.next_chunk().await?, out)) }
    }
}

/// Every source a download may use.
pub trait Sources: Send + Sync + 'static {
    type Stream: Stream;

    /// Opens `source` for `name` from byte `offset`. `size` is what the
    /// database says, when it knows (a mirror may not send it).
    fn open(
        &self,
        source: SourceId,
        name: &str,
        offset: u64,
        size: Option<u64>,
    ) -> impl Future<Output = Result<(Self::Stream, Opened), Failure>> + Send;

    /// Settles who fetches `name` from the WAN (`fetch::claim`), leaving
    /// the peers in `exclude` out (fetchers that failed us).
    fn claim(
        &self,
        name: &str,
        size: u64,
        exclude: &[NodeId],
    ) -> impl Future<Output = Claimant> + Send;

    /// Tells the other hosts our WAN fetch of `name` ended.
    fn ended(&self, name: &str, complete: bool);

    /// These peers sent bytes that did not verify.
    fn penalise(&self, peers: &[NodeId], name: &str, why: &str);
}

/// The mesh and the repo's mirrors.
#[derive(Clone, Debug)]
pub struct MeshSources {
    pub mesh: Mesh,
    pub client: MirrorClient,
    /// The file's URL at each mirror, in pacman.conf's order.
    pub mirror_urls: Vec<String>,
}

/// A stream from a peer or a mirror.
#[derive(Debug)]
pub enum SourceStream {
    Peer(PeerDownload),
    Mirror(MirrorBody),
}

impl Stream for SourceStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        match self {
            SourceStream::Peer(download) => {
                let next = download.next_chunk().await;
                next.map_err(|e| peer_broke(download, e))
            }
            SourceStream::Mirror(body) => body
                .next_chunk()
                .await
                .map_err(|e| Failure::Broke(e.to_string())),
        }
    }

    async fn next_chunks(&mut self, out: &mut Vec<Bytes>) -> Result<bool, Failure> {
        match self {
            SourceStream::Peer(download) => {
                let next = download.next_chunks(out).await;
                next.map_err(|e| peer_broke(download, e))
            }
            SourceStream::Mirror(_) => Ok(pushed(self.next_chunk().await?, out)),
        }
    }
}

/// `chunk` appended to `out`; false at the end (`None`).
fn pushed(chunk: Option<Bytes>, out: &mut Vec<Bytes>) -> bool {
    chunk.map(|chunk| out.push(chunk)).is_some()
}

/// A peer download's failure: once bytes came, one that would have made
/// the peer unavailable broke the stream instead.
fn peer_broke(download: &PeerDownload, e: FetchError) -> Failure {
    match peer_failure(e) {
        Failure::Unavailable(why) if download.received() > 0 => Failure::Broke(why),
        other => other,
    }
}

fn peer_failure(e: FetchError) -> Failure {
    match e {
        FetchError::NoLink | FetchError::Refused(_) => Failure::Unavailable(e.to_string()),
        FetchError::Stalled | FetchError::TooSlow { .. } | FetchError::Link(_) => {
            Failure::Broke(e.to_string())
        }
        FetchError::Protocol(_) => Failure::Bad(e.to_string()),
        FetchError::SourceBad => Failure::SourceBad,
    }
}

fn mirror_failure(e: MirrorError) -> Failure {
    Failure::Unavailable(e.to_string())
}

impl Sources for MeshSources {
    type Stream = SourceStream;

    async fn open(
        &self,
        source: SourceId,
        name: &str,
        offset: u64,
        size: Option<u64>,
    ) -> Result<(SourceStream, Opened), Failure> {
        match source {
            SourceId::Holder(peer) | SourceId::Fetcher(peer) => {
                let download = if matches!(source, SourceId::Holder(_)) {
                    self.mesh.fetch(peer, name, offset).await
                } else {
                    // Paced by the peer's WAN: a longer stall limit.
                    self.mesh.fetch_growing(peer, name, offset).await
                }
                .map_err(peer_failure)?;
                let opened = Opened {
                    size: download.size,
                    start: offset,
                };
                Ok((SourceStream::Peer(download), opened))
            }
            SourceId::Mirror(i) => {
                open_mirror(&self.client, &self.mirror_urls, i, offset, size).await
            }
        }
    }

    async fn claim(&self, name: &str, size: u64, exclude: &[NodeId]) -> Claimant {
        let me = self.mesh.node_id();
        let fetchers = || -> Vec<NodeId> {
            self.mesh
                .fetchers(name)
                .iter()
                .map(|f| f.node)
                .filter(|n| !exclude.contains(n))
                .collect()
        };
        // Someone fetches it already: join the one every joiner picks.
        let fetching = fetchers();
        if !fetching.is_empty() {
            return Claimant::Peer(claim::winner_among(&fetching, name));
        }
        self.mesh.announce(Announcement::Fetching {
            name: name.to_owned(),
            size,
        });
        if !self.mesh.has_links() {
            // Nobody to hear the claim or make one (a caching mirror on its
            // own): no window to wait out. A peer linking later is told of
            // the fetch when its link comes up.
            return Claimant::Us;
        }
        // A claim after the fetch we joined failed: see `FAILOVER_CLAIM_WINDOW`.
        tokio::time::sleep(claim::window(!exclude.is_empty())).await;
        let claimants = fetchers();
        let winner = claim::winner(me, &claimants, name);
        if winner != me {
            tracing::debug!(file = name, %winner, "another host claimed this fetch; joining it");
            self.ended(name, false);
            return Claimant::Peer(winner);
        }
        // Every other claimant ranks worse: one whose window closed before
        // our claim reached it is fetching already (crossed claims).
        let started = self.fetching_among(&claimants, name).await;
        if started.is_empty() {
            return Claimant::Us;
        }
        let fetcher = claim::winner_among(&started, name);
        tracing::info!(file = name, %fetcher, "our claim crossed a worse-ranked host's fetch; joining it");
        self.ended(name, false);
        Claimant::Peer(fetcher)
    }

    fn ended(&self, name: &str, complete: bool) {
        self.mesh.announce(Announcement::Ended {
            name: name.to_owned(),
            complete,
        });
    }

    fn penalise(&self, peers: &[NodeId], name: &str, why: &str) {
        for peer in peers {
            tracing::warn!(%peer, file = name, why, "peer sent bytes that do not verify; penalised");
            self.mesh.penalise(*peer, format!("{name}: {why}"));
        }
    }
}

impl MeshSources {
    /// Which of `claimants` (at most [`claim::MAX_PROBES`]) say they are
    /// fetching `name` on a claim they won; all asked at once.
    async fn fetching_among(&self, claimants: &[NodeId], name: &str) -> Vec<NodeId> {
        let mut asking = tokio::task::JoinSet::new();
        for &peer in claimants.iter().take(claim::MAX_PROBES) {
            let (mesh, name) = (self.mesh.clone(), name.to_owned());
            asking.spawn(async move {
                let fetching = mesh.is_fetching(peer, &name, claim::PROBE_WAIT).await;
                fetching.then_some(peer)
            });
        }
        let mut fetching = Vec::new();
        while let Some(answer) = asking.join_next().await {
            fetching.extend(answer.ok().flatten());
        }
        fetching
    }
}

/// Opens the `i`-th of `urls` from byte `offset`.
async fn open_mirror(
    client: &MirrorClient,
    urls: &[String],
    i: usize,
    offset: u64,
    size: Option<u64>,
) -> Result<(SourceStream, Opened), Failure> {
    let url = urls
        .get(i)
        .ok_or_else(|| Failure::Unavailable(format!("no mirror {i}")))?;
    let body = client.get_from(url, offset).await.map_err(mirror_failure)?;
    let size = body
        .size
        .or(size)
        .ok_or_else(|| Failure::Unavailable(format!("{url}: the mirror gave no size")))?;
    let opened = Opened {
        size,
        start: body.start,
    };
    Ok((SourceStream::Mirror(body), opened))
}

/// The repo's mirrors only, no mesh: a full mirror's sync (`fullsync`),
/// also run from a terminal with no daemon. Its fetches are claimed by
/// nobody else.
#[derive(Clone, Debug)]
pub struct MirrorSources {
    pub client: MirrorClient,
    /// The file's URL at each mirror, in order.
    pub mirror_urls: Vec<String>,
}

impl Sources for MirrorSources {
    type Stream = SourceStream;

    async fn open(
        &self,
        source: SourceId,
        name: &str,
        offset: u64,
        size: Option<u64>,
    ) -> Result<(SourceStream, Opened), Failure> {
        let SourceId::Mirror(i) = source else {
            return Err(Failure::Unavailable(format!("{name}: mirrors only")));
        };
        open_mirror(&self.client, &self.mirror_urls, i, offset, size).await
    }

    async fn claim(&self, _name: &str, _size: u64, _exclude: &[NodeId]) -> Claimant {
        Claimant::Us
    }

    fn ended(&self, _name: &str, _complete: bool) {}

    fn penalise(&self, _peers: &[NodeId], _name: &str, _why: &str) {}
}
