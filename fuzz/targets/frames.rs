//! The peer wire: frames and messages (`pacmesh_proto::fuzzing::frames`).
fn main() {
    afl::fuzz!(|data: &[u8]| pacmesh_proto::fuzzing::frames(data));
}
