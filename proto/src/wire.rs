//! The codec: the one module that calls bincode, so swapping the encoding
//! touches this file only.
//!
//! A message's payload is its bincode encoding under
//! `bincode::config::standard()` (little-endian varints). On a stream each
//! payload travels in a frame: a big-endian `u32` length, then the payload
//! (see [`crate::FrameDecoder`]). The protocol's version is the ALPN
//! string; a change that old peers cannot decode gets a new one, unless
//! it is a message kind that is only sent to peers whose `Hello.version`
//! says they know it (see [`PROTOCOL_VERSION`]).

use bincode::config::{self, Config};
use bincode::error::DecodeError as BincodeError;

use crate::filename::NameError;
use crate::message::{LimitError, Message};

/// ALPN of this protocol version on QUIC links.
pub const ALPN: &[u8] = b"pacmesh/1";
/// Version carried in `Hello`, for compatible additions within one ALPN.
///
/// - 1: `Hello`, `Digest`, `Delta`, `ResyncRequest`, `Goodbye`,
///   `FetchRequest`, `FetchHeader`.
/// - 2: adds `Fetching` and `FetchEnded` (announced WAN downloads). A
///   version 1 peer would close the link on their tags, so they are sent
///   only to peers at [`FETCHING_MIN_VERSION`] or later; the ALPN stays
///   `pacmesh/1` and the two versions keep linking.
pub const PROTOCOL_VERSION: u32 = 2;
/// The first `Hello.version` that understands `Fetching` and `FetchEnded`.
pub const FETCHING_MIN_VERSION: u32 = 2;
/// Largest payload of a control-stream frame (1 MiB): holds the largest
/// `Digest` ([`crate::MAX_DIGEST_LEN`]).
pub const MAX_FRAME: usize = 1 << 20;
/// Largest payload of a frame on a transfer stream, where only
/// `FetchRequest` and `FetchHeader` travel.
pub const MAX_TRANSFER_FRAME: usize = 1024;
/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_LEN: usize = 4;

/// Why bytes from a peer are not a message. Each of these closes the link
/// they came on, never the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message truncated")]
    Truncated,
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    Oversized { len: usize, max: usize },
    #[error("{extra} bytes after the end of the message")]
    TrailingBytes { extra: usize },
    /// Not a message at all: unknown tag, bad UTF-8, invalid field value.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Well-formed, but over one of the protocol's limits.
    #[error("message over a protocol limit: {0}")]
    OverLimit(&'static str),
    #[error("bad file name in message")]
    BadFileName(#[source] NameError),
}

/// Why a message cannot be sent; a bug on the sending side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("message over a protocol limit: {0}")]
    OverLimit(&'static str),
    #[error("bad file name in message")]
    BadFileName(#[source] NameError),
    #[error("message of {len} bytes is over the {max}-byte frame limit")]
    Oversized { len: usize, max: usize },
}

fn codec() -> impl Config {
    // The limit caps what length fields may make the decoder allocate.
    config::standard().with_limit::<MAX_FRAME>()
}

/// Encodes a message's payload (no frame prefix). Does not check limits;
/// [`encode_frame`] does.
pub fn encode(message: &Message) -> Vec<u8> {
    // Encoding to a Vec cannot fail for these types: every sequence has a
    // known length and the writer cannot run out of space.
    bincode::serde::encode_to_vec(message, codec()).expect("every Message encodes")
}

/// Encodes a message as a frame (length prefix + payload) after checking
/// the protocol's limits and `max_frame` (e.g. [`MAX_FRAME`]).
pub fn encode_frame(message: &Message, max_frame: usize) -> Result<Vec<u8>, EncodeError> {
    message.check_limits().map_err(|e| match e {
        LimitError::Limit(what) => EncodeError::OverLimit(what),
        LimitError::Name(e) => EncodeError::BadFileName(e),
    })?;
    let payload = encode(message);
    let max = max_frame.min(MAX_FRAME);
    if payload.len() > max {
        return Err(EncodeError::Oversized {
            len: payload.len(),
            max,
        });
    }
    let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + payload.len());
    // Fits: payload.len() <= MAX_FRAME < 2^32.
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes one payload, which must be exactly one message within the
/// protocol's limits.
pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
    if payload.len() > MAX_FRAME {
        return Err(DecodeError::Oversized {
            len: payload.len(),
            max: MAX_FRAME,
        });
    }
    let (message, used): (Message, usize) =
        bincode::serde::decode_from_slice(payload, codec()).map_err(from_bincode)?;
    if used != payload.len() {
        return Err(DecodeError::TrailingBytes {
            extra: payload.len() - used,
        });
    }
    message.check_limits().map_err(|e| match e {
        LimitError::Limit(what) => DecodeError::OverLimit(what),
        LimitError::Name(e) => DecodeError::BadFileName(e),
    })?;
    Ok(message)
}

fn from_bincode(e: BincodeError) -> DecodeError {
    match e {
        BincodeError::UnexpectedEnd { .. } => DecodeError::Truncated,
        other => DecodeError::Malformed(other.to_string()),
    }
}
