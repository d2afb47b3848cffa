//! pacmeshd as an HTTP(S) client of the real mirrors: one GET from a byte
//! offset, whose body arrives chunk by chunk, each within a stall limit.
//! Used by the download engine (`crate::fetch`) for every mirror source,
//! and, with `If-Modified-Since`, by a caching mirror revalidating its
//! databases (`crate::dbproxy`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

use crate::mirror_health::Health;

/// For the TCP (and TLS) connection and then for the response head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the next body bytes.
const STALL: Duration = Duration::from_secs(10);
/// Mirrors that hand out redirects (mirrorbrain and the like) use one.
const MAX_REDIRECTS: usize = 5;
/// A pooled connection to a mirror unused for this long is closed.
const POOL_IDLE: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!("pacmeshd/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("not a usable URL: {0:?}")]
    BadUrl(String),
    #[error("the mirror answered {0}")]
    Status(StatusCode),
    #[error("the mirror answered bytes {got:?} to a request from byte {asked}")]
    WrongRange { got: Option<String>, asked: u64 },
    #[error("more than {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
}

/// A mirror response being read.
#[derive(Debug)]
pub struct MirrorBody {
    /// The offset of the first body byte: the one asked for, or 0 when the
    /// mirror ignored the Range and sent the whole file.
    pub start: u64,
    /// The whole file's size, when the mirror said (`Content-Range`'s
    /// total, or `Content-Length` of a 200).
    pub size: Option<u64>,
    /// The mirror's `Last-Modified`, when it sent one.
    pub last_modified: Option<SystemTime>,
    /// Where the body came from: the URL asked for, or where its
    /// redirects led (a database's `.sig` is asked of the same server).
    pub url: String,
    body: Incoming,
    /// Where the body's end (or break) is told, to rank the mirror.
    report: Option<Report>,
}

/// A body being timed for [`MirrorClient::order`].
#[derive(Debug)]
struct Report {
    health: Arc<Mutex<Health>>,
    url: String,
    started: Instant,
    bytes: u64,
}

impl MirrorBody {
    /// The next body bytes; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, MirrorError> {
        let next = self.next_frame().await;
        if let Some(report) = &mut self.report {
            match &next {
                Ok(Some(data)) => report.bytes += data.len() as u64,
                Ok(None) => {
                    let took = report.started.elapsed();
                    let now = Instant::now();
                    (report.health.lock()).served(&report.url, report.bytes, took, now);
                    self.report = None;
                }
                Err(_) => {
                    report.health.lock().failed(&report.url, Instant::now());
                    self.report = None;
                }
            }
        }
        next
    }

    async fn next_frame(&mut self) -> Result<Option<Bytes>, MirrorError> {
        loop {
            let frame = tokio::time::timeout(STALL, self.body.frame())
                .await
                .map_err(|_| MirrorError::Timeout(STALL))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(MirrorError::Http(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Cheap to clone; one per daemon. Nothing is set up until the first
/// request: reading the system's roots takes ~17 ms, and most daemons never
/// need a mirror.
#[derive(Clone, Default)]
pub struct MirrorClient {
    client: Arc<OnceLock<HttpsClient>>,
    /// What was seen of each mirror (`crate::mirror_health`).
    health: Arc<Mutex<Health>>,
}

impl std::fmt::Debug for MirrorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorClient").finish_non_exhaustive()
    }
}

/// HTTP, and HTTPS verified against the system's root certificates.
/// Without any (no ca-certificates), HTTPS mirrors fail with a TLS error
/// and the caller falls back as for any other mirror failure.
fn build() -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::warn!(error = %e, "no system root certificates: HTTPS mirrors cannot be continued from");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = tls.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https)
}

impl MirrorClient {
    pub fn new() -> MirrorClient {
        MirrorClient::default()
    }

    fn client(&self) -> &HttpsClient {
        self.client.get_or_init(build)
    }

    /// `GET url` from byte `offset` on (a `Range` request when `offset` >
    /// 0), following redirects.
    pub async fn get_from(&self, url: &str, offset: u64) -> Result<MirrorBody, MirrorError> {
        let body = self
            .send(url, offset, None)
            .await
            .and_then(|(response, at)| body_of(response, offset, &at));
        match body {
            Ok(mut body) => {
                body.report = Some(Report {
                    health: self.health.clone(),
                    url: url.to_owned(),
                    started: Instant::now(),
                    bytes: 0,
                });
                Ok(body)
            }
            Err(e) => {
                // Even a 404: a mirror without a file its database lists
                // is behind.
                self.health.lock().failed(url, Instant::now());
                Err(e)
            }
        }
    }

    /// `urls` (one file at a repo's mirrors) in the order to try them:
    /// mirrors that failed lately last, faster ones first
    /// (`crate::mirror_health`).
    pub fn order(&self, urls: Vec<String>) -> Vec<String> {
        self.health.lock().order(urls, Instant::now())
    }

    /// `GET url` with `If-Modified-Since: since` when given (a database
    /// revalidated: `crate::dbproxy`), following redirects. A 404 is
    /// `MirrorError::Status(404)`.
    pub async fn get_if_modified_since(
        &self,
        url: &str,
        since: Option<SystemTime>,
    ) -> Result<Conditional, MirrorError> {
        let (response, at) = match self.send(url, 0, since).await {
            Ok(sent) => sent,
            Err(e) => {
                // Unreachable or broken, not merely without the file (a
                // database's `.sig` is often absent).
                if !matches!(e, MirrorError::Status(s) if s.is_client_error()) {
                    self.health.lock().failed(url, Instant::now());
                }
                return Err(e);
            }
        };
        if response.status().is_server_error() {
            self.health.lock().failed(url, Instant::now());
        }
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        body_of(response, 0, &at).map(Conditional::Body)
    }

    /// Sends the GET, following redirects; the final response's head, and
    /// the URL that gave it.
    async fn send(
        &self,
        url: &str,
        offset: u64,
        since: Option<SystemTime>,
    ) -> Result<(Response<Incoming>, Uri), MirrorError> {
        let mut uri: Uri = url
            .parse()
            .map_err(|_| MirrorError::BadUrl(url.to_owned()))?;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = Request::get(uri.clone()).header(header::USER_AGENT, USER_AGENT);
            if offset > 0 {
                request = request.header(header::RANGE, format!("bytes={offset}-"));
            }
            if let Some(since) = since {
                request = request.header(header::IF_MODIFIED_SINCE, httpdate::fmt_http_date(since));
            }
            let request = request
                .body(Empty::new())
                .map_err(|_| MirrorError::BadUrl(uri.to_string()))?;
            let response = tokio::time::timeout(HEAD_TIMEOUT, self.client().request(request))
                .await
                .map_err(|_| MirrorError::Timeout(HEAD_TIMEOUT))?
                .map_err(|e| MirrorError::Http(describe(&e)))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(MirrorError::Status(status))?;
                uri = follow(&uri, location)?;
                continue;
            }
            return Ok((response, uri));
        }
        Err(MirrorError::Redirects)
    }
}

/// The answer to a conditional GET.
#[derive(Debug)]
pub enum Conditional {
    /// 304: the copy we have is current.
    NotModified,
    Body(MirrorBody),
}

/// The body of a 200, or of a 206 starting at `offset`.
fn body_of(response: Response<Incoming>, offset: u64, at: &Uri) -> Result<MirrorBody, MirrorError> {
    let headers = response.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let last_modified = headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let (start, size) = match response.status() {
        StatusCode::OK => (0, length),
        StatusCode::PARTIAL_CONTENT => {
            let range = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            match range.and_then(range_start) {
                Some(start) if start == offset => (start, range.and_then(range_total)),
                _ => {
                    return Err(MirrorError::WrongRange {
                        got: range.map(str::to_owned),
                        asked: offset,
                    })
                }
            }
        }
        other => return Err(MirrorError::Status(other)),
    };
    Ok(MirrorBody {
        start,
        size,
        last_modified,
        url: at.to_string(),
        body: response.into_body(),
        report: None,
    })
}

/// The first byte of `Content-Range: bytes FIRST-LAST/SIZE`.
fn range_start(value: &str) -> Option<u64> {
    let spec = value.trim().strip_prefix("bytes ")?;
    let (first, _) = spec.split_once('-')?;
    first.trim().parse().ok()
}

/// The total of `Content-Range: bytes FIRST-LAST/SIZE` (`*`: unknown).
fn range_total(value: &str) -> Option<u64> {
    value.rsplit_once('/')?.1.trim().parse().ok()
}

/// Where a `Location` header leads from `base`: absolute URLs as they are,
/// absolute paths on the same scheme and authority.
fn follow(base: &Uri, location: &str) -> Result<Uri, MirrorError> {
    let bad = || MirrorError::BadUrl(location.to_owned());
    if location.starts_with('/') && !location.starts_with("//") {
        let scheme = base.scheme_str().ok_or_else(bad)?;
        let authority = base.authority().ok_or_else(bad)?;
        return format!("{scheme}://{authority}{location}")
            .parse()
            .map_err(|_| bad());
    }
    let uri: Uri = location.parse().map_err(|_| bad())?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

/// hyper-util's errors say little at the top: the source chain names the cause.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
        assert_eq!(range_total("bytes 100-199/200"), Some(200));
        assert_eq!(range_total("bytes 0-9/*"), None);
    }

    #[test]
    fn redirect_targets() {
        let base: Uri = "https://mirror.example/core/os/x86_64/a.pkg.tar.zst"
            .parse()
            .unwrap();
        assert_eq!(
            follow(&base, "/pub/core/a.pkg.tar.zst")
                .unwrap()
                .to_string(),
            "https://mirror.example/pub/core/a.pkg.tar.zst"
        );
        assert_eq!(
            follow(&base, "http://other:8080/a").unwrap().to_string(),
            "http://other:8080/a"
        );
        assert!(follow(&base, "relative/a").is_err());
        assert!(follow(&base, "//host/a").is_err());
    }
}
