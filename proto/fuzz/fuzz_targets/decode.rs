//! Any bytes as one payload: `decode` must return, never panic, and what
//! it accepts must re-encode to a message that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacmesh_proto::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode(data) {
        let again = decode(&encode(&msg)).expect("an accepted message re-decodes");
        assert_eq!(again, msg);
    }
});
