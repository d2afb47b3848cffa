//! Fuzz entry points: what `fuzz/` runs under AFL++ and what
//! `tests/fuzz_corpus.rs` replays over the committed corpus, so a campaign
//! and `cargo test` check the same things. Not part of the API.

use crate::{decode, encode, DigestState, FrameDecoder, Message};

/// Any bytes, two ways. As one payload: `decode` returns, never panics,
/// and what it accepts re-encodes to a message that decodes to itself. As
/// a stream: the first byte picks a frame limit and a chunk size, the rest
/// is fed in chunks; the frame decoder never hands out a frame over its
/// limit nor buffers more than it was fed, and the digests and deltas it
/// yields are applied to a peer's `DigestState` as a link would.
pub fn frames(data: &[u8]) {
    if let Ok(message) = decode(data) {
        let again = decode(&encode(&message)).expect("an accepted message re-decodes");
        assert_eq!(again, message, "a message survives a round trip");
    }
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let max = usize::from(control) * 4;
    let chunk = usize::from(control % 16) + 1;
    let mut decoder = FrameDecoder::new(max);
    let mut peer = DigestState::new();
    for piece in stream.chunks(chunk) {
        if decoder.feed(piece).is_err() {
            return;
        }
        while let Ok(Some(payload)) = decoder.next_frame() {
            assert!(
                payload.len() <= max,
                "a frame over its limit was handed out"
            );
            match decode(&payload) {
                Ok(Message::Digest(digest)) => peer.on_digest(digest),
                Ok(Message::Delta(delta)) => {
                    let _ = peer.on_delta(&delta);
                }
                _ => {}
            }
        }
        assert!(decoder.buffered() <= stream.len(), "buffered more than fed");
    }
}

/// Runs `check` on every file of the committed corpus `fuzz/corpus/{target}`
/// (what `fuzz/run.sh --cmin` kept, crashes found included), naming the
/// file whose input panicked. For the crates' `tests/fuzz_corpus.rs`.
pub fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing the corpus").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} panicked on {}", target, file.display());
        }
    }
}
