//! `Range` and the conditional headers, decided without IO (pure).

use http::StatusCode;

use std::time::SystemTime;

/// What part of a file of known size to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// What a response for a [`RangeSpec`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub status: StatusCode,
    /// Bytes `start..end` of the file (empty for 416).
    pub start: u64,
    pub end: u64,
    /// The `Content-Range` header's value, for 206 and 416.
    pub content_range: Option<String>,
}

impl RangeSpec {
    /// The status, bytes and `Content-Range` to answer with, for a file of
    /// `size` bytes.
    pub fn span(self, size: u64) -> Span {
        match self {
            RangeSpec::Full => Span {
                status: StatusCode::OK,
                start: 0,
                end: size,
                content_range: None,
            },
            RangeSpec::Partial { start, end } => Span {
                status: StatusCode::PARTIAL_CONTENT,
                start,
                end: end + 1,
                content_range: Some(format!("bytes {start}-{end}/{size}")),
            },
            RangeSpec::Unsatisfiable => Span {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                start: 0,
                end: 0,
                content_range: Some(format!("bytes */{size}")),
            },
        }
    }
}

/// Parses a `Range` header for a file of `size` bytes. Only a single byte
/// range is honoured; anything else is ignored (RFC 9110 lets a server send
/// the whole file instead), except a well-formed range that starts past the
/// end, which is 416.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(n) if size > 0 => RangeSpec::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => RangeSpec::Unsatisfiable,
            None => RangeSpec::Full,
        },
        // `bytes=N-`: from N to the end (pacman's resume).
        (false, true) => match number(first) {
            Some(start) if start < size => RangeSpec::Partial {
                start,
                end: size - 1,
            },
            Some(_) => RangeSpec::Unsatisfiable,
            None => RangeSpec::Full,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start < size {
                    RangeSpec::Partial {
                        start,
                        end: end.min(size - 1),
                    }
                } else {
                    RangeSpec::Unsatisfiable
                }
            }
            _ => RangeSpec::Full,
        },
        (true, true) => RangeSpec::Full,
    }
}

/// True when `If-Modified-Since` says the client's copy is current. HTTP
/// dates have whole seconds, so the file's time is compared truncated.
pub fn not_modified(if_modified_since: Option<&str>, mtime: SystemTime) -> bool {
    let Some(since) = if_modified_since.and_then(|v| httpdate::parse_http_date(v).ok()) else {
        return false;
    };
    truncate_to_secs(mtime) <= since
}

/// True when an `If-Range` header (if any) still matches the file, so the
/// range may be honoured; a stale validator means "send it all".
pub fn if_range_matches(if_range: Option<&str>, mtime: SystemTime) -> bool {
    match if_range {
        None => true,
        Some(v) => httpdate::parse_http_date(v).is_ok_and(|d| d == truncate_to_secs(mtime)),
    }
}

fn truncate_to_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(header: Option<&str>, size: u64, want: RangeSpec) {
        assert_eq!(
            parse_range(header, size),
            want,
            "parse_range({header:?}, {size})"
        );
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let table: &[(Option<&str>, u64, RangeSpec)] = &[
            (None, 100, Full),
            (Some("bytes=0-"), 100, Partial { start: 0, end: 99 }),
            (Some("bytes=40-"), 100, Partial { start: 40, end: 99 }),
            (Some("bytes=99-"), 100, Partial { start: 99, end: 99 }),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=0-9"), 100, Partial { start: 0, end: 9 }),
            (Some("bytes=90-200"), 100, Partial { start: 90, end: 99 }),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=-10"), 100, Partial { start: 90, end: 99 }),
            (Some("bytes=-1000"), 100, Partial { start: 0, end: 99 }),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=-5"), 0, Unsatisfiable),
            (Some("bytes=9-0"), 100, Full),
            (Some("bytes=0-9,20-29"), 100, Full),
            (Some("bytes=a-b"), 100, Full),
            (Some("bytes=+1-"), 100, Full),
            (Some("bytes=-"), 100, Full),
            (Some("items=0-9"), 100, Full),
            (Some("bytes=99999999999999999999999-"), 100, Full),
            (Some(" bytes=5-6 "), 100, Partial { start: 5, end: 6 }),
        ];
        for &(header, size, want) in table {
            check(header, size, want);
        }
    }

    #[test]
    fn conditionals() {
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let same = httpdate::fmt_http_date(mtime);
        let earlier = httpdate::fmt_http_date(mtime - Duration::from_secs(60));
        let later = httpdate::fmt_http_date(mtime + Duration::from_secs(60));
        assert!(not_modified(Some(&same), mtime));
        assert!(not_modified(Some(&later), mtime));
        assert!(!not_modified(Some(&earlier), mtime));
        assert!(!not_modified(Some("yesterday"), mtime));
        assert!(!not_modified(None, mtime));
        assert!(if_range_matches(None, mtime));
        assert!(if_range_matches(Some(&same), mtime));
        assert!(!if_range_matches(Some(&earlier), mtime));
        assert!(!if_range_matches(Some("\"etag\""), mtime));
    }
}
