//! The pacman.conf fuzz corpus (fuzz/corpus/pacman_conf) replayed through
//! the fuzz target's checks: every input parses or is refused, never a
//! panic, and insert/remove of pacmesh's Include keep every other byte.

use pacmesh_conf::fuzzing::pacman_conf;
use pacmesh_proto::fuzzing::replay;

#[test]
fn every_pacman_conf_corpus_input_is_parsed_or_refused_without_a_panic() {
    replay("pacman_conf", pacman_conf);
}
