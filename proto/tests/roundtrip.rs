//! Round-trip properties: every message, the frame decoder under any chunk
//! split, the compact set form, and the digest sync protocol end to end.

mod common;

use common::{arb_message, arb_set};
use pacmesh_proto::{
    decode, encode, encode_frame, DeltaOutcome, DigestSender, DigestState, FrameDecoder, Message,
    NameHash, PackageSet, MAX_FRAME,
};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn every_message_round_trips_within_its_size_bound(msg in arb_message()) {
        let payload = encode(&msg);
        prop_assert!(payload.len() <= msg.max_encoded_len(), "{} > bound", payload.len());
        prop_assert!(msg.max_encoded_len() <= MAX_FRAME);
        prop_assert_eq!(decode(&payload).expect("decodes"), msg.clone());

        let frame = encode_frame(&msg, MAX_FRAME).expect("within limits");
        prop_assert_eq!(&frame[4..], &payload[..]);
        prop_assert_eq!(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize, payload.len());
    }

    #[test]
    fn frame_decoder_reassembles_any_chunk_split(
        msgs in vec(arb_message(), 0..8),
        cuts in vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream: Vec<u8> = msgs
            .iter()
            .flat_map(|m| encode_frame(m, MAX_FRAME).expect("within limits"))
            .collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();

        let mut dec = FrameDecoder::control();
        let mut got = Vec::new();
        for pair in cuts.windows(2) {
            dec.feed(&stream[pair[0]..pair[1]]).expect("valid prefixes");
            while let Some(m) = dec.next_message().expect("valid frames") {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn compact_set_round_trips(set in arb_set(2000)) {
        let bytes = set.encode_compact();
        prop_assert_eq!(PackageSet::decode_compact(&bytes), Ok(set));
    }

    /// Only canonical encodings decode, so a set has exactly one form.
    #[test]
    fn accepted_compact_bytes_are_canonical(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok(set) = PackageSet::decode_compact(&bytes) {
            prop_assert_eq!(set.encode_compact(), bytes);
        }
    }

    /// A sender's changes, with some deltas lost on the way: the receiver
    /// either applies, or asks for a resync and then matches again.
    #[test]
    fn receiver_converges_despite_lost_deltas(
        steps in vec((vec(arb_small_hash(), 0..6), vec(arb_small_hash(), 0..6), any::<bool>()), 0..40),
    ) {
        let mut sender = DigestSender::default();
        let mut receiver = DigestState::new();
        receiver.on_digest(sender.digest());
        for (added, removed, lose) in steps {
            for delta in sender.change(&added, &removed) {
                if lose {
                    continue;
                }
                // Through the codec, as on a real link.
                let Message::Delta(delta) = decode(&encode(&Message::Delta(delta))).expect("ok")
                else { unreachable!() };
                match receiver.on_delta(&delta) {
                    DeltaOutcome::Applied => prop_assert_eq!(&receiver.to_package_set(), sender.packages()),
                    DeltaOutcome::NeedResync => receiver.on_digest(sender.digest()),
                    DeltaOutcome::Stale => {}
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
        if receiver.seq() != Some(sender.seq()) {
            // The last deltas were lost: the next change reveals the gap.
            let next = sender.change(&[NameHash::from_u64(u64::MAX)], &[]);
            prop_assert_eq!(receiver.on_delta(&next[0]), DeltaOutcome::NeedResync);
            receiver.on_digest(sender.digest());
        }
        prop_assert_eq!(&receiver.to_package_set(), sender.packages());
        prop_assert!(receiver.is_in_sync());
    }
}

/// Hashes from a small range, so additions and removals collide often.
fn arb_small_hash() -> impl Strategy<Value = NameHash> {
    (0u64..20).prop_map(NameHash::from_u64)
}

/// A version 1 peer decodes tags 0 to 6; the version 2 messages must come
/// after them, never between.
#[test]
fn message_tags_never_move() {
    use pacmesh_proto::{FetchEnded, Fetching};
    let tag = |m: Message| encode(&m)[0];
    assert_eq!(tag(Message::ResyncRequest), 3);
    assert_eq!(tag(Message::Goodbye), 4);
    let fetching = Fetching {
        file_name: "a".into(),
        size: 1,
    };
    assert_eq!(tag(Message::Fetching(fetching)), 7);
    let ended = FetchEnded {
        file_name: "a".into(),
        complete: false,
    };
    assert_eq!(tag(Message::FetchEnded(ended)), 8);
}

/// A node id reads back from the 64 hex digits it is written as.
#[test]
fn node_ids_parse_from_their_hex() {
    use pacmesh_proto::{BadNodeId, NodeId};
    let id = NodeId(std::array::from_fn(|i| (i * 37) as u8));
    assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
    assert_eq!(id.to_string().to_uppercase().parse::<NodeId>(), Ok(id));
    for bad in [
        "",
        "00",
        &"0".repeat(63),
        &"0".repeat(65),
        &"g".repeat(64),
        &"+1".repeat(32),
    ] {
        assert_eq!(bad.parse::<NodeId>(), Err(BadNodeId), "{bad:?}");
    }
    // Multi-byte characters are not hex digits.
    let wide = format!("é{}", "0".repeat(62));
    assert_eq!(wide.parse::<NodeId>(), Err(BadNodeId));
}
