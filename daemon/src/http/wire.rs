//! Response heads as bytes, and how a response is framed on a
//! persistent connection (pure; the clock is read only by [`date_now`]).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::StatusCode;

use crate::log::request::push_u64;

/// What the head says about the connection after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1's default: it stays open.
    Persistent,
    /// HTTP/1.0 asked to keep it open: say that it is.
    KeepAlive,
    /// It closes after this response.
    Close,
}

/// Whether a response with `status` may carry a body at all
/// (RFC 9110 §6.4.1: never 1xx, 204 or 304).
pub fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// A response's header fields, as [`encode_head`] writes them.
pub trait Fields {
    /// Appends every field, each line ending in CRLF.
    fn write_to(&self, out: &mut Vec<u8>);
    /// The `Content-Length` the fields state, if one plain number.
    fn stated_length(&self) -> Option<u64>;
}

/// Appends one field: `name: value` and CRLF.
pub fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `content-length: length` and CRLF.
pub fn push_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"content-length: ");
    push_u64(out, length);
    out.extend_from_slice(b"\r\n");
}

impl Fields for HeaderMap {
    fn write_to(&self, out: &mut Vec<u8>) {
        for (name, value) in self {
            push_field(out, name.as_str(), value.as_bytes());
        }
    }

    fn stated_length(&self) -> Option<u64> {
        self.get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}

/// Appends the head of a response to `out`: status line, `fields`,
/// `Content-Length: length` when `length` is given and the fields state
/// none, `Date`, and `Connection` when it is not the default.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: &impl Fields,
    length: Option<u64>,
    connection: Connection,
    date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    fields.write_to(out);
    if let Some(n) = length.filter(|_| fields.stated_length().is_none()) {
        push_length(out, n);
    }
    push_field(out, "date", date);
    match connection {
        Connection::Persistent => {}
        Connection::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Connection::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Length of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

thread_local! {
    /// The formatted date of the last second seen on this thread: formatted
    /// once a second, not once a response.
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Now as an HTTP date, for the `Date` header.
pub fn date_now() -> [u8; DATE_LEN] {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, http_date(now));
        }
        cached.1
    })
}

/// The first second of the year 10000, past which an IMF-fixdate no
/// longer has four year digits.
const YEAR_10000: u64 = 253_402_300_800;

const WEEKDAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `time` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), written by
/// hand: `Last-Modified` is on every file response, and `httpdate`'s
/// `String` cost a tenth of a 4 KB hit's instructions. The format holds
/// 1970 to 9999 only: a file time outside (a cache file touched to 1960)
/// is written as the nearest end, where `httpdate` would panic and cut the
/// connection.
pub fn http_date(time: SystemTime) -> [u8; DATE_LEN] {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs().min(YEAR_10000 - 1));
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::log::format::civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(WEEKDAYS[((days + 4) % 7) as usize]);
    put_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put_digits(&mut out[12..16], year);
    put_digits(&mut out[17..19], rest / 3600);
    put_digits(&mut out[20..22], rest / 60 % 60);
    put_digits(&mut out[23..25], rest % 60);
    out
}

/// `n`'s last `out.len()` decimal digits, zero-padded.
fn put_digits(out: &mut [u8], mut n: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(status: StatusCode, headers: &HeaderMap, length: Option<u64>, c: Connection) -> String {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            status,
            headers,
            length,
            c,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn heads() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(5u64));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let date = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
        assert_eq!(
            head(StatusCode::OK, &h, Some(5), Connection::Persistent),
            format!("HTTP/1.1 200 OK\r\ncontent-length: 5\r\naccept-ranges: bytes\r\n{date}\r\n")
        );
        assert_eq!(
            head(StatusCode::RANGE_NOT_SATISFIABLE, &HeaderMap::new(), Some(0), Connection::Close),
            format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-length: 0\r\n{date}connection: close\r\n\r\n"
            )
        );
        assert_eq!(
            head(
                StatusCode::NOT_MODIFIED,
                &HeaderMap::new(),
                None,
                Connection::KeepAlive
            ),
            format!("HTTP/1.1 304 Not Modified\r\n{date}connection: keep-alive\r\n\r\n")
        );
    }

    #[test]
    fn bodies_and_lengths() {
        assert!(status_has_body(StatusCode::OK));
        assert!(status_has_body(StatusCode::RANGE_NOT_SATISFIABLE));
        assert!(!status_has_body(StatusCode::NOT_MODIFIED));
        assert!(!status_has_body(StatusCode::NO_CONTENT));
        assert!(!status_has_body(StatusCode::CONTINUE));
        let mut h = HeaderMap::new();
        assert_eq!(h.stated_length(), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(42u64));
        assert_eq!(h.stated_length(), Some(42));
    }

    #[test]
    fn date_is_an_http_date() {
        let d = date_now();
        let text = std::str::from_utf8(&d).expect("ascii");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }

    /// Times the format cannot hold are written as its ends, never a panic.
    #[test]
    fn dates_outside_1970_to_9999_are_clamped() {
        use std::time::Duration;
        let before = UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
        assert_eq!(&http_date(before), b"Thu, 01 Jan 1970 00:00:00 GMT");
        let after = UNIX_EPOCH + Duration::from_secs(YEAR_10000 + 86_400);
        assert_eq!(&http_date(after), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// The hand-written date is `httpdate`'s, byte for byte.
    #[test]
    fn http_dates_match_httpdate() {
        use std::time::Duration;
        let step = 86_400 * 13 + 3_607;
        let times = (0..200_000u64).map(|i| i * step % YEAR_10000);
        for secs in times.chain([0, 951_782_400, 1_709_251_199, YEAR_10000 - 1]) {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            let want = httpdate::fmt_http_date(time);
            assert_eq!(&http_date(time)[..], want.as_bytes(), "{secs}");
        }
    }
}
