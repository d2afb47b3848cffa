//! Pure tests: `desc` parsing, format detection, archive walking, table
//! lookups, the verifier, and what watcher events mean.

use std::io::Write as _;
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind};
use notify::event::{EventKind, RenameMode};

use super::archive::detect;
use super::watch::{action_of, Action};
use super::*;

const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn sum_bytes() -> [u8; 32] {
    desc::parse_sha256(SUM).unwrap()
}

/// File name, size and checksum, or why the entry is skipped.
type Want<'a> = Result<(&'a str, Option<u64>, Option<[u8; 32]>), EntryError>;

fn check_desc(text: &str, want: Want<'_>) {
    let got = parse_desc(text.as_bytes()).map(|d| (d.filename, d.entry.size, d.entry.sha256));
    let want = want.map(|(f, size, sha256)| (f.to_owned(), size, sha256));
    assert_eq!(got, want, "desc:\n{text}");
}

#[test]
fn desc_table() {
    let s = Some(sum_bytes());
    let upper = SUM.to_uppercase();
    let full = format!(
        "%FILENAME%\nfoo-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\nfoo\n\n%CSIZE%\n12345\n\n%SHA256SUM%\n{SUM}\n\n"
    );
    check_desc(&full, Ok(("foo-1.0-1-x86_64.pkg.tar.zst", Some(12345), s)));
    // Other sections, with several values, in any order; no final newline.
    let shuffled = format!(
        "%DEPENDS%\nglibc\nzlib\n\n%SHA256SUM%\n{upper}\n\n%FILENAME%\nf.pkg.tar.xz\n\n%CSIZE%\n0"
    );
    check_desc(&shuffled, Ok(("f.pkg.tar.xz", Some(0), s)));
    // Missing fields are kept as missing.
    check_desc(
        "%FILENAME%\na.pkg.tar.zst\n",
        Ok(("a.pkg.tar.zst", None, None)),
    );
    check_desc(
        "%FILENAME%\na.pkg.tar.zst\n\n%CSIZE%\n7\n",
        Ok(("a.pkg.tar.zst", Some(7), None)),
    );
    let broken: &[(&str, EntryError)] = &[
        ("", EntryError::MissingFilename),
        ("%NAME%\nfoo\n", EntryError::MissingFilename),
        ("%FILENAME%\n\n", EntryError::NoValue("FILENAME")),
        ("%FILENAME%", EntryError::NoValue("FILENAME")),
        ("%FILENAME%\na\nb\n", EntryError::ManyValues("FILENAME")),
        (
            "%FILENAME%\na\n\n%FILENAME%\nb\n",
            EntryError::Repeated("FILENAME"),
        ),
        (
            "%FILENAME%\na\n\n%CSIZE%\n12k\n",
            EntryError::BadSize("12k".into()),
        ),
        (
            "%FILENAME%\na\n\n%CSIZE%\n+12\n",
            EntryError::BadSize("+12".into()),
        ),
        (
            "%FILENAME%\na\n\n%CSIZE%\n-1\n",
            EntryError::BadSize("-1".into()),
        ),
        (
            "%FILENAME%\na\n\n%CSIZE%\n99999999999999999999\n",
            EntryError::BadSize("99999999999999999999".into()),
        ),
        (
            "%FILENAME%\na\n\n%SHA256SUM%\nabc\n",
            EntryError::BadChecksum("abc".into()),
        ),
        (
            "%FILENAME%\na\n\n%CSIZE%\n1\n2\n",
            EntryError::ManyValues("CSIZE"),
        ),
        (
            "%FILENAME%\n../etc/passwd\n",
            EntryError::BadName {
                name: "../etc/passwd".into(),
                reason: pacmesh_proto::NameError::Hidden,
            },
        ),
        (
            "%FILENAME%\nsub/a.pkg.tar.zst\n",
            EntryError::BadName {
                name: "sub/a.pkg.tar.zst".into(),
                reason: pacmesh_proto::NameError::Slash,
            },
        ),
    ];
    for (text, error) in broken {
        check_desc(text, Err(error.clone()));
    }
    let bad_hex = format!("%FILENAME%\na\n\n%SHA256SUM%\n{}\n", "g".repeat(64));
    check_desc(&bad_hex, Err(EntryError::BadChecksum("g".repeat(64))));
    let crlf = format!("%FILENAME%\na\n\n%SHA256SUM%\n{SUM}\r\n");
    check_desc(&crlf, Err(EntryError::BadChecksum(format!("{SUM}\r"))));
    let latin1 = parse_desc(b"%FILENAME%\nd\xe9j\xe0.pkg.tar.zst\n");
    assert_eq!(latin1, Err(EntryError::NotUtf8("FILENAME")));
}

#[test]
fn format_detection() {
    let mut ustar = vec![0u8; 512];
    ustar[257..262].copy_from_slice(b"ustar");
    let table: &[(&[u8], Result<Compression, FormatError>)] = &[
        (&[0x1f, 0x8b, 8, 0], Ok(Compression::Gzip)),
        (&[0x28, 0xb5, 0x2f, 0xfd, 0], Ok(Compression::Zstd)),
        (b"\xfd7zXZ\0\0", Ok(Compression::Xz)),
        (&ustar, Ok(Compression::None)),
        (&[0u8; 1024], Ok(Compression::None)),
        (b"", Err(FormatError::Empty)),
        (b"BZh91AY", Err(FormatError::Unsupported("bzip2"))),
        (b"LZIP\x01", Err(FormatError::Unsupported("lzip"))),
        (
            b"<html>",
            Err(FormatError::Unknown("3c 68 74 6d 6c 3e".into())),
        ),
        (
            &[0u8; 100],
            Err(FormatError::Unknown("00 ".repeat(8).trim_end().into())),
        ),
    ];
    for (bytes, want) in table {
        assert_eq!(&detect(bytes), want, "{bytes:02x?}");
    }
}

/// A plain tar of `(path, contents)` files, written like repo-add does.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn desc_text(file: &str, size: u64) -> String {
    format!("%FILENAME%\n{file}\n\n%CSIZE%\n{size}\n\n%SHA256SUM%\n{SUM}\n\n")
}

#[test]
fn broken_entries_are_skipped_and_named() {
    let good = desc_text("good-1-1-any.pkg.tar.zst", 10);
    let dup = desc_text("good-1-1-any.pkg.tar.zst", 11);
    let tar = tar_of(&[
        ("good-1-1/desc", good.as_bytes()),
        ("good-1-1/files", b"%FILES%\nusr/\n"),
        (
            "bad-1-1/desc",
            b"%FILENAME%\nbad.pkg.tar.zst\n\n%CSIZE%\nlots\n",
        ),
        ("again-1-1/desc", dup.as_bytes()),
        ("deep/er/desc", b"not looked at"),
    ]);
    let parsed = parse_db("core.db", &gzip(&tar)).unwrap();
    assert_eq!(parsed.entries.len(), 1);
    assert_eq!(parsed.entries["good-1-1-any.pkg.tar.zst"].size, Some(10));
    let skipped: Vec<String> = parsed.skipped.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        skipped,
        [
            "entry bad-1-1/desc: %CSIZE% \"lots\" is not a size in bytes",
            "entry again-1-1/desc: \"good-1-1-any.pkg.tar.zst\" is listed by an earlier entry too",
        ]
    );
}

#[test]
fn corrupt_archives_fail_naming_db_and_place() {
    let a = desc_text("a-1-1-any.pkg.tar.zst", 1);
    let b = desc_text("b-1-1-any.pkg.tar.zst", 2);
    let tar = tar_of(&[("a-1-1/desc", a.as_bytes()), ("b-1-1/desc", b.as_bytes())]);
    // A header checksum broken in the second entry.
    let mut bad_header = tar.clone();
    bad_header[1024 + 148] ^= 0x01;
    let e = parse_db("extra.db", &bad_header).unwrap_err().to_string();
    assert!(
        e.starts_with("extra.db: corrupt archive after entry a-1-1/desc"),
        "{e}"
    );
    // gzip cut short: the stream ends early.
    let gz = gzip(&tar);
    let e = parse_db("extra.db", &gz[..gz.len() - 10])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("extra.db: corrupt archive"), "{e}");
    // gzip's CRC, only checked at the very end.
    let mut bad_crc = gz.clone();
    let at = bad_crc.len() - 6;
    bad_crc[at] ^= 0xff;
    let e = parse_db("extra.db", &bad_crc).unwrap_err().to_string();
    assert!(e.starts_with("extra.db: corrupt archive"), "{e}");
    let e = parse_db("extra.db", b"<html>oops</html>")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("extra.db: not a tar archive"), "{e}");
}

fn expected(size: u64, data: &[u8], repo: &str) -> Expected {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    Expected {
        size,
        sha256,
        repo: repo.into(),
    }
}

#[test]
fn table_lookups() {
    let entry = |size, sha256| DbEntry { size, sha256 };
    let core = RepoDb::new(
        [
            ("a.pkg.tar.zst".into(), entry(Some(1), Some(sum_bytes()))),
            ("nosum.pkg.tar.zst".into(), entry(Some(1), None)),
            ("nosize.pkg.tar.zst".into(), entry(None, Some(sum_bytes()))),
        ]
        .into_iter()
        .collect(),
    );
    let testing = RepoDb::new(
        [
            ("a.pkg.tar.zst".into(), entry(Some(2), Some(sum_bytes()))),
            (
                "nosum.pkg.tar.zst".into(),
                entry(Some(3), Some(sum_bytes())),
            ),
        ]
        .into_iter()
        .collect(),
    );
    let table = Table::default()
        .with_repo("core-testing", Arc::new(testing))
        .with_repo("core", Arc::new(core));
    let size_of = |name: &str| table.lookup(name).map(|e| (e.repo, e.size));
    assert_eq!(size_of("a.pkg.tar.zst"), Some(("core".into(), 1)));
    assert_eq!(
        size_of("nosum.pkg.tar.zst"),
        Some(("core-testing".into(), 3))
    );
    assert_eq!(size_of("nosize.pkg.tar.zst"), None);
    assert_eq!(size_of("a.pkg.tar.zst.sig"), None);
    assert_eq!(size_of("unknown.pkg.tar.zst"), None);
    assert_eq!(table.lookup_in("core", "nosum.pkg.tar.zst"), None);
    assert_eq!(
        table
            .lookup_in("core-testing", "a.pkg.tar.zst")
            .unwrap()
            .size,
        2
    );
    assert_eq!(
        table.entry("core", "nosum.pkg.tar.zst").unwrap().size,
        Some(1)
    );
    let without = table.without_repo("core");
    assert_eq!(
        without.lookup("a.pkg.tar.zst").unwrap().repo,
        "core-testing"
    );
    assert!(table.has_repo("core"), "tables are never edited in place");
}

#[test]
fn db_file_names() {
    let table = [
        ("core.db", Some("core")),
        ("core-testing.db", Some("core-testing")),
        ("core.files", None),
        ("core.db.sig", None),
        ("core.db.part", None),
        (".db", None),
        (".hidden.db", None),
        ("download-abc", None),
    ];
    for (name, want) in table {
        assert_eq!(repo_of_db_file(name), want, "{name}");
    }
}

#[test]
fn verifier_accepts_the_right_bytes_in_any_chunking() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for chunk in [1, 7, 4096, 10_000] {
        let mut v = Verifier::new(expected(data.len() as u64, &data, "core"));
        for part in data.chunks(chunk) {
            v.update(part).unwrap();
        }
        assert_eq!(v.received(), 10_000);
        v.finish().unwrap();
    }
    let empty = Verifier::new(expected(0, b"", "core"));
    empty.finish().unwrap();
}

#[test]
fn verifier_rejects_wrong_bytes() {
    let data = b"the right package bytes".to_vec();
    let want = expected(data.len() as u64, &data, "core");
    let size = data.len() as u64;

    let mut flipped = data.clone();
    flipped[5] ^= 0x20;
    let mut v = Verifier::new(want.clone());
    v.update(&flipped).unwrap();
    let got = expected(size, &flipped, "core").sha256;
    let checksum = Mismatch::Checksum {
        expected: want.sha256,
        got,
        size,
    };
    assert_eq!(v.finish(), Err(checksum));

    let mut v = Verifier::new(want.clone());
    v.update(&data[..10]).unwrap();
    v.check_so_far().unwrap();
    let too_long = Mismatch::TooLong {
        size,
        received: size + 1,
    };
    assert_eq!(v.update(&[b'x'; 14]), Err(too_long.clone()));
    assert_eq!(v.check_so_far(), Err(too_long.clone()));
    assert_eq!(v.finish(), Err(too_long));

    let mut v = Verifier::new(want);
    v.update(&data[..size as usize - 1]).unwrap();
    v.check_so_far().unwrap();
    let too_short = Mismatch::TooShort {
        size,
        received: size - 1,
    };
    assert_eq!(v.finish(), Err(too_short));
}

#[test]
fn client_gets_only_what_it_asked_for() {
    let chunk = b"0123456789";
    let table: &[(u64, u64, &[u8])] = &[
        (0, 0, b"0123456789"),
        (0, 4, b"456789"),
        (100, 104, b"456789"),
        (100, 50, b"0123456789"),
        (0, 10, b""),
        (0, 1_000, b""),
        (0, u64::MAX, b""),
    ];
    for &(offset, from, want) in table {
        assert_eq!(for_client(offset, chunk, from), want, "{offset} {from}");
    }
}

#[test]
fn watcher_event_actions() {
    let table = [
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            Action::Reload,
        ),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            Action::Reload,
        ),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            Action::Reload,
        ),
        (EventKind::Remove(RemoveKind::File), Action::Reload),
        (
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            Action::Ignore,
        ),
        (EventKind::Create(CreateKind::File), Action::Ignore),
        (
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            Action::Ignore,
        ),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            Action::Ignore,
        ),
        (EventKind::Other, Action::Reload),
    ];
    for (kind, want) in table {
        assert_eq!(action_of(&kind), want, "{kind:?}");
    }
}
