//! When a proxied database is asked for upstream again, and what a client
//! gets meanwhile (pure: durations and outcomes in, a decision out; see
//! docs/DESIGN.md, "Proxied databases").
//!
//! - A copy revalidated less than `interval` ago is served as it is.
//! - Otherwise the upstreams are asked (`If-Modified-Since` the copy's
//!   date): one refresh per database however many clients ask, each
//!   waiting at most [`WAIT_PER_HOP`] for it.
//! - When every upstream failed, the last good copy is served with a
//!   `Warning: 110` header; with no copy the client gets an error. A
//!   failed check counts as a check: the upstreams are not asked again
//!   before `interval` has passed, so a dead WAN costs each client
//!   nothing but the warning.
//! - A refresh still running after the wait: the copy (marked stale), or
//!   with no copy a "come back" within pacman's redirect budget.

use std::time::Duration;

use crate::fetch::wait::MAX_HOPS;
pub use crate::fetch::wait::WAIT_PER_HOP;

/// The `Warning` header of a copy served because every upstream failed to
/// answer (RFC 7234 §5.5.1, code 110 "Response is Stale").
pub const STALE_UNREACHABLE: &str = "110 - \"stale: upstream unreachable\"";
/// … because the upstreams answered with databases that do not parse.
pub const STALE_UNUSABLE: &str = "110 - \"stale: upstream database unusable\"";
/// … because the refresh is taking longer than a client may wait.
pub const STALE_REVALIDATING: &str = "110 - \"stale: revalidation under way\"";

/// How the last check upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The copy is current (304), or a new one was fetched and kept.
    Fresh,
    /// No upstream answered with the database.
    Unreachable,
    /// Upstreams answered, but with something that is not a database (or
    /// a database without its signature pair); nothing was kept.
    Unusable,
}

impl Check {
    /// The `Warning` a copy carries after this check; `None` when fresh.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Check::Fresh => None,
            Check::Unreachable => Some(STALE_UNREACHABLE),
            Check::Unusable => Some(STALE_UNUSABLE),
        }
    }

    /// Why a client gets no database, when there is no copy.
    pub fn failure(self) -> &'static str {
        match self {
            Check::Fresh => "the database vanished from the store",
            Check::Unreachable => "no upstream answered with this database",
            Check::Unusable => "the upstreams sent something that is not a usable database",
        }
    }
}

/// What is known about one proxied database when a request comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// A good copy is kept.
    pub have_copy: bool,
    /// Since the last check ended; `None`: not checked since start.
    pub since_check: Option<Duration>,
    /// How that check ended.
    pub last: Check,
    /// `mirror.db_revalidate_s`.
    pub interval: Duration,
}

/// What to do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the copy, with this `Warning` if any.
    Serve(Option<&'static str>),
    /// Ask upstream (or join the refresh under way), then [`after_wait`].
    Refresh,
    /// Send pacman back to ask again (a refresh runs and there is no copy).
    ComeBack,
    /// No database to send: an error (5xx) saying why.
    Fail(&'static str),
}

/// What a request gets before any refresh.
pub fn decide(f: &Facts) -> Decision {
    let due = f.since_check.is_none_or(|since| since >= f.interval);
    match (due, f.have_copy) {
        (true, _) => Decision::Refresh,
        (false, true) => Decision::Serve(f.last.warning()),
        // Checked a moment ago, and it failed: do not ask again yet.
        (false, false) if f.last != Check::Fresh => Decision::Fail(f.last.failure()),
        // Fresh but no copy: it was removed under us; fetch it again.
        (false, false) => Decision::Refresh,
    }
}

/// What a request that waited for a refresh gets. `ended`: how the
/// refresh ended, `None` while it still runs; `hop`: how many times this
/// client was sent back already.
pub fn after_wait(have_copy: bool, ended: Option<Check>, hop: u32) -> Decision {
    match (ended, have_copy) {
        (Some(check), true) => Decision::Serve(check.warning()),
        (Some(check), false) => Decision::Fail(check.failure()),
        (None, true) => Decision::Serve(Some(STALE_REVALIDATING)),
        (None, false) if hop < MAX_HOPS => Decision::ComeBack,
        (None, false) => Decision::Fail("the upstreams are too slow to answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn facts(have_copy: bool, since_s: Option<u64>, last: Check) -> Facts {
        Facts {
            have_copy,
            since_check: since_s.map(Duration::from_secs),
            last,
            interval: MIN,
        }
    }

    #[test]
    fn before_a_refresh() {
        use Check::*;
        let table = [
            // Never checked since start: ask, copy or not.
            (facts(true, None, Fresh), Decision::Refresh),
            (facts(false, None, Fresh), Decision::Refresh),
            // Checked recently: the copy as it is, with the last check's warning.
            (facts(true, Some(10), Fresh), Decision::Serve(None)),
            (
                facts(true, Some(10), Unreachable),
                Decision::Serve(Some(STALE_UNREACHABLE)),
            ),
            (
                facts(true, Some(10), Unusable),
                Decision::Serve(Some(STALE_UNUSABLE)),
            ),
            // Due again.
            (facts(true, Some(60), Fresh), Decision::Refresh),
            (facts(true, Some(600), Unreachable), Decision::Refresh),
            // No copy and a failed check a moment ago: fail without asking.
            (
                facts(false, Some(10), Unreachable),
                Decision::Fail(Unreachable.failure()),
            ),
            (facts(false, Some(61), Unreachable), Decision::Refresh),
            (facts(false, Some(10), Fresh), Decision::Refresh),
        ];
        for (f, want) in table {
            assert_eq!(decide(&f), want, "{f:?}");
        }
        // Interval 0: every request asks.
        let every = Facts {
            interval: Duration::ZERO,
            ..facts(true, Some(0), Fresh)
        };
        assert_eq!(decide(&every), Decision::Refresh);
    }

    #[test]
    fn after_waiting_for_a_refresh() {
        use Check::*;
        let table = [
            (true, Some(Fresh), 0, Decision::Serve(None)),
            (
                true,
                Some(Unreachable),
                0,
                Decision::Serve(Some(STALE_UNREACHABLE)),
            ),
            (false, Some(Fresh), 0, Decision::Fail(Fresh.failure())),
            (false, Some(Unusable), 0, Decision::Fail(Unusable.failure())),
            (true, None, 0, Decision::Serve(Some(STALE_REVALIDATING))),
            (false, None, 0, Decision::ComeBack),
            (false, None, MAX_HOPS - 1, Decision::ComeBack),
            (
                false,
                None,
                MAX_HOPS,
                Decision::Fail("the upstreams are too slow to answer"),
            ),
        ];
        for (copy, ended, hop, want) in table {
            assert_eq!(after_wait(copy, ended, hop), want, "{copy} {ended:?} {hop}");
        }
    }
}
