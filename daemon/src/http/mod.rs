//! pacmeshd's HTTP face for pacman: the accept loop, one span per request,
//! and the dispatch from a parsed target to a response.

mod admin;
pub mod admit;
mod body;
pub mod conn;
mod db;
mod deadline;
pub mod file_body;
pub mod head;
pub mod local;
mod metrics;
mod page;
pub mod range;
pub mod reply;
mod send;
pub mod server;
mod status;
mod stream;
pub mod target;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug_span, info, warn, Instrument};

pub use body::Body;
pub use conn::{Handler, Limits};
use head::{Head, Refusal};
use local::FileAsk;
use reply::Reply;

use crate::fetch;
use crate::plan::Plan;
use crate::snapshot::{gather, Kept};
use crate::stats::Source;
use crate::State;
use target::{parse_target, FileTarget, Target, TargetError};

/// How long in-flight downloads may run on after a shutdown request before
/// they are cut (pacman resumes a cut download at its next server).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Admin actions' paths (POSTs; `http/admin`).
const ADMIN_PREFIX: &str = "/_pacmesh/admin/";

/// Serves HTTP on `listeners` until `shutdown`, then lets in-flight
/// responses finish for up to [`SHUTDOWN_GRACE`]. The connection caps are
/// `admit`'s, lowered if this process may not open enough files for them.
pub async fn serve(state: Arc<State>, listeners: Vec<TcpListener>, shutdown: CancellationToken) {
    let limits = Limits {
        caps: Limits::DEFAULT.caps.fitting(server::open_files_limit()),
        ..Limits::DEFAULT
    };
    server::serve(state, listeners, limits, SHUTDOWN_GRACE, shutdown).await;
}

impl Handler for State {
    /// Cache hits and pacmesh's own pages: answered without waiting on
    /// anything. A cacheable file with a local copy is always served from
    /// it (`plan`'s first rule), so a hit needs no plan: no mirror URLs,
    /// no engine or mesh lookups.
    fn quick(&self, head: &Head, peer: SocketAddr) -> Option<Reply> {
        if head.method() != Method::GET && head.method() != Method::HEAD {
            return None;
        }
        let asked = Asked::new(head.method(), head.uri(), peer);
        let (reply, source) = match parse_target(head.uri().path()).ok()? {
            // A caching mirror's pages list its store: the full path.
            Target::Status | Target::Metrics | Target::Page if self.dbproxy.is_some() => {
                return None
            }
            Target::Status => own_page(self, status::response, peer, Kept::default()),
            Target::Metrics => own_page(self, metrics::response, peer, Kept::default()),
            Target::Page => own_page(self, page::response, peer, Kept::default()),
            // Token checks and actions that wait: the full path.
            Target::Admin(_) => return None,
            Target::File(file) => {
                if !file.kind.is_cacheable() {
                    return None;
                }
                let path = self.locate(&file.name)?;
                let mut on_done = on_file_done(self, Source::Local, &asked);
                on_done = hold_lease(on_done, self.engine.store().lease(&path));
                // Gone since the index saw it (paccache): the full path
                // plans again without it.
                let reply = local::serve(&path, FileAsk::from_head(head), on_done).ok()?;
                (reply.into(), Source::Local)
            }
        };
        self.stats.count(source);
        if source != Source::Local {
            log_done(&asked, source, reply.status(), 0, true);
        }
        Some(reply)
    }

    async fn respond(&self, req: &Request<()>, peer: SocketAddr) -> Reply {
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

/// Who asked what, and when: what a request's log line names it by.
#[derive(Clone)]
struct Asked {
    method: Method,
    uri: http::Uri,
    client: SocketAddr,
    started: Instant,
}

impl Asked {
    fn new(method: &Method, uri: &http::Uri, client: SocketAddr) -> Asked {
        Asked {
            method: method.clone(),
            uri: uri.clone(),
            client,
            started: Instant::now(),
        }
    }
}

async fn handle(state: &State, req: &Request<()>, peer: SocketAddr) -> Reply {
    let asked = Asked::new(req.method(), req.uri(), peer);
    // Context for whatever is logged while answering, at debug only: the
    // info line at the end carries the request's fields itself, so a cache
    // hit costs no span (a span per request cost about a fifth of a hit).
    let span = debug_span!(
        target: "pacmesh::request",
        "request",
        method = %asked.method,
        path = %asked.uri.path(),
        client = %peer,
    );
    async move {
        let (reply, source) = respond(state, req, &asked).await;
        state.stats.count(source);
        // Files log themselves when their body ends (see `on_file_done`).
        if !matches!(
            source,
            Source::Local | Source::Peer | Source::PeerUnverified | Source::MirrorFetch
        ) {
            log_done(&asked, source, reply.status(), 0, true);
        }
        reply
    }
    .instrument(span)
    .await
}

/// The one info line of a request: who asked what, where the answer came
/// from, status, body bytes and time; `warn` when the body was cut.
fn log_done(asked: &Asked, source: Source, status: StatusCode, bytes: u64, complete: bool) {
    // Whole microseconds: `ms=0.202`, not `ms=0.20229499999999997`.
    let micros = u64::try_from(asked.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let ms = micros as f64 / 1000.0;
    let (method, path, client) = (&asked.method, asked.uri.path(), &asked.client);
    let (source, status) = (source.as_str(), status.as_u16());
    if complete {
        let done = crate::log::request::Done {
            method: method.as_str(),
            path,
            client: *client,
            source,
            status,
            bytes,
            micros,
        };
        if !crate::log::request::write(&done) {
            info!(target: "pacmesh::request", %method, %path, %client, source, status, bytes, ms, "done");
        }
    } else {
        warn!(target: "pacmesh::request", %method, %path, %client, source, status, bytes, ms, "cut");
    }
}

async fn respond(state: &State, req: &Request<()>, asked: &Asked) -> (Reply, Source) {
    let admin = req.uri().path().starts_with(ADMIN_PREFIX);
    if req.method() != Method::GET && req.method() != Method::HEAD && !admin {
        let response = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD");
        return (
            text(response, "only GET and HEAD are served\n").into(),
            Source::BadRequest,
        );
    }
    let own = |render: Render| async move {
        let kept = kept(state, asked.client).await;
        own_page(state, render, asked.client, kept)
    };
    match parse_target(req.uri().path()) {
        Ok(Target::Status) => own(status::response).await,
        Ok(Target::Metrics) => own(metrics::response).await,
        Ok(Target::Page) => own(page::response).await,
        Ok(Target::Admin(action)) => {
            let (response, source) =
                admin::respond(state, req.method(), req.headers(), &action).await;
            (response.into(), source)
        }
        Ok(Target::File(file)) => serve_file(state, req, &file, asked).await,
        Err(e) => {
            let (code, source) = match e {
                TargetError::NotFound => (StatusCode::NOT_FOUND, Source::NotFound),
                TargetError::TooLong(_) => (StatusCode::URI_TOO_LONG, Source::BadRequest),
                TargetError::BadName(_) | TargetError::BadEncoding => {
                    (StatusCode::BAD_REQUEST, Source::BadRequest)
                }
            };
            let response = Response::builder().status(code);
            (text(response, format!("{e}\n")).into(), source)
        }
    }
}

/// What a client other than loopback is told when `pages_lan` is off.
const PAGES_FORBIDDEN: &str = "pacmesh's status, metrics and page are answered only on \
     loopback; set pages_lan = true in pacmeshd.toml to show them to other hosts\n";

/// Whether pacmesh's own pages (status, metrics, the page) are answered to
/// `client`: always on loopback (pacsrv, the admin on this host), to other
/// hosts (`serve_lan`, mirror mode) only with `pages_lan`, since they tell
/// which packages and peers this host has.
pub fn pages_allowed(pages_lan: bool, client: IpAddr) -> bool {
    pages_lan || client.to_canonical().is_loopback()
}

/// How one of pacmesh's own pages is made from a snapshot.
type Render = fn(&crate::snapshot::Snapshot) -> Response<Body>;

/// One of pacmesh's own pages rendered for `client`, or a 403; `kept`:
/// what a caching mirror's store holds.
fn own_page(state: &State, render: Render, client: SocketAddr, kept: Kept) -> (Reply, Source) {
    if !pages_allowed(state.pages_lan, client.ip()) {
        let response = Response::builder().status(StatusCode::FORBIDDEN);
        return (text(response, PAGES_FORBIDDEN).into(), Source::BadRequest);
    }
    (render(&gather(state, kept)).into(), Source::Status)
}

/// What a caching mirror's store holds, listed on a blocking thread (a
/// full mirror's store has tens of thousands of files); nothing to list
/// in local mode, or for a client the pages are refused to.
async fn kept(state: &State, client: SocketAddr) -> Kept {
    if state.dbproxy.is_none() || !pages_allowed(state.pages_lan, client.ip()) {
        return Kept::default();
    }
    Kept::list(state.engine.store()).await
}

async fn serve_file(
    state: &State,
    req: &Request<()>,
    file: &FileTarget,
    asked: &Asked,
) -> (Reply, Source) {
    let mut local = if file.kind.is_cacheable() {
        state.locate(&file.name)
    } else {
        None
    };
    loop {
        match state.plan(file, local.take(), req.method() == Method::GET) {
            Plan::Local(path) => {
                let on_done = on_file_done(state, Source::Local, asked);
                let on_done = hold_lease(on_done, state.engine.store().lease(&path));
                let ask = FileAsk::from_request(req.method(), req.headers());
                match local::serve(&path, ask, on_done) {
                    Ok(reply) => return (reply.into(), Source::Local),
                    // Removed since the index saw it (paccache): plan
                    // again without it.
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "indexed file unreadable")
                    }
                }
            }
            Plan::Running | Plan::Download { .. } => {
                if let Some(answer) = from_download(state, req, file, asked).await {
                    return answer;
                }
                return mirror_answer(state, file);
            }
            Plan::Database => {
                return db::respond(state, req.method(), req.headers(), req.uri(), file).await
            }
            Plan::Redirect(location) => {
                return (text(redirect(&location), "").into(), Source::MirrorRedirect)
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
    asked: &Asked,
) -> Option<(Reply, Source)> {
    let transfer = state.download(file)?;
    let hop = fetch::wait::hop_of(req.uri().query());
    match transfer.answer(hop, state.mesh.is_keyed()).await {
        fetch::Answer::StreamUnverified(growing) => {
            let on_done = on_file_done(state, Source::PeerUnverified, asked);
            stream::respond(&growing, req.headers(), false, on_done)
                .map(|r| (r, Source::PeerUnverified))
        }
        fetch::Answer::Stream(growing) => {
            let shown = growing.shown();
            // Every byte from mirrors: our own fetch.
            let source = if shown.streamable {
                Source::MirrorFetch
            } else if state.expected(file).is_some() {
                Source::Peer
            } else {
                Source::PeerUnverified
            };
            let on_done = on_file_done(state, source, asked);
            stream::respond(&growing, req.headers(), true, on_done).map(|r| (r, source))
        }
        fetch::Answer::ComeBack => Some((come_back(req, hop + 1).into(), Source::PeerWait)),
        fetch::Answer::Elsewhere => None,
    }
}

/// The mirror's redirect for `file`, or a 404 when none is known.
fn mirror_answer(state: &State, file: &FileTarget) -> (Reply, Source) {
    match state.mirror_urls(file).into_iter().next() {
        Some(location) => (text(redirect(&location), "").into(), Source::MirrorRedirect),
        None => not_found("repo unknown to pacman.conf or without a mirror"),
    }
}

fn not_found(reason: &str) -> (Reply, Source) {
    let response = Response::builder().status(StatusCode::NOT_FOUND);
    (
        text(response, format!("{reason}\n")).into(),
        Source::NotFound,
    )
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
fn on_file_done(state: &State, source: Source, asked: &Asked) -> local::OnDone {
    let asked = asked.clone();
    let stats = state.stats.clone();
    Box::new(move |status, bytes, complete| {
        let took = asked.started.elapsed().as_secs_f64();
        match source {
            Source::Local => {
                stats.add_local_bytes(bytes);
                stats.local_transfer.observe(took);
            }
            // Their bytes are counted by the download, by where they
            // came from (`fetch::Engine`).
            Source::Peer | Source::PeerUnverified => stats.peer_transfer.observe(took),
            _ => {}
        }
        log_done(&asked, source, status, bytes, complete);
    })
}

/// Keeps a kept file's lease (`fetch::store`) until its response ends:
/// the store's policy does not remove a file being sent.
fn hold_lease(on_done: local::OnDone, lease: Option<fetch::usage::Lease>) -> local::OnDone {
    match lease {
        None => on_done,
        Some(lease) => Box::new(move |status, bytes, complete| {
            on_done(status, bytes, complete);
            drop(lease);
        }),
    }
}

fn text(builder: http::response::Builder, body: impl Into<String>) -> Response<Body> {
    let body = body.into();
    let response = builder
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::text(body));
    response.unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::pages_allowed;

    #[test]
    fn pages_are_for_loopback_unless_pages_lan() {
        for (client, lan_off, lan_on) in [
            ("127.0.0.1", true, true),
            ("127.0.0.2", true, true),
            ("::1", true, true),
            ("::ffff:127.0.0.1", true, true),
            ("10.0.0.2", false, true),
            ("::ffff:192.168.1.5", false, true),
            ("fe80::1", false, true),
        ] {
            let ip = client.parse().unwrap();
            assert_eq!(pages_allowed(false, ip), lan_off, "{client}");
            assert_eq!(pages_allowed(true, ip), lan_on, "{client}");
        }
    }
}
