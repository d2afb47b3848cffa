//! A response as a connection writes it: built with `http`'s types, or a
//! file's (`local::serve_open`), whose head is written straight from its
//! few fields. Building and walking a header map for every cache hit cost
//! a sixth of a 4 KB hit's instructions.

use http::{Response, StatusCode};

use super::wire::{self, DATE_LEN};
use super::Body;

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
        wire::push_field(out, "last-modified", &self.last_modified);
        wire::push_field(out, "accept-ranges", b"bytes");
        if let Some(range) = &self.content_range {
            wire::push_field(out, "content-range", range.as_bytes());
        }
        if let Some(length) = self.content_length {
            wire::push_field(out, "content-type", b"application/octet-stream");
            wire::push_length(out, length);
        }
        if let Some(warning) = self.warning {
            wire::push_field(out, "warning", warning.as_bytes());
        }
    }

    fn stated_length(&self) -> Option<u64> {
        self.content_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Fields as _;

    fn written(head: &FileHead) -> String {
        let mut out = Vec::new();
        head.write_to(&mut out);
        String::from_utf8(out).expect("ascii")
    }

    /// A file's fields, in the order a header map of them was written.
    #[test]
    fn file_fields() {
        let date = *b"Sun, 06 Nov 1994 08:49:37 GMT";
        let partial = FileHead {
            status: StatusCode::PARTIAL_CONTENT,
            last_modified: date,
            content_range: Some("bytes 5-9/10".into()),
            content_length: Some(5),
            warning: Some("110 - \"stale\""),
        };
        assert_eq!(
            written(&partial),
            "last-modified: Sun, 06 Nov 1994 08:49:37 GMT\r\naccept-ranges: bytes\r\n\
             content-range: bytes 5-9/10\r\ncontent-type: application/octet-stream\r\n\
             content-length: 5\r\nwarning: 110 - \"stale\"\r\n"
        );
        assert_eq!(partial.stated_length(), Some(5));
        let unchanged = FileHead {
            status: StatusCode::NOT_MODIFIED,
            last_modified: date,
            content_range: None,
            content_length: None,
            warning: None,
        };
        assert_eq!(
            written(&unchanged),
            "last-modified: Sun, 06 Nov 1994 08:49:37 GMT\r\naccept-ranges: bytes\r\n"
        );
        assert_eq!(unchanged.stated_length(), None);
    }
}
