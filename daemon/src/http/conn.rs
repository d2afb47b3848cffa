//! One client connection: read a request head (`head`), ask the
//! [`Handler`] for the response, write it (`send`), and again while the
//! connection is kept alive. Pipelined requests are parsed from the bytes
//! left over after the previous head.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use http::{Method, Request, StatusCode, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::admit::Caps;
use super::deadline::Deadline;
use super::head::{self, Head, Refusal};
use super::reply::Reply;
use super::server::Slot;
use super::wire::{self, Connection, Fields};
use super::{send, Body};

/// What answers requests on a connection (never requests with a body:
/// those are refused before they get here).
pub trait Handler: Send + Sync + 'static {
    /// The response, when it can be made at once, without waiting on
    /// anything (a cache hit, a status page): made on the connection's own
    /// thread, from the head as parsed. `None` sends the request to
    /// [`Handler::respond`].
    fn quick(&self, _head: &Head, _peer: SocketAddr) -> Option<Reply> {
        None
    }

    /// The response to anything else, made on the daemon's runtime, where
    /// downloads and peer links live.
    fn respond(
        &self,
        request: &Request<()>,
        peer: SocketAddr,
    ) -> impl Future<Output = Reply> + Send;

    /// Told of every head refused before it reached [`Handler::respond`].
    fn refused(&self, _refusal: Refusal, _peer: SocketAddr) {}
}

/// The limits of a connection: its times, and how many may be open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the end of a response (or the connection's start) to a
    /// complete next head: idle keep-alive and slow heads alike.
    pub head_timeout: Duration,
    /// How long a client may accept no byte of a response before it is
    /// dropped.
    pub write_stall: Duration,
    /// After a response that ends the connection, how long unread request
    /// bytes are drained (so the close does not reset the connection and
    /// destroy the response before the client read it).
    pub linger: Duration,
    /// How many connections are served at once (`admit`).
    pub caps: Caps,
}

/// A client that sends no complete request head for this long is dropped:
/// an idle keep-alive connection, or a head sent slowly or never finished
/// (the timer does not restart on each byte, so a trickle cannot hold a
/// connection longer).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that takes no byte of a response for this long is dropped
/// (the timer restarts with each byte the client takes; pacman gives up on a server after 10 s below 1 byte/s itself).
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// Drain time before closing a connection with a response.
pub const LINGER: Duration = Duration::from_secs(2);

/// At most this many unread bytes are drained before a close.
const LINGER_BYTES: usize = 1024 * 1024;

/// Bytes asked of each read: a request head is about 200 (pacman's,
/// curl's); longer ones take more reads. Every connection holds this much.
const READ_CHUNK: usize = 1024;

impl Limits {
    pub const DEFAULT: Limits = Limits {
        head_timeout: HEAD_TIMEOUT,
        write_stall: WRITE_STALL,
        linger: LINGER,
        caps: Caps::DEFAULT,
    };
}

/// Serves requests on `stream` until the client closes, a limit is hit, a
/// response fails, or `shutdown` (then an idle connection closes at once
/// and a busy one after its response), or while it waits for a head, its
/// `slot` is evicted for a newcomer.
pub async fn run<H: Handler>(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: &Slot,
    handler: &Arc<H>,
    daemon: &Handle,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut head_bytes = Vec::with_capacity(256);
    let mut deadline = Deadline::new(Instant::now() + limits.head_timeout);
    let stopping = shutdown.cancelled();
    let evicted = slot.evicted();
    tokio::pin!(stopping, evicted);
    loop {
        deadline.set(Instant::now() + limits.head_timeout);
        if !slot.waiting(true) {
            return;
        }
        // The next head, from bytes already read (pipelining) or new ones.
        let parsed = loop {
            match head::parse(&input) {
                Ok(None) => {}
                done => break done,
            }
            input.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = stream.read_buf(&mut input) => read,
                () = deadline.reached() => return,
                () = &mut evicted => return,
                () = &mut stopping, if input.is_empty() => return,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        // Evicted between the head's last bytes and here: the table no
        // longer counts this connection, so it must not serve.
        if !slot.waiting(false) {
            return;
        }
        let head = match parsed {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(refusal) => {
                handler.refused(refusal, peer);
                refuse(&mut stream, &mut input, refusal, limits).await;
                return;
            }
        };
        input.advance(head.len);
        let keep_alive = head.keep_alive;
        let asked = Asked {
            version: head.version(),
            head: head.method() == Method::HEAD,
        };
        let reply = match answer(handler, head, peer, daemon).await {
            Ok(reply) => reply,
            Err(Unanswered::Refused(refusal)) => {
                handler.refused(refusal, peer);
                refuse(&mut stream, &mut input, refusal, limits).await;
                return;
            }
            Err(Unanswered::Failed) => return,
        };
        let close = !keep_alive || shutdown.is_cancelled();
        match write(&stream, &mut head_bytes, asked, reply, close, limits).await {
            Ok(true) => {}
            Ok(false) => {
                linger(&mut stream, &mut input, limits).await;
                return;
            }
            Err(e) => {
                debug!(target: "pacmesh::request", client = %peer, error = %e, "connection cut");
                return;
            }
        }
    }
}

/// Why a parsed head got no reply.
enum Unanswered {
    /// Its fields do not fit `http`'s types (never, while httparse and
    /// `http` agree on what a field may hold).
    Refused(Refusal),
    /// The handler's task failed (logged).
    Failed,
}

/// The reply to `head`: made at once on this thread when the handler can
/// ([`Handler::quick`]), else on the daemon's runtime from the full
/// request ([`Handler::respond`]).
async fn answer<H: Handler>(
    handler: &Arc<H>,
    head: Head,
    peer: SocketAddr,
    daemon: &Handle,
) -> Result<Reply, Unanswered> {
    if let Some(reply) = handler.quick(&head, peer) {
        return Ok(reply);
    }
    let request = head.into_request().map_err(Unanswered::Refused)?;
    let handler = handler.clone();
    let answer = daemon.spawn(async move { handler.respond(&request, peer).await });
    answer.await.map_err(|e| {
        warn!(target: "pacmesh::request", client = %peer, error = %e, "request handler failed");
        Unanswered::Failed
    })
}

/// What of a request its response's framing depends on.
#[derive(Clone, Copy)]
struct Asked {
    version: Version,
    /// A HEAD request: the head only.
    head: bool,
}

/// Writes `reply`; true when the connection stays open.
async fn write(
    stream: &TcpStream,
    head_bytes: &mut Vec<u8>,
    asked: Asked,
    reply: Reply,
    close: bool,
    limits: Limits,
) -> std::io::Result<bool> {
    let (status, body, close) = match reply {
        Reply::Http(response) => {
            let (parts, body) = response.into_parts();
            let close = encode(
                head_bytes,
                asked,
                parts.status,
                &parts.headers,
                &body,
                close,
            );
            (parts.status, body, close)
        }
        Reply::File(file) => {
            let close = encode(
                head_bytes,
                asked,
                file.head.status,
                &file.head,
                &file.body,
                close,
            );
            (file.head.status, file.body, close)
        }
    };
    let with_body = wire::status_has_body(status) && !asked.head;
    send::response(stream, head_bytes, body, with_body, limits.write_stall).await?;
    Ok(!close)
}

/// Puts the head of a response with `status`, `fields` and `body` in
/// `out`; true when the connection closes after it.
fn encode(
    out: &mut Vec<u8>,
    asked: Asked,
    status: StatusCode,
    fields: &impl Fields,
    body: &Body,
    close: bool,
) -> bool {
    let with_body = wire::status_has_body(status);
    let length = if with_body {
        fields.stated_length().or(body.known_length())
    } else {
        None
    };
    // A body of unknown length ends where the connection does.
    let close = close || (with_body && length.is_none());
    let connection = if close {
        Connection::Close
    } else if asked.version == Version::HTTP_10 {
        Connection::KeepAlive
    } else {
        Connection::Persistent
    };
    out.clear();
    let date = wire::date_now();
    wire::encode_head(out, status, fields, length, connection, &date);
    close
}

/// Answers a refused head with its status and closes the connection.
async fn refuse(stream: &mut TcpStream, input: &mut BytesMut, refusal: Refusal, limits: Limits) {
    let reason = refusal.reason();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut bytes = Vec::with_capacity(256);
    let date = wire::date_now();
    let length = Some(reason.len() as u64);
    wire::encode_head(
        &mut bytes,
        refusal.status(),
        &headers,
        length,
        Connection::Close,
        &date,
    );
    bytes.extend_from_slice(reason.as_bytes());
    let body = Body::empty();
    if send::response(stream, &bytes, body, false, limits.write_stall)
        .await
        .is_ok()
    {
        linger(stream, input, limits).await;
    }
}

/// Closes our side, then reads and drops what the client still sends
/// until it closes too, [`Limits::linger`] passes, or [`LINGER_BYTES`]
/// came: closing with unread bytes would reset the connection, and a reset
/// can destroy the response before the client read it.
async fn linger(stream: &mut TcpStream, input: &mut BytesMut, limits: Limits) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut drained = 0;
        while drained < LINGER_BYTES {
            input.clear();
            input.reserve(READ_CHUNK);
            match stream.read_buf(input).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(limits.linger, drain).await;
}
