//! The accept loops and the threads that serve connections.
//!
//! Connections are served by a few threads of their own, each running a
//! current-thread runtime (nginx's worker model): a connection stays on
//! one thread, so a cache hit is parsed, opened and sent without a task
//! ever moving between threads or waking another. On a 2-core machine the
//! daemon's multi-threaded runtime spent about a fifth of a cache hit's
//! CPU in that scheduling. Only quick answers are made there
//! ([`Handler::quick`]); everything that waits (downloads, peers) is
//! answered on the daemon's runtime, where those tasks live.
//!
//! Every connection is tracked, so a shutdown closes idle connections at
//! once, lets responses in flight finish for up to a grace period, then
//! cuts the rest.
//!
//! Connections are admitted by `admit`'s table, shared by all listeners:
//! at the cap the oldest connection still waiting for a request head is
//! closed to make room, and a client refused (every slot busy) gets a
//! `503` written without waiting and is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFuture;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::admit::{self, Admission};
use super::conn::{self, Handler, Limits};

/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most this many serving threads, whatever the core count: a cache
/// on loopback is bound by the client long before.
const MAX_THREADS: usize = 4;

/// Threads each serving thread may start to send pieces of files that are
/// not in the page cache (`send::send_cold`): a slow disk holds these, not
/// the connections. Few, since every thread costs memory, and a disk does
/// not read faster for more readers.
const COLD_SENDERS: usize = 2;

/// How long such a thread waits for more work before it ends.
const COLD_SENDER_IDLE: Duration = Duration::from_secs(5);

/// A refused client is told so at most this often in the log.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// The body of the `503` a client refused at the caps is sent, without
/// waiting for it to read (pacman moves to its next server on a 503).
const BUSY: &str = "too many connections to pacmeshd; try again later\n";

/// A connection handed to a serving thread.
type Accepted = (std::net::TcpStream, SocketAddr, Slot);

/// The open connections of one server, by `admit`'s rules.
type Admitted = Arc<Mutex<admit::Table<CancellationToken>>>;

/// A connection's entry in the admission table: where it says whether it
/// waits for a head (and may be closed for a newcomer), how it learns it
/// was, and whose drop frees the slot.
pub struct Slot {
    table: Admitted,
    id: admit::Id,
    evicted: CancellationToken,
}

impl Slot {
    /// Waiting for a request head (`true`), or busy answering one.
    /// `false`: the connection was evicted meanwhile and must close.
    #[must_use = "an evicted connection must close"]
    pub fn waiting(&self, waiting: bool) -> bool {
        self.table.lock().set_waiting(self.id, waiting)
    }

    /// Resolves when the connection was closed to admit another.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evicted.cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a unit's
/// `LimitNOFILE` sets both; elsewhere the soft one is often 1024) and
/// returns the soft limit then in force.
pub fn open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refused under the unit's syscall filter, where it is not needed.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// What every connection task shares.
struct Shared<H> {
    handler: Arc<H>,
    /// The daemon's runtime, where [`Handler::respond`] runs.
    daemon: Handle,
    limits: Limits,
    shutdown: CancellationToken,
    /// Cancelled when the grace period is over.
    cut: CancellationToken,
    connections: TaskTracker,
}

/// Serves `listeners` with `handler` until `shutdown`, then waits up to
/// `grace` for responses in flight before cutting them. Runs on (and
/// answers slow requests on) the daemon's runtime.
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    listeners: Vec<TcpListener>,
    limits: Limits,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        handler,
        daemon: Handle::current(),
        limits,
        shutdown: shutdown.clone(),
        cut: CancellationToken::new(),
        connections: TaskTracker::new(),
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let mut queues = Vec::new();
    let mut stopped = Vec::new();
    for i in 0..threads {
        let (queue, accepted) = mpsc::unbounded_channel();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || {
                serve_thread(&shared, accepted);
                let _ = done.send(());
            });
        match thread {
            Ok(_) => {
                queues.push(queue);
                stopped.push(finished);
            }
            Err(e) => warn!(error = %e, "cannot start an HTTP thread"),
        }
    }
    if queues.is_empty() {
        warn!("no HTTP thread could start: not serving HTTP");
        return;
    }
    let caps = shared.limits.caps;
    info!(
        connections = caps.total,
        per_client = caps.per_client,
        "http connection caps"
    );
    let table: Admitted = Arc::new(Mutex::new(admit::Table::new(caps)));
    let accepting = TaskTracker::new();
    for listener in listeners {
        let (queues, shutdown) = (queues.clone(), shutdown.clone());
        accepting.spawn(accept(listener, table.clone(), queues, shutdown));
    }
    drop(queues);
    accepting.close();
    accepting.wait().await;
    // The queues are gone: each thread ends once the connections have.
    shared.connections.close();
    if tokio::time::timeout(grace, shared.connections.wait())
        .await
        .is_err()
    {
        warn!(
            grace_s = grace.as_secs(),
            "cutting downloads still running at shutdown"
        );
        shared.cut.cancel();
    }
    for finished in stopped {
        let _ = finished.await;
    }
}

/// Accepts connections until `shutdown`, admits them by `table`, and
/// hands them to the serving threads in turn.
async fn accept(
    listener: TcpListener,
    table: Admitted,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    shutdown: CancellationToken,
) {
    let mut next = 0;
    let mut refused_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(slot) = admit_one(&table, &stream, peer) else {
            if refused_logged.is_none_or(|at| at.elapsed() >= REFUSED_LOG_EVERY) {
                warn!(client = %peer, "http connections at their cap, every one busy: refusing");
                refused_logged = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Moved to the thread's own reactor: out of this one first.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let _ = queues[next % queues.len()].send((stream, peer, slot));
        next += 1;
    }
}

/// Admits a new connection, closing those it evicts; `None` (after the
/// `503`) when it is refused.
fn admit_one(table: &Admitted, stream: &tokio::net::TcpStream, peer: SocketAddr) -> Option<Slot> {
    let evicted = CancellationToken::new();
    let admission = table.lock().admit(peer.ip(), evicted.clone());
    match admission {
        Admission::Admit { id, evicted: old } => {
            if !old.is_empty() {
                debug!(client = %peer, closed = old.len(), "http connections at their cap: closed the oldest waiting");
            }
            old.iter().for_each(CancellationToken::cancel);
            Some(Slot {
                table: table.clone(),
                id,
                evicted,
            })
        }
        Admission::Refuse => {
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{BUSY}",
                BUSY.len()
            );
            let _ = stream.try_write(response.as_bytes());
            None
        }
    }
}

/// One serving thread: a current-thread runtime running the connections
/// handed to it, until its queue closes and every connection has ended.
fn serve_thread<H: Handler>(
    shared: &Arc<Shared<H>>,
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(COLD_SENDERS)
        .thread_keep_alive(COLD_SENDER_IDLE)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "cannot start an HTTP thread's runtime");
            return;
        }
    };
    runtime.block_on(async {
        // Cut by aborting the tasks, not by a cancellation future each of
        // them polls: polling one on every wake-up (every `sendfile` of a
        // large file) cost a lock of its own and one of the token's shared
        // waiter list, bounced between the serving threads' caches.
        let mut running = JoinSet::new();
        let mut queue_open = true;
        while queue_open || !running.is_empty() {
            tokio::select! {
                biased;
                () = shared.cut.cancelled() => {
                    running.abort_all();
                    queue_open = false;
                    while running.join_next().await.is_some() {}
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                accepted = accepted.recv(), if queue_open => match accepted {
                    Some(accepted) => start(shared, &mut running, accepted),
                    None => queue_open = false,
                },
            }
        }
    });
}

/// Starts serving one connection on this thread.
fn start<H: Handler>(shared: &Arc<Shared<H>>, running: &mut JoinSet<()>, accepted: Accepted) {
    let (stream, peer, slot) = accepted;
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(e) => {
            warn!(error = %e, "cannot take a connection over");
            return;
        }
    };
    // Its own token, so connections do not share one waiter list.
    let stop = shared.shutdown.child_token();
    let conn_shared = shared.clone();
    let tracked = shared.connections.track_future(async move {
        let s = &*conn_shared;
        conn::run(stream, peer, &slot, &s.handler, &s.daemon, s.limits, stop).await;
    });
    running.spawn(tracked);
}
