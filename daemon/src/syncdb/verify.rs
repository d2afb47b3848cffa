//! Checking a package download against its database entry as the bytes
//! arrive.
//!
//! SHA-256 covers the whole file, so a [`Verifier`] is fed every byte from
//! offset 0. That is no burden in the normal case: the daemon streams the
//! whole file to pacman, and when a peer fails mid-transfer at byte N the
//! next source is asked for N.. and fed to the same verifier
//! ([`Verifier::received`] is that N).
//!
//! pacman resuming its own `.part` file sends `Range: bytes=N-`, and the
//! daemon has never seen bytes 0..N (pacman's `.part` file is not the
//! daemon's to read). The recommended way: fetch from offset 0 anyway,
//! feed everything to the verifier, and send pacman only N.. (see
//! [`for_client`]). It costs N extra bytes on the LAN, which is cheap,
//! and keeps one simple rule: nothing is vouched for unless the daemon
//! hashed all of it. As always, the response is cut (pacman moves on to
//! its next server) when [`Verifier::update`] or [`Verifier::finish`]
//! fails, and nothing received is kept.

use ring::digest;

use super::{to_hex, Expected};

/// How a download differs from its database entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    #[error("{received} bytes received, more than the {size} the database gives")]
    TooLong { size: u64, received: u64 },
    #[error("ended after {received} bytes, short of the {size} the database gives")]
    TooShort { size: u64, received: u64 },
    #[error("SHA-256 {} differs from {} in the database ({size} bytes)", to_hex(.got), to_hex(.expected))]
    Checksum {
        expected: [u8; 32],
        got: [u8; 32],
        size: u64,
    },
}

/// Hashes one package download from byte 0 and compares it with what the
/// host's own sync database says (pure: bytes in, verdict out).
pub struct Verifier {
    expected: Expected,
    hash: digest::Context,
    received: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("expected", &self.expected)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(expected: Expected) -> Self {
        Verifier {
            expected,
            hash: digest::Context::new(&digest::SHA256),
            received: 0,
        }
    }

    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// Bytes fed so far: the offset the next source must start from.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Feeds the next bytes of the file. Fails as soon as more bytes than
    /// the database's size have arrived (the bytes past it are not hashed;
    /// the transfer must be cut).
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), Mismatch> {
        self.received = self.received.saturating_add(bytes.len() as u64);
        self.check_so_far()?;
        self.hash.update(bytes);
        Ok(())
    }

    /// Whether what arrived so far can still be the right file: only its
    /// length can be judged before the end.
    pub fn check_so_far(&self) -> Result<(), Mismatch> {
        if self.received > self.expected.size {
            return Err(Mismatch::TooLong {
                size: self.expected.size,
                received: self.received,
            });
        }
        Ok(())
    }

    /// The verdict once the source says the file is complete.
    pub fn finish(self) -> Result<(), Mismatch> {
        self.check_so_far()?;
        let size = self.expected.size;
        if self.received < size {
            return Err(Mismatch::TooShort {
                size,
                received: self.received,
            });
        }
        let mut got = [0u8; 32];
        got.copy_from_slice(self.hash.finish().as_ref());
        if got != self.expected.sha256 {
            return Err(Mismatch::Checksum {
                expected: self.expected.sha256,
                got,
                size,
            });
        }
        Ok(())
    }
}

/// The part of `chunk` (which starts at file offset `chunk_offset`) that
/// goes to a client who asked for bytes `client_from..`: everything the
/// verifier is fed, minus what the client already has.
pub fn for_client(chunk_offset: u64, chunk: &[u8], client_from: u64) -> &[u8] {
    let skip = client_from.saturating_sub(chunk_offset);
    let skip = usize::try_from(skip).map_or(chunk.len(), |s| s.min(chunk.len()));
    &chunk[skip..]
}
