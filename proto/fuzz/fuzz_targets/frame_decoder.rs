//! Any bytes as a stream, cut into chunks at points the input chooses:
//! the frame decoder must never panic, never hand out a frame over its
//! limit, and never buffer more than it was fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacmesh_proto::{decode, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // The first byte picks the frame limit and the chunk size.
    let max = usize::from(control) * 4;
    let chunk = usize::from(control % 16) + 1;
    let mut dec = FrameDecoder::new(max);
    for piece in stream.chunks(chunk) {
        if dec.feed(piece).is_err() {
            return;
        }
        while let Ok(Some(payload)) = dec.next_frame() {
            assert!(payload.len() <= max);
            let _ = decode(&payload);
        }
        assert!(dec.buffered() <= stream.len());
    }
});
