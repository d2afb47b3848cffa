//! The accept loop: incoming connections admitted by `mesh::admission`
//! (a cap on connections that have not finished `Hello`, QUIC Retry under
//! load), each then run as its own task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::control::run_connection;
use super::key::Role;
use super::Inner;
use crate::mesh::admission::Admit;

/// An accepted connection counted in `Inner::admission` until its first
/// exchange ends; dropping it gives the slot back.
pub(crate) struct PendingHello {
    inner: Arc<Inner>,
    addr: IpAddr,
}

impl Drop for PendingHello {
    fn drop(&mut self) {
        self.inner.admission.lock().leave(self.addr);
    }
}

/// The address a source is counted under (an IPv4-mapped IPv6 address as
/// its IPv4 one).
fn source_of(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Accepts connections until shutdown, within `mesh::admission`'s limits
/// (QUIC Retry under load); each runs as its own task.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => i,
            () = inner.shutdown.cancelled() => return,
        };
        let Some(incoming) = incoming else {
            return;
        };
        let addr = incoming.remote_address();
        let source = source_of(addr);
        let decision = {
            let mut admission = inner.admission.lock();
            let decision = admission.decide(source, incoming.remote_address_validated());
            if decision == Admit::Accept {
                admission.enter(source);
            }
            decision
        };
        match decision {
            Admit::Accept => {}
            Admit::Retry if incoming.may_retry() => {
                tracing::debug!(%addr, "incoming connection: asking it to prove its address");
                let _ = incoming.retry();
                continue;
            }
            Admit::Retry | Admit::Refuse(_) => {
                tracing::debug!(%addr, ?decision, "incoming connection refused");
                incoming.refuse();
                continue;
            }
        }
        let pending = PendingHello {
            inner: inner.clone(),
            addr: source,
        };
        let inner2 = inner.clone();
        inner.tasks.spawn(async move {
            let connecting = match incoming.accept() {
                Ok(connecting) => connecting,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "incoming connection failed");
                    return;
                }
            };
            let conn = tokio::select! {
                r = connecting => r,
                () = inner2.shutdown.cancelled() => return,
            };
            match conn {
                Ok(conn) => {
                    run_connection(inner2, conn, Role::Acceptor, Some(pending)).await;
                }
                // A refused certificate lands here (and on the dialer).
                Err(e) => tracing::debug!(%addr, error = %e, "incoming handshake failed"),
            }
        });
    }
}
