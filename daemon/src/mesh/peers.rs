//! The pure peer-table decisions: when to dial a peer again (exponential
//! backoff), whether a link still counts as linked, and which of two links
//! to the same peer survives. No sockets and no `Instant::now()` here: the
//! link code passes `now` in, so every rule is a plain `#[test]`.

use std::time::{Duration, Instant};

use pacmesh_proto::NodeId;

/// How long to wait before dialing a peer again after failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// The wait doubles per failure up to this.
    pub max: Duration,
    /// A link that lasted this long starts the schedule over when it ends;
    /// one that drops sooner counts as one more failure, so a peer whose
    /// links keep failing right after the handshake is not redialed in a
    /// tight loop.
    pub stable: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(10),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` failures in a row (none after zero).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // 2^(failures-1), saturating long before a u32 shift overflows.
        let factor = 1u32 << (failures - 1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Dial attempts to one target: failures in a row and the earliest time
/// of the next attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    /// Records a failed attempt (or a link that ended) at `now`; returns
    /// when the next attempt may start.
    pub fn on_failure(&mut self, now: Instant, policy: &BackoffPolicy) -> Instant {
        self.failures = self.failures.saturating_add(1);
        let at = now + policy.delay(self.failures);
        self.not_before = Some(at);
        at
    }

    /// A link came up: the next loss starts the schedule from the start.
    pub fn on_linked(&mut self) {
        *self = Backoff::default();
    }

    /// A link that lasted `lasted` ended at `now`; returns when to dial
    /// again.
    pub fn on_link_end(
        &mut self,
        lasted: Duration,
        now: Instant,
        policy: &BackoffPolicy,
    ) -> Instant {
        if lasted >= policy.stable {
            self.on_linked();
        }
        self.on_failure(now, policy)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }
}

/// What a dial target's task should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialDecision {
    /// Dial now.
    Dial,
    /// Nothing until this time (or until something changes).
    WaitUntil(Instant),
    /// A link to the peer is up: nothing while it lasts.
    Linked,
    /// Not announced and not static any more: drop the target.
    Forget,
}

/// `wanted`: still announced by discovery, or static. `linked`: a link to
/// the target's node is registered (by whichever side dialed).
pub fn dial_decision(wanted: bool, linked: bool, backoff: &Backoff, now: Instant) -> DialDecision {
    if !wanted {
        return DialDecision::Forget;
    }
    if linked {
        return DialDecision::Linked;
    }
    match backoff.not_before {
        Some(at) if at > now => DialDecision::WaitUntil(at),
        _ => DialDecision::Dial,
    }
}

/// What both ends of a link know about it and agree on, to settle which of
/// two links between the same two hosts survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRank {
    /// The node that dialed this link.
    pub dialer: NodeId,
    /// Equal at both ends, different per connection: TLS exporter
    /// material. Settles two links dialed by the same node.
    pub tiebreak: [u8; 32],
}

/// Which of two links to one peer to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Existing,
    New,
}

/// The link dialed by the smaller node id survives; between two links
/// dialed by the same node, the one with the smaller tiebreak. Both hosts
/// compute the same answer from the same facts, whatever order the links
/// came up in on each side, so both close the same link.
pub fn resolve_duplicate(existing: &LinkRank, new: &LinkRank) -> Keep {
    if (new.dialer, new.tiebreak) < (existing.dialer, existing.tiebreak) {
        Keep::New
    } else {
        Keep::Existing
    }
}

/// A link's progress, as far as liveness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFacts {
    /// The peer's first `Digest` arrived.
    pub has_digest: bool,
    /// The last time anything arrived from the peer (a frame, or any QUIC
    /// packet such as a keep-alive answer).
    pub last_heard: Instant,
}

/// A link counts as linked once the peer's digest arrived and it has been
/// heard from within `idle_timeout`. QUIC closes a silent connection at the
/// idle timeout itself; this keeps the peer table honest in between.
pub fn counts_as_linked(facts: &LinkFacts, now: Instant, idle_timeout: Duration) -> bool {
    facts.has_digest && is_alive(facts.last_heard, now, idle_timeout)
}

/// Heard from within `idle_timeout`.
pub fn is_alive(last_heard: Instant, now: Instant, idle_timeout: Duration) -> bool {
    now.saturating_duration_since(last_heard) <= idle_timeout
}

/// Discovered peers dialled at once (one task each). Past it a newcomer
/// takes the place of a target that never linked and keeps failing, or is
/// not dialled: announcements are free to invent.
pub const MAX_DIAL_TARGETS: usize = 256;

/// What a dial target has shown so far, for [`room_for_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFacts {
    pub id: NodeId,
    /// Failed dials in a row.
    pub failures: u32,
    /// Whether a link to it ever came up.
    pub ever_linked: bool,
}

/// Whether a newly discovered peer is dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRoom {
    Add,
    /// Dial it instead of this target.
    Evict(NodeId),
    /// Not dialled: every target linked once or has not failed yet.
    Full,
}

/// Room for one more discovered target among `targets` (the discovered
/// ones, static peers not counted), at most `cap`. The target evicted is
/// the one that never linked with the most failures (then the highest
/// id, so the choice is fixed); one that linked once, or has not failed
/// yet, is never evicted.
pub fn room_for_target(targets: &[TargetFacts], cap: usize) -> TargetRoom {
    if targets.len() < cap {
        return TargetRoom::Add;
    }
    targets
        .iter()
        .filter(|t| !t.ever_linked && t.failures > 0)
        .max_by_key(|t| (t.failures, t.id))
        .map_or(TargetRoom::Full, |t| TargetRoom::Evict(t.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = BackoffPolicy {
            initial: ms(500),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(10),
        };
        let table = [
            (0, ms(0)),
            (1, ms(500)),
            (2, ms(1000)),
            (3, ms(2000)),
            (6, ms(16_000)),
            (7, ms(30_000)),
            (40, ms(30_000)),
            (u32::MAX, ms(30_000)),
        ];
        for (failures, want) in table {
            assert_eq!(policy.delay(failures), want, "delay({failures})");
        }
    }

    #[test]
    fn backoff_schedule_with_a_supplied_clock() {
        let policy = BackoffPolicy::default();
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(dial_decision(true, false, &b, t0), DialDecision::Dial);
        let at = b.on_failure(t0, &policy);
        assert_eq!(at, t0 + ms(500));
        assert_eq!(
            dial_decision(true, false, &b, t0 + ms(499)),
            DialDecision::WaitUntil(at)
        );
        assert_eq!(
            dial_decision(true, false, &b, t0 + ms(500)),
            DialDecision::Dial
        );
        let at = b.on_failure(t0 + ms(500), &policy);
        assert_eq!(at, t0 + ms(1500));
        b.on_linked();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.not_before(), None);
        assert_eq!(b.on_failure(t0, &policy), t0 + ms(500), "starts over");
    }

    #[test]
    fn only_a_stable_link_resets_the_schedule() {
        let policy = BackoffPolicy::default();
        let t0 = Instant::now();
        let table = [
            // (failures before, link lasted, wait after it ends)
            (0, ms(100), ms(500)),
            (3, ms(100), ms(4000)),
            (3, ms(9_999), ms(4000)),
            (3, ms(10_000), ms(500)),
            (6, Duration::from_secs(3600), ms(500)),
        ];
        for (before, lasted, want) in table {
            let mut b = Backoff::default();
            for _ in 0..before {
                b.on_failure(t0, &policy);
            }
            let at = b.on_link_end(lasted, t0, &policy);
            assert_eq!(at - t0, want, "{before} failures, lasted {lasted:?}");
        }
    }

    fn check_dial(wanted: bool, linked: bool, not_before_ms: Option<u64>, want: DialDecision) {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        if let Some(at) = not_before_ms {
            b.failures = 1;
            b.not_before = Some(t0 + ms(at));
        }
        let now = t0 + ms(100);
        let want = match want {
            DialDecision::WaitUntil(_) => {
                DialDecision::WaitUntil(t0 + ms(not_before_ms.unwrap_or(0)))
            }
            other => other,
        };
        assert_eq!(
            dial_decision(wanted, linked, &b, now),
            want,
            "wanted={wanted} linked={linked} not_before={not_before_ms:?}"
        );
    }

    #[test]
    fn dial_decision_table() {
        use DialDecision::*;
        let later = WaitUntil(Instant::now());
        let table = [
            (true, false, None, Dial),
            (true, false, Some(50), Dial),
            (true, false, Some(100), Dial),
            (true, false, Some(101), later),
            (true, true, None, Linked),
            (true, true, Some(500), Linked),
            (false, false, None, Forget),
            (false, true, Some(500), Forget),
        ];
        for (wanted, linked, nb, want) in table {
            check_dial(wanted, linked, nb, want);
        }
    }

    fn check_dup(existing: (u8, u8), new: (u8, u8), want: Keep) {
        let rank = |(d, t): (u8, u8)| LinkRank {
            dialer: id(d),
            tiebreak: [t; 32],
        };
        let (e, n) = (rank(existing), rank(new));
        assert_eq!(resolve_duplicate(&e, &n), want, "{existing:?} vs {new:?}");
        // Both hosts agree whichever link each saw first.
        let mirrored = match want {
            Keep::Existing => Keep::New,
            Keep::New => Keep::Existing,
        };
        if (existing) != (new) {
            assert_eq!(resolve_duplicate(&n, &e), mirrored, "mirrored");
        }
    }

    #[test]
    fn duplicate_resolution_table() {
        use Keep::*;
        let table = [
            // (dialer, tiebreak) of the existing link, of the new one.
            ((1, 9), (2, 0), Existing), // the smaller dialer wins
            ((2, 0), (1, 9), New),
            ((1, 5), (1, 3), New), // same dialer: smaller tiebreak
            ((1, 3), (1, 5), Existing),
            ((1, 3), (1, 3), Existing), // the same link seen twice
        ];
        for (existing, new, want) in table {
            check_dup(existing, new, want);
        }
    }

    fn check_live(has_digest: bool, heard_ms_ago: u64, want: bool) {
        let now = Instant::now() + Duration::from_secs(60);
        let facts = LinkFacts {
            has_digest,
            last_heard: now - ms(heard_ms_ago),
        };
        assert_eq!(
            counts_as_linked(&facts, now, Duration::from_secs(10)),
            want,
            "digest={has_digest} heard {heard_ms_ago} ms ago"
        );
    }

    #[test]
    fn liveness_table() {
        let table = [
            (true, 0, true),
            (true, 9_999, true),
            (true, 10_000, true),
            (true, 10_001, false),
            (false, 0, false),
            (false, 20_000, false),
        ];
        for (has_digest, ago, want) in table {
            check_live(has_digest, ago, want);
        }
        // A clock that went backwards (last_heard after now) is alive.
        let now = Instant::now();
        assert!(is_alive(now + ms(5), now, ms(1)));
    }

    #[test]
    fn room_for_discovered_targets() {
        let t = |b: u8, failures: u32, ever_linked: bool| TargetFacts {
            id: NodeId([b; 32]),
            failures,
            ever_linked,
        };
        let table: Vec<(&str, Vec<TargetFacts>, usize, TargetRoom)> = vec![
            ("under the cap", vec![t(1, 9, false)], 2, TargetRoom::Add),
            (
                "full: the never-linked one failing most goes",
                vec![t(1, 2, false), t(2, 5, false), t(3, 9, true)],
                3,
                TargetRoom::Evict(NodeId([2; 32])),
            ),
            (
                "ties: the highest id",
                vec![t(1, 4, false), t(2, 4, false)],
                2,
                TargetRoom::Evict(NodeId([2; 32])),
            ),
            (
                "full of peers that linked or did not fail yet",
                vec![t(1, 0, false), t(2, 7, true)],
                2,
                TargetRoom::Full,
            ),
            ("a cap of zero", vec![], 0, TargetRoom::Full),
        ];
        for (what, targets, cap, want) in table {
            assert_eq!(room_for_target(&targets, cap), want, "{what}");
        }
    }
}
