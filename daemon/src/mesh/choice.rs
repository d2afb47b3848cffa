//! Which peer to fetch a file from: per-peer transfer records (measured
//! throughput, RTT, recent failures, downloads in flight) and penalties,
//! and the ranking of a file's holders built from them. Pure: every call
//! takes `now`, so the rules are plain table-driven `#[test]`s; the link
//! code feeds it and asks it under one mutex.
//!
//! The ranking, best first: penalised peers are left out until their
//! penalty expires; then fewer failures within `failure_window`; then
//! higher measured throughput; then lower RTT; then fewer downloads in
//! flight from that peer; then node id, so equal peers rank the same way
//! every time. Throughput and RTT are compared in coarse buckets (a factor
//! of √2 and of 2 apart), so measurement noise does not hide the later keys.
//! A peer never measured counts as fast as the best measured candidate, so
//! new peers get tried (and measured) instead of never being chosen.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pacmesh_proto::NodeId;

/// Failure timestamps kept per peer; more than this within the window all
/// rank the same (last).
const MAX_FAILURES: usize = 16;

/// Records of peers that are not linked kept at most ([`Choice::prune`]):
/// penalised ones first, then those that failed recently, then measured
/// ones. Fresh identities cost nothing to make, so what is kept of peers
/// that left must be bounded; linked peers are bounded by the link cap.
pub const MAX_GONE_PEERS: usize = 256;

/// The knobs of the choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoicePolicy {
    /// A penalised peer is not chosen for this long (10 min).
    pub penalty_duration: Duration,
    /// Failures older than this no longer count against a peer (5 min).
    pub failure_window: Duration,
    /// Transfers smaller than this say more about RTT than throughput and
    /// are not measured (256 KiB).
    pub min_sample_bytes: u64,
    /// Weight of a new throughput sample in the moving average (0.3).
    pub ewma_weight: f64,
}

impl Default for ChoicePolicy {
    fn default() -> Self {
        ChoicePolicy {
            penalty_duration: Duration::from_secs(600),
            failure_window: Duration::from_secs(300),
            min_sample_bytes: 256 * 1024,
            ewma_weight: 0.3,
        }
    }
}

/// Why and until when a peer is not chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalty {
    pub until: Instant,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
struct Record {
    /// Bytes per second, moving average.
    throughput: Option<f64>,
    failures: VecDeque<Instant>,
    in_flight: u32,
    penalty: Option<Penalty>,
}

/// Every peer's record; one per mesh.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    policy: ChoicePolicy,
    peers: HashMap<NodeId, Record>,
}

impl Choice {
    pub fn new(policy: ChoicePolicy) -> Self {
        Choice {
            policy,
            peers: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &ChoicePolicy {
        &self.policy
    }

    fn record(&mut self, peer: NodeId) -> &mut Record {
        self.peers.entry(peer).or_default()
    }

    /// Not chosen until `now + penalty_duration`; a later penalty replaces
    /// an earlier one (and its reason).
    pub fn penalise(&mut self, peer: NodeId, reason: impl Into<String>, now: Instant) {
        let until = now + self.policy.penalty_duration;
        self.record(peer).penalty = Some(Penalty {
            until,
            reason: reason.into(),
        });
    }

    /// The penalty in force at `now`, if any.
    pub fn penalty(&self, peer: &NodeId, now: Instant) -> Option<&Penalty> {
        self.peers
            .get(peer)?
            .penalty
            .as_ref()
            .filter(|p| now < p.until)
    }

    /// A transfer from `peer` ended: `bytes` in `duration`; `ok` false
    /// counts a failure at `now`. Partial transfers are measured too.
    pub fn record_transfer(
        &mut self,
        peer: NodeId,
        bytes: u64,
        duration: Duration,
        ok: bool,
        now: Instant,
    ) {
        self.record_sample(peer, bytes, duration);
        if !ok {
            let window = self.policy.failure_window;
            let failures = &mut self.record(peer).failures;
            failures.retain(|t| now.saturating_duration_since(*t) < window);
            if failures.len() == MAX_FAILURES {
                failures.pop_front();
            }
            failures.push_back(now);
        }
    }

    /// A throughput measurement alone (a transfer the asker abandoned,
    /// which says nothing about the peer's health).
    pub fn record_sample(&mut self, peer: NodeId, bytes: u64, duration: Duration) {
        if bytes < self.policy.min_sample_bytes || duration.is_zero() {
            return;
        }
        let sample = bytes as f64 / duration.as_secs_f64();
        let weight = self.policy.ewma_weight;
        let record = self.record(peer);
        record.throughput = Some(match record.throughput {
            Some(old) => weight * sample + (1.0 - weight) * old,
            None => sample,
        });
    }

    /// A download from `peer` began.
    pub fn started(&mut self, peer: NodeId) {
        self.record(peer).in_flight += 1;
    }

    /// A download from `peer` ended, however it ended.
    pub fn ended(&mut self, peer: NodeId) {
        let record = self.record(peer);
        record.in_flight = record.in_flight.saturating_sub(1);
    }

    pub fn throughput(&self, peer: &NodeId) -> Option<f64> {
        self.peers.get(peer)?.throughput
    }

    pub fn in_flight(&self, peer: &NodeId) -> u32 {
        self.peers.get(peer).map_or(0, |r| r.in_flight)
    }

    /// Failures within `failure_window` before `now`.
    pub fn recent_failures(&self, peer: &NodeId, now: Instant) -> usize {
        let window = self.policy.failure_window;
        self.peers.get(peer).map_or(0, |r| {
            r.failures
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < window)
                .count()
        })
    }

    /// Forgets peers that are not linked (`is_linked`) past
    /// [`MAX_GONE_PEERS`], keeping the ones worth remembering should they
    /// come back: penalised first, then with recent failures, then
    /// measured. A record with a download in flight is always kept.
    pub fn prune(&mut self, is_linked: impl Fn(&NodeId) -> bool, now: Instant) {
        let mut gone: Vec<(NodeId, (bool, usize, bool))> = self
            .peers
            .iter()
            .filter(|(id, record)| !is_linked(id) && record.in_flight == 0)
            .map(|(id, record)| {
                let worth = (
                    self.penalty(id, now).is_some(),
                    self.recent_failures(id, now),
                    record.throughput.is_some(),
                );
                (*id, worth)
            })
            .collect();
        if gone.len() <= MAX_GONE_PEERS {
            return;
        }
        // Most worth first; node id breaks ties so the outcome is fixed.
        gone.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (id, _) in &gone[MAX_GONE_PEERS..] {
            self.peers.remove(id);
        }
    }

    /// How many peers have a record (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// `candidates` best first, without penalised peers and duplicates;
    /// `rtt` gives each one's current round-trip time (its link's
    /// estimate), if known.
    pub fn rank(
        &self,
        candidates: &[NodeId],
        rtt: impl Fn(&NodeId) -> Option<Duration>,
        now: Instant,
    ) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = candidates
            .iter()
            .filter(|id| self.penalty(id, now).is_none())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let best_known = ids
            .iter()
            .filter_map(|id| self.throughput(id))
            .map(throughput_bucket)
            .max()
            .unwrap_or(0);
        ids.sort_by_cached_key(|id| {
            let throughput = self.throughput(id).map_or(best_known, throughput_bucket);
            let rtt = rtt(id).map_or(0, rtt_bucket);
            (
                self.recent_failures(id, now),
                std::cmp::Reverse(throughput),
                rtt,
                self.in_flight(id),
                *id,
            )
        });
        ids
    }
}

/// Buckets a factor of √2 apart.
fn throughput_bucket(bytes_per_s: f64) -> i32 {
    (2.0 * bytes_per_s.max(1.0).log2()).floor() as i32
}

/// 0 under 1 ms, then one bucket per doubling.
fn rtt_bucket(rtt: Duration) -> u32 {
    let ms = rtt.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        0
    } else {
        ms.log2().floor() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// What happened to one peer before ranking, relative to `t0`.
    #[derive(Clone, Default)]
    struct Facts {
        /// MB/s of one measured 100 MB transfer.
        mb_per_s: Option<u64>,
        rtt_us: Option<u64>,
        /// Seconds after t0 of each failure.
        failures: Vec<u64>,
        in_flight: u32,
        /// Seconds after t0 of a penalty.
        penalised_at: Option<u64>,
    }

    fn build(peers: &[(u8, Facts)], t0: Instant) -> Choice {
        let mut choice = Choice::default();
        for (b, f) in peers {
            if let Some(mbps) = f.mb_per_s {
                choice.record_transfer(id(*b), 100 * MB, secs(100 / mbps), true, t0);
            }
            for at in &f.failures {
                choice.record_transfer(id(*b), 0, Duration::ZERO, false, t0 + secs(*at));
            }
            for _ in 0..f.in_flight {
                choice.started(id(*b));
            }
            if let Some(at) = f.penalised_at {
                choice.penalise(id(*b), "bad bytes", t0 + secs(at));
            }
        }
        choice
    }

    fn check(what: &str, peers: &[(u8, Facts)], now_s: u64, want: &[u8]) {
        let t0 = Instant::now();
        let choice = build(peers, t0);
        let candidates: Vec<NodeId> = peers.iter().map(|(b, _)| id(*b)).collect();
        let rtt = |node: &NodeId| {
            let (_, facts) = peers.iter().find(|(b, _)| id(*b) == *node)?;
            facts.rtt_us.map(Duration::from_micros)
        };
        let got = choice.rank(&candidates, rtt, t0 + secs(now_s));
        let want: Vec<NodeId> = want.iter().map(|b| id(*b)).collect();
        assert_eq!(got, want, "{what}");
    }

    fn f() -> Facts {
        Facts::default()
    }

    /// (what, each peer's facts, now in seconds after t0, expected order).
    type Case = (&'static str, Vec<(u8, Facts)>, u64, Vec<u8>);

    #[test]
    fn ranking_table() {
        let fast = Facts {
            mb_per_s: Some(100),
            ..f()
        };
        let slow = Facts {
            mb_per_s: Some(10),
            ..f()
        };
        let rtt = |us| Facts {
            rtt_us: Some(us),
            ..f()
        };
        let failed_at = |at: Vec<u64>| Facts {
            failures: at,
            ..fast.clone()
        };
        let busy = |n| Facts {
            in_flight: n,
            ..f()
        };
        let penalised = |at| Facts {
            penalised_at: Some(at),
            ..fast.clone()
        };
        let table: Vec<Case> = vec![
            (
                "nothing known: node id order",
                vec![(2, f()), (1, f())],
                0,
                vec![1, 2],
            ),
            (
                "faster first",
                vec![(1, slow.clone()), (2, fast.clone())],
                0,
                vec![2, 1],
            ),
            (
                "never measured counts as the best measured",
                vec![(1, slow.clone()), (2, f()), (3, fast.clone())],
                0,
                vec![2, 3, 1],
            ),
            (
                "lower rtt first",
                vec![(1, rtt(8000)), (2, rtt(1000))],
                0,
                vec![2, 1],
            ),
            (
                "sub-millisecond rtts are equal: fewer in flight decides",
                vec![
                    (1, rtt(900)),
                    (
                        2,
                        Facts {
                            rtt_us: Some(100),
                            ..busy(1)
                        },
                    ),
                ],
                0,
                vec![1, 2],
            ),
            (
                "fewer in flight first",
                vec![(1, busy(2)), (2, busy(1))],
                0,
                vec![2, 1],
            ),
            (
                "a recent failure outweighs throughput",
                vec![(1, failed_at(vec![10])), (2, slow.clone())],
                20,
                vec![2, 1],
            ),
            (
                "fewer failures first",
                vec![(1, failed_at(vec![1, 2])), (2, failed_at(vec![3]))],
                10,
                vec![2, 1],
            ),
            (
                "failures expire after the window (300 s)",
                vec![(1, failed_at(vec![0])), (2, slow.clone())],
                300,
                vec![1, 2],
            ),
            (
                "throughput outweighs rtt",
                vec![
                    (
                        1,
                        Facts {
                            rtt_us: Some(100),
                            ..slow.clone()
                        },
                    ),
                    (
                        2,
                        Facts {
                            rtt_us: Some(20_000),
                            ..fast.clone()
                        },
                    ),
                ],
                0,
                vec![2, 1],
            ),
            (
                "penalised peers are left out",
                vec![(1, penalised(0)), (2, slow.clone())],
                1,
                vec![2],
            ),
            (
                "only penalised peers: none",
                vec![(1, penalised(0))],
                599,
                vec![],
            ),
            (
                "a penalty expires after 600 s",
                vec![(1, penalised(0)), (2, slow.clone())],
                600,
                vec![1, 2],
            ),
            (
                "penalty counted from when it was given",
                vec![(1, penalised(100)), (2, slow.clone())],
                650,
                vec![2],
            ),
        ];
        for (what, peers, now, want) in table {
            check(what, &peers, now, &want);
        }
    }

    #[test]
    fn duplicates_and_unknown_candidates() {
        let t0 = Instant::now();
        let choice = Choice::default();
        let none = |_: &NodeId| None;
        assert_eq!(
            choice.rank(&[id(3), id(1), id(3)], none, t0),
            vec![id(1), id(3)]
        );
        assert_eq!(choice.rank(&[], none, t0), Vec::<NodeId>::new());
    }

    #[test]
    fn throughput_is_a_moving_average_of_big_enough_transfers() {
        let t0 = Instant::now();
        let mut c = Choice::default();
        let p = id(1);
        c.record_transfer(p, 1000, Duration::from_millis(1), true, t0);
        assert_eq!(c.throughput(&p), None, "too small to measure");
        c.record_transfer(p, 10 * MB, secs(1), true, t0);
        assert_eq!(c.throughput(&p), Some(10e6));
        // A stalled partial transfer is measured and counts a failure.
        c.record_transfer(p, 4 * MB, secs(4), false, t0);
        let want = 0.3 * 1e6 + 0.7 * 10e6;
        assert!((c.throughput(&p).expect("measured") - want).abs() < 1.0);
        assert_eq!(c.recent_failures(&p, t0), 1);
        c.record_sample(p, 10 * MB, Duration::ZERO);
        assert!((c.throughput(&p).expect("measured") - want).abs() < 1.0);
    }

    #[test]
    fn penalties_keep_the_latest_reason_and_expire() {
        let t0 = Instant::now();
        let mut c = Choice::default();
        let p = id(1);
        assert_eq!(c.penalty(&p, t0), None);
        c.penalise(p, "stalled", t0);
        c.penalise(p, "sha256 mismatch", t0 + secs(60));
        let pen = c.penalty(&p, t0 + secs(61)).expect("in force");
        assert_eq!(pen.reason, "sha256 mismatch");
        assert_eq!(pen.until, t0 + secs(660));
        assert!(c.penalty(&p, t0 + secs(659)).is_some());
        assert_eq!(c.penalty(&p, t0 + secs(660)), None);
    }

    #[test]
    fn in_flight_counts_never_go_negative() {
        let mut c = Choice::default();
        let p = id(1);
        c.started(p);
        c.started(p);
        c.ended(p);
        assert_eq!(c.in_flight(&p), 1);
        c.ended(p);
        c.ended(p);
        assert_eq!(c.in_flight(&p), 0);
    }

    #[test]
    fn failures_kept_are_bounded() {
        let t0 = Instant::now();
        let mut c = Choice::default();
        for i in 0..100 {
            c.record_transfer(
                id(1),
                0,
                Duration::ZERO,
                false,
                t0 + Duration::from_millis(i),
            );
        }
        assert_eq!(c.recent_failures(&id(1), t0 + secs(1)), MAX_FAILURES);
    }

    #[test]
    fn buckets() {
        for (rtt_us, want) in [(0, 0), (999, 0), (1000, 1), (1999, 1), (2000, 2), (9000, 4)] {
            assert_eq!(
                rtt_bucket(Duration::from_micros(rtt_us)),
                want,
                "{rtt_us} us"
            );
        }
        assert_eq!(throughput_bucket(0.0), 0);
        assert!(throughput_bucket(100e6) > throughput_bucket(50e6));
        assert_eq!(throughput_bucket(100e6), throughput_bucket(105e6));
    }

    #[test]
    fn prune_keeps_linked_busy_and_worthwhile_gone_peers() {
        let t0 = Instant::now();
        let mut choice = Choice::default();
        let wide = |i: usize| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NodeId(b)
        };
        // Gone peers: a few penalised, a few that failed, many measured
        // only by a throughput sample; two linked; one gone with a download in flight.
        let n = MAX_GONE_PEERS * 4;
        for i in 0..n {
            choice.record_sample(wide(i), 100 * MB, secs(1));
        }
        for i in 0..10 {
            choice.penalise(wide(i), "bad bytes", t0);
            choice.record_transfer(wide(100 + i), 0, Duration::ZERO, false, t0);
        }
        choice.started(wide(n - 1));
        let linked = [wide(n - 2), wide(n - 3)];
        choice.prune(|id| linked.contains(id), t0 + secs(1));
        // At most the cap of gone peers, plus the linked and busy ones.
        assert_eq!(choice.tracked(), MAX_GONE_PEERS + 3);
        for i in 0..10 {
            assert!(
                choice.penalty(&wide(i), t0 + secs(1)).is_some(),
                "penalty {i} kept"
            );
            assert_eq!(choice.recent_failures(&wide(100 + i), t0 + secs(1)), 1);
        }
        assert_eq!(choice.in_flight(&wide(n - 1)), 1);
        assert!(linked.iter().all(|id| choice.peers.contains_key(id)));
        // Under the cap nothing goes.
        let before = choice.tracked();
        choice.prune(|_| false, t0 + secs(2));
        assert_eq!(choice.tracked(), before.min(MAX_GONE_PEERS + 1));
    }
}
