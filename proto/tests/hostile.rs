//! What a hostile or broken peer can send: truncated, oversized, trailing,
//! over-limit, badly named and random input is refused without a panic.

mod common;

use common::arb_message;
use pacmesh_proto::{
    decode, encode, encode_frame, DecodeError, Delta, EncodeError, FetchEnded, FetchRequest,
    Fetching, FrameDecoder, Hello, Message, NameError, NameHash, NodeId, MAX_ARCHS,
    MAX_DELTA_CHANGES, MAX_FRAME,
};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn every_strict_prefix_is_truncated(msg in arb_message(), cut in any::<prop::sample::Index>()) {
        let payload = encode(&msg);
        let cut = cut.index(payload.len());
        let err = decode(&payload[..cut]);
        prop_assert!(matches!(err, Err(DecodeError::Truncated)), "{err:?} at {cut}");
    }

    #[test]
    fn trailing_bytes_are_refused(msg in arb_message(), extra in vec(any::<u8>(), 1..20)) {
        let mut payload = encode(&msg);
        payload.extend_from_slice(&extra);
        let err = decode(&payload);
        prop_assert!(
            matches!(err, Err(DecodeError::TrailingBytes { extra: n }) if n == extra.len()),
            "{err:?}"
        );
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(msg) = decode(&bytes) {
            // Whatever was accepted is a valid message that round-trips.
            prop_assert_eq!(decode(&encode(&msg)).expect("re-decodes"), msg);
        }
    }

    #[test]
    fn random_streams_never_panic_the_frame_decoder(
        chunks in vec(vec(any::<u8>(), 0..64), 0..16),
        max in 0usize..128,
    ) {
        let mut dec = FrameDecoder::new(max);
        for chunk in &chunks {
            if dec.feed(chunk).is_err() {
                break;
            }
            while let Ok(Some(payload)) = dec.next_frame() {
                prop_assert!(payload.len() <= max);
                let _ = decode(&payload);
            }
            prop_assert!(dec.buffered() <= chunks.iter().map(Vec::len).sum::<usize>());
        }
    }
}

#[test]
fn oversized_payload_is_refused() {
    let err = decode(&vec![0; MAX_FRAME + 1]);
    assert!(
        matches!(err, Err(DecodeError::Oversized { len, max: MAX_FRAME }) if len == MAX_FRAME + 1)
    );
}

#[test]
fn oversized_length_prefix_is_refused_from_its_four_bytes() {
    let mut dec = FrameDecoder::control();
    let err = dec.feed(&(MAX_FRAME as u32 + 1).to_be_bytes());
    assert!(matches!(err, Err(DecodeError::Oversized { .. })), "{err:?}");
    assert_eq!(dec.buffered(), 0);
    // A frame of exactly MAX_FRAME is allowed to start.
    let mut dec = FrameDecoder::control();
    dec.feed(&(MAX_FRAME as u32).to_be_bytes())
        .expect("at the limit");
    assert_eq!(dec.next_frame().expect("waits for the body"), None);
}

/// Every message kind that carries a file name refuses a bad one both ways.
fn check_bad_name(name: &str, want: NameError) {
    let file_name = name.to_owned();
    let carriers = [
        Message::FetchRequest(FetchRequest {
            file_name: file_name.clone(),
            offset: 0,
        }),
        Message::Fetching(Fetching {
            file_name: file_name.clone(),
            size: 1,
        }),
        Message::FetchEnded(FetchEnded {
            file_name,
            complete: true,
        }),
    ];
    for msg in carriers {
        match decode(&encode(&msg)) {
            Err(DecodeError::BadFileName(got)) => assert_eq!(got, want, "{name:?} in {msg:?}"),
            other => panic!("{name:?} in {msg:?}: {other:?}"),
        }
        assert!(matches!(
            encode_frame(&msg, MAX_FRAME),
            Err(EncodeError::BadFileName(_))
        ));
    }
}

#[test]
fn file_names_are_validated() {
    check_bad_name("../../etc/passwd", NameError::Hidden);
    check_bad_name("..", NameError::DotSegment);
    check_bad_name("a/b", NameError::Slash);
    check_bad_name("", NameError::Empty);
    check_bad_name("a\nb", NameError::Control);
    check_bad_name(&"a".repeat(256), NameError::TooLong(256));
}

fn check_over_limit(msg: Message) {
    let err = decode(&encode(&msg));
    assert!(matches!(err, Err(DecodeError::OverLimit(_))), "{err:?}");
    let err = encode_frame(&msg, MAX_FRAME);
    assert!(matches!(err, Err(EncodeError::OverLimit(_))), "{err:?}");
}

#[test]
fn limits_are_enforced_both_ways() {
    let hello = |archs: Vec<String>| {
        Message::Hello(Hello {
            node_id: NodeId([0; 32]),
            version: 1,
            archs,
            mesh_proof: None,
        })
    };
    check_over_limit(hello(vec!["any".into(); MAX_ARCHS + 1]));
    check_over_limit(hello(vec!["x86-64".into()]));
    check_over_limit(hello(vec![String::new()]));
    check_over_limit(Message::Delta(Delta {
        seq: 1,
        added: vec![NameHash::from_u64(1); MAX_DELTA_CHANGES + 1],
        removed: vec![],
    }));
}

fn check_malformed(bytes: &[u8]) {
    let err = decode(bytes);
    assert!(
        matches!(err, Err(DecodeError::Malformed(_))),
        "{bytes:02x?}: {err:?}"
    );
}

#[test]
fn garbage_is_malformed() {
    check_malformed(&[9]); // no such message tag (yet)
    check_malformed(&[200, 0]);
    // FetchRequest whose name is not UTF-8.
    check_malformed(&[5, 2, 0xc3, 0x28, 0]);
    // Fetching whose name is not UTF-8.
    check_malformed(&[7, 2, 0xc3, 0x28, 0]);
    // FetchEnded whose `complete` is neither 0 nor 1.
    check_malformed(&[8, 1, b'a', 2]);
    // Hello whose mesh_proof option tag is 2.
    let mut hello = vec![0];
    hello.extend_from_slice(&[0; 32]);
    hello.extend_from_slice(&[1, 0, 2]);
    check_malformed(&hello);
    // Digest whose compact set repeats a hash (gap 0).
    check_malformed(&[1, 1, 2, 5, 0]);
    // Digest whose set has a padded varint.
    check_malformed(&[1, 1, 2, 0x85, 0x00]);
    // A file name length far beyond what a frame can hold.
    check_malformed(&[5, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
}

#[test]
fn huge_list_length_is_truncated_without_allocating_it() {
    // A Delta claiming 2^60 added hashes and holding none.
    let err = decode(&[2, 1, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(err, Err(DecodeError::Truncated)), "{err:?}");
}
