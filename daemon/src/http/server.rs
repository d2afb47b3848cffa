//! The accept loops and the life of connections: one task per connection
//! (`conn::run`), all tracked, so a shutdown closes idle connections at
//! once, lets responses in flight finish for up to a grace period, then
//! cuts the rest.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::conn::{self, Handler, Limits};

/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `listeners` with `handler` until `shutdown`, then waits up to
/// `grace` for responses in flight before cutting them.
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    listeners: Vec<TcpListener>,
    limits: Limits,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let cut = CancellationToken::new();
    let accepting = TaskTracker::new();
    for listener in listeners {
        let (handler, connections, cut, shutdown) = (
            handler.clone(),
            connections.clone(),
            cut.clone(),
            shutdown.clone(),
        );
        accepting.spawn(async move {
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
                let (handler, cut) = (handler.clone(), cut.clone());
                // Its own token, so connections do not share one waiter list.
                let stop = shutdown.child_token();
                connections.spawn(async move {
                    tokio::select! {
                        () = cut.cancelled() => {}
                        () = conn::run(stream, peer, &*handler, limits, stop) => {}
                    }
                });
            }
        });
    }
    accepting.close();
    accepting.wait().await;
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        warn!(
            grace_s = grace.as_secs(),
            "cutting downloads still running at shutdown"
        );
        cut.cancel();
        connections.wait().await;
    }
}
