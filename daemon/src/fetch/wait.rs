//! How long pacman is kept waiting for a download that must verify before
//! it is served (pure).
//!
//! pacman (libcurl) drops a server that sends nothing for 10 s and
//! follows at most 10 redirects per download; each redirect counts, the
//! final one to the mirror and any the mirror itself sends included
//! (libalpm `dload.c`: `CURLOPT_MAXREDIRS` 10, `CURLOPT_LOW_SPEED_TIME`
//! 10; measured with pacman 6.0.2: docs/DESIGN.md, "pacman behaviours we
//! depend on"). So a request waits
//! up to [`WAIT_PER_HOP`], then, if the download is worth more waiting, is
//! answered with a `307` to its own URL carrying the hop count; after
//! [`MAX_HOPS`] such hops the answer is the mirror's redirect, which
//! leaves pacman two redirects for the mirror's own.

use std::time::Duration;

/// The longest one request waits before pacman is asked to come back:
/// most of pacman's 10 s silence allowance, with room for a loaded host.
pub const WAIT_PER_HOP: Duration = Duration::from_millis(8500);

/// "Come back" redirects per download: 7, + 1 to the mirror = 8 of
/// pacman's 10.
pub const MAX_HOPS: u32 = 7;

/// pacman's redirect limit per download (libalpm's `CURLOPT_MAXREDIRS`).
pub const PACMAN_MAX_REDIRECTS: u32 = 10;
/// pacman's silence limit (`CURLOPT_LOW_SPEED_TIME`, at 1 byte/s).
pub const PACMAN_SILENCE: Duration = Duration::from_secs(10);
/// Redirects left for the mirror's own (mirrorbrain-style mirrors use one).
pub const MIRROR_REDIRECTS: u32 = 2;

// The come-backs, the final redirect to the mirror and the mirror's own
// fit pacman's limit, and every wait ends before pacman's patience does.
const _: () = assert!(MAX_HOPS + 1 + MIRROR_REDIRECTS <= PACMAN_MAX_REDIRECTS);
const _: () = assert!(WAIT_PER_HOP.as_millis() < PACMAN_SILENCE.as_millis());

/// The query parameter that carries the hop count in a come-back URL.
pub const HOP_PARAM: &str = "pacmesh_hop";

/// A peer holding a complete copy and slower than this (bytes/s) is not
/// waited for past the first hop: on a LAN that means it is struggling,
/// and the mirror is likely faster.
pub const MIN_HOLDER_RATE: u64 = 2 << 20;

/// How a download waited on is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Course {
    /// Since the download started.
    pub elapsed: Duration,
    pub done: u64,
    /// 0 while unknown.
    pub size: u64,
    /// Its bytes come from the WAN (a mirror, or a peer fetching from
    /// one): a slow rate is the WAN's, which pacman would share.
    pub wan_paced: bool,
    /// Bytes arrived during the request's wait.
    pub moved: bool,
    /// Since the last bytes arrived.
    pub idle: Duration,
}

/// What to answer a request whose wait of `WAIT_PER_HOP` ran out at hop
/// `hop` (0 for pacman's first request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWait {
    ComeBack,
    /// Send pacman to the mirror (and stop waiting on this download).
    GiveUp,
    /// On course, but at its pace it cannot end within pacman's
    /// redirects: what to do depends on whether its bytes may be streamed
    /// before they verify (see `fetch::Transfer::answer`).
    OutOfHops,
}

/// The budget left after `hop` hops.
pub fn budget_left(hop: u32) -> Duration {
    WAIT_PER_HOP * (MAX_HOPS + 1).saturating_sub(hop + 1)
}

/// A download with no new bytes for this long is failing over (or about
/// to): its pace so far says nothing about when it ends.
pub const STALLED: Duration = Duration::from_secs(2);

/// Whether the download is worth another hop. A holder on the LAN must
/// have moved during the wait, keep [`MIN_HOLDER_RATE`] and, at its pace
/// so far, end within the hops left. A download paced by the WAN (a
/// mirror, or a peer fetching from one) is not judged by its rate (pacman
/// going to the mirror would share the same WAN) but by whether, at its
/// pace, it ends within the hops left; one that stalled is waited for
/// while hops are left, since the download fails its source over by
/// itself (its stall limits are shorter than the hops left).
pub fn after_wait(hop: u32, course: Course) -> AfterWait {
    if course.wan_paced {
        if hop >= MAX_HOPS {
            return AfterWait::OutOfHops;
        }
        if course.idle >= STALLED || course.done == 0 || course.size == 0 {
            return AfterWait::ComeBack;
        }
        let rate = course.done as f64 / course.elapsed.as_secs_f64().max(1e-3);
        let left = course.size.saturating_sub(course.done) as f64 / rate;
        return if left > budget_left(hop).as_secs_f64() {
            AfterWait::OutOfHops
        } else {
            AfterWait::ComeBack
        };
    }
    if hop >= MAX_HOPS || !course.moved || course.done == 0 {
        return AfterWait::GiveUp;
    }
    let secs = course.elapsed.as_secs_f64().max(1e-3);
    let rate = course.done as f64 / secs;
    let left = course.size.saturating_sub(course.done) as f64 / rate;
    if rate < MIN_HOLDER_RATE as f64 || (course.size > 0 && left > budget_left(hop).as_secs_f64()) {
        return AfterWait::GiveUp;
    }
    AfterWait::ComeBack
}

/// The hop count in a request's query string (`0` without one).
pub fn hop_of(query: Option<&str>) -> u32 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            pair.strip_prefix(HOP_PARAM)?
                .strip_prefix('=')?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn course(elapsed_s: u64, done: u64, size: u64, wan_paced: bool) -> Course {
        Course {
            elapsed: Duration::from_secs(elapsed_s),
            done,
            size,
            wan_paced,
            moved: true,
            idle: Duration::ZERO,
        }
    }

    #[test]
    fn decisions() {
        use AfterWait::*;
        let table = [
            // 10 MiB/s from a holder, 100 MiB: ends well within the hops.
            (0, course(8, 80 * MIB, 100 * MIB, false), ComeBack),
            // A holder under 2 MiB/s is left for the mirror.
            (0, course(8, 8 * MIB, 100 * MIB, false), GiveUp),
            // A holder that would not end within the hops left.
            (6, course(60, 150 * MIB, 300 * MIB, false), GiveUp),
            // The same pace from the WAN is the WAN's: waited for…
            (0, course(8, 8 * MIB, 40 * MIB, true), ComeBack),
            (
                MAX_HOPS - 1,
                course(60, 99 * MIB, 100 * MIB, true),
                ComeBack,
            ),
            // …unless it cannot end within the hops left (7 × 8.5 s)…
            (0, course(8, 8 * MIB, 1000 * MIB, true), OutOfHops),
            // …and never past the last hop.
            (MAX_HOPS, course(60, 99 * MIB, 100 * MIB, true), OutOfHops),
            (MAX_HOPS, course(60, 99 * MIB, 100 * MIB, false), GiveUp),
            // Nothing arrived from a holder: not worth waiting for.
            (0, course(8, 0, 0, false), GiveUp),
        ];
        for (hop, c, want) in table {
            assert_eq!(after_wait(hop, c), want, "hop {hop} {c:?}");
        }
        let stuck = Course {
            moved: false,
            ..course(16, 50 * MIB, 100 * MIB, false)
        };
        assert_eq!(after_wait(1, stuck), GiveUp);
        // A WAN download that stalled (its fetcher died, a mirror hangs)
        // is failing over: its slow pace so far is not held against it.
        let failing_over = Course {
            idle: STALLED,
            ..course(8, 3 * MIB, 40 * MIB, true)
        };
        assert_eq!(after_wait(0, failing_over), ComeBack);
        assert_eq!(after_wait(MAX_HOPS, failing_over), OutOfHops);
    }

    #[test]
    fn the_budget_runs_out_at_the_last_hop() {
        assert_eq!(budget_left(MAX_HOPS), Duration::ZERO);
        assert_eq!(budget_left(0), WAIT_PER_HOP * MAX_HOPS);
    }

    #[test]
    fn hop_counts_from_queries() {
        assert_eq!(hop_of(None), 0);
        assert_eq!(hop_of(Some("pacmesh_hop=3")), 3);
        assert_eq!(hop_of(Some("a=1&pacmesh_hop=5")), 5);
        assert_eq!(hop_of(Some("pacmesh_hop=x")), 0);
        assert_eq!(hop_of(Some("pacmesh_hopx=2")), 0);
    }
}
