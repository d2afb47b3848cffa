//! Dial targets and the accept loop. A target is a discovered node (dialed
//! while announced) or a static address (dialed for as long as the daemon
//! runs); each has one task that asks `peers::dial_decision` what to do,
//! dials, runs the link while it lasts, and backs off after failures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pacmesh_proto::NodeId;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::control::{run_connection, Outcome};
use super::key::Role;
use super::tls::{self, SeenId};
use super::Inner;
use crate::mesh::peers::{self, Backoff, BackoffPolicy, DialDecision, TargetFacts, TargetRoom};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Node(NodeId),
    Static(SocketAddr),
}

#[derive(Debug)]
struct Entry {
    /// Tells a task its target was replaced (withdrawn, then announced).
    generation: u64,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    /// Discovered: the announced id. Static: learnt from the certificate.
    node: Option<NodeId>,
    /// The id a dial must find: discovered, the announced one; static, the
    /// configured one (`ID@HOST:PORT`) or the one its first link had.
    pinned: Option<NodeId>,
    /// The last other id found at a pinned static address, so the refusal
    /// is logged once per key rather than on every redial.
    refused: Option<NodeId>,
    /// A link to it came up at least once.
    ever_linked: bool,
    backoff: Backoff,
    cancel: CancellationToken,
}

impl Entry {
    /// What an attempt told of the target's identity: the id its
    /// certificate showed, whether it ever linked, and (a static peer's
    /// first link) the node id to find there from now on.
    fn learn(&mut self, target: &Target, outcome: Outcome, seen: Option<NodeId>) {
        if self.node.is_none() {
            self.node = seen;
        }
        if matches!(outcome, Outcome::WasLinked(_) | Outcome::Duplicate(_)) {
            self.ever_linked = true;
        }
        if let (Outcome::WasLinked(id) | Outcome::Duplicate(id), None) = (outcome, self.pinned) {
            tracing::info!(to = %target_addr(target), node = %id, "static peer pinned to the node id its link had");
            self.pinned = Some(id);
            self.node = Some(id);
        }
    }
}

#[derive(Debug, Default)]
struct Targets {
    entries: HashMap<Target, Entry>,
    generations: u64,
}

impl Targets {
    fn insert(
        &mut self,
        target: Target,
        addrs: Vec<SocketAddr>,
        node: Option<NodeId>,
    ) -> (u64, CancellationToken) {
        let pinned = node;
        self.generations += 1;
        let cancel = CancellationToken::new();
        let entry = Entry {
            generation: self.generations,
            addrs,
            next_addr: 0,
            node,
            pinned,
            refused: None,
            ever_linked: false,
            backoff: Backoff::default(),
            cancel: cancel.clone(),
        };
        if let Some(old) = self.entries.insert(target, entry) {
            old.cancel.cancel();
        }
        (self.generations, cancel)
    }
}

/// The dial targets, their backoff, and the signal that wakes their
/// tasks when a link comes or goes.
pub(crate) struct Dialer {
    targets: Mutex<Targets>,
    policy: BackoffPolicy,
    changed: watch::Sender<u64>,
}

impl Dialer {
    pub(super) fn new(policy: BackoffPolicy) -> Self {
        Dialer {
            targets: Mutex::new(Targets::default()),
            policy,
            changed: watch::Sender::new(0),
        }
    }

    /// Dial targets known now (discovered and static).
    pub(super) fn count(&self) -> usize {
        self.targets.lock().entries.len()
    }

    /// Makes every waiting dial task look again.
    pub(super) fn wake(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Targets> {
    inner.dialer.targets.lock()
}

fn wake(inner: &Inner) {
    inner.dialer.wake();
}

/// Discovery found `id` (again): dial it unless linked; new addresses are
/// tried at once.
pub(crate) fn announce(inner: &Arc<Inner>, id: NodeId, addrs: Vec<SocketAddr>) {
    if inner.shutdown.is_cancelled() {
        return;
    }
    let target = Target::Node(id);
    let mut targets = lock(inner);
    if let Some(entry) = targets.entries.get_mut(&target) {
        if !addrs.is_empty() && entry.addrs != addrs {
            entry.addrs = addrs;
            entry.next_addr = 0;
            entry.backoff = Backoff::default();
            drop(targets);
            wake(inner);
        }
        return;
    }
    let discovered: Vec<TargetFacts> = targets
        .entries
        .iter()
        .filter_map(|(t, e)| match t {
            Target::Node(id) => Some(TargetFacts {
                id: *id,
                failures: e.backoff.failures(),
                ever_linked: e.ever_linked,
            }),
            Target::Static(_) => None,
        })
        .collect();
    match peers::room_for_target(&discovered, peers::MAX_DIAL_TARGETS) {
        TargetRoom::Add => {}
        TargetRoom::Evict(old) => {
            tracing::debug!(peer = %old, new = %id, "dial targets full; dropping one that keeps failing");
            if let Some(entry) = targets.entries.remove(&Target::Node(old)) {
                entry.cancel.cancel();
            }
        }
        TargetRoom::Full => {
            tracing::debug!(peer = %id, "dial targets full; not dialling this peer");
            return;
        }
    }
    let (generation, cancel) = targets.insert(target, addrs, Some(id));
    drop(targets);
    inner
        .tasks
        .spawn(dial_loop(inner.clone(), target, generation, cancel));
}

/// Discovery lost `id`: stop dialing it.
pub(crate) fn withdraw(inner: &Inner, id: NodeId) {
    if let Some(entry) = lock(inner).entries.remove(&Target::Node(id)) {
        entry.cancel.cancel();
    }
}

/// A static peer at `addr`, pinned to `node` when the config names it
/// (`ID@HOST:PORT`), else to the id its first link has.
pub(crate) fn add_static(inner: &Arc<Inner>, addr: SocketAddr, node: Option<NodeId>) {
    if inner.shutdown.is_cancelled() {
        return;
    }
    let target = Target::Static(addr);
    let mut targets = lock(inner);
    if targets.entries.contains_key(&target) {
        return;
    }
    let (generation, cancel) = targets.insert(target, vec![addr], node);
    drop(targets);
    inner
        .tasks
        .spawn(dial_loop(inner.clone(), target, generation, cancel));
}

enum Step {
    Wait(Option<Instant>),
    Dial(SocketAddr, Option<NodeId>),
}

async fn dial_loop(inner: Arc<Inner>, target: Target, generation: u64, cancel: CancellationToken) {
    loop {
        // Subscribed before deciding, so no change in between is missed.
        let mut changed = inner.dialer.changed.subscribe();
        let step = {
            let mut targets = lock(&inner);
            let Some(entry) = targets.entries.get_mut(&target) else {
                return;
            };
            if entry.generation != generation {
                return;
            }
            let linked = entry.node.is_some_and(|id| inner.table.contains(&id));
            let wanted = !cancel.is_cancelled();
            match peers::dial_decision(wanted, linked, &entry.backoff, Instant::now()) {
                DialDecision::Forget => {
                    targets.entries.remove(&target);
                    return;
                }
                DialDecision::Linked => Step::Wait(None),
                DialDecision::WaitUntil(at) => Step::Wait(Some(at)),
                DialDecision::Dial if entry.addrs.is_empty() => Step::Wait(None),
                DialDecision::Dial => {
                    let addr = entry.addrs[entry.next_addr % entry.addrs.len()];
                    Step::Dial(addr, entry.pinned)
                }
            }
        };
        match step {
            Step::Wait(until) => {
                let sleep = async {
                    match until {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = changed.changed() => {}
                    () = sleep => {}
                    () = cancel.cancelled() => return,
                    () = inner.shutdown.cancelled() => return,
                }
            }
            Step::Dial(addr, expected) => {
                let seen = Arc::new(SeenId::default());
                let started = Instant::now();
                let outcome = dial_once(&inner, addr, expected, seen.clone(), &cancel).await;
                if !record(&inner, target, generation, outcome, seen.get(), started) {
                    return;
                }
            }
        }
    }
}

/// Updates the target after an attempt; false when the task should stop.
fn record(
    inner: &Inner,
    target: Target,
    generation: u64,
    outcome: Outcome,
    seen: Option<NodeId>,
    started: Instant,
) -> bool {
    let mut targets = lock(inner);
    let Some(entry) = targets.entries.get_mut(&target) else {
        return false;
    };
    if entry.generation != generation {
        return false;
    }
    entry.learn(&target, outcome, seen);
    let now = Instant::now();
    match outcome {
        Outcome::WasLinked(_) => {
            entry
                .backoff
                .on_link_end(now - started, now, &inner.dialer.policy);
        }
        Outcome::Duplicate(_) => {
            entry.backoff.on_failure(now, &inner.dialer.policy);
        }
        Outcome::Failed
            if pinned_elsewhere(&target, entry.pinned, seen, inner.local)
                && entry.refused != seen =>
        {
            entry.refused = seen;
            entry.backoff.on_failure(now, &inner.dialer.policy);
            entry.next_addr = entry.next_addr.wrapping_add(1);
            tracing::warn!(
                target: super::TARGET,
                to = %target_addr(&target),
                pinned = %entry.pinned.map(|p| p.to_string()).unwrap_or_default(),
                found = %seen.map(|p| p.to_string()).unwrap_or_default(),
                "static peer answered with another key than the one pinned; refusing it \
                 (if its key changed on purpose, restart pacmeshd or write the new \
                 ID@HOST:PORT in `peer`)"
            );
        }
        Outcome::Failed if seen == Some(inner.local) => {
            tracing::warn!(to = %target_addr(&target), "static peer is this host; not dialing it");
            targets.entries.remove(&target);
            return false;
        }
        Outcome::Failed => {
            let at = entry.backoff.on_failure(now, &inner.dialer.policy);
            entry.next_addr = entry.next_addr.wrapping_add(1);
            tracing::debug!(
                to = %target_addr(&target),
                failures = entry.backoff.failures(),
                retry_in_ms = at.saturating_duration_since(now).as_millis() as u64,
                "dial failed; backing off"
            );
        }
    }
    true
}

/// A static peer's dial that found another key than its pinned one (not
/// this host's own).
fn pinned_elsewhere(
    target: &Target,
    pinned: Option<NodeId>,
    seen: Option<NodeId>,
    local: NodeId,
) -> bool {
    matches!(target, Target::Static(_))
        && matches!((pinned, seen), (Some(p), Some(s)) if p != s && s != local)
}

fn target_addr(target: &Target) -> String {
    match target {
        Target::Node(id) => id.to_string(),
        Target::Static(addr) => addr.to_string(),
    }
}

async fn dial_once(
    inner: &Arc<Inner>,
    addr: SocketAddr,
    expected: Option<NodeId>,
    seen: Arc<SeenId>,
    cancel: &CancellationToken,
) -> Outcome {
    let crypto = match tls::client_crypto(&inner.identity, expected, seen) {
        Ok(crypto) => crypto,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "TLS client configuration");
            return Outcome::Failed;
        }
    };
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(inner.transport.clone());
    let connecting = match inner.endpoint.connect_with(config, addr, tls::SERVER_NAME) {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "cannot dial");
            return Outcome::Failed;
        }
    };
    let conn = tokio::select! {
        r = connecting => r,
        () = cancel.cancelled() => return Outcome::Failed,
        () = inner.shutdown.cancelled() => return Outcome::Failed,
    };
    match conn {
        Ok(conn) => run_connection(inner.clone(), conn, Role::Dialer, None).await,
        Err(e) => {
            tracing::debug!(%addr, peer = ?expected, error = %e, "dial failed");
            Outcome::Failed
        }
    }
}
