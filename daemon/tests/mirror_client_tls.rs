//! `MirrorClient` over HTTPS, with the roots it loads from the system
//! store (rustls-native-certs): here a throwaway CA named by
//! `SSL_CERT_FILE`, as `ca-certificates` names the real ones. Alone in its
//! test binary because it sets that variable for the whole process.

mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use pacmeshd::mirror_client::{MirrorClient, MirrorError};
use support::mirror::{content, start_mirror_with};

#[test]
fn an_https_mirror_signed_by_a_system_root_continues_a_download_and_others_are_refused() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, ca_cert.pem()).unwrap();
    // Before any thread of this test binary reads the environment.
    std::env::set_var("SSL_CERT_FILE", &roots);
    std::env::remove_var("SSL_CERT_DIR");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let me = start_mirror_with(Some(acceptor)).await;
        let client = MirrorClient::new();
        let url = format!("https://localhost:{}/file", me.port());
        let mut body = client.get_from(&url, 4096).await.unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next_chunk().await.unwrap() {
            bytes.extend_from_slice(&chunk);
        }
        assert_eq!(body.start, 4096);
        assert_eq!(bytes, content()[4096..]);

        // The certificate names localhost, not 127.0.0.1: refused.
        let url = format!("https://127.0.0.1:{}/file", me.port());
        let err = client.get_from(&url, 0).await.unwrap_err();
        assert!(matches!(err, MirrorError::Http(_)), "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
    });
}
