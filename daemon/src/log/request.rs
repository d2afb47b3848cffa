//! The request line, written without tracing's machinery: at 120 000
//! cache hits a second, dispatching and formatting it as an event cost
//! about a tenth of the serving capacity. The line is the one the
//! stock format writes for `info!(target: "pacmesh::request", …, "done")`
//! (a test checks that), goes to the same batch writer, and is written
//! only where that event would be (`PACMESH_LOG` filters it alike). A
//! subscriber layer added later would not see these lines: send them
//! through tracing again ([`install`] not called) if one must.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use super::writer::LineSink;

/// Where request lines go directly; unset, they go through tracing.
static SINK: OnceLock<LineSink> = OnceLock::new();

/// Sends request lines straight to `sink` (plain, uncoloured output only).
pub fn install(sink: LineSink) {
    let _ = SINK.set(sink);
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub struct Done<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub client: SocketAddr,
    pub source: &'a str,
    pub status: u16,
    pub bytes: u64,
    /// Whole microseconds; the line says milliseconds (`ms=0.202`).
    pub micros: u64,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `done`'s info line directly; false when it must go through
/// tracing instead (no direct sink installed).
pub fn write(done: &Done<'_>) -> bool {
    let Some(sink) = SINK.get() else {
        return false;
    };
    if tracing::enabled!(target: "pacmesh::request", tracing::Level::INFO) {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            encode(&mut line, SystemTime::now(), done);
            let _ = sink.clone().write_all(&line);
        });
    }
    true
}

/// The stock format's line for the `done` event at `now`. Written piece
/// by piece: `write!` of the address and the float cost a tenth of a cache
/// hit's instructions.
pub fn encode(out: &mut Vec<u8>, now: SystemTime, done: &Done<'_>) {
    let _ = super::format::write_timestamp(&mut Bytes(out), now);
    out.extend_from_slice(b"  INFO pacmesh::request: done method=");
    out.extend_from_slice(done.method.as_bytes());
    out.extend_from_slice(b" path=");
    out.extend_from_slice(done.path.as_bytes());
    out.extend_from_slice(b" client=");
    push_addr(out, done.client);
    // Debug-quoted, as the stock format writes a `&str` field: by hand
    // for the sources' plain names, which quote as themselves.
    if done
        .source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        out.extend_from_slice(b" source=\"");
        out.extend_from_slice(done.source.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, " source={:?}", done.source);
    }
    out.extend_from_slice(b" status=");
    push_u64(out, u64::from(done.status));
    out.extend_from_slice(b" bytes=");
    push_u64(out, done.bytes);
    out.extend_from_slice(b" ms=");
    push_ms(out, done.micros);
    out.push(b'\n');
}

/// `client`'s `Display` form (IPv4 by hand, IPv6 by `std`).
fn push_addr(out: &mut Vec<u8>, client: SocketAddr) {
    match client {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
            out.push(b':');
            push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Up to this many milliseconds (49 days) the `f64` nearest `micros / 1000`
/// is so much finer than 0.001 that its shortest form is that decimal.
const EXACT_MS: u64 = 1 << 32;

/// `micros` as milliseconds, written as `{:?}` writes the `f64`
/// `micros / 1000` (`0.004`, `12.0`, `1234.5`).
fn push_ms(out: &mut Vec<u8>, micros: u64) {
    if micros / 1000 >= EXACT_MS {
        let _ = write!(out, "{:?}", micros as f64 / 1000.0);
        return;
    }
    push_u64(out, micros / 1000);
    out.push(b'.');
    let frac = micros % 1000;
    let digits = [frac / 100, frac / 10 % 10, frac % 10].map(|d| b'0' + d as u8);
    // Trailing zeros dropped, one digit kept (`12.0`, `1234.5`, `0.004`).
    let keep = if !frac.is_multiple_of(10) {
        3
    } else if !frac.is_multiple_of(100) {
        2
    } else {
        1
    };
    out.extend_from_slice(&digits[..keep]);
}

/// `fmt::Write` onto a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `n` in decimal (also the responses' `Content-Length`).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct line is the stock format's, byte for byte after the
    /// timestamp.
    #[test]
    fn lines_match_the_stock_format() {
        let cases = [
            Done {
                method: "GET",
                path: "/core/os/x86_64/a-1-1-any.pkg.tar.zst",
                client: "127.0.0.1:4000".parse().expect("addr"),
                source: "local",
                status: 206,
                bytes: 18_446_744_073_709_551_615,
                micros: 4,
            },
            Done {
                method: "HEAD",
                path: "/b%20c",
                client: "[::1]:65535".parse().expect("addr"),
                source: "mirror_redirect",
                status: 307,
                bytes: 0,
                micros: 1_234_500,
            },
            Done {
                method: "GET",
                path: "/c",
                client: "10.200.3.45:8".parse().expect("addr"),
                source: "local",
                status: 200,
                bytes: 4096,
                micros: 12_000,
            },
            // A name that Debug escapes takes the formatter's way.
            Done {
                method: "GET",
                path: "/d",
                client: "10.0.0.1:9".parse().expect("addr"),
                source: "odd \"name\"\n",
                status: 404,
                bytes: 0,
                micros: 1,
            },
        ];
        for done in cases {
            let buf = crate::log::SharedBuf::default();
            let out = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || out.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                let (method, path, client) = (done.method, done.path, done.client);
                let (source, status, bytes) = (done.source, done.status, done.bytes);
                let ms = done.micros as f64 / 1000.0;
                tracing::info!(target: "pacmesh::request", %method, %path, %client, source, status, bytes, ms, "done");
            });
            let stock = String::from_utf8(buf.0.lock().clone()).expect("utf-8");
            let mut fast = Vec::new();
            encode(&mut fast, SystemTime::now(), &done);
            let fast = String::from_utf8(fast).expect("utf-8");
            let strip = |l: &str| l.split_once(' ').expect("a timestamp").1.to_owned();
            assert_eq!(strip(&fast), strip(&stock));
        }
    }

    /// Milliseconds as `{:?}` writes the `f64` the tracing line carries.
    #[test]
    fn milliseconds_are_written_as_the_float_would_be() {
        let wide = (0..=3_000).chain((0..40).map(|i| 7_777_777 * i + 13));
        for micros in wide.chain([999_999_999_999, EXACT_MS * 1000 - 1, (1 << 53) - 1]) {
            let mut out = Vec::new();
            push_ms(&mut out, micros);
            let want = format!("{:?}", micros as f64 / 1000.0);
            assert_eq!(String::from_utf8(out).expect("utf-8"), want, "{micros}");
        }
    }
}
