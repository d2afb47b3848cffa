//! A raw QUIC peer with a fresh identity of its own: the tests' way of
//! sending a mesh what no pacmeshd would, or of speaking an older
//! protocol version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pacmesh_proto::{
    encode_frame, FetchHeader, FetchRequest, FrameDecoder, Hello, Message, MAX_FRAME,
    MAX_TRANSFER_FRAME, PROTOCOL_VERSION,
};
use pacmeshd::identity::{Identity, NodeId};
use pacmeshd::mesh::link::tls;

/// The longest a stranger waits for the mesh's next control frame.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Stranger {
    pub me: Identity,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    decoder: FrameDecoder,
    /// Kept so the connection lives as long as the stranger.
    _endpoint: quinn::Endpoint,
}

impl Stranger {
    /// Connects to node `id` at `addr`, completes TLS and ALPN, and opens
    /// the control stream.
    pub async fn connect(id: NodeId, addr: SocketAddr) -> Stranger {
        let from = "127.0.0.1:0".parse().expect("addr");
        Stranger::try_connect_from(from, id, addr)
            .await
            .expect("TLS and ALPN complete")
    }

    /// [`Stranger::connect`] from a socket bound to `from` (another
    /// loopback address is another source); the mesh may refuse it.
    pub async fn try_connect_from(
        from: SocketAddr,
        id: NodeId,
        addr: SocketAddr,
    ) -> Result<Stranger, quinn::ConnectionError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = Identity::load_or_create(dir.path()).expect("identity");
        let crypto = tls::client_crypto(&me, Some(id), Default::default()).expect("tls");
        let mut endpoint = quinn::Endpoint::client(from).expect("endpoint");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(addr, tls::SERVER_NAME)
            .expect("connect")
            .await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(Stranger {
            me,
            conn,
            send,
            recv,
            decoder: FrameDecoder::control(),
            _endpoint: endpoint,
        })
    }

    /// Sends a valid Hello of this protocol version and waits for the
    /// answer (its Hello and Digest): the link is then up on the other
    /// side.
    pub async fn hello(&mut self) {
        self.hello_as(PROTOCOL_VERSION).await;
    }

    /// [`Stranger::hello`] as a peer of protocol `version`.
    pub async fn hello_as(&mut self, version: u32) {
        self.send_message(&Message::Hello(Hello {
            node_id: self.me.node_id(),
            version,
            archs: vec!["x86_64".into()],
            mesh_proof: None,
        }))
        .await;
        let hello = self.next_message().await;
        assert!(matches!(hello, Message::Hello(_)), "{hello:?}");
        let digest = self.next_message().await;
        assert!(matches!(digest, Message::Digest(_)), "{digest:?}");
    }

    /// [`Stranger::hello`] to a mesh that may refuse the link after the
    /// first exchange: whether its `Hello` and `Digest` both came.
    pub async fn try_hello(&mut self) -> bool {
        let hello = Message::Hello(Hello {
            node_id: self.me.node_id(),
            version: PROTOCOL_VERSION,
            archs: vec!["x86_64".into()],
            mesh_proof: None,
        });
        if self.try_send_message(&hello).await.is_err() {
            return false;
        }
        for _ in 0..2 {
            match self.try_next_message().await {
                Some(Message::Hello(_) | Message::Digest(_)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Closes the connection and waits (briefly) for the close to go out,
    /// so the mesh sees the peer leave at once.
    pub async fn leave(self) {
        self.conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self._endpoint.wait_idle()).await;
    }

    /// Writes one framed message on the control stream.
    pub async fn send_message(&mut self, message: &Message) {
        self.try_send_message(message).await.expect("written");
    }

    /// [`Stranger::send_message`] to a mesh that may close the link.
    pub async fn try_send_message(&mut self, message: &Message) -> Result<(), quinn::WriteError> {
        self.send
            .write_all(&encode_frame(message, MAX_FRAME).expect("frame"))
            .await
    }

    /// The mesh's next control-stream message, or `None` when the stream
    /// or the connection ended, or nothing came in time.
    pub async fn try_next_message(&mut self) -> Option<Message> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(message) = self.decoder.next_message().ok()? {
                return Some(message);
            }
            let read = tokio::time::timeout(READ_TIMEOUT, self.recv.read(&mut buf)).await;
            let n = read.ok()?.ok()??;
            self.decoder.feed(&buf[..n]).ok()?;
        }
    }

    /// The mesh's next control-stream message.
    pub async fn next_message(&mut self) -> Message {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(message) = self.decoder.next_message().expect("a valid frame") {
                return message;
            }
            let read = tokio::time::timeout(READ_TIMEOUT, self.recv.read(&mut buf))
                .await
                .expect("a frame in time")
                .expect("control stream open");
            let n = read.expect("control stream not finished");
            self.decoder.feed(&buf[..n]).expect("a valid frame");
        }
    }

    /// Opens a transfer stream, asks for `file_name` from `offset` and
    /// reads the header only (a few bytes of the body may come with it):
    /// a peer that asks and then never reads.
    pub async fn ask(
        &self,
        file_name: &str,
        offset: u64,
    ) -> (quinn::SendStream, quinn::RecvStream, FetchHeader) {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("transfer stream");
        let request = Message::FetchRequest(FetchRequest {
            file_name: file_name.into(),
            offset,
        });
        let frame = encode_frame(&request, MAX_TRANSFER_FRAME).expect("frame");
        send.write_all(&frame).await.expect("request written");
        let mut decoder = FrameDecoder::transfer();
        let mut buf = [0u8; 64];
        loop {
            // Only the header is decoded: what follows is the raw body.
            if let Some(message) = decoder.next_message().expect("a valid header") {
                let Message::FetchHeader(header) = message else {
                    panic!("expected a FetchHeader, got {message:?}");
                };
                return (send, recv, header);
            }
            let read = tokio::time::timeout(READ_TIMEOUT, recv.read(&mut buf))
                .await
                .expect("a header in time")
                .expect("transfer stream open");
            let n = read.expect("transfer stream not finished");
            decoder.feed(&buf[..n]).expect("a valid header");
        }
    }
}
