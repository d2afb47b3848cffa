//! pacmeshd's HTTP face for pacman: the accept loop, one span per request,
//! and the dispatch from a parsed target to a response.

mod body;
pub mod conn;
pub mod file_body;
pub mod head;
pub mod local;
mod metrics;
mod page;
pub mod range;
mod send;
pub mod server;
mod status;
mod stream;
pub mod target;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument, Span};

pub use body::Body;
pub use conn::{Handler, Limits};
use head::Refusal;

use crate::fetch;
use crate::plan::Plan;
use crate::stats::Source;
use crate::State;
use target::{parse_target, FileTarget, Target, TargetError};

/// How long in-flight downloads may run on after a shutdown request before
/// they are cut (pacman resumes a cut download at its next server).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves HTTP on `listeners` until `shutdown`, then lets in-flight
/// responses finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(state: Arc<State>, listeners: Vec<TcpListener>, shutdown: CancellationToken) {
    server::serve(state, listeners, Limits::DEFAULT, SHUTDOWN_GRACE, shutdown).await;
}

impl Handler for State {
    async fn respond(&self, req: &Request<()>, peer: SocketAddr) -> Response<Body> {
        handle(self, req, peer).await
    }

    fn refused(&self, refusal: Refusal, peer: SocketAddr) {
        self.stats.count(Source::BadRequest);
        info!(
            target: "pacmesh::request",
            client = %peer,
            status = refusal.status().as_u16(),
            reason = refusal.reason().trim_end(),
            "refused"
        );
    }
}

async fn handle(state: &State, req: &Request<()>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let span = info_span!(
        target: "pacmesh::request",
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        client = %peer,
    );
    async move {
        let (response, source) = respond(state, req, started).await;
        state.stats.count(source);
        // Files log themselves when their body ends (see `local`).
        if !matches!(
            source,
            Source::Local | Source::Peer | Source::PeerUnverified | Source::MirrorFetch
        ) {
            log_done(source, response.status(), 0, true, started);
        }
        response
    }
    .instrument(span)
    .await
}

fn log_done(source: Source, status: StatusCode, bytes: u64, complete: bool, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let source = source.as_str();
    if complete {
        info!(target: "pacmesh::request", source, status = status.as_u16(), bytes, ms, "done");
    } else {
        warn!(target: "pacmesh::request", source, status = status.as_u16(), bytes, ms, "cut");
    }
}

async fn respond(state: &State, req: &Request<()>, started: Instant) -> (Response<Body>, Source) {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let response = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD");
        return (
            text(response, "only GET and HEAD are served\n"),
            Source::BadRequest,
        );
    }
    match parse_target(req.uri().path()) {
        Ok(Target::Status) => (status::response(state), Source::Status),
        Ok(Target::Metrics) => (metrics::response(state), Source::Status),
        Ok(Target::Page) => (page::response(state), Source::Status),
        Ok(Target::File(file)) => serve_file(state, req, &file, started).await,
        Err(e) => {
            let (code, source) = match e {
                TargetError::NotFound => (StatusCode::NOT_FOUND, Source::NotFound),
                TargetError::TooLong(_) => (StatusCode::URI_TOO_LONG, Source::BadRequest),
                TargetError::BadName(_) | TargetError::BadEncoding => {
                    (StatusCode::BAD_REQUEST, Source::BadRequest)
                }
            };
            let response = Response::builder().status(code);
            (text(response, format!("{e}\n")), source)
        }
    }
}

async fn serve_file(
    state: &State,
    req: &Request<()>,
    file: &FileTarget,
    started: Instant,
) -> (Response<Body>, Source) {
    let mut local = if file.kind.is_cacheable() {
        state.locate(&file.name)
    } else {
        None
    };
    loop {
        match state.plan(file, local.take(), req.method() == Method::GET) {
            Plan::Local(path) => {
                let on_done = on_file_done(state, Source::Local, started);
                match local::serve(&path, req.method(), req.headers(), on_done) {
                    Ok(response) => return (response, Source::Local),
                    // Removed since the index saw it (paccache): plan
                    // again without it.
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "indexed file unreadable")
                    }
                }
            }
            Plan::Running | Plan::Download { .. } => {
                if let Some(answer) = from_download(state, req, file, started).await {
                    return answer;
                }
                return mirror_answer(state, file);
            }
            Plan::Redirect(location) => {
                return (text(redirect(&location), ""), Source::MirrorRedirect)
            }
            Plan::NotFound(reason) => return not_found(reason),
        }
    }
}

/// Answers from the download of `file` (started if none runs): its bytes,
/// or a "come back"; `None` when the mirror must answer.
async fn from_download(
    state: &State,
    req: &Request<()>,
    file: &FileTarget,
    started: Instant,
) -> Option<(Response<Body>, Source)> {
    let transfer = state.download(file)?;
    let hop = fetch::wait::hop_of(req.uri().query());
    match transfer.answer(hop).await {
        fetch::Answer::Stream(growing) => {
            let shown = growing.shown();
            let source = if shown.streamable && shown.end == fetch::growing::End::Running {
                Source::MirrorFetch
            } else if state.expected(file).is_some() || shown.streamable {
                Source::Peer
            } else {
                Source::PeerUnverified
            };
            let on_done = on_file_done(state, source, started);
            stream::respond(&growing, req.headers(), on_done).map(|r| (r, source))
        }
        fetch::Answer::ComeBack => Some((come_back(req, hop + 1), Source::PeerWait)),
        fetch::Answer::Elsewhere => None,
    }
}

/// The mirror's redirect for `file`, or a 404 when none is known.
fn mirror_answer(state: &State, file: &FileTarget) -> (Response<Body>, Source) {
    match state.mirror_urls(file).into_iter().next() {
        Some(location) => (text(redirect(&location), ""), Source::MirrorRedirect),
        None => not_found("repo unknown to pacman.conf or without a mirror"),
    }
}

fn not_found(reason: &str) -> (Response<Body>, Source) {
    let response = Response::builder().status(StatusCode::NOT_FOUND);
    (text(response, format!("{reason}\n")), Source::NotFound)
}

/// A `307` to the URL asked for, with the hop count: pacman follows it at
/// once into a new wait on the same download (see `fetch::wait`).
fn come_back(req: &Request<()>, hop: u32) -> Response<Body> {
    let again = format!("{}?{}={hop}", req.uri().path(), fetch::wait::HOP_PARAM);
    text(
        redirect(&again).header(header::CACHE_CONTROL, "no-store"),
        "",
    )
}

/// A `307` to `location`, pacman's cue to ask there instead.
fn redirect(location: &str) -> http::response::Builder {
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
}

/// A 200 for one of pacmesh's own pages: always freshly computed, so never
/// cached.
fn live_page(content_type: &'static str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let body = body.into();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::bytes(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Counts and logs a file response when its body ends.
fn on_file_done(state: &State, source: Source, started: Instant) -> local::OnDone {
    let span = Span::current();
    let stats = state.stats.clone();
    Box::new(move |status, bytes, complete| {
        let took = started.elapsed().as_secs_f64();
        match source {
            Source::Local => {
                stats.add_local_bytes(bytes);
                stats.local_transfer.observe(took);
            }
            Source::Peer | Source::PeerUnverified => {
                stats.add_peer_bytes(bytes);
                stats.peer_transfer.observe(took);
            }
            _ => {}
        }
        span.in_scope(|| log_done(source, status, bytes, complete, started));
    })
}

fn text(builder: http::response::Builder, body: impl Into<String>) -> Response<Body> {
    let body = body.into();
    let response = builder
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::text(body));
    response.unwrap_or_else(|_| Response::new(Body::empty()))
}
