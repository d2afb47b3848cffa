//! Serving a file from a local cache dir: 200, 206, 304, 416 and HEAD.

use std::fs::File;
use std::io;
use std::path::Path;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::file_body::FileBody;
use super::range::{if_range_matches, not_modified, parse_range, RangeSpec};
use super::Body;

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Told when the response is over: its status, the body bytes sent, and
/// whether that was all of them.
pub type OnDone = Box<dyn FnOnce(StatusCode, u64, bool) + Send>;

/// Builds the response for a local file. An error means the file could not
/// be opened (it vanished since the index saw it): the caller falls back to
/// the next source.
pub fn serve(
    path: &Path,
    method: &Method,
    headers: &HeaderMap,
    on_done: OnDone,
) -> io::Result<Response<Body>> {
    let (file, meta) = crate::cachefile::open_regular(path)?;
    serve_open(file, &meta, method, headers, on_done)
}

/// Builds the response for a file already open (a cache file, or a verified
/// download from a peer whose name is already unlinked).
pub fn serve_open(
    file: File,
    meta: &std::fs::Metadata,
    method: &Method,
    headers: &HeaderMap,
    on_done: OnDone,
) -> io::Result<Response<Body>> {
    let size = meta.len();
    let mtime = meta.modified()?;
    let last_modified = super::wire::http_date(mtime);

    let mut builder = Response::builder()
        .header(header::LAST_MODIFIED, &last_modified[..])
        .header(header::ACCEPT_RANGES, "bytes");

    if not_modified(header_str(headers, header::IF_MODIFIED_SINCE), mtime) {
        on_done(StatusCode::NOT_MODIFIED, 0, true);
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(io::Error::other);
    }
    let range = if if_range_matches(header_str(headers, header::IF_RANGE), mtime) {
        parse_range(header_str(headers, header::RANGE), size)
    } else {
        RangeSpec::Full
    };
    let span = range.span(size);
    if let Some(value) = &span.content_range {
        builder = builder.header(header::CONTENT_RANGE, value);
    }
    if span.status == StatusCode::RANGE_NOT_SATISFIABLE {
        on_done(span.status, 0, true);
        return builder
            .status(span.status)
            .body(Body::empty())
            .map_err(io::Error::other);
    }
    let (status, start, end) = (span.status, span.start, span.end);
    builder = builder
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )
        .header(header::CONTENT_LENGTH, end - start);
    let body = if *method == Method::HEAD {
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
    builder.body(body).map_err(io::Error::other)
}
