//! Fuzz entry points: what `fuzz/` runs under AFL++ and what
//! `tests/fuzz_corpus.rs` replays over the committed corpus, so a campaign
//! and `cargo test` check the same things. Not part of the API.

use pacmesh_proto::validate_name;

use crate::http::head::{self, MAX_HEAD_BYTES};
use crate::http::local::FileAsk;
use crate::http::range::{if_range_matches, not_modified, parse_range, RangeSpec};
use crate::http::target::{parse_target, Target};
use crate::syncdb::archive::SKIPPED_KEPT;
use crate::syncdb::{parse_db_within, Limits};

/// File sizes each accepted `Range` is resolved against.
const RANGE_SIZES: [u64; 5] = [0, 1, 2, 1 << 20, u64::MAX];

/// Unpacked bytes one sync database input may expand to: lower than the
/// daemon's bound so a run stays fast; the bound's code path is the same.
const FUZZ_DB_UNPACKED: u64 = 8 << 20;

/// Bytes as a connection's input: heads parsed one after another as a
/// pipelining client sends them, each head's path parsed as a target and
/// its `Range` and conditional headers decided for a few file sizes.
pub fn http_requests(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some(head)) = head::parse(rest) {
        assert!(
            head.len > 0 && head.len <= rest.len(),
            "a head took bytes it was not given"
        );
        assert!(
            head.len <= MAX_HEAD_BYTES,
            "a head over the limit was accepted"
        );
        check_target(head.uri().path());
        check_range(&FileAsk::from_head(&head));
        let len = head.len;
        // What a request that is not a hit is answered from: every field
        // httparse accepted, in `http`'s types.
        let fields = head.field_count();
        let request = head.into_request();
        assert!(
            request.is_ok_and(|r| r.headers().len() == fields),
            "a head httparse accepted has a field http refuses"
        );
        rest = &rest[len..];
    }
}

fn check_target(path: &str) {
    if let Ok(Target::File(file)) = parse_target(path) {
        let segments = [file.repo.as_deref(), file.arch.as_deref(), Some(&file.name)];
        for segment in segments.into_iter().flatten() {
            assert!(
                validate_name(segment).is_ok(),
                "unsafe segment {segment:?} accepted"
            );
        }
    }
}

fn check_range(ask: &FileAsk<'_>) {
    let _ = not_modified(ask.if_modified_since, std::time::UNIX_EPOCH);
    let _ = if_range_matches(ask.if_range, std::time::UNIX_EPOCH);
    for size in RANGE_SIZES {
        let spec = parse_range(ask.range, size);
        if let RangeSpec::Partial { start, end } = spec {
            assert!(
                start <= end && end < size,
                "range {start}-{end} outside {size}"
            );
        }
        let span = spec.span(size);
        assert!(
            span.start <= span.end && span.end <= size,
            "span outside the file"
        );
    }
}

/// Bytes as a sync database file from a mirror: parsed whole, never a
/// panic; what is accepted names only safe files.
pub fn sync_db(data: &[u8]) {
    let limits = Limits {
        unpacked: FUZZ_DB_UNPACKED,
        ..Limits::default()
    };
    let Ok(parsed) = parse_db_within("fuzz.db", data, limits) else {
        return;
    };
    assert!(
        parsed.skipped.len() <= SKIPPED_KEPT,
        "kept too many skipped entries"
    );
    assert!(
        parsed.skipped_total >= parsed.skipped.len(),
        "skipped count too low"
    );
    for name in parsed.entries.keys() {
        assert!(
            validate_name(name).is_ok(),
            "unsafe file name {name:?} accepted"
        );
    }
}
