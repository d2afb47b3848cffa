//! Messages over one QUIC stream: a reader popping bounded frames and a
//! writer of framed messages.

use pacmesh_proto::{encode_frame, DecodeError, EncodeError, FrameDecoder, Message, MAX_FRAME};
use quinn::{ConnectionError, RecvStream, SendStream};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 64 * 1024;

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer sent something that is not a frame we accept: closes the
    /// link as a protocol violation.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("control stream reset by the peer")]
    Reset,
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

impl From<quinn::ReadError> for ReadError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => ReadError::Connection(c),
            _ => ReadError::Reset,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A bug on our side: a message over a protocol limit.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("control stream stopped by the peer")]
    Stopped,
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

impl From<quinn::WriteError> for WriteError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => WriteError::Connection(c),
            _ => WriteError::Stopped,
        }
    }
}

pub struct FrameReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
}

impl FrameReader {
    /// A reader of control-stream frames (each at most `MAX_FRAME`).
    pub fn control(recv: RecvStream) -> Self {
        FrameReader {
            recv,
            decoder: FrameDecoder::control(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// The next message; `None` when the peer finished the stream.
    /// Cancel-safe: the only await is quinn's cancel-safe `read`, and what
    /// it returned is fed to the decoder before the next await.
    pub async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            match self.recv.read(&mut self.buf).await? {
                Some(n) => self.decoder.feed(&self.buf[..n])?,
                None if self.decoder.buffered() > 0 => return Err(DecodeError::Truncated.into()),
                None => return Ok(None),
            }
        }
    }
}

pub struct FrameWriter {
    send: SendStream,
}

impl FrameWriter {
    pub fn new(send: SendStream) -> Self {
        FrameWriter { send }
    }

    /// Writes one framed message. Not cancel-safe (a frame may be half
    /// written): only ever cancelled when the link is closed anyway.
    pub async fn send(&mut self, message: &Message) -> Result<(), WriteError> {
        let frame = encode_frame(message, MAX_FRAME)?;
        self.send.write_all(&frame).await?;
        Ok(())
    }

    /// Ends the stream after what was written.
    pub fn finish(&mut self) {
        // Fails only if already finished or reset: nothing more to do then.
        let _ = self.send.finish();
    }
}
