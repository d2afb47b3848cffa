//! Fuzz entry points: what `fuzz/` runs under AFL++ and what
//! `tests/fuzz_corpus.rs` replays over the committed corpus, so a campaign
//! and `cargo test` check the same things. Not part of the API.

use std::path::Path;

use crate::{decode_text, insert_include, remove_include, PacmanConf, DEFAULT_INCLUDE_PATH};

/// Any bytes as a pacman.conf: decoded and parsed (Includes read from the
/// file system, relative ones from the current directory), never a panic.
/// Where the filter accepts the text, inserting pacmesh's Include is
/// idempotent and removing it gives back every byte.
pub fn pacman_conf(data: &[u8]) {
    let file = Path::new("fuzz/pacman.conf");
    let Ok(text) = decode_text(data.to_vec(), file) else {
        return;
    };
    let _ = PacmanConf::parse(&text, file);
    let Ok(inserted) = insert_include(&text, file, DEFAULT_INCLUDE_PATH) else {
        return;
    };
    let again = insert_include(&inserted, file, DEFAULT_INCLUDE_PATH).expect("inserted re-inserts");
    assert_eq!(again, inserted, "insert is idempotent");
    if !text.contains(DEFAULT_INCLUDE_PATH) {
        let removed =
            remove_include(&inserted, file, DEFAULT_INCLUDE_PATH).expect("inserted removes");
        assert_eq!(removed, text, "remove gives back the text");
    }
}
