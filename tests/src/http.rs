//! A tiny blocking HTTP/1.1 client for tests (ureq, redirects not followed) and a raw-socket sender for malformed requests.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A whole response: status, headers in order, body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body of a pacmesh status page as JSON; panics unless this is a
    /// 200 with valid JSON.
    pub fn status_json(&self) -> serde_json::Value {
        assert_eq!(
            self.status,
            200,
            "status page answered {}: {}",
            self.status,
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status page is not JSON ({e}): {}", self.text()))
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            // Tests must see 3xx answers (pacmesh redirects misses with 307).
            .max_redirects(0)
            // 4xx/5xx are answers to check, not errors.
            .http_status_as_error(false)
            // Never send loopback test traffic to an http_proxy from the environment.
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    })
}

/// `GET url` with extra `headers`; panics if no response came (connection refused, timeout).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Response {
    try_get(url, headers).unwrap_or_else(|e| panic!("GET {url}: {e:#}"))
}

/// `HEAD url` with extra `headers`; panics if no response came.
pub fn head(url: &str, headers: &[(&str, &str)]) -> Response {
    try_head(url, headers).unwrap_or_else(|e| panic!("HEAD {url}: {e:#}"))
}

/// `GET url`, with transport errors returned instead of panicking.
pub fn try_get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_response(req.call().with_context(|| format!("GET {url}"))?)
}

/// `HEAD url`, with transport errors returned instead of panicking.
pub fn try_head(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    let mut req = agent().head(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_response(req.call().with_context(|| format!("HEAD {url}"))?)
}

fn into_response(mut resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Response> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .context("reading the response body")?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Writes `bytes` as-is on a new TCP connection to `addr` and returns everything read back
/// (lossy UTF-8) until the server closes, 500 ms pass without more data after the first
/// bytes, or 10 s pass in all. For malformed requests a real client would never send.
pub fn raw(addr: impl ToSocketAddrs, bytes: &[u8]) -> String {
    let addr = addr
        .to_socket_addrs()
        .expect("resolving a raw request's address")
        .next()
        .expect("a raw request's address resolves to something");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    // The server may answer and close before reading it all (e.g. a 10 KB path): keep reading.
    let _ = stream.write_all(bytes);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        let idle = if out.is_empty() {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(500)
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(idle.min(left)))
            .expect("setting a read timeout");
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
