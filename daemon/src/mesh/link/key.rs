//! The mesh key (`/etc/pacmesh/mesh.key`): its tag announced over mDNS,
//! and the proof of holding it that each end of a link sends in `Hello`.
//!
//! The proof is HMAC-SHA256(key, TLS exporter output) with the exporter's
//! context naming the sender's role. The exporter output is secret and
//! unique to one TLS session, so a proof cannot be replayed on another
//! connection, nor reflected back to its sender on the same one.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ring::{digest, hmac};

/// The mesh tag of hosts without a mesh key.
pub const OPEN_TAG: &str = "open";

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Exporter label of the mesh-key proof.
pub(crate) const PROOF_LABEL: &[u8] = b"pacmesh mesh proof";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshKeyError {
    #[error("mesh key {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "mesh key {}: {len} bytes, at least {MIN_KEY_LEN} are needed \
         (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
        path.display()
    )]
    TooShort { path: PathBuf, len: usize },
}

/// Which end of a link a proof is from: the exporter context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

impl Role {
    pub(crate) fn context(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"dialer",
            Role::Acceptor => b"acceptor",
        }
    }

    pub(crate) fn other(self) -> Role {
        match self {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        }
    }
}

/// The shared secret of one mesh. Never printed.
#[derive(Clone)]
pub struct MeshKey {
    hmac: hmac::Key,
    tag: String,
}

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshKey")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl MeshKey {
    /// Reads a key file: its whole content less trailing line breaks, at
    /// least [`MIN_KEY_LEN`] bytes.
    pub fn load(path: &Path) -> Result<MeshKey, MeshKeyError> {
        let bytes = std::fs::read(path).map_err(|source| MeshKeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "mesh key is readable by others; chmod 600 it");
            }
        }
        MeshKey::from_bytes(&bytes).ok_or_else(|| MeshKeyError::TooShort {
            path: path.to_owned(),
            len: trim(&bytes).len(),
        })
    }

    /// A key from the content of a key file; `None` when too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<MeshKey> {
        let key = trim(bytes);
        if key.len() < MIN_KEY_LEN {
            return None;
        }
        let mut h = digest::Context::new(&digest::SHA256);
        h.update(b"pacmesh mesh tag\0");
        h.update(key);
        let tag = hex(&h.finish().as_ref()[..8]);
        Some(MeshKey {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, key),
            tag,
        })
    }

    /// Names the mesh in mDNS: 16 hex digits of SHA-256("pacmesh mesh
    /// tag\0" || key). Reveals nothing useful about the key.
    pub fn tag(&self) -> String {
        self.tag.clone()
    }

    /// The proof that the end in `role` holds the key, given that
    /// connection's exporter output for [`PROOF_LABEL`] and `role`.
    pub fn proof(&self, exported: &[u8; 32]) -> [u8; 32] {
        let tag = hmac::sign(&self.hmac, exported);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Constant-time check of a peer's proof.
    pub fn verify(&self, exported: &[u8; 32], proof: &[u8; 32]) -> bool {
        hmac::verify(&self.hmac, exported, proof).is_ok()
    }
}

/// The tag to announce for an optional key.
pub fn mesh_tag(key: Option<&MeshKey>) -> String {
    key.map_or_else(|| OPEN_TAG.to_owned(), MeshKey::tag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newlines_do_not_count() {
        let a = MeshKey::from_bytes(b"0123456789abcdef\n").expect("16 bytes");
        let b = MeshKey::from_bytes(b"0123456789abcdef\r\n\n").expect("16 bytes");
        let c = MeshKey::from_bytes(b"0123456789abcdef").expect("16 bytes");
        assert_eq!(a.tag(), c.tag());
        assert_eq!(b.tag(), c.tag());
        assert_eq!(c.tag().len(), 16);
        assert_ne!(c.tag(), OPEN_TAG);
        assert!(MeshKey::from_bytes(b"0123456789abcde\n").is_none());
        assert!(MeshKey::from_bytes(b"\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n").is_none());
    }

    #[test]
    fn tag_is_sha256_of_prefix_and_key() {
        // printf 'pacmesh mesh tag\0%s' 0123456789abcdef | sha256sum | cut -c1-16
        let key = MeshKey::from_bytes(b"0123456789abcdef").expect("long enough");
        let want = "ad1b896f895dc139";
        assert_eq!(key.tag(), want);
        assert_eq!(mesh_tag(None), "open");
        assert_eq!(mesh_tag(Some(&key)), want);
    }

    #[test]
    fn load_names_the_file_when_too_short_or_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh.key");
        std::fs::write(&path, "short\n").expect("write");
        let err = MeshKey::load(&path).expect_err("too short").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("5 bytes"), "{err}");
        let missing = dir.path().join("nope.key");
        let err = MeshKey::load(&missing).expect_err("missing").to_string();
        assert!(err.contains("nope.key"), "{err}");
        std::fs::write(&path, "a-long-enough-mesh-key\n").expect("write");
        assert!(MeshKey::load(&path).is_ok());
    }

    #[test]
    fn proofs_check_only_with_the_same_key_and_material() {
        let a = MeshKey::from_bytes(b"key number one, long").expect("key");
        let b = MeshKey::from_bytes(b"key number two, long").expect("key");
        let material = [7u8; 32];
        let proof = a.proof(&material);
        assert!(a.verify(&material, &proof));
        assert!(!b.verify(&material, &proof));
        assert!(!a.verify(&[8u8; 32], &proof));
    }
}
