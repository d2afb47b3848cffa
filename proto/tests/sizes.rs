//! Encoded-size bounds: each message's worst case against its documented
//! maximum, and the digest targets (≤ 10 bytes per package at 10 000
//! packages, ≤ 64 bytes for a one-package delta, both framed).

mod common;

use common::realistic_name;
use pacmesh_proto::{
    encode, encode_frame, name_hash, Delta, Digest, FetchEnded, FetchHeader, FetchRequest,
    FetchStatus, Fetching, Hello, Message, NameHash, NodeId, PackageSet, MAX_ARCHS, MAX_ARCH_LEN,
    MAX_DELTA_CHANGES, MAX_DELTA_LEN, MAX_DIGEST_LEN, MAX_DIGEST_PACKAGES, MAX_FETCHING_LEN,
    MAX_FETCH_ENDED_LEN, MAX_FETCH_HEADER_LEN, MAX_FETCH_REQUEST_LEN, MAX_FRAME, MAX_HELLO_LEN,
    MAX_NAME_LEN, MAX_TRANSFER_FRAME, MAX_UNIT_LEN,
};

/// Encodes the worst case and checks it reaches (`exact`) or stays under
/// the documented bound.
fn check_worst(msg: Message, bound: usize, exact: bool) {
    let len = encode(&msg).len();
    assert_eq!(msg.max_encoded_len(), bound);
    if exact {
        assert_eq!(len, bound, "worst case should meet the bound exactly");
    } else {
        assert!(len <= bound, "{len} > {bound}");
    }
    encode_frame(&msg, MAX_FRAME).expect("the worst case fits a frame");
}

#[test]
fn worst_case_sizes_meet_the_documented_bounds() {
    let hello = Hello {
        node_id: NodeId([0xff; 32]),
        version: u32::MAX,
        archs: vec!["x".repeat(MAX_ARCH_LEN); MAX_ARCHS],
        mesh_proof: Some([0xff; 32]),
    };
    check_worst(Message::Hello(hello), MAX_HELLO_LEN, true);

    let full = |base: u64| -> Vec<NameHash> {
        (0..MAX_DELTA_CHANGES as u64)
            .map(|i| NameHash::from_u64(base + i))
            .collect()
    };
    let delta = Delta {
        seq: u64::MAX,
        added: full(u64::MAX / 2),
        removed: full(u64::MAX / 4),
    };
    check_worst(Message::Delta(delta), MAX_DELTA_LEN, true);

    let request = FetchRequest {
        file_name: "a".repeat(MAX_NAME_LEN),
        offset: u64::MAX,
    };
    check_worst(Message::FetchRequest(request), MAX_FETCH_REQUEST_LEN, true);

    let header = FetchHeader {
        status: FetchStatus::BadOffset,
        size: u64::MAX,
        mtime: i64::MIN,
    };
    check_worst(Message::FetchHeader(header), MAX_FETCH_HEADER_LEN, true);

    let fetching = Fetching {
        file_name: "a".repeat(MAX_NAME_LEN),
        size: u64::MAX,
    };
    check_worst(Message::Fetching(fetching), MAX_FETCHING_LEN, true);

    let ended = FetchEnded {
        file_name: "a".repeat(MAX_NAME_LEN),
        complete: true,
    };
    check_worst(Message::FetchEnded(ended), MAX_FETCH_ENDED_LEN, true);

    check_worst(Message::ResyncRequest, MAX_UNIT_LEN, true);
    check_worst(Message::Goodbye, MAX_UNIT_LEN, true);

    // A full digest: the largest hashes spread as wide as they go.
    let step = u64::MAX / MAX_DIGEST_PACKAGES as u64;
    let packages = (0..MAX_DIGEST_PACKAGES as u64)
        .map(|i| NameHash::from_u64(u64::MAX - i * step))
        .collect();
    check_worst(
        Message::Digest(Digest {
            seq: u64::MAX,
            packages,
        }),
        MAX_DIGEST_LEN,
        false,
    );
}

#[test]
fn bounds_fit_their_streams_frames() {
    for bound in [
        MAX_HELLO_LEN,
        MAX_DIGEST_LEN,
        MAX_DELTA_LEN,
        MAX_UNIT_LEN,
        MAX_FETCHING_LEN,
        MAX_FETCH_ENDED_LEN,
    ] {
        assert!(bound <= MAX_FRAME, "{bound}");
    }
    for bound in [MAX_FETCH_REQUEST_LEN, MAX_FETCH_HEADER_LEN] {
        assert!(bound <= MAX_TRANSFER_FRAME, "{bound}");
    }
}

#[test]
fn digest_of_10_000_packages_takes_at_most_10_bytes_each() {
    let names: Vec<String> = (0..10_000).map(realistic_name).collect();
    let packages = PackageSet::from_names(names.iter().map(String::as_str));
    assert_eq!(packages.len(), 10_000, "no collisions among these names");
    let frame =
        encode_frame(&Message::Digest(Digest { seq: 1, packages }), MAX_FRAME).expect("fits");
    let per_package = frame.len() as f64 / 10_000.0;
    assert!(per_package <= 10.0, "{per_package:.2} bytes per package");
    // The design expects ~8 (LEB128 of ~2^51 gaps); much more means the
    // compact form regressed to something like fixed u64s plus tags.
    assert!(per_package < 8.5, "{per_package:.2} bytes per package");
}

#[test]
fn delta_adding_one_package_takes_at_most_64_bytes() {
    let delta = Delta {
        // A link that has been up for a long time.
        seq: u64::from(u32::MAX) + 1,
        added: vec![name_hash(&realistic_name(10_001))],
        removed: vec![],
    };
    let frame = encode_frame(&Message::Delta(delta), MAX_FRAME).expect("fits");
    assert!(frame.len() <= 64, "{} bytes", frame.len());
    // tag + 9-byte seq + two list lengths + one 8-byte hash, framed.
    assert_eq!(frame.len(), 4 + 1 + 9 + 1 + 8 + 1);
}
