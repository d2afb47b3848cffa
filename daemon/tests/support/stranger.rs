//! A raw QUIC peer with a fresh identity of its own: the tests' way of
//! sending a mesh what no pacmeshd would.

use std::net::SocketAddr;
use std::sync::Arc;

use pacmesh_proto::{encode_frame, Hello, Message, MAX_FRAME, PROTOCOL_VERSION};
use pacmeshd::identity::{Identity, NodeId};
use pacmeshd::mesh::link::tls;

pub struct Stranger {
    pub me: Identity,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// Kept so the connection lives as long as the stranger.
    _endpoint: quinn::Endpoint,
}

impl Stranger {
    /// Connects to node `id` at `addr`, completes TLS and ALPN, and opens
    /// the control stream.
    pub async fn connect(id: NodeId, addr: SocketAddr) -> Stranger {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = Identity::load_or_create(dir.path()).expect("identity");
        let crypto = tls::client_crypto(&me, Some(id), Default::default()).expect("tls");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(addr, tls::SERVER_NAME)
            .expect("connect")
            .await
            .expect("TLS and ALPN complete");
        let (send, recv) = conn.open_bi().await.expect("stream");
        Stranger {
            me,
            conn,
            send,
            recv,
            _endpoint: endpoint,
        }
    }

    /// Sends a valid Hello and waits for the answer (its Hello and Digest):
    /// the link is then up on the other side.
    pub async fn hello(&mut self) {
        let hello = Message::Hello(Hello {
            node_id: self.me.node_id(),
            version: PROTOCOL_VERSION,
            archs: vec!["x86_64".into()],
            mesh_proof: None,
        });
        self.send
            .write_all(&encode_frame(&hello, MAX_FRAME).expect("frame"))
            .await
            .expect("hello");
        let mut buf = [0u8; 1024];
        let _ = self.recv.read(&mut buf).await.expect("answer");
    }
}
