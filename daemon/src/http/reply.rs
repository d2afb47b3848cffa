//! A response as a connection writes it: built with `http`'s types, or a
//! file's (`local::serve_open`), whose head is written straight from its
//! few fields. Building and walking a header map for every cache hit cost
//! a sixth of a 4 KB hit's instructions.

use http::{Response, StatusCode};

use super::wire::{self, DATE_LEN};
use super::Body;
use crate::log::request::push_u64;

/// The response to one request.
pub enum Reply {
    /// Anything built with `http`'s types: pages, redirects, errors,
    /// streamed downloads.
    Http(Response<Body>),
    /// A file from disk: a cache hit, a kept database, a download
    /// complete on disk.
    File(FileReply),
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Http(response) => response.status(),
            Reply::File(file) => file.head.status,
        }
    }
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Self {
        Reply::Http(response)
    }
}

impl From<FileReply> for Reply {
    fn from(file: FileReply) -> Self {
        Reply::File(file)
    }
}

/// A file response: 200, 206, 304 or 416, and its body (a byte range of
/// the file, or nothing).
pub struct FileReply {
    pub head: FileHead,
    pub body: Body,
}

/// The header fields of a file response.
pub struct FileHead {
    pub status: StatusCode,
    /// `Last-Modified`: the file's time.
    pub last_modified: [u8; DATE_LEN],
    /// `Content-Range` of a 206 or a 416.
    pub content_range: Option<String>,
    /// The length of the bytes a 200 or 206 answers with (also to HEAD,
    /// which gets none of them); none for 304 and 416.
    pub content_length: Option<u64>,
    /// A `Warning` (a caching mirror's stale database).
    pub warning: Option<&'static str>,
}

impl wire::Fields for FileHead {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"last-modified: ");
        out.extend_from_slice(&self.last_modified);
        out.extend_from_slice(b"\r\naccept-ranges: bytes\r\n");
        if let Some(range) = &self.content_range {
            out.extend_from_slice(b"content-range: ");
            out.extend_from_slice(range.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(length) = self.content_length {
            out.extend_from_slice(b"content-type: application/octet-stream\r\n");
            out.extend_from_slice(b"content-length: ");
            push_u64(out, length);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(warning) = self.warning {
            out.extend_from_slice(b"warning: ");
            out.extend_from_slice(warning.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    fn stated_length(&self) -> Option<u64> {
        self.content_length
    }
}
