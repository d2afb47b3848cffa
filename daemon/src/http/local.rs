//! Serving a file from a local cache dir: 200, 206, 304, 416 and HEAD.

use std::fs::File;
use std::io;
use std::path::Path;

use http::{header, HeaderMap, Method, StatusCode};

use super::file_body::FileBody;
use super::head::Head;
use super::range::{if_range_matches, not_modified, parse_range, RangeSpec};
use super::reply::{FileHead, FileReply};
use super::Body;

/// Told when the response is over: its status, the body bytes sent, and
/// whether that was all of them.
pub type OnDone = Box<dyn FnOnce(StatusCode, u64, bool) + Send>;

/// What a file's response depends on in its request: HEAD or not, and
/// the conditional and range fields (as text; a value that is not is
/// ignored, as if absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct FileAsk<'a> {
    pub head_only: bool,
    pub if_modified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub range: Option<&'a str>,
}

impl<'a> FileAsk<'a> {
    /// From a request head, as the connection parsed it (a cache hit).
    pub fn from_head(head: &'a Head) -> Self {
        FileAsk {
            head_only: *head.method() == Method::HEAD,
            if_modified_since: head.value_str(&header::IF_MODIFIED_SINCE),
            if_range: head.value_str(&header::IF_RANGE),
            range: head.value_str(&header::RANGE),
        }
    }

    /// From a request's method and header map.
    pub fn from_request(method: &Method, headers: &'a HeaderMap) -> Self {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        FileAsk {
            head_only: *method == Method::HEAD,
            if_modified_since: text(header::IF_MODIFIED_SINCE),
            if_range: text(header::IF_RANGE),
            range: text(header::RANGE),
        }
    }
}

/// Builds the response for a local file. An error means the file could not
/// be opened (it vanished since the index saw it): the caller falls back to
/// the next source.
pub fn serve(path: &Path, ask: FileAsk<'_>, on_done: OnDone) -> io::Result<FileReply> {
    let (file, meta) = crate::cachefile::open_regular(path)?;
    serve_open(file, &meta, ask, on_done)
}

/// Builds the response for a file already open (a cache file, or a verified
/// download from a peer whose name is already unlinked).
pub fn serve_open(
    file: File,
    meta: &std::fs::Metadata,
    ask: FileAsk<'_>,
    on_done: OnDone,
) -> io::Result<FileReply> {
    let size = meta.len();
    let mtime = meta.modified()?;
    let mut head = FileHead {
        status: StatusCode::NOT_MODIFIED,
        last_modified: super::wire::http_date(mtime),
        content_range: None,
        content_length: None,
        warning: None,
    };
    if not_modified(ask.if_modified_since, mtime) {
        on_done(head.status, 0, true);
        return Ok(FileReply {
            head,
            body: Body::empty(),
        });
    }
    let range = if if_range_matches(ask.if_range, mtime) {
        parse_range(ask.range, size)
    } else {
        RangeSpec::Full
    };
    let span = range.span(size);
    head.status = span.status;
    head.content_range = span.content_range;
    if span.status == StatusCode::RANGE_NOT_SATISFIABLE {
        on_done(span.status, 0, true);
        return Ok(FileReply {
            head,
            body: Body::empty(),
        });
    }
    let (status, start, end) = (span.status, span.start, span.end);
    head.content_length = Some(end - start);
    let body = if ask.head_only {
        on_done(status, 0, true);
        Body::empty()
    } else {
        Body::file(FileBody::new(
            file,
            start,
            end,
            Box::new(move |n, all| on_done(status, n, all)),
        ))
    };
    Ok(FileReply { head, body })
}
