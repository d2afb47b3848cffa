//! One link's life, from a finished TLS handshake to its close: the first
//! exchange, registration in the peer table (settling duplicates), then
//! the control stream — our digest, deltas and (to version 2 peers)
//! announced WAN downloads out, the peer's in — until either end stops.

use std::sync::Arc;
use std::time::Instant;

use pacmesh_proto::{DeltaOutcome, Hello, Message, NodeId, MAX_DIGEST_PACKAGES, PROTOCOL_VERSION};
use quinn::Connection;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::accept::PendingHello;
use super::close::{describe, peer_code, CloseCode};
use super::frames::{FrameReader, FrameWriter, ReadError, WriteError};
use super::hello::{greet, Greeted, HelloError};
use super::key::Role;
use super::{Inner, Link, Registration, TARGET};
use crate::mesh::fetching::{announces_to, OwnFetches, SentFetches};
use crate::mesh::peers::{self, LinkRank};

/// Wait for the peer to close after our `Goodbye`, before closing anyway.
const GOODBYE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How a connection ended, for the dialer's backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was the link to `peer` for a while.
    WasLinked(NodeId),
    /// Another link to `peer` survives instead.
    Duplicate(NodeId),
    /// It never became a link.
    Failed,
}

/// Why a registered link ended.
#[derive(Debug)]
enum End {
    Goodbye,
    ShuttingDown,
    Protocol(String),
    Silent,
    Closed(quinn::ConnectionError),
    Read(ReadError),
    Write(WriteError),
}

/// What the reader asks the writer to send.
#[derive(Debug, Clone, Copy)]
enum Cmd {
    /// The peer asked for a resync: a fresh digest.
    SendDigest,
    /// A delta is missing from the peer: ask it for a digest.
    AskResync,
}

/// Runs a connection whose TLS handshake finished, until it closes.
/// `pending` (an accepted connection's admission slot) is given back once
/// the first exchange ended, either way.
pub async fn run_connection(
    inner: Arc<Inner>,
    conn: Connection,
    role: Role,
    pending: Option<PendingHello>,
) -> Outcome {
    let addr = conn.remote_address();
    let Some(peer) = super::tls::peer_node_id(&conn) else {
        // The verifiers parsed the certificate already; cannot happen.
        tracing::warn!(%addr, "peer certificate unreadable after the handshake");
        CloseCode::Protocol.close(&conn);
        return Outcome::Failed;
    };
    let span = tracing::info_span!("link", peer = %peer, %addr, ?role);
    run_link(inner, conn, role, peer, pending)
        .instrument(span)
        .await
}

async fn run_link(
    inner: Arc<Inner>,
    conn: Connection,
    role: Role,
    peer: NodeId,
    pending: Option<PendingHello>,
) -> Outcome {
    let greeted = match first_exchange(&inner, &conn, role, peer, pending).await {
        Ok(greeted) => greeted,
        Err(outcome) => return outcome,
    };
    let dialer = match role {
        Role::Dialer => inner.local,
        Role::Acceptor => peer,
    };
    let rank = LinkRank {
        dialer,
        tiebreak: greeted.tiebreak,
    };
    let link = Arc::new(Link::new(peer, conn.clone(), rank, greeted.hello));
    match inner.register(&link) {
        Registration::Registered => {}
        Registration::Duplicate => {
            tracing::debug!("another link to this peer survives; closing this one");
            CloseCode::Duplicate.close(&conn);
            return Outcome::Duplicate(peer);
        }
        Registration::Full => {
            tracing::warn!(target: TARGET, peer = %peer, max = inner.table.max(), "link refused: too many peers");
            CloseCode::TooManyPeers.close(&conn);
            return Outcome::Failed;
        }
    }
    tracing::info!(target: TARGET, peer = %peer, addr = %link.addr, "link up");
    let end = exchange(&inner, &link, greeted.reader, greeted.writer).await;
    link_ended(&inner, &link, end)
}

/// The first exchange (`Hello`, the mesh-key proof) within the idle
/// timeout; the connection closed with the reason when it fails.
/// `pending` (the admission slot) is given back once it ended either way.
async fn first_exchange(
    inner: &Inner,
    conn: &Connection,
    role: Role,
    peer: NodeId,
    pending: Option<PendingHello>,
) -> Result<Greeted, Outcome> {
    let ours = Hello {
        node_id: inner.local,
        version: PROTOCOL_VERSION,
        archs: inner.archs.clone(),
        mesh_proof: None,
    };
    let greeting = greet(conn, role, peer, ours, inner.mesh_key.as_ref());
    let greeted = tokio::select! {
        r = tokio::time::timeout(inner.idle_timeout, greeting) => r,
        () = inner.shutdown.cancelled() => {
            CloseCode::Goodbye.close(conn);
            return Err(Outcome::Failed);
        }
    };
    drop(pending);
    match greeted {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(e)) => {
            log_refusal(&e);
            if let Some(code) = e.close_code() {
                code.close(conn);
            }
            Err(Outcome::Failed)
        }
        Err(_) => {
            tracing::warn!(reason = CloseCode::HelloTimeout.reason(), "link refused");
            CloseCode::HelloTimeout.close(conn);
            Err(Outcome::Failed)
        }
    }
}

/// A registered link's exchange ended: forget it, say why, close it with
/// the matching code.
fn link_ended(inner: &Inner, link: &Arc<Link>, end: End) -> Outcome {
    // Once stopping, however the link ended (often the peer closing after
    // our Goodbye), it ended because we stop.
    let end = if inner.shutdown.is_cancelled() {
        End::ShuttingDown
    } else {
        end
    };
    // Closed as a duplicate, by us or by the peer: another link between
    // the two hosts survives (at our end it may register a moment later).
    let displaced = link.closed_with() == Some(CloseCode::Duplicate)
        || matches!(&end, End::Closed(e) if peer_code(e) == Some(CloseCode::Duplicate));
    inner.unregister(link);
    log_end(link, &end, displaced);
    match &end {
        End::ShuttingDown | End::Goodbye => link.close(CloseCode::Goodbye),
        End::Protocol(_) | End::Read(ReadError::Decode(_)) => link.close(CloseCode::Protocol),
        End::Silent => link.close(CloseCode::Silent),
        End::Closed(_) | End::Read(_) | End::Write(_) => {}
    }
    if displaced {
        Outcome::Duplicate(link.peer)
    } else {
        Outcome::WasLinked(link.peer)
    }
}

/// Logs why a link never came up: a warning when either end refused it
/// (mesh key, version, a bad frame), debug for plain network failures.
fn log_refusal(e: &HelloError) {
    let peer_said = match e {
        HelloError::Connection(c)
        | HelloError::Read(ReadError::Connection(c))
        | HelloError::Write(WriteError::Connection(c)) => Some(c),
        _ => None,
    };
    match (peer_said, peer_said.and_then(peer_code)) {
        (_, Some(CloseCode::Duplicate)) => tracing::debug!("peer kept another link"),
        (Some(c), Some(_)) => tracing::warn!(reason = %describe(c), "link refused"),
        (None, _) if e.close_code().is_some() => tracing::warn!(reason = %e, "link refused"),
        _ => tracing::debug!(reason = %e, "link failed before hello"),
    }
}

fn log_end(link: &Link, end: &End, displaced: bool) {
    if displaced {
        tracing::debug!("replaced by a duplicate link");
        return;
    }
    let reason = match end {
        End::Goodbye => "peer said goodbye".to_owned(),
        End::ShuttingDown => "shutting down".to_owned(),
        End::Protocol(why) => why.clone(),
        End::Silent => CloseCode::Silent.reason().to_owned(),
        End::Closed(e)
        | End::Read(ReadError::Connection(e))
        | End::Write(WriteError::Connection(e)) => match link.closed_with() {
            Some(code) => code.reason().to_owned(),
            None => describe(e),
        },
        End::Read(e) => e.to_string(),
        End::Write(e) => e.to_string(),
    };
    if matches!(end, End::Protocol(_) | End::Read(ReadError::Decode(_))) {
        tracing::warn!(target: TARGET, peer = %link.peer, %reason, "link closed: bad frame from peer");
    } else {
        tracing::info!(target: TARGET, peer = %link.peer, %reason, "link down");
    }
}

/// The control stream after the first exchange, and the peer's transfer
/// streams.
async fn exchange(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    reader: FrameReader,
    writer: FrameWriter,
) -> End {
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    tokio::select! {
        end = read_loop(inner, link, reader, cmd_tx) => end,
        end = write_loop(inner, link, writer, cmd_rx) => end,
        // Every later stream the peer opens is a transfer (`serve`).
        e = super::serve::accept_transfers(inner.clone(), link.clone()) => End::Closed(e),
        e = link.conn.closed() => End::Closed(e),
        // The writer sends Goodbye when idle; a peer that stopped reading
        // must not hold the shutdown up.
        () = async {
            inner.shutdown.cancelled().await;
            tokio::time::sleep(GOODBYE_GRACE).await;
        } => End::ShuttingDown,
    }
}

async fn read_loop(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    mut reader: FrameReader,
    cmds: mpsc::Sender<Cmd>,
) -> End {
    let mut tick = tokio::time::interval(inner.keep_alive);
    loop {
        let message = tokio::select! {
            m = reader.next() => m,
            _ = tick.tick() => {
                let now = Instant::now();
                if !peers::is_alive(link.heard(now), now, inner.idle_timeout) {
                    return End::Silent;
                }
                continue;
            }
        };
        let message = match message {
            Ok(Some(m)) => m,
            Ok(None) => return End::Protocol("control stream finished without Goodbye".into()),
            Err(ReadError::Decode(e)) => return End::Protocol(e.to_string()),
            Err(e) => return End::Read(e),
        };
        link.heard(Instant::now());
        if let Some(end) = on_message(inner, link, message, &cmds) {
            return end;
        }
    }
}

/// Takes in one message from the peer's control stream; the link's end
/// when the message ends it.
fn on_message(
    inner: &Inner,
    link: &Link,
    message: Message,
    cmds: &mpsc::Sender<Cmd>,
) -> Option<End> {
    match message {
        Message::Digest(digest) => link.write_digest().on_digest(digest),
        Message::Delta(delta) => {
            let outcome = link.write_digest().on_delta(&delta);
            match outcome {
                DeltaOutcome::NeedResync => {
                    tracing::debug!(seq = delta.seq, "delta gap; asking for a resync");
                    // A full queue already holds a request that will do.
                    let _ = cmds.try_send(Cmd::AskResync);
                }
                DeltaOutcome::TooLarge => {
                    return Some(End::Protocol(format!(
                        "deltas grow the digest past {MAX_DIGEST_PACKAGES} packages"
                    )))
                }
                DeltaOutcome::Applied | DeltaOutcome::Stale | DeltaOutcome::AwaitingResync => {}
            }
        }
        Message::ResyncRequest => {
            let _ = cmds.try_send(Cmd::SendDigest);
        }
        Message::Goodbye => return Some(End::Goodbye),
        Message::Hello(_) => {
            return Some(End::Protocol("second Hello on the control stream".into()))
        }
        Message::FetchRequest(_) | Message::FetchHeader(_) => {
            return Some(End::Protocol("fetch message on the control stream".into()))
        }
        Message::Fetching(fetching) => match link.fetches().on_fetching(fetching, Instant::now()) {
            Ok(true) => inner.fetchers_changed.send_modify(|n| *n += 1),
            Ok(false) => {}
            Err(e) => return Some(End::Protocol(e.to_string())),
        },
        Message::FetchEnded(ended) => {
            if link.fetches().on_ended(&ended.file_name) {
                inner.fetchers_changed.send_modify(|n| *n += 1);
            }
        }
    }
    None
}

async fn write_loop(
    inner: &Arc<Inner>,
    link: &Link,
    mut writer: FrameWriter,
    mut cmds: mpsc::Receiver<Cmd>,
) -> End {
    let (digest, mut deltas) = inner.publisher.subscribe();
    if let Err(e) = writer.send(&Message::Digest(digest)).await {
        return End::Write(e);
    }
    // A version 1 peer would close the link on an announcement's tag.
    let mut own = announces_to(link.version).then(|| inner.own_fetches.subscribe());
    let mut sent = SentFetches::default();
    // Right after the digest: every download under way now.
    let mut out = match &mut own {
        Some(own) => sent.sync(&own.borrow_and_update()),
        None => Vec::new(),
    };
    loop {
        for message in out.drain(..) {
            if let Err(e) = writer.send(&message).await {
                return End::Write(e);
            }
        }
        let message = tokio::select! {
            biased;
            () = inner.shutdown.cancelled() => {
                if writer.send(&Message::Goodbye).await.is_ok() {
                    writer.finish();
                }
                // Wait (bounded by `exchange`) for the peer to close.
                std::future::pending().await
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::AskResync) => Message::ResyncRequest,
                Some(Cmd::SendDigest) => {
                    let (digest, rx) = inner.publisher.subscribe();
                    deltas = rx;
                    Message::Digest(digest)
                }
                // The reader ended: `exchange` is returning already.
                None => std::future::pending().await,
            },
            // Before deltas: a peer missing a file should hear of our
            // download of it as early as it can.
            own = own_changed(&mut own) => {
                out = sent.sync(&own.borrow_and_update());
                continue;
            }
            delta = deltas.recv() => match delta {
                Ok(delta) => Message::Delta((*delta).clone()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "fell behind the index; sending a full digest");
                    let (digest, rx) = inner.publisher.subscribe();
                    deltas = rx;
                    Message::Digest(digest)
                }
                // The publisher outlives every link (we hold it).
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            },
        };
        if let Err(e) = writer.send(&message).await {
            return End::Write(e);
        }
    }
}

/// Waits until this host's announced downloads change; never, for a peer
/// that is not told of them.
async fn own_changed(
    own: &mut Option<watch::Receiver<OwnFetches>>,
) -> &mut watch::Receiver<OwnFetches> {
    let Some(rx) = own else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        // The sender lives in `Inner`, as long as every link: not reached.
        std::future::pending::<()>().await;
    }
    rx
}
