//! proptest strategies for every wire type, shared by the test files.

#![allow(dead_code)]

use pacmesh_proto::{
    validate_name, Delta, Digest, FetchEnded, FetchHeader, FetchRequest, FetchStatus, Fetching,
    Hello, Message, NameHash, NodeId, PackageSet, MAX_ARCHS,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// A realistic package file name, as found in pacman's cache.
pub fn realistic_name(i: usize) -> String {
    format!("name{i}-1.{i}-1-x86_64.pkg.tar.zst")
}

pub fn arb_hash() -> impl Strategy<Value = NameHash> {
    any::<u64>().prop_map(NameHash::from_u64)
}

pub fn arb_set(max: usize) -> impl Strategy<Value = PackageSet> {
    vec(arb_hash(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Any name `validate_name` accepts: printable Unicode, up to 255 bytes.
pub fn arb_file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9@_+][a-z0-9@._+-]{0,40}-[0-9.:]{1,10}-[0-9]{1,2}-(x86_64|any)\\.pkg\\.tar\\.(zst|xz)(\\.sig)?",
        "\\PC{1,100}",
    ]
    .prop_filter("valid file name", |n| validate_name(n).is_ok())
}

pub fn arb_hello() -> impl Strategy<Value = Hello> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        vec("[A-Za-z0-9_]{1,32}", 0..=MAX_ARCHS),
        any::<Option<[u8; 32]>>(),
    )
        .prop_map(|(id, version, archs, mesh_proof)| Hello {
            node_id: NodeId(id),
            version,
            archs,
            mesh_proof,
        })
}

pub fn arb_delta() -> impl Strategy<Value = Delta> {
    (any::<u64>(), vec(arb_hash(), 0..50), vec(arb_hash(), 0..50)).prop_map(
        |(seq, added, removed)| Delta {
            seq,
            added,
            removed,
        },
    )
}

pub fn arb_fetch_header() -> impl Strategy<Value = FetchHeader> {
    let status = prop_oneof![
        Just(FetchStatus::Ok),
        Just(FetchStatus::NotFound),
        Just(FetchStatus::Busy),
        Just(FetchStatus::BadOffset),
    ];
    (status, any::<u64>(), any::<i64>()).prop_map(|(status, size, mtime)| FetchHeader {
        status,
        size,
        mtime,
    })
}

pub fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_hello().prop_map(Message::Hello),
        (any::<u64>(), arb_set(300))
            .prop_map(|(seq, packages)| Message::Digest(Digest { seq, packages })),
        arb_delta().prop_map(Message::Delta),
        Just(Message::ResyncRequest),
        Just(Message::Goodbye),
        (arb_file_name(), any::<u64>()).prop_map(|(file_name, offset)| {
            Message::FetchRequest(FetchRequest { file_name, offset })
        }),
        arb_fetch_header().prop_map(Message::FetchHeader),
        (arb_file_name(), any::<u64>())
            .prop_map(|(file_name, size)| Message::Fetching(Fetching { file_name, size })),
        (arb_file_name(), any::<bool>()).prop_map(|(file_name, complete)| {
            Message::FetchEnded(FetchEnded {
                file_name,
                complete,
            })
        }),
    ]
}
