//! The first exchange on a link: the dialer opens the control stream and
//! sends its `Hello`; the acceptor checks it (mesh-key proof, node id,
//! version) before answering with its own, which the dialer checks in
//! turn. Nothing else is sent by either end before the other's proof has
//! checked, so a host without the key learns nothing but that the link was
//! refused.

use pacmesh_proto::{Hello, Message, NodeId};
use quinn::Connection;

use super::close::CloseCode;
use super::frames::{FrameReader, FrameWriter, ReadError, WriteError};
use super::key::{MeshKey, Role, PROOF_LABEL};

/// Oldest `Hello.version` accepted; newer ones are compatible additions
/// within the same ALPN.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Exporter label of the duplicate-link tiebreak.
const TIEBREAK_LABEL: &[u8] = b"pacmesh link order";

/// Why a peer's `Hello` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// We have a key and the peer sent no proof.
    NoProof,
    /// The proof does not check with our key.
    WrongProof,
    /// The peer sent a proof and we have no key.
    UnexpectedProof,
    Version(u32),
    /// `Hello.node_id` is not the id of the certificate's key.
    WrongNode,
}

impl Refusal {
    pub fn code(self) -> CloseCode {
        match self {
            Refusal::NoProof => CloseCode::NoMeshKey,
            Refusal::WrongProof | Refusal::UnexpectedProof => CloseCode::MeshKeyMismatch,
            Refusal::Version(_) => CloseCode::Version,
            Refusal::WrongNode => CloseCode::WrongNode,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoProof => "peer has no mesh key",
            Refusal::WrongProof => "mesh key mismatch",
            Refusal::UnexpectedProof => "mesh key mismatch (peer has a mesh key, this host none)",
            Refusal::Version(_) => "unsupported protocol version",
            Refusal::WrongNode => "hello names another node than its certificate",
        }
    }
}

/// Checks a peer's `Hello`: the proof first, so a host without the key is
/// told nothing else. `material` is the exporter output for the peer's
/// role on this connection; `cert_id` the id its certificate proved.
pub fn check_hello(
    hello: &Hello,
    cert_id: NodeId,
    key: Option<&MeshKey>,
    material: &[u8; 32],
) -> Result<(), Refusal> {
    match (key, &hello.mesh_proof) {
        (Some(_), None) => return Err(Refusal::NoProof),
        (Some(key), Some(proof)) if !key.verify(material, proof) => {
            return Err(Refusal::WrongProof)
        }
        (None, Some(_)) => return Err(Refusal::UnexpectedProof),
        _ => {}
    }
    if hello.node_id != cert_id {
        return Err(Refusal::WrongNode);
    }
    if hello.version < MIN_PROTOCOL_VERSION {
        return Err(Refusal::Version(hello.version));
    }
    Ok(())
}

/// Why the first exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("{}", .0.reason())]
    Refused(Refusal),
    #[error("expected Hello first, got another message")]
    NotHello,
    #[error("control stream ended before Hello")]
    Finished,
    #[error("TLS exporter: {0}")]
    Exporter(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
}

impl HelloError {
    /// The close code to send, when this end closes the link for it.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            HelloError::Refused(r) => Some(r.code()),
            HelloError::NotHello | HelloError::Finished => Some(CloseCode::Protocol),
            HelloError::Read(ReadError::Decode(_)) => Some(CloseCode::Protocol),
            _ => None,
        }
    }
}

/// What a successful first exchange yields.
pub struct Greeted {
    pub hello: Hello,
    pub reader: FrameReader,
    pub writer: FrameWriter,
    pub tiebreak: [u8; 32],
}

fn export(conn: &Connection, label: &[u8], context: &[u8]) -> Result<[u8; 32], HelloError> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, label, context)
        .map_err(|e| HelloError::Exporter(format!("{e:?}")))?;
    Ok(out)
}

/// Runs the first exchange in `role` with the peer whose certificate
/// proved `peer`.
pub async fn greet(
    conn: &Connection,
    role: Role,
    peer: NodeId,
    ours: Hello,
    key: Option<&MeshKey>,
) -> Result<Greeted, HelloError> {
    let mut ours = ours;
    ours.mesh_proof = match key {
        Some(key) => Some(key.proof(&export(conn, PROOF_LABEL, role.context())?)),
        None => None,
    };
    let theirs_material = export(conn, PROOF_LABEL, role.other().context())?;
    let (mut reader, mut writer) = match role {
        Role::Dialer => {
            let (send, recv) = conn.open_bi().await?;
            let mut writer = FrameWriter::new(send);
            writer.send(&Message::Hello(ours.clone())).await?;
            (FrameReader::control(recv), writer)
        }
        Role::Acceptor => {
            let (send, recv) = conn.accept_bi().await?;
            (FrameReader::control(recv), FrameWriter::new(send))
        }
    };
    let hello = match reader.next().await? {
        Some(Message::Hello(hello)) => hello,
        Some(_) => return Err(HelloError::NotHello),
        None => return Err(HelloError::Finished),
    };
    check_hello(&hello, peer, key, &theirs_material).map_err(HelloError::Refused)?;
    // Only now may the peer open transfer streams and send at full speed.
    super::transport::open_up(conn);
    if role == Role::Acceptor {
        writer.send(&Message::Hello(ours)).await?;
    }
    Ok(Greeted {
        hello,
        reader,
        writer,
        tiebreak: export(conn, TIEBREAK_LABEL, b"")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacmesh_proto::PROTOCOL_VERSION;

    fn hello(node: u8, version: u32, proof: Option<[u8; 32]>) -> Hello {
        Hello {
            node_id: NodeId([node; 32]),
            version,
            archs: vec!["x86_64".into()],
            mesh_proof: proof,
        }
    }

    #[test]
    fn hello_check_table() {
        let key = MeshKey::from_bytes(b"the mesh key of this lan, 32 bytes").expect("key");
        let other = MeshKey::from_bytes(b"another mesh key, also 32 bytes..").expect("key");
        let material = [3u8; 32];
        let good = Some(key.proof(&material));
        let bad = Some(other.proof(&material));
        let replayed = Some(key.proof(&[4u8; 32]));
        let v = PROTOCOL_VERSION;
        use Refusal::*;
        let table: Vec<(Hello, Option<&MeshKey>, Result<(), Refusal>)> = vec![
            (hello(1, v, None), None, Ok(())),
            (hello(1, v, good), Some(&key), Ok(())),
            (hello(1, v + 1, None), None, Ok(())),
            (hello(1, v, None), Some(&key), Err(NoProof)),
            (hello(1, v, bad), Some(&key), Err(WrongProof)),
            (hello(1, v, replayed), Some(&key), Err(WrongProof)),
            (hello(1, v, good), None, Err(UnexpectedProof)),
            (hello(2, v, None), None, Err(WrongNode)),
            (hello(1, 0, None), None, Err(Version(0))),
            // The proof is checked before anything else.
            (hello(2, 0, None), Some(&key), Err(NoProof)),
        ];
        for (h, k, want) in table {
            assert_eq!(
                check_hello(&h, NodeId([1; 32]), k, &material),
                want,
                "{h:?} key={}",
                k.is_some()
            );
        }
    }
}
