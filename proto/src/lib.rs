//! pacmesh's shared domain types and the peer wire protocol.
//!
//! Invariant: this crate never depends on tokio, quinn or hyper, so every
//! decision in it is a pure function testable with plain `#[test]`.
//!
//! - [`filename`]: what a file name means and whether it is safe.
//! - [`message`]: the messages peers exchange, their limits and sizes.
//! - [`package_set`]: name hashes and the compact index digest.
//! - [`digest_state`]: keeping a peer's index in step (seq, delta, resync).
//! - [`wire`]: the codec, the only module that calls bincode.
//! - [`frame`]: splitting a stream into length-prefixed frames.

#![forbid(unsafe_code)]

pub mod digest_state;
pub mod filename;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod package_set;
pub mod wire;

pub use digest_state::{DeltaOutcome, DigestSender, DigestState};
pub use filename::{classify, validate_name, FileKind, NameError, MAX_NAME_LEN};
pub use frame::FrameDecoder;
pub use message::{
    BadNodeId, Delta, Digest, FetchEnded, FetchHeader, FetchRequest, FetchStatus, Fetching, Hello,
    Message, NodeId, MAX_ARCHS, MAX_ARCH_LEN, MAX_DELTA_CHANGES, MAX_DELTA_LEN, MAX_DIGEST_LEN,
    MAX_FETCHING_LEN, MAX_FETCH_ENDED_LEN, MAX_FETCH_HEADER_LEN, MAX_FETCH_REQUEST_LEN,
    MAX_HELLO_LEN, MAX_UNIT_LEN,
};
pub use package_set::{name_hash, NameHash, PackageSet, SetError, MAX_DIGEST_PACKAGES};
pub use wire::{
    decode, encode, encode_frame, DecodeError, EncodeError, ALPN, FETCHING_MIN_VERSION,
    FRAME_PREFIX_LEN, MAX_FRAME, MAX_TRANSFER_FRAME, PROTOCOL_VERSION,
};
