//! Who fetches a file from the WAN when several hosts miss it at once
//! (pure).
//!
//! A host that misses a file nobody holds or fetches announces a claim on
//! it (`Fetching`) and waits [`CLAIM_WINDOW`]. Claims travel on links
//! with a LAN round trip of a millisecond or so, so two hosts that miss
//! the file within the same moment both see the other's claim before
//! their windows close, and both pick the same winner with [`winner`]:
//! the lowest SHA-256 over (node id, file name). Hashing the file name in
//! spreads the fetches of a fleet upgrade over every host instead of
//! making the lowest node id fetch everything.
//!
//! Claims cross when one takes longer than the window to arrive (a fleet
//! busy with its upgrade on a loaded machine: seen at 165 ms). A host that
//! heard our claim only after its window closed has already started,
//! though it ranks worse; we cannot tell its claim from its fetch, since
//! both are one announcement. So the winner asks the worse-ranked
//! claimants it heard of whether they are fetching (`Mesh::is_fetching`:
//! each answers once its own claim settled) and joins one that is, the
//! same one every such winner picks ([`winner_among`]). Asking only goes
//! from better-ranked to worse-ranked hosts, so no two hosts ever wait on
//! each other. Two fetchers of one file are still possible when a claim
//! was not heard at all before the other host's window closed, or when an
//! answer did not come within [`PROBE_WAIT`] (the asked host busy, or
//! asking worse-ranked hosts of its own, or waiting for a mirror to say
//! the file's size).

use std::time::Duration;

use pacmesh_proto::NodeId;
use ring::digest;

/// How long a host waits after announcing its claim before it fetches.
pub const CLAIM_WINDOW: Duration = Duration::from_millis(100);

/// The window of a claim made because the fetch this host had joined
/// failed. Every joiner of that fetch sees it fail at the same moment and
/// claims at once, so claims cross as a rule, not by chance, and on a
/// fleet busy with the upgrade a claim took longer than [`CLAIM_WINDOW`]
/// to arrive (seen in the fleet test on 2 cores: two hosts each fetched
/// the rest of a 40 MiB package). pacman's stream has been stalled for the
/// stall timeout by then: a few hundred milliseconds more cost it little,
/// a second WAN transfer of the rest costs the site much.
pub const FAILOVER_CLAIM_WINDOW: Duration = Duration::from_millis(500);

/// How long the winner of a claim waits for a worse-ranked claimant to
/// say whether it is fetching: its claim window is at most
/// [`FAILOVER_CLAIM_WINDOW`], plus a round trip. No answer counts as "not
/// fetching".
pub const PROBE_WAIT: Duration = Duration::from_millis(1000);

/// Most worse-ranked claimants a winner asks. Each is one short stream;
/// in a fleet upgrade a host wins about one file in every N hosts and
/// asks up to N - 1 hosts for it, so the asking per host stays about one
/// per file. Past this many, the rest are not asked (a second fetcher is
/// then possible, as before the asking).
pub const MAX_PROBES: usize = 64;

/// How long a claim waits: after a joined fetch failed (`failover`), or
/// on a miss.
pub fn window(failover: bool) -> Duration {
    if failover {
        FAILOVER_CLAIM_WINDOW
    } else {
        CLAIM_WINDOW
    }
}

/// A claim's rank for `file`: lower wins.
pub fn rank(node: &NodeId, file: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&node.0);
    ctx.update(file.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Which of the claimants (us and the peers that claimed `file`) fetches.
pub fn winner(us: NodeId, claimants: &[NodeId], file: &str) -> NodeId {
    claimants
        .iter()
        .chain(std::iter::once(&us))
        .min_by_key(|node| rank(node, file))
        .copied()
        .unwrap_or(us)
}

/// Which of several peers already fetching `file` a joiner joins: the
/// same rule, so every joiner picks the same one. `fetching` is not empty.
pub fn winner_among(fetching: &[NodeId], file: &str) -> NodeId {
    match fetching.split_first() {
        Some((first, rest)) => winner(*first, rest, file),
        None => NodeId([0; 32]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn every_claimant_picks_the_same_winner() {
        let all = [node(1), node(2), node(3), node(4)];
        for file in ["a-1-1-any.pkg.tar.zst", "b-2-1-x86_64.pkg.tar.zst"] {
            let picks: Vec<NodeId> = all
                .iter()
                .map(|&me| {
                    let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != me).collect();
                    winner(me, &others, file)
                })
                .collect();
            assert!(picks.windows(2).all(|w| w[0] == w[1]), "{file}: {picks:?}");
        }
    }

    #[test]
    fn a_claim_after_a_failed_fetch_waits_longer() {
        assert_eq!(window(false), CLAIM_WINDOW);
        assert!(window(true) > CLAIM_WINDOW);
    }

    #[test]
    fn alone_we_win() {
        assert_eq!(winner(node(9), &[], "x.pkg.tar.zst"), node(9));
    }

    #[test]
    fn the_winner_depends_on_the_file_so_fetches_spread() {
        let all = [node(1), node(2), node(3), node(4)];
        let winners: std::collections::HashSet<NodeId> = (0..64)
            .map(|i| winner(all[0], &all[1..], &format!("p{i}-1-1-any.pkg.tar.zst")))
            .collect();
        assert!(
            winners.len() >= 3,
            "64 files went to {} hosts",
            winners.len()
        );
    }
}
