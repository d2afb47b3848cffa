//! pacman.conf and its filter (`pacmesh_conf::fuzzing::pacman_conf`).
fn main() {
    afl::fuzz!(|data: &[u8]| pacmesh_conf::fuzzing::pacman_conf(data));
}
