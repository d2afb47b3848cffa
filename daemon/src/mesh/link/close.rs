//! The application close codes of a peer link, so that the end that did
//! not close can log why.

use quinn::{ConnectionError, VarInt};

/// Why a link was closed on purpose. Code 0 is quinn's implicit close (a
/// connection handle dropped), so every code here is non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// The host is stopping (a `Goodbye` was sent first).
    Goodbye = 1,
    /// Another link between the same two hosts survives.
    Duplicate = 2,
    /// A malformed, oversized or unexpected frame.
    Protocol = 3,
    /// Both ends have a mesh key but not the same one, or only the peer
    /// has one.
    MeshKeyMismatch = 4,
    /// This host needs a mesh key proof and the peer sent none.
    NoMeshKey = 5,
    /// The peer's protocol version is not supported.
    Version = 6,
    /// Discovery reported the peer gone.
    Gone = 7,
    /// Nothing heard from the peer within the idle timeout.
    Silent = 8,
    /// The peer did not complete its `Hello` in time.
    HelloTimeout = 9,
    /// The `Hello` names another node than the certificate.
    WrongNode = 10,
    /// This host has as many links as it keeps (`MeshOptions::max_links`).
    TooManyPeers = 11,
}

const ALL: [CloseCode; 11] = [
    CloseCode::Goodbye,
    CloseCode::Duplicate,
    CloseCode::Protocol,
    CloseCode::MeshKeyMismatch,
    CloseCode::NoMeshKey,
    CloseCode::Version,
    CloseCode::Gone,
    CloseCode::Silent,
    CloseCode::HelloTimeout,
    CloseCode::WrongNode,
    CloseCode::TooManyPeers,
];

impl CloseCode {
    pub fn varint(self) -> VarInt {
        VarInt::from_u32(self as u32)
    }

    pub fn from_varint(code: VarInt) -> Option<CloseCode> {
        ALL.into_iter().find(|c| c.varint() == code)
    }

    /// Also sent as the close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Goodbye => "shutting down",
            CloseCode::Duplicate => "duplicate link",
            CloseCode::Protocol => "protocol violation",
            CloseCode::MeshKeyMismatch => "mesh key mismatch",
            CloseCode::NoMeshKey => "peer has no mesh key",
            CloseCode::Version => "unsupported protocol version",
            CloseCode::Gone => "peer unregistered",
            CloseCode::Silent => "peer silent",
            CloseCode::HelloTimeout => "no hello in time",
            CloseCode::WrongNode => "hello names another node",
            CloseCode::TooManyPeers => "too many peers",
        }
    }

    pub fn close(self, conn: &quinn::Connection) {
        conn.close(self.varint(), self.reason().as_bytes());
    }
}

/// The code a peer closed a connection with, if it was one of ours.
pub fn peer_code(err: &ConnectionError) -> Option<CloseCode> {
    match err {
        ConnectionError::ApplicationClosed(close) => CloseCode::from_varint(close.error_code),
        _ => None,
    }
}

/// A connection error for a log line, naming our close codes.
pub fn describe(err: &ConnectionError) -> String {
    match (err, peer_code(err)) {
        (_, Some(code)) => format!("peer closed the link: {}", code.reason()),
        (ConnectionError::ApplicationClosed(close), None) => {
            format!("peer closed the link (code {})", close.error_code)
        }
        (other, None) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_never_zero() {
        for code in ALL {
            assert_ne!(code as u32, 0);
            assert_eq!(CloseCode::from_varint(code.varint()), Some(code));
        }
        assert_eq!(CloseCode::from_varint(VarInt::from_u32(0)), None);
        assert_eq!(CloseCode::from_varint(VarInt::from_u32(999)), None);
    }
}
