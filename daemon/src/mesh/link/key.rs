//! The mesh key (`/etc/pacmesh/mesh.key`): its tag announced over mDNS,
//! the proof of holding it that each end of a link sends in `Hello`, and
//! [`generate`], which writes a new key file.
//!
//! Anything derived from the key alone that others can see (the tag) or
//! obtain (a proof sent to a host that answered our dial) lets them check
//! a guess of the key offline. So guessing must be hopeless: keys are at
//! least [`MIN_KEY_LEN`] bytes, [`generate`] makes 32 random ones, and
//! the key is first stretched with PBKDF2-HMAC-SHA256
//! ([`KEY_STRETCH_ITERATIONS`]), so each guess of a human-chosen key
//! costs that many HMACs. The tag and the proof's HMAC key are then
//! derived from the stretched key with HMAC and fixed labels.
//!
//! The proof is HMAC-SHA256(proof key, TLS exporter output) with the
//! exporter's context naming the sender's role. The exporter output is
//! secret and unique to one TLS session, so a proof cannot be replayed on
//! another connection, nor reflected back to its sender on the same one.

use std::fmt;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom as _;
use ring::{hmac, pbkdf2, rand};

/// The mesh tag of hosts without a mesh key.
pub const OPEN_TAG: &str = "open";

/// Shortest key accepted, in bytes (after trailing line breaks): what
/// [`generate`] writes is 64, what `head -c 32 /dev/urandom | base64`
/// writes 44.
pub const MIN_KEY_LEN: usize = 32;

/// PBKDF2 rounds applied to the key once, at load: each offline guess of
/// the key costs as many HMAC-SHA256s (20 ms of one core with OpenSSL's
/// PBKDF2 on the test machine; a quarter second in a debug build).
pub const KEY_STRETCH_ITERATIONS: u32 = 100_000;

/// Random bytes in a generated key (written as 64 hex digits).
pub const GENERATED_KEY_BYTES: usize = 32;

const STRETCH_SALT: &[u8] = b"pacmesh mesh key";
const TAG_LABEL: &[u8] = b"pacmesh mesh tag";
const PROOF_KEY_LABEL: &[u8] = b"pacmesh mesh proof key";

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
         (make one with `pacmeshd --gen-mesh-key FILE`)",
        path.display()
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("mesh key {}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mesh key {}: no random bytes from the system", path.display())]
    Random { path: PathBuf },
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
    /// least [`MIN_KEY_LEN`] bytes. Warns when its permissions let more
    /// than the daemon read it (see [`permission_problem`]).
    pub fn load(path: &Path) -> Result<MeshKey, MeshKeyError> {
        let bytes = std::fs::read(path).map_err(|source| MeshKeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(meta) = std::fs::metadata(path) {
            let own_gid = rustix::process::getgid().as_raw();
            let mode = meta.permissions().mode();
            if let Some(problem) = permission_problem(mode, meta.gid(), own_gid) {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "mesh key {problem}; chmod 0640 and chgrp it to the daemon's group (0600 when the daemon owns it)");
            }
        }
        MeshKey::from_bytes(&bytes).ok_or_else(|| MeshKeyError::TooShort {
            path: path.to_owned(),
            len: trim(&bytes).len(),
        })
    }

    /// A key from the content of a key file; `None` when too short.
    /// Stretches the key ([`KEY_STRETCH_ITERATIONS`]), so it is worth
    /// calling once.
    pub fn from_bytes(bytes: &[u8]) -> Option<MeshKey> {
        let key = trim(bytes);
        if key.len() < MIN_KEY_LEN {
            return None;
        }
        let mut stretched = [0u8; 32];
        let rounds = NonZeroU32::new(KEY_STRETCH_ITERATIONS).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            STRETCH_SALT,
            key,
            &mut stretched,
        );
        let master = hmac::Key::new(hmac::HMAC_SHA256, &stretched);
        let tag = hex(&hmac::sign(&master, TAG_LABEL).as_ref()[..8]);
        let proof_key = hmac::sign(&master, PROOF_KEY_LABEL);
        Some(MeshKey {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, proof_key.as_ref()),
            tag,
        })
    }

    /// Names the mesh in mDNS: 16 hex digits of HMAC-SHA256(stretched
    /// key, "pacmesh mesh tag"). Checking a guess of the key against it
    /// costs the whole stretch.
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

/// Why a key file's permissions let more than the daemon read it, if
/// they do. The packaged layout is owner root, group of the daemon's user
/// (`pacmesh`), mode 0640 (`systemd/pacmesh.tmpfiles`), so the group may
/// read when it is the daemon's own group; others never, and nobody but
/// the owner may write.
pub fn permission_problem(mode: u32, file_gid: u32, own_gid: u32) -> Option<&'static str> {
    if mode & 0o007 != 0 {
        Some("is readable or writable by others")
    } else if mode & 0o020 != 0 {
        Some("is writable by its group")
    } else if mode & 0o040 != 0 && file_gid != own_gid {
        Some("is readable by a group the daemon is not running as")
    } else {
        None
    }
}

/// Writes a new key file at `path`: [`GENERATED_KEY_BYTES`] random bytes
/// as hex and a line break, mode 0600, never over an existing file.
pub fn generate(path: &Path) -> Result<(), MeshKeyError> {
    let mut random = [0u8; GENERATED_KEY_BYTES];
    rand::SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| MeshKeyError::Random {
            path: path.to_owned(),
        })?;
    let text = format!("{}\n", hex(&random));
    let write_error = |source| MeshKeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(())
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

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn trailing_newlines_do_not_count() {
        let a = MeshKey::from_bytes(b"0123456789abcdef0123456789abcdef\n").expect("32 bytes");
        let b = MeshKey::from_bytes(b"0123456789abcdef0123456789abcdef\r\n\n").expect("32 bytes");
        let c = MeshKey::from_bytes(KEY).expect("32 bytes");
        assert_eq!(a.tag(), c.tag());
        assert_eq!(b.tag(), c.tag());
        assert_eq!(c.tag().len(), 16);
        assert_ne!(c.tag(), OPEN_TAG);
        assert!(MeshKey::from_bytes(b"0123456789abcdef0123456789abcde\n").is_none());
        assert!(MeshKey::from_bytes(&[b'\n'; 40]).is_none());
    }

    #[test]
    fn tag_is_an_hmac_of_the_stretched_key() {
        // python3 -c 'import hashlib,hmac; k=hashlib.pbkdf2_hmac("sha256",
        //   b"0123456789abcdef0123456789abcdef", b"pacmesh mesh key", 100000);
        //   print(hmac.new(k, b"pacmesh mesh tag", "sha256").hexdigest()[:16])'
        let key = MeshKey::from_bytes(KEY).expect("long enough");
        let want = "4f3469fb0ff83890";
        assert_eq!(key.tag(), want);
        assert_eq!(mesh_tag(None), "open");
        assert_eq!(mesh_tag(Some(&key)), want);
        // Not the unstretched SHA-256 the tag was before.
        assert_ne!(key.tag(), "ad1b896f895dc139");
    }

    #[test]
    fn load_names_the_file_when_too_short_or_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh.key");
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        let err = MeshKey::load(&path).expect_err("too short").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("16 bytes, at least 32"), "{err}");
        assert!(err.contains("--gen-mesh-key"), "{err}");
        let missing = dir.path().join("nope.key");
        let err = MeshKey::load(&missing).expect_err("missing").to_string();
        assert!(err.contains("nope.key"), "{err}");
        std::fs::write(&path, "a mesh key long enough to be accepted\n").expect("write");
        assert!(MeshKey::load(&path).is_ok());
    }

    #[test]
    fn generated_keys_are_random_private_and_never_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
        generate(&a).expect("generated");
        generate(&b).expect("generated");
        let text = std::fs::read_to_string(&a).expect("read");
        let hex_part = text.strip_suffix('\n').expect("one line");
        assert_eq!(hex_part.len(), 2 * GENERATED_KEY_BYTES);
        assert!(hex_part.bytes().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&a).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(text, std::fs::read_to_string(&b).expect("read"));
        let first = MeshKey::load(&a).expect("a generated key loads");
        let err = generate(&a).expect_err("exists").to_string();
        assert!(err.contains("a.key"), "{err}");
        assert_eq!(MeshKey::load(&a).expect("unchanged").tag(), first.tag());
    }

    #[test]
    fn permission_table() {
        let (mine, other) = (1000, 2000);
        let table = [
            (0o600, other, None),
            (0o400, other, None),
            (0o640, mine, None),
            (0o440, mine, None),
            (
                0o640,
                other,
                Some("is readable by a group the daemon is not running as"),
            ),
            (0o660, mine, Some("is writable by its group")),
            (0o644, mine, Some("is readable or writable by others")),
            (0o602, mine, Some("is readable or writable by others")),
            (0o100640, mine, None),
        ];
        for (mode, gid, want) in table {
            assert_eq!(
                permission_problem(mode, gid, mine),
                want,
                "{mode:o} gid {gid}"
            );
        }
    }

    #[test]
    fn proofs_check_only_with_the_same_key_and_material() {
        let a = MeshKey::from_bytes(b"key number one, long enough for it").expect("key");
        let b = MeshKey::from_bytes(b"key number two, long enough for it").expect("key");
        let material = [7u8; 32];
        let proof = a.proof(&material);
        assert!(a.verify(&material, &proof));
        assert!(!b.verify(&material, &proof));
        assert!(!a.verify(&[8u8; 32], &proof));
    }
}
