//! This host's identity in the mesh: an Ed25519 key made at first start and
//! kept in the state dir (mode 0600), a self-signed certificate for TLS,
//! and the node id derived from the public key (`NodeId::from_spki`). Peers pin a link to the
//! node id they discovered, so the id must follow from the key alone.
//! The QUIC endpoint's stateless-reset key follows from the key too, so it
//! is the same after a restart (see [`Identity::reset_key`]).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use pacmesh_proto::NodeId;
use rcgen::{CertificateParams, KeyPair, PublicKeyData, PKCS_ED25519};

/// The key file's name inside the state dir.
pub const KEY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("identity key {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "identity key {}: not a valid key ({reason}); it is never replaced \
         silently: move it away to make a new identity",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("identity key {}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Certificate(String),
}

pub struct Identity {
    key: KeyPair,
    node_id: NodeId,
    cert_der: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the key from `state_dir`, or makes one there at first start.
    pub fn load_or_create(state_dir: &Path) -> Result<Identity, IdentityError> {
        let path = state_dir.join(KEY_FILE);
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "identity key is readable by others; chmod 600 it");
            }
        }
        let key = KeyPair::from_pem(&pem).map_err(|e| IdentityError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Identity::from_key(key)
    }

    fn from_key(key: KeyPair) -> Result<Identity, IdentityError> {
        let node_id = NodeId::from_spki(&key.subject_public_key_info());
        let params = CertificateParams::new(vec![format!("{node_id}.pacmesh")])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        Ok(Identity {
            cert_der: cert.der().to_vec(),
            key,
            node_id,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The self-signed certificate (DER) presented on peer links.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key (PKCS#8 DER) for the TLS config.
    pub fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The QUIC endpoint's stateless-reset key (RFC 9000, 10.3), derived
    /// from the identity key so that it survives a restart. A daemon that
    /// crashed and came back with the same identity then answers a peer's
    /// next packet on the dead connection with a reset the peer accepts:
    /// the peer drops the dead link at once and takes the new one, instead
    /// of keeping it until the idle timeout and refusing the new one as a
    /// duplicate. Others cannot forge resets: the key is secret.
    pub fn reset_key(&self) -> ring::hmac::Key {
        let secret = self.derive(RESET_KEY_LABEL);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref())
    }

    /// The key of the QUIC endpoint's connection ids (each carries a hash
    /// of it, so the endpoint tells its own ids from junk), derived from
    /// the identity key for the same reason as [`Identity::reset_key`]:
    /// a restarted daemon must recognise the ids of its dead connections
    /// to reset them, where a fresh random key would drop their packets.
    pub fn cid_key(&self) -> u64 {
        let secret = self.derive(CID_KEY_LABEL);
        let mut first = [0u8; 8];
        first.copy_from_slice(&secret.as_ref()[..8]);
        u64::from_le_bytes(first)
    }

    /// A secret for one use, `label`, derived from the identity key.
    fn derive(&self, label: &[u8]) -> ring::hmac::Tag {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key.serialize_der());
        ring::hmac::sign(&key, label)
    }
}

/// What each key derived from the identity key is for (one key, one use).
const RESET_KEY_LABEL: &[u8] = b"pacmesh quic stateless reset key 1";
const CID_KEY_LABEL: &[u8] = b"pacmesh quic connection id key 1";

/// Makes a new key and stores it so that no half-written or world-readable
/// key file is ever visible: written 0600 under a temporary name, synced,
/// then linked into place (which fails rather than overwrite a key another
/// process made meanwhile).
fn create(path: &Path) -> Result<String, IdentityError> {
    let write_err = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    let key = KeyPair::generate_for(&PKCS_ED25519)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let pem = key.serialize_pem();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "made a new identity key");
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map_err(|source| IdentityError::Read {
                path: path.to_owned(),
                source,
            }),
        Err(e) => Err(write_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused_with_the_same_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        assert_eq!(first.node_id().to_string().len(), 64);
        // Nothing but the key is left in the dir.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)]);
    }

    #[test]
    fn the_quic_keys_survive_a_restart_and_differ_between_hosts() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let token = |dir: &Path| {
            let id = Identity::load_or_create(dir).unwrap();
            ring::hmac::sign(&id.reset_key(), b"a connection id")
                .as_ref()
                .to_vec()
        };
        assert_eq!(token(a.path()), token(a.path()));
        assert_ne!(token(a.path()), token(b.path()));
        let cid_key = |dir: &Path| Identity::load_or_create(dir).unwrap().cid_key();
        assert_eq!(cid_key(a.path()), cid_key(a.path()));
        assert_ne!(cid_key(a.path()), cid_key(b.path()));
    }

    #[test]
    fn two_hosts_get_different_node_ids() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Identity::load_or_create(a.path()).unwrap();
        let b = Identity::load_or_create(b.path()).unwrap();
        assert_ne!(a.node_id(), b.node_id());
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
        let err = Identity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("not a valid key"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "-----BEGIN PRIVATE KEY-----\ngarbage\n"
        );
    }

    #[test]
    fn node_id_follows_from_the_certificate_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(dir.path()).unwrap();
        let key = KeyPair::from_pem(&std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap())
            .unwrap();
        assert_eq!(
            NodeId::from_spki(&key.subject_public_key_info()),
            id.node_id()
        );
        assert!(!id.cert_der().is_empty());
    }
}
