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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

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

/// A connection handed to a serving thread.
type Accepted = (std::net::TcpStream, SocketAddr);

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
    let accepting = TaskTracker::new();
    for listener in listeners {
        let (queues, shutdown) = (queues.clone(), shutdown.clone());
        accepting.spawn(accept(listener, queues, shutdown));
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

/// Accepts connections until `shutdown`, handing them to the serving
/// threads in turn.
async fn accept(
    listener: TcpListener,
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    shutdown: CancellationToken,
) {
    let mut next = 0;
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
        let _ = stream.set_nodelay(true);
        // Moved to the thread's own reactor: out of this one first.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let _ = queues[next % queues.len()].send((stream, peer));
        next += 1;
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
        while let Some((stream, peer)) = accepted.recv().await {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    warn!(error = %e, "cannot take a connection over");
                    continue;
                }
            };
            let conn_shared = shared.clone();
            // Its own token, so connections do not share one waiter list.
            let stop = shared.shutdown.child_token();
            shared.connections.spawn(async move {
                let s = &*conn_shared;
                tokio::select! {
                    () = s.cut.cancelled() => {}
                    () = conn::run(stream, peer, &s.handler, &s.daemon, s.limits, stop) => {}
                }
            });
        }
        // Tasks still running on this runtime would die with it.
        shared.connections.wait().await;
    });
}
