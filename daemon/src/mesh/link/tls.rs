//! TLS for peer links: mutual authentication with self-signed certificates
//! pinned to node ids instead of chains to a CA.
//!
//! A node id is the SHA-256 of the key in the certificate, so "this is
//! node X" means "the certificate's key hashes to X, and the peer signed
//! the handshake with that key". The verifiers below check exactly that:
//! the id (against the one discovery gave us, or against our own id to
//! refuse a self-connection) and the TLS 1.3 handshake signature with the
//! ring provider. Validity dates, names and chains mean nothing here.
//!
//! Certificates are parsed with rustls-webpki, which rustls already uses:
//! no second X.509 parser in the binary, and the one that parses is the
//! one the handshake signature check relies on.

use parking_lot::Mutex;
use std::sync::Arc;

use pacmesh_proto::{NodeId, ALPN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::Identity;

/// The server name a dialer sends; certificates are not checked against
/// it (a node id is 64 hex digits, over a DNS label's 63).
pub const SERVER_NAME: &str = "pacmesh";

/// The node id a certificate's key stands for.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(NodeId::from_spki(&parsed.subject_public_key_info()))
}

/// The peer's node id from a finished handshake.
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_id_of(certs.first()?).ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A refusal; its text reaches the log line of the failed handshake.
fn refused(why: &'static str) -> rustls::Error {
    rustls::Error::General(why.to_owned())
}

/// What the dialer's verifier saw, read after a failed dial to tell a
/// self-connection from other failures without parsing error text.
#[derive(Debug, Default)]
pub struct SeenId(Mutex<Option<NodeId>>);

impl SeenId {
    pub fn get(&self) -> Option<NodeId> {
        *self.0.lock()
    }

    fn set(&self, id: NodeId) {
        *self.0.lock() = Some(id);
    }
}

/// Checks the server (acceptor) of a dialed link.
#[derive(Debug)]
struct PinnedServer {
    local: NodeId,
    /// The id discovery announced; `None` for a static peer (learnt).
    expected: Option<NodeId>,
    seen: Arc<SeenId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = node_id_of(end_entity)?;
        self.seen.set(id);
        if id == self.local {
            return Err(refused("peer is this host (self-connection)"));
        }
        match self.expected {
            Some(want) if want != id => Err(refused("peer's key is not the announced node id")),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks the client (dialer) of an accepted link: anyone but ourselves.
#[derive(Debug)]
struct AnyPeer {
    local: NodeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyPeer {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if node_id_of(end_entity)? == self.local {
            return Err(refused("peer is this host (self-connection)"));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn chain_and_key(identity: &Identity) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let cert = CertificateDer::from(identity.cert_der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der()));
    (vec![cert], key)
}

/// The rustls side of the endpoint's server config.
pub fn server_crypto(
    identity: &Identity,
) -> anyhow::Result<quinn::crypto::rustls::QuicServerConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyPeer {
        local: identity.node_id(),
        algorithms: provider.signature_verification_algorithms,
    });
    let (chain, key) = chain_and_key(identity);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(quinn::crypto::rustls::QuicServerConfig::try_from(config)?)
}

/// A client config for one dial, pinned to `expected` (or learning the id
/// of a static peer); `seen` receives the id the peer presented.
pub fn client_crypto(
    identity: &Identity,
    expected: Option<NodeId>,
    seen: Arc<SeenId>,
) -> anyhow::Result<quinn::crypto::rustls::QuicClientConfig> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer {
        local: identity.node_id(),
        expected,
        seen,
        algorithms: provider.signature_verification_algorithms,
    });
    let (chain, key) = chain_and_key(identity);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(quinn::crypto::rustls::QuicClientConfig::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_of_our_certificate_is_our_node_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Identity::load_or_create(dir.path()).expect("identity");
        let cert = CertificateDer::from(identity.cert_der().to_vec());
        assert_eq!(node_id_of(&cert).expect("parses"), identity.node_id());
        assert!(node_id_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }
}
