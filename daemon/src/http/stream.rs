//! Sending pacman a file from a download (`crate::fetch`): as it arrives
//! when every byte comes from a mirror, or whole once it verified. 200,
//! 206 for pacman's resume (`Range: bytes=N-`), 416; HEAD is answered by
//! the mirror before it gets here. A download already complete when the
//! request comes (the usual case for a peer's bytes, which wait for their
//! verification) is sent as a cache file is (`local::serve_open`, with
//! `sendfile`).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};

use super::local::{serve_open, FileAsk, OnDone};
use super::range::parse_range;
use super::reply::Reply;
use super::Body;
use crate::fetch::growing::Growing;

/// Chunks buffered between the reading task and the connection.
const CHANNEL_CHUNKS: usize = 4;

/// The response for `growing`, whose size is known. `None` when it is
/// not (the download ended without one): the caller falls back.
/// `verified_only`: pacman gets peers' bytes only once the whole file
/// verified (false only for `fetch::Answer::StreamUnverified`).
pub fn respond(
    growing: &Arc<Growing>,
    headers: &HeaderMap,
    verified_only: bool,
    on_done: OnDone,
) -> Option<Reply> {
    let ask = FileAsk::from_request(&http::Method::GET, headers);
    if let Some(Ok((file, meta))) = growing.complete_file() {
        return serve_open(file, &meta, ask, on_done).ok().map(Reply::from);
    }
    let size = growing.shown().size?;
    let range = ask.range;
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    let span = parse_range(range, size).span(size);
    if let Some(value) = &span.content_range {
        builder = builder.header(header::CONTENT_RANGE, value);
    }
    if span.status == StatusCode::RANGE_NOT_SATISFIABLE {
        on_done(span.status, 0, true);
        return builder
            .status(span.status)
            .body(Body::empty())
            .ok()
            .map(Reply::from);
    }
    let (status, start, end) = (span.status, span.start, span.end);
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let mut reader = if verified_only {
        growing.reader_for_pacman(start)
    } else {
        growing.reader(start)
    };
    tokio::spawn(async move {
        let mut sent = 0u64;
        let want = end - start;
        let complete = loop {
            if sent >= want {
                break true;
            }
            match reader.next_chunk().await {
                Ok(Some(mut chunk)) => {
                    let left = (want - sent) as usize;
                    if chunk.len() > left {
                        chunk.truncate(left);
                    }
                    sent += chunk.len() as u64;
                    if tx.send(Ok(chunk)).await.is_err() {
                        break false;
                    }
                }
                // Short: `send` cuts the connection (the body's length).
                Ok(None) => break sent >= want,
                Err(e) => {
                    // Cut: pacman resumes at its next server from here.
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    break false;
                }
            }
        };
        on_done(status, sent, complete);
    });
    builder
        .status(status)
        .body(Body::channel(rx, end - start))
        .ok()
        .map(Reply::from)
}
