//! A mirror's sync database file (`pacmeshd::fuzzing::sync_db`).
fn main() {
    afl::fuzz!(|data: &[u8]| pacmeshd::fuzzing::sync_db(data));
}
