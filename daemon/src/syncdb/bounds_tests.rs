//! Pure tests of the database bounds: every extension member and every
//! limit, just under and just over. The large hostile databases (a 2 GiB
//! long name, decompression bombs) are in `daemon/tests/syncdb_bounds.rs`,
//! under a memory limit.

use tar::{EntryType, Header};

use super::archive::{parse_db_within, Limits, SKIPPED_KEPT};
use super::bounds::{Bound, MAX_LONG_NAME, MAX_PAX_HEADER};
use super::{parse_db, DbError};

const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn desc(file: &str) -> Vec<u8> {
    format!("%FILENAME%\n{file}\n\n%CSIZE%\n1\n\n%SHA256SUM%\n{SUM}\n\n").into_bytes()
}

/// Builds archives member by member, extension members included.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    /// A member of any type; `name` must fit the ustar header.
    fn member(mut self, kind: EntryType, name: &str, data: &[u8]) -> Self {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_path(name).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    /// A header claiming `size` bytes, followed by nothing at all.
    fn claim(self, kind: EntryType, size: u64) -> Vec<u8> {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_path("././@LongLink").unwrap();
        header.set_size(size);
        header.set_cksum();
        // Not `into_inner`, which would end the archive first.
        let mut bytes = self.0.get_ref().clone();
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.member(EntryType::Regular, name, data)
    }

    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn refused(result: Result<super::ParsedDb, DbError>) -> Bound {
    match result {
        Err(DbError::Refused { bound, .. }) => bound,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(parsed) => panic!("accepted: {:?}", parsed.entries),
    }
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in records {
        // "LEN key=value\n", LEN counting itself.
        let body = key.len() + value.len() + 3;
        let digits = |n: usize| n.to_string().len();
        let mut len = body + digits(body);
        if digits(len) != digits(body) {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    data
}

#[test]
fn long_names_within_the_bound_name_the_next_member() {
    let dir = format!("{}-1-1", "n".repeat(200));
    let path = format!("{dir}/desc");
    let tar = Tar::new()
        .member(EntryType::GNULongName, "././@LongLink", path.as_bytes())
        .file("truncated", &desc("long-1-1-any.pkg.tar.zst"))
        .done();
    let parsed = parse_db("core.db", &tar).unwrap();
    assert!(parsed.entries.contains_key("long-1-1-any.pkg.tar.zst"));

    // PAX's path, the way bsdtar writes names over 100 bytes.
    let tar = Tar::new()
        .member(
            EntryType::XHeader,
            "PaxHeader/x",
            &pax(&[("path", path.as_bytes())]),
        )
        .file("truncated", &desc("pax-1-1-any.pkg.tar.zst"))
        .done();
    let parsed = parse_db("core.db", &tar).unwrap();
    assert!(parsed.entries.contains_key("pax-1-1-any.pkg.tar.zst"));

    // The name applies to one member only.
    let tar = Tar::new()
        .member(EntryType::GNULongName, "././@LongLink", path.as_bytes())
        .file("truncated", b"")
        .file("next/desc", &desc("next-1-1-any.pkg.tar.zst"))
        .done();
    let parsed = parse_db("core.db", &tar).unwrap();
    assert!(parsed.entries.contains_key("next-1-1-any.pkg.tar.zst"));
}

#[test]
fn extension_members_past_their_bounds_are_refused_from_the_header() {
    // Claimed sizes with no data behind them: the refusal comes before any
    // read (reading would fail on the archive's end instead).
    let big = 2u64 << 30;
    let table = [
        (
            EntryType::GNULongName,
            MAX_LONG_NAME + 1,
            Bound::LongName(MAX_LONG_NAME + 1),
        ),
        (EntryType::GNULongName, big, Bound::LongName(big)),
        (EntryType::GNULongLink, big, Bound::LongName(big)),
        (
            EntryType::XHeader,
            MAX_PAX_HEADER + 1,
            Bound::PaxHeader(MAX_PAX_HEADER + 1),
        ),
        (EntryType::XGlobalHeader, big, Bound::PaxHeader(big)),
        (EntryType::GNUSparse, 0, Bound::Sparse),
        // An ordinary member that cannot fit what is left to unpack.
        (EntryType::Regular, big, Bound::Unpacked),
    ];
    for (kind, size, want) in table {
        let tar = Tar::new().file("a-1-1/desc", &desc("a")).claim(kind, size);
        assert_eq!(
            refused(parse_db("core.db", &tar)),
            want,
            "{kind:?} of {size}"
        );
    }
}

#[test]
fn a_pax_size_is_refused() {
    for kind in [EntryType::XHeader, EntryType::XGlobalHeader] {
        let tar = Tar::new()
            .member(kind, "PaxHeader/x", &pax(&[("size", b"10")]))
            .file("a-1-1/desc", &desc("a-1-1-any.pkg.tar.zst"))
            .done();
        assert_eq!(refused(parse_db("core.db", &tar)), Bound::PaxSize);
    }
}

#[test]
fn members_and_unpacked_bytes_are_bounded() {
    let mut tar = Tar::new();
    for i in 0..10 {
        tar = tar.file(
            &format!("p{i}-1-1/desc"),
            &desc(&format!("p{i}.pkg.tar.zst")),
        );
    }
    let tar = tar.done();
    let at = |unpacked, members| parse_db_within("core.db", &tar, Limits { unpacked, members });
    // Exactly at each limit is fine: 10 members, and every byte the
    // archive holds (10 headers, 10 data blocks, 2 end blocks).
    assert_eq!(at(tar.len() as u64, 10).unwrap().entries.len(), 10);
    assert_eq!(refused(at(tar.len() as u64, 9)), Bound::Members);
    assert_eq!(refused(at(tar.len() as u64 - 1, 10)), Bound::Unpacked);
    // Compressed, the limit applies to what comes out.
    let gz = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    };
    let limits = Limits {
        unpacked: 4096,
        members: 10,
    };
    assert_eq!(
        refused(parse_db_within("core.db", &gz, limits)),
        Bound::Unpacked
    );
}

#[test]
fn a_zstd_window_past_the_bound_is_refused() {
    // A frame header alone: magic, no content size, a window of 2^(10+e),
    // then one empty raw block marked last.
    let frame = |exponent: u8| {
        vec![
            0x28,
            0xb5,
            0x2f,
            0xfd,
            0x00,
            exponent << 3,
            0x01,
            0x00,
            0x00,
        ]
    };
    let ok = parse_db(
        "core.db",
        &frame(super::bounds::ZSTD_WINDOW_LOG_MAX as u8 - 10),
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
    let e = parse_db(
        "core.db",
        &frame(super::bounds::ZSTD_WINDOW_LOG_MAX as u8 - 9),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("core.db: corrupt archive at the start"),
        "{e}"
    );
}

#[test]
fn skipped_entries_are_counted_past_those_kept() {
    let mut tar = Tar::new();
    let n = SKIPPED_KEPT + 5;
    for i in 0..n {
        tar = tar.file(&format!("p{i}-1-1/desc"), b"%NAME%\nno file name\n");
    }
    let parsed = parse_db("core.db", &tar.done()).unwrap();
    assert_eq!(parsed.skipped.len(), SKIPPED_KEPT);
    assert_eq!(parsed.skipped_total, n);
}
