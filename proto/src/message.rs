//! Every message two pacmesh daemons exchange, their limits and their
//! largest encoded sizes.
//!
//! A link has one long-lived control stream (`Hello`, then `Digest`,
//! `Delta`, `ResyncRequest`, `Fetching`, `FetchEnded`, `Goodbye`) and one
//! short stream per transfer:
//! the asker sends a `FetchRequest`, the holder answers a `FetchHeader` and,
//! when its status is `Ok`, the file's bytes from the requested offset to
//! the end, raw and unframed. Liveness and RTT come from QUIC itself
//! (keep-alive, `Connection::rtt`), so there is no ping message.
//!
//! `Fetching` and `FetchEnded` (protocol version 2) announce the sender's
//! own downloads from the WAN, so a peer missing the same file joins that
//! download instead of starting another. A version 1 peer closes the link
//! on a tag it does not know, so they are sent only to peers whose `Hello`
//! says at least [`crate::FETCHING_MIN_VERSION`].
//!
//! The `MAX_*_LEN` constants are the largest payload (without the 4-byte
//! frame prefix) each message can encode to within the limits below; the
//! tests build the worst cases and check them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::filename::{validate_name, NameError, MAX_NAME_LEN};
use crate::package_set::{NameHash, PackageSet, MAX_DIGEST_PACKAGES, MAX_VARINT_LEN};

/// Most architectures a `Hello` may list.
pub const MAX_ARCHS: usize = 16;
/// Longest architecture name (`x86_64`, `aarch64`, `any`, …).
pub const MAX_ARCH_LEN: usize = 32;
/// Most hashes in each of a `Delta`'s two lists; larger changes are split
/// into several deltas by [`crate::DigestSender`].
pub const MAX_DELTA_CHANGES: usize = 4096;

// Encoded sizes under bincode's standard config: an enum tag < 251 and a
// length < 251 take 1 byte, a length < 2^16 takes 3, < 2^32 takes 5; a
// u32/u64/i64 takes at most 5/9/9.
const TAG: usize = 1;
const U32: usize = 5;
const U64: usize = 9;

/// Largest `Hello`: 16 archs of 32 bytes, a mesh proof.
pub const MAX_HELLO_LEN: usize = TAG + 32 + U32 + (1 + MAX_ARCHS * (1 + MAX_ARCH_LEN)) + (1 + 32);
/// Largest `Digest`: 100 000 hashes at the 10-byte varint worst case.
pub const MAX_DIGEST_LEN: usize = TAG + U64 + 5 + MAX_DIGEST_PACKAGES * MAX_VARINT_LEN;
/// Largest `Delta`: two full lists of 8-byte hashes.
pub const MAX_DELTA_LEN: usize = TAG + U64 + 2 * (3 + MAX_DELTA_CHANGES * 8);
/// `ResyncRequest` and `Goodbye` are their tag alone.
pub const MAX_UNIT_LEN: usize = TAG;
/// Largest `FetchRequest`: a 255-byte name.
pub const MAX_FETCH_REQUEST_LEN: usize = TAG + 3 + MAX_NAME_LEN + U64;
/// Largest `FetchHeader`.
pub const MAX_FETCH_HEADER_LEN: usize = TAG + 1 + U64 + 9;
/// Largest `Fetching`: a 255-byte name and a size.
pub const MAX_FETCHING_LEN: usize = TAG + 3 + MAX_NAME_LEN + U64;
/// Largest `FetchEnded`: a 255-byte name and a bool.
pub const MAX_FETCH_ENDED_LEN: usize = TAG + 3 + MAX_NAME_LEN + 1;

/// A daemon's identity: the SHA-256 of its certificate's public key
/// (the DER SubjectPublicKeyInfo), so a link can be pinned to the id it
/// was discovered with by hashing the key the peer's certificate holds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The node id of whoever holds the key in `spki_der`.
    pub fn from_spki(spki_der: &[u8]) -> Self {
        use sha2::{Digest as _, Sha256};
        NodeId(Sha256::digest(spki_der).into())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why text is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a node id is 64 hex digits")]
pub struct BadNodeId;

/// 64 hex digits, either case: what [`NodeId`]'s `Display` writes.
impl std::str::FromStr for NodeId {
    type Err = BadNodeId;

    fn from_str(text: &str) -> Result<Self, BadNodeId> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(BadNodeId);
        }
        let mut id = [0u8; 32];
        for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| BadNodeId)?;
            if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadNodeId);
            }
            *byte = u8::from_str_radix(pair, 16).map_err(|_| BadNodeId)?;
        }
        Ok(NodeId(id))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// First message on the control stream, each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: NodeId,
    /// [`crate::PROTOCOL_VERSION`]; the ALPN string already rules out
    /// incompatible peers, this is for compatible additions.
    pub version: u32,
    /// Package architectures this host caches, e.g. `x86_64`, `any`.
    pub archs: Vec<String>,
    /// Proof of holding the mesh key, when one is configured.
    pub mesh_proof: Option<[u8; 32]>,
}

/// The sender's whole index; replaces whatever the receiver had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The sequence number of the index state this is; the next `Delta`
    /// carries `seq + 1`.
    pub seq: u64,
    pub packages: PackageSet,
}

/// A change to the sender's index since the message with `seq - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub seq: u64,
    /// Applied after `removed`.
    pub added: Vec<NameHash>,
    pub removed: Vec<NameHash>,
}

/// Asks for one file from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// A plain file name; [`crate::decode`] guarantees it passed
    /// [`validate_name`].
    pub file_name: String,
    pub offset: u64,
}

/// Whether a fetch will be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FetchStatus {
    /// The bytes from the requested offset to `size` follow.
    Ok,
    /// The holder does not have (or no longer has) the file.
    NotFound,
    /// The holder is at its upload limit; ask another source.
    Busy,
    /// The offset is past the end of the file (it changed); start over.
    BadOffset,
}

/// The answer to a `FetchRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchHeader {
    pub status: FetchStatus,
    /// The whole file's size in bytes (0 unless `Ok`).
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (0 unless `Ok`).
    pub mtime: i64,
}

impl FetchHeader {
    pub fn ok(size: u64, mtime: i64) -> Self {
        FetchHeader {
            status: FetchStatus::Ok,
            size,
            mtime,
        }
    }

    pub fn refused(status: FetchStatus) -> Self {
        FetchHeader {
            status,
            size: 0,
            mtime: 0,
        }
    }

    /// How many raw bytes follow the header for a request at `offset`.
    pub fn body_len(&self, offset: u64) -> u64 {
        match self.status {
            FetchStatus::Ok => self.size.saturating_sub(offset),
            _ => 0,
        }
    }
}

/// "I am downloading this file from the WAN right now": sent on the
/// control stream when the download starts, again when its size becomes
/// known, and for every download under way right after the `Digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetching {
    /// A plain file name; [`crate::decode`] guarantees it passed
    /// [`validate_name`].
    pub file_name: String,
    /// The whole file's size in bytes, 0 while not known yet.
    pub size: u64,
}

/// "My download of this file ended", after a `Fetching` for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchEnded {
    /// A plain file name, checked like [`Fetching::file_name`].
    pub file_name: String,
    /// The file verified and is in the sender's digest now (or in the next
    /// delta); false when the download was abandoned or did not verify.
    pub complete: bool,
}

/// One frame's content. New variants go at the end (the tag is the index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Digest(Digest),
    Delta(Delta),
    /// The receiver saw a gap in the delta sequence; answer with a `Digest`.
    ResyncRequest,
    /// The sender is closing the link on purpose (shutdown), not failing.
    Goodbye,
    FetchRequest(FetchRequest),
    FetchHeader(FetchHeader),
    /// Version 2 and later.
    Fetching(Fetching),
    /// Version 2 and later.
    FetchEnded(FetchEnded),
}

/// A limit of this module that a message breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LimitError {
    Limit(&'static str),
    Name(NameError),
}

impl Message {
    /// The largest payload this kind of message can encode to.
    pub fn max_encoded_len(&self) -> usize {
        match self {
            Message::Hello(_) => MAX_HELLO_LEN,
            Message::Digest(_) => MAX_DIGEST_LEN,
            Message::Delta(_) => MAX_DELTA_LEN,
            Message::ResyncRequest | Message::Goodbye => MAX_UNIT_LEN,
            Message::FetchRequest(_) => MAX_FETCH_REQUEST_LEN,
            Message::FetchHeader(_) => MAX_FETCH_HEADER_LEN,
            Message::Fetching(_) => MAX_FETCHING_LEN,
            Message::FetchEnded(_) => MAX_FETCH_ENDED_LEN,
        }
    }

    /// Checks the limits the type system does not: counts, lengths, names.
    pub(crate) fn check_limits(&self) -> Result<(), LimitError> {
        use LimitError::Limit;
        match self {
            Message::Hello(h) => {
                if h.archs.len() > MAX_ARCHS {
                    return Err(Limit("more architectures than MAX_ARCHS"));
                }
                if !h.archs.iter().all(|a| is_arch_name(a)) {
                    return Err(Limit("architecture name not [A-Za-z0-9_]{1,32}"));
                }
            }
            Message::Digest(d) if d.packages.len() > MAX_DIGEST_PACKAGES => {
                return Err(Limit("more packages than MAX_DIGEST_PACKAGES"));
            }
            Message::Delta(d)
                if d.added.len() > MAX_DELTA_CHANGES || d.removed.len() > MAX_DELTA_CHANGES =>
            {
                return Err(Limit("more delta changes than MAX_DELTA_CHANGES"));
            }
            Message::FetchRequest(FetchRequest { file_name, .. })
            | Message::Fetching(Fetching { file_name, .. })
            | Message::FetchEnded(FetchEnded { file_name, .. }) => {
                validate_name(file_name).map_err(LimitError::Name)?;
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_arch_name(arch: &str) -> bool {
    (1..=MAX_ARCH_LEN).contains(&arch.len())
        && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
