//! Splitting a byte stream into frames, without IO: the async side feeds
//! whatever it read and pops complete frames.
//!
//! A frame is a big-endian `u32` payload length, then the payload. A length
//! over the decoder's limit is refused as soon as its 4 bytes are seen, so
//! a hostile peer can never make us wait for or buffer an oversized body.

use crate::message::Message;
use crate::wire::{decode, DecodeError, FRAME_PREFIX_LEN, MAX_FRAME, MAX_TRANSFER_FRAME};

/// Incremental frame splitter for one stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` before this were already popped.
    start: usize,
    max_frame: usize,
    /// Set once an oversized length was seen; the stream is unusable then.
    failed: Option<usize>,
}

impl FrameDecoder {
    /// A decoder refusing payloads over `max_frame` bytes (capped at
    /// [`MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame: max_frame.min(MAX_FRAME),
            failed: None,
        }
    }

    /// For the control stream: frames up to [`MAX_FRAME`].
    pub fn control() -> Self {
        Self::new(MAX_FRAME)
    }

    /// For a transfer stream's request or header: frames up to
    /// [`MAX_TRANSFER_FRAME`].
    pub fn transfer() -> Self {
        Self::new(MAX_TRANSFER_FRAME)
    }

    fn oversized(&self, len: usize) -> DecodeError {
        DecodeError::Oversized {
            len,
            max: self.max_frame,
        }
    }

    /// Adds bytes read from the stream. Fails, without keeping `bytes`, when
    /// the pending frame's length prefix is over the limit. Pop frames until
    /// `None` after each feed, so the pending frame is the incomplete one
    /// (only the head is checked: on a transfer stream raw file bytes
    /// follow the header frame and must not be read as prefixes).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if let Some(len) = self.failed {
            return Err(self.oversized(len));
        }
        // Check the pending frame's prefix across old and new bytes first.
        let pending = &self.buf[self.start..];
        if pending.len() < FRAME_PREFIX_LEN && pending.len() + bytes.len() >= FRAME_PREFIX_LEN {
            let mut prefix = [0u8; FRAME_PREFIX_LEN];
            let old = pending.len();
            prefix[..old].copy_from_slice(pending);
            prefix[old..].copy_from_slice(&bytes[..FRAME_PREFIX_LEN - old]);
            let len = u32::from_be_bytes(prefix) as usize;
            if len > self.max_frame {
                return Err(self.fail(len));
            }
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn fail(&mut self, len: usize) -> DecodeError {
        self.failed = Some(len);
        self.buf = Vec::new();
        self.start = 0;
        self.oversized(len)
    }

    /// Pops the next complete frame's payload, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        if let Some(len) = self.failed {
            return Err(self.oversized(len));
        }
        let pending = &self.buf[self.start..];
        let Some((prefix, rest)) = pending.split_first_chunk::<FRAME_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.max_frame {
            return Err(self.fail(len));
        }
        if rest.len() < len {
            return Ok(None);
        }
        let payload = rest[..len].to_vec();
        self.start += FRAME_PREFIX_LEN + len;
        Ok(Some(payload))
    }

    /// Pops and decodes the next complete frame, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        match self.next_frame()? {
            Some(payload) => decode(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes buffered and not yet popped.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the bytes after the frames popped so far: on a transfer
    /// stream, the start of the file body that arrived with the header.
    pub fn take_remaining(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        rest.drain(..self.start);
        self.start = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode_frame;

    #[test]
    fn oversized_prefix_is_refused_before_any_body() {
        let mut dec = FrameDecoder::new(100);
        assert!(dec.feed(&[0, 0]).is_ok());
        let err = dec.feed(&[0, 101]).map(|_| ());
        assert!(matches!(
            err,
            Err(DecodeError::Oversized { len: 101, max: 100 })
        ));
        assert_eq!(dec.buffered(), 0);
        // The stream stays failed.
        assert!(dec.feed(&[1]).is_err());
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn oversized_second_frame_is_refused_when_reached() {
        let mut bytes = encode_frame(&Message::Goodbye, 100).expect("small");
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut dec = FrameDecoder::new(100);
        dec.feed(&bytes).expect("first prefix is fine");
        assert_eq!(dec.next_message().expect("ok"), Some(Message::Goodbye));
        assert!(matches!(
            dec.next_frame(),
            Err(DecodeError::Oversized { len, .. }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn body_after_a_header_is_handed_back_raw() {
        let header = crate::FetchHeader::ok(10, 0);
        let mut bytes =
            encode_frame(&Message::FetchHeader(header), MAX_TRANSFER_FRAME).expect("small");
        // File bytes that would look like a huge frame prefix.
        bytes.extend_from_slice(&[0xff; 10]);
        let mut dec = FrameDecoder::transfer();
        dec.feed(&bytes).expect("header prefix is fine");
        let msg = dec.next_message().expect("decodes");
        assert_eq!(msg, Some(Message::FetchHeader(header)));
        assert_eq!(dec.take_remaining(), vec![0xff; 10]);
    }
}
