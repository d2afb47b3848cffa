//! pacman's requests: heads, targets, Range (`pacmeshd::fuzzing::http_requests`).
fn main() {
    afl::fuzz!(|data: &[u8]| pacmeshd::fuzzing::http_requests(data));
}
