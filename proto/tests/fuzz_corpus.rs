//! The peer wire's fuzz corpus (fuzz/corpus/frames) replayed through the
//! fuzz target's checks: every input decodes or is refused, never a panic,
//! and what decodes round-trips.

use pacmesh_proto::fuzzing::{frames, replay};

#[test]
fn every_frames_corpus_input_is_decoded_or_refused_without_a_panic() {
    replay("frames", frames);
}
