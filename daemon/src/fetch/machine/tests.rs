//! The failover rules as tables: each test is a script of events and the
//! action expected after each.

use super::*;

fn peer(b: u8) -> NodeId {
    NodeId([b; 32])
}

const H1: SourceId = SourceId::Holder(NodeId([1; 32]));
const H2: SourceId = SourceId::Holder(NodeId([2; 32]));
const F3: SourceId = SourceId::Fetcher(NodeId([3; 32]));
const M0: SourceId = SourceId::Mirror(0);
const M1: SourceId = SourceId::Mirror(1);

fn open(source: SourceId, offset: u64) -> Action {
    Action::Open { source, offset }
}

fn opened(size: u64, start: u64) -> Option<Event> {
    Some(Event::Opened { size, start })
}

fn broke() -> Event {
    Event::Failed(Failure::Broke("stalled".into()))
}

fn unavailable() -> Event {
    Event::Failed(Failure::Unavailable("busy".into()))
}

/// A whole 10-byte copy whose checksum fails: thrown away.
fn corrupt_copy() -> Vec<(Option<Event>, Action)> {
    vec![
        (opened(10, 0), Action::Read),
        (Some(Event::Bytes(10)), Action::Read),
        (Some(Event::Ended), Action::Verify),
        (
            Some(Event::Verified(Err("checksum".into()))),
            Action::Restart,
        ),
    ]
}

/// Runs `script` (`None` = `resume`) and checks every action.
fn check(machine: &mut Machine, first: Action, script: &[(Option<Event>, Action)]) {
    assert_eq!(machine.start(), first, "start");
    for (i, (event, want)) in script.iter().enumerate() {
        let got = match event.clone() {
            Some(e) => machine.on(e),
            None => machine.resume(),
        };
        assert_eq!(&got, want, "step {i}: after {event:?}");
    }
}

#[test]
fn holders_in_order_then_mirrors_continuing_from_the_byte_reached() {
    let mut m = Machine::new([H1, H2, M0, M1], Some(100));
    check(
        &mut m,
        open(H1, 0),
        &[
            (opened(100, 0), Action::Read),
            (Some(Event::Bytes(30)), Action::Read),
            (Some(broke()), open(H2, 30)),
            (Some(unavailable()), open(M0, 30)),
            (opened(100, 30), Action::Read),
            (Some(Event::Bytes(40)), Action::Read),
            (Some(broke()), open(M1, 70)),
            (opened(100, 70), Action::Read),
            (Some(Event::Bytes(30)), Action::Read),
            (Some(Event::Ended), Action::Verify),
            (
                Some(Event::Verified(Ok(true))),
                Action::Done { verified: true },
            ),
        ],
    );
    assert!(!m.only_mirror_bytes());
}

#[test]
fn only_peers_whose_bytes_were_used_are_penalised() {
    // H1 answered Busy (no byte), H2 sent bytes, the mirror finished.
    let mut m = Machine::new([H1, H2, M0], Some(10));
    check(
        &mut m,
        open(H1, 0),
        &[
            (Some(unavailable()), open(H2, 0)),
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(4)), Action::Read),
            (Some(broke()), open(M0, 4)),
            (opened(10, 4), Action::Read),
            (Some(Event::Bytes(6)), Action::Read),
            (Some(Event::Ended), Action::Verify),
            (
                Some(Event::Verified(Err("checksum".into()))),
                Action::Penalise {
                    peers: vec![peer(2)],
                    why: "checksum".into(),
                },
            ),
            (None, Action::Restart),
            // M0 was opened once; it may be opened again from byte 0.
            (None, open(M0, 0)),
        ],
    );
}

#[test]
fn a_wrong_size_is_the_answering_peers_fault_before_any_byte() {
    let mut m = Machine::new([H1, M0], Some(10));
    check(
        &mut m,
        open(H1, 0),
        &[
            (
                opened(11, 0),
                Action::Penalise {
                    peers: vec![peer(1)],
                    why: "size 11 where 10 was expected".into(),
                },
            ),
            (None, Action::Restart),
            (None, open(M0, 0)),
        ],
    );
}

#[test]
fn overrunning_the_size_is_bad() {
    let mut m = Machine::new([H1, M0], None);
    check(
        &mut m,
        open(H1, 0),
        &[
            (opened(5, 0), Action::Read),
            (
                Some(Event::Bytes(6)),
                Action::Penalise {
                    peers: vec![peer(1)],
                    why: "more than the 5 bytes expected".into(),
                },
            ),
        ],
    );
}

#[test]
fn a_mirror_that_ignores_range_is_read_from_zero() {
    let mut m = Machine::new([H1, M0], Some(10));
    check(
        &mut m,
        open(H1, 0),
        &[
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(3)), Action::Read),
            (Some(broke()), open(M0, 3)),
            (opened(10, 0), Action::Restart),
            (None, Action::Read),
            (Some(Event::Bytes(10)), Action::Read),
            (Some(Event::Ended), Action::Verify),
        ],
    );
    assert!(m.only_mirror_bytes(), "H1's bytes were thrown away");
}

#[test]
fn a_mirror_that_ignores_range_after_another_mirror_is_skipped_to_the_byte_reached() {
    let mut m = Machine::new([M0, M1], Some(10));
    check(
        &mut m,
        open(M0, 0),
        &[
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(4)), Action::Read),
            (Some(broke()), open(M1, 4)),
            (opened(10, 0), Action::Skip(4)),
            (Some(Event::Skipped), Action::Read),
            (Some(Event::Bytes(6)), Action::Read),
            (Some(Event::Ended), Action::Verify),
        ],
    );
    assert_eq!(m.pos(), 10);
    // It breaks while skipping: the next source, from the byte reached.
    let mut m = Machine::new([M0, M1, SourceId::Mirror(2)], Some(10));
    check(
        &mut m,
        open(M0, 0),
        &[
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(4)), Action::Read),
            (Some(broke()), open(M1, 4)),
            (opened(10, 0), Action::Skip(4)),
            (Some(broke()), open(SourceId::Mirror(2), 4)),
        ],
    );
}

#[test]
fn a_fetcher_that_breaks_leads_to_a_claim_before_any_mirror() {
    let mut m = Machine::new([F3, M0, M1], Some(100));
    check(
        &mut m,
        open(F3, 0),
        &[
            (opened(100, 0), Action::Read),
            (Some(Event::Bytes(25)), Action::Read),
            (
                Some(broke()),
                Action::Claim {
                    exclude: vec![peer(3)],
                },
            ),
            // Another joiner won: join it from the byte reached.
            (
                Some(Event::Claimed(Claimant::Peer(peer(4)))),
                open(SourceId::Fetcher(peer(4)), 25),
            ),
            (
                Some(unavailable()),
                Action::Claim {
                    exclude: vec![peer(3), peer(4)],
                },
            ),
            // Nobody else: we continue at the mirrors.
            (Some(Event::Claimed(Claimant::Us)), open(M0, 25)),
        ],
    );
}

/// A mirror whose copy was corrupt is not asked again when a claim sends
/// us back to the mirrors.
#[test]
fn a_claim_won_does_not_bring_back_a_corrupt_mirror() {
    let mut m = Machine::new([M0, F3, M1], Some(10));
    let then = [
        (None, open(F3, 0)),
        (opened(10, 0), Action::Read),
        (Some(Event::Bytes(3)), Action::Read),
        (
            Some(broke()),
            Action::Claim {
                exclude: vec![peer(3)],
            },
        ),
        (Some(Event::Claimed(Claimant::Us)), open(M1, 3)),
    ];
    check(
        &mut m,
        open(M0, 0),
        &[corrupt_copy(), then.to_vec()].concat(),
    );
}

#[test]
fn a_fetchers_bad_upstream_drops_its_bytes_and_blames_nobody() {
    let mut m = Machine::new([F3, M0], Some(100));
    check(
        &mut m,
        open(F3, 0),
        &[
            (opened(100, 0), Action::Read),
            (Some(Event::Bytes(60)), Action::Read),
            (Some(Event::Failed(Failure::SourceBad)), Action::Restart),
            (None, open(F3, 0)),
        ],
    );
}

#[test]
fn every_source_is_opened_a_bounded_number_of_times() {
    let mut m = Machine::new([F3], Some(100));
    let mut action = m.start();
    let mut opens = 0;
    for _ in 0..20 {
        action = match action {
            Action::Open { .. } => {
                opens += 1;
                m.on(Event::Failed(Failure::SourceBad))
            }
            Action::Restart => m.resume(),
            other => other,
        };
        if matches!(action, Action::GiveUp(_)) {
            break;
        }
    }
    assert!(matches!(action, Action::GiveUp(_)), "{action:?}");
    assert_eq!(opens, MAX_OPENS as usize);
}

#[test]
fn a_stream_that_ends_short_goes_on_elsewhere() {
    let mut m = Machine::new([M0, M1], Some(10));
    check(
        &mut m,
        open(M0, 0),
        &[
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(7)), Action::Read),
            (Some(Event::Ended), open(M1, 7)),
            (
                Some(unavailable()),
                Action::GiveUp("no source left at byte 7".into()),
            ),
        ],
    );
    assert!(m.only_mirror_bytes());
}

/// No database size: a source that states another size than the one
/// whose bytes are in the file starts the file over with its own size,
/// instead of failing (and being blamed) for the first one's word.
#[test]
fn sources_disagreeing_on_an_unlisted_size_start_over() {
    let mut m = Machine::new([H1, M0], None);
    check(
        &mut m,
        open(H1, 0),
        &[
            (opened(10, 0), Action::Read),
            (Some(Event::Bytes(4)), Action::Read),
            (Some(broke()), open(M0, 4)),
            (opened(12, 4), Action::Restart),
            (None, open(M0, 0)),
            (opened(12, 0), Action::Read),
            (Some(Event::Bytes(12)), Action::Read),
            (Some(Event::Ended), Action::Verify),
        ],
    );
    assert_eq!(m.size(), Some(12));
}

#[test]
fn a_mirror_whose_copy_is_corrupt_is_not_asked_again() {
    let mut m = Machine::new([M0, M1], Some(10));
    let script = [
        corrupt_copy(),
        vec![(None, open(M1, 0))],
        corrupt_copy(),
        vec![(None, Action::GiveUp("no source left at byte 0".into()))],
    ];
    check(&mut m, open(M0, 0), &script.concat());
}

#[test]
fn unverifiable_files_are_done_unverified() {
    let mut m = Machine::new([M0], None);
    check(
        &mut m,
        open(M0, 0),
        &[
            (opened(4, 0), Action::Read),
            (Some(Event::Bytes(4)), Action::Read),
            (Some(Event::Ended), Action::Verify),
            (
                Some(Event::Verified(Ok(false))),
                Action::Done { verified: false },
            ),
        ],
    );
}
