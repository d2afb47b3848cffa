//! Request heads, decided without IO (pure): bytes in (parsed by
//! `httparse`, hyper's own parser), a [`Head`] and what it says about the
//! connection out, or the status that refuses it.
//!
//! A head keeps its header fields as spans of its own bytes, looked up by
//! name when asked: a cache hit reads three of them, and building
//! `http`'s header map of every field (and dropping it) cost a third of a
//! 4 KB hit's instructions. [`Head::into_request`] builds the full
//! `http::Request` for the requests that need one (anything but a hit).
//!
//! pacmeshd accepts no request bodies: a head that announces one is
//! refused, so the connection never has to read or skip one.

use std::ops::Range;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

/// A request head longer than this is refused with 431 (pacman's are
/// about 200 bytes; the longest path served is `target::MAX_PATH_LEN`).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// More header fields than this are refused with 431.
pub const MAX_HEADERS: usize = 64;

/// A complete, accepted request head.
#[derive(Debug)]
pub struct Head {
    /// The head's bytes, which the path and the fields point into.
    bytes: Bytes,
    method: Method,
    uri: Uri,
    version: Version,
    /// Each field's name and value, as spans of `bytes`, in order.
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// Bytes of the input the head took (the next request starts there).
    pub len: usize,
    /// Whether the client lets the connection stay open after the answer.
    pub keep_alive: bool,
}

/// Why a head is refused; the connection is closed after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not HTTP/1.x, or a header that does not parse.
    Malformed,
    /// Content-Length that is not one number.
    BadContentLength,
    /// Over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
    TooLarge,
    /// A request body (Content-Length > 0, or Transfer-Encoding).
    Body,
    /// An `Expect` other than `100-continue`.
    Expectation,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Malformed | Refusal::BadContentLength => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Body => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Expectation => StatusCode::EXPECTATION_FAILED,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed request\n",
            Refusal::BadContentLength => "bad Content-Length\n",
            Refusal::TooLarge => "request head too large\n",
            Refusal::Body => "request bodies are not accepted\n",
            Refusal::Expectation => "only the 100-continue expectation is understood\n",
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is
/// incomplete (read more), the head once whole, or why it is refused.
///
/// `Expect: 100-continue` needs no interim answer: a request without a
/// body expects no 100, and one with a body gets its final refusal at
/// once, which tells the client not to send it.
pub fn parse(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        Err(_) => return Err(Refusal::Malformed),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Refusal::TooLarge);
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::Malformed);
    };
    // One copy of the head, which the path and every field point into.
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    // httparse's parts are slices of `buf`; one that were not would be
    // refused rather than trusted.
    let span = |part: &[u8]| match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
        Some(at) if at + part.len() <= len => Ok(at..at + part.len()),
        _ => Err(Refusal::Malformed),
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::Malformed)?;
    let uri = Uri::from_maybe_shared(bytes.slice(span(path.as_bytes())?))
        .map_err(|_| Refusal::Malformed)?;
    let version = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // httparse checked every name is a token and every value holds no
    // control byte but tab: what `HeaderName` and `HeaderValue` check.
    let fields = req
        .headers
        .iter()
        .map(|field| Ok((span(field.name.as_bytes())?, span(field.value)?)))
        .collect::<Result<_, Refusal>>()?;
    let mut head = Head {
        bytes,
        method,
        uri,
        version,
        fields,
        len,
        keep_alive: false,
    };
    if head.announces_body()? {
        return Err(Refusal::Body);
    }
    if let Some(expect) = head.value(&header::EXPECT) {
        if !expect.eq_ignore_ascii_case(b"100-continue") {
            return Err(Refusal::Expectation);
        }
    }
    head.keep_alive = head.keeps_alive();
    Ok(Some(head))
}

impl Head {
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// How many header fields the head has.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The values of every field named `name`, in order.
    pub fn values<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let name = name.as_str().as_bytes();
        self.fields
            .iter()
            .filter(move |(n, _)| self.bytes[n.clone()].eq_ignore_ascii_case(name))
            .map(|(_, value)| &self.bytes[value.clone()])
    }

    /// The first field named `name`'s value.
    pub fn value(&self, name: &HeaderName) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The first field named `name`'s value as text, if it is visible
    /// ASCII (`HeaderValue::to_str`'s rule).
    pub fn value_str(&self, name: &HeaderName) -> Option<&str> {
        let value = self.value(name)?;
        let visible = value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        visible.then(|| std::str::from_utf8(value).ok()).flatten()
    }

    /// The whole request as `http`'s types, every field in a header map.
    pub fn into_request(self) -> Result<Request<()>, Refusal> {
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            let name = HeaderName::from_bytes(&self.bytes[name.clone()])
                .map_err(|_| Refusal::Malformed)?;
            let value = HeaderValue::from_maybe_shared(self.bytes.slice(value.clone()))
                .map_err(|_| Refusal::Malformed)?;
            headers.append(name, value);
        }
        let mut request = Request::new(());
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// Whether the head says a body follows. Every Content-Length must be
    /// the same plain number (RFC 9112 §6.3); any Transfer-Encoding means
    /// a body.
    fn announces_body(&self) -> Result<bool, Refusal> {
        if self.value(&header::TRANSFER_ENCODING).is_some() {
            return Ok(true);
        }
        let mut length = None;
        for value in self.values(&header::CONTENT_LENGTH) {
            for part in value.split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii()).ok_or(Refusal::BadContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::BadContentLength);
                }
                length = Some(n);
            }
        }
        Ok(length.is_some_and(|n| n > 0))
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0
    /// closes it unless `Connection: keep-alive`.
    fn keeps_alive(&self) -> bool {
        let (mut close, mut keep) = (false, false);
        for value in self.values(&header::CONNECTION) {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        !close && (self.version == Version::HTTP_11 || keep)
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse` made of one input, reduced to what the tests compare.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Partial,
        Head {
            method: &'static str,
            path: &'static str,
            len: usize,
            keep_alive: bool,
        },
        Refused(Refusal),
    }

    /// In a table row: the head is the whole input.
    const WHOLE: usize = usize::MAX;

    fn check(input: &str, mut want: Got) {
        if let Got::Head { len, .. } = &mut want {
            if *len == WHOLE {
                *len = input.len();
            }
        }
        let got = match parse(input.as_bytes()) {
            Ok(None) => Got::Partial,
            Ok(Some(head)) => {
                let method = head.method().as_str().to_owned();
                let path = head.uri().path().to_owned();
                Got::Head {
                    method: method.leak(),
                    path: path.leak(),
                    len: head.len,
                    keep_alive: head.keep_alive,
                }
            }
            Err(r) => Got::Refused(r),
        };
        assert_eq!(got, want, "parse({input:?})");
    }

    fn head(method: &'static str, path: &'static str, len: usize, keep_alive: bool) -> Got {
        Got::Head {
            method,
            path,
            len,
            keep_alive,
        }
    }

    #[test]
    fn heads() {
        use Refusal::*;
        let get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let table: Vec<(String, Got)> = vec![
            (get.into(), head("GET", "/a", get.len(), true)),
            // A pipelined second request is left for the next parse.
            (format!("{get}GET /b"), head("GET", "/a", get.len(), true)),
            ("GET /a HTTP/1.1\r\nHost: x\r\n".into(), Got::Partial),
            ("GE".into(), Got::Partial),
            ("".into(), Got::Partial),
            (
                "HEAD /a HTTP/1.1\r\nConnection: close\r\n\r\n".into(),
                head("HEAD", "/a", WHOLE, false),
            ),
            (
                "GET /a HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n".into(),
                head("GET", "/a", WHOLE, false),
            ),
            (
                "GET /a HTTP/1.0\r\n\r\n".into(),
                head("GET", "/a", WHOLE, false),
            ),
            (
                "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".into(),
                head("GET", "/a", WHOLE, true),
            ),
            (
                "GET http://h:1/a?x=1 HTTP/1.1\r\n\r\n".into(),
                head("GET", "/a", WHOLE, true),
            ),
            // Some clients send an empty line after a previous body.
            (
                "\r\nGET /a HTTP/1.1\r\n\r\n".into(),
                head("GET", "/a", WHOLE, true),
            ),
            (
                "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n".into(),
                head("GET", "/a", WHOLE, true),
            ),
            (
                "GET /a HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n".into(),
                head("GET", "/a", WHOLE, true),
            ),
            (
                "FOO /a HTTP/1.1\r\n\r\n".into(),
                head("FOO", "/a", WHOLE, true),
            ),
            (
                "this is not http at all\r\n\r\n".into(),
                Got::Refused(Malformed),
            ),
            ("GET /a HTTP/2.0\r\n\r\n".into(), Got::Refused(Malformed)),
            ("GET /a\0 HTTP/1.1\r\n\r\n".into(), Got::Refused(Malformed)),
            (
                "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n".into(),
                Got::Refused(Malformed),
            ),
            (
                "GET /a HTTP/1.1\r\nX: a\x01b\r\n\r\n".into(),
                Got::Refused(Malformed),
            ),
            (
                "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".into(),
                Got::Refused(Body),
            ),
            (
                "GET /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(),
                Got::Refused(BadContentLength),
            ),
            (
                "GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n".into(),
                Got::Refused(BadContentLength),
            ),
            (
                "GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
                Got::Refused(BadContentLength),
            ),
            (
                "GET /a HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n".into(),
                Got::Refused(Body),
            ),
            (
                "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
                Got::Refused(Body),
            ),
            (
                "PUT /a HTTP/1.1\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n".into(),
                Got::Refused(Body),
            ),
            (
                "GET /a HTTP/1.1\r\nExpect: something-else\r\n\r\n".into(),
                Got::Refused(Expectation),
            ),
            (
                format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD_BYTES)),
                Got::Refused(TooLarge),
            ),
            (
                format!("GET /{}", "a".repeat(MAX_HEAD_BYTES)),
                Got::Refused(TooLarge),
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\n{}\r\n",
                    "X: y\r\n".repeat(MAX_HEADERS + 1)
                ),
                Got::Refused(TooLarge),
            ),
        ];
        for (input, want) in table {
            check(&input, want);
        }
    }

    #[test]
    fn headers_are_kept_in_order() {
        let input = "GET /a HTTP/1.1\r\nRange: bytes=5-\r\nX: 1\r\nx: 2\r\nEmpty:\r\n\r\n";
        let head = parse(input.as_bytes()).expect("parses").expect("whole");
        assert_eq!(head.value(&header::RANGE), Some(&b"bytes=5-"[..]));
        assert_eq!(head.value_str(&header::RANGE), Some("bytes=5-"));
        let x = HeaderName::from_static("x");
        let xs: Vec<_> = head.values(&x).collect();
        assert_eq!(xs, [b"1", b"2"]);
        assert_eq!(
            head.value(&HeaderName::from_static("empty")),
            Some(&b""[..])
        );
        assert_eq!(head.value(&header::IF_RANGE), None);
        assert_eq!(head.version(), Version::HTTP_11);

        // The full request holds the same fields, in the same order.
        let request = head.into_request().expect("fields http accepts");
        let h = request.headers();
        assert_eq!(h.len(), 4);
        assert_eq!(
            h.get(header::RANGE).map(|v| v.as_bytes()),
            Some(&b"bytes=5-"[..])
        );
        let xs: Vec<_> = h.get_all("x").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(xs, [b"1", b"2"]);
        assert_eq!(request.uri().path(), "/a");
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.version(), Version::HTTP_11);
    }

    /// A value with bytes past ASCII (obs-text) is kept, but is not text.
    #[test]
    fn values_past_ascii_are_not_text() {
        let head = parse(b"GET /a HTTP/1.1\r\nRange: bytes=\xff-\r\n\r\n")
            .expect("parses")
            .expect("whole");
        assert_eq!(head.value(&header::RANGE), Some(&b"bytes=\xff-"[..]));
        assert_eq!(head.value_str(&header::RANGE), None);
        let request = head.into_request().expect("http accepts obs-text values");
        assert!(request
            .headers()
            .get(header::RANGE)
            .unwrap()
            .to_str()
            .is_err());
    }
}
