//! A hostile mirror's sync databases (docs/DESIGN.md, "Sync database
//! bounds"): a 2 GiB GNU long name and two zstd bombs are refused quickly,
//! within a 512 MiB address space (`ulimit -v`), and the repo keeps the
//! table it had.
//!
//! The limit must bind the process that parses, so the parent test writes
//! the databases and runs itself again, in this same binary, under
//! `sh -c 'ulimit -v …; exec …'` with the dir in an environment variable:
//! the second run is the child that parses.

#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pacmeshd::syncdb::{Bound, DbError, SyncDbs};

/// Where the child finds the sync dir the parent prepared.
const CHILD_DIR: &str = "PACMESH_TEST_SYNCDB_BOUNDS_DIR";
/// The child's address space limit, in KiB for `ulimit -v`.
const ADDRESS_SPACE_KIB: u64 = 512 * 1024;
/// "Quickly", generous for a debug build on a loaded 2-core machine.
const QUICKLY: Duration = Duration::from_secs(20);

const GOOD_FILE: &str = "good-1.0-1-x86_64.pkg.tar.zst";
const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The hostile databases, by the name the child renames into `core.db`.
const HOSTILE: [&str; 3] = ["longname", "members-bomb", "zeros-bomb"];

fn header(kind: tar::EntryType, path: &str, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_path(path).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    header.as_bytes().to_vec()
}

fn good_tar() -> Vec<u8> {
    let desc = format!("%FILENAME%\n{GOOD_FILE}\n\n%CSIZE%\n1\n\n%SHA256SUM%\n{SUM}\n\n");
    let mut tar = header(
        tar::EntryType::Regular,
        "good-1.0-1/desc",
        desc.len() as u64,
    );
    tar.extend_from_slice(desc.as_bytes());
    tar.resize(tar.len().next_multiple_of(512), 0);
    tar
}

/// zstd frames decode one after another, so a few hundred bytes of frames
/// that each unpack to 16 MiB make gigabytes.
struct Frames {
    out: Vec<u8>,
    ones: Vec<u8>,
    zeros: Vec<u8>,
}

const CHUNK: u64 = 16 << 20;

impl Frames {
    fn new() -> Self {
        let frame = |byte: u8| zstd::encode_all(&vec![byte; CHUNK as usize][..], 1).unwrap();
        Frames {
            out: Vec::new(),
            ones: frame(b'a'),
            zeros: frame(0),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.out
            .extend_from_slice(&zstd::encode_all(bytes, 1).unwrap());
        self
    }

    /// `size` (a multiple of [`CHUNK`]) bytes of `a`, or of zeros.
    fn fill(&mut self, size: u64, zeros: bool) -> &mut Self {
        let frame = if zeros { &self.zeros } else { &self.ones };
        for _ in 0..size / CHUNK {
            self.out.extend_from_slice(frame);
        }
        self
    }
}

fn write_hostile(dir: &Path) {
    let gib = 1u64 << 30;
    // A GNU long name claiming 2 GiB, and the 2 GiB behind it.
    let mut f = Frames::new();
    f.bytes(&header(
        tar::EntryType::GNULongName,
        "././@LongLink",
        2 * gib,
    ))
    .fill(2 * gib, false);
    std::fs::write(dir.join("longname"), &f.out).unwrap();

    // Well-formed members of 64 MiB each, 2 GiB in all.
    let mut f = Frames::new();
    f.bytes(&good_tar());
    for i in 0..32 {
        let path = format!("junk-{i}/files");
        f.bytes(&header(tar::EntryType::Regular, &path, 64 << 20))
            .fill(64 << 20, false);
    }
    f.bytes(&[0; 1024]);
    std::fs::write(dir.join("members-bomb"), &f.out).unwrap();

    // A valid archive, then 4 GiB of zeros (tar stops at the first zero
    // block; the rest is read for the stream's end).
    let mut f = Frames::new();
    f.bytes(&good_tar()).bytes(&[0; 1024]).fill(4 * gib, true);
    std::fs::write(dir.join("zeros-bomb"), &f.out).unwrap();
}

#[test]
fn hostile_databases_are_refused_within_512_mib() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        return load_hostile_databases(&PathBuf::from(dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let sync = dir.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    let mut good = good_tar();
    good.extend_from_slice(&[0; 1024]);
    std::fs::write(
        sync.join("core.db"),
        zstd::encode_all(&good[..], 3).unwrap(),
    )
    .unwrap();
    write_hostile(dir.path());
    for name in HOSTILE {
        let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size < 1 << 20, "{name} is {size} bytes compressed");
    }

    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"ulimit -v {ADDRESS_SPACE_KIB} && exec "$0" "$@""#
        ))
        .arg(exe)
        .args([
            "--exact",
            "hostile_databases_are_refused_within_512_mib",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "child under ulimit -v {ADDRESS_SPACE_KIB}: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// The child's part: loads the good database, then each hostile one in
/// its place, within the address-space limit the parent set.
fn load_hostile_databases(dir: &Path) {
    let sync = dir.join("sync");
    let dbs = SyncDbs::load(&sync);
    assert!(dbs.lookup(GOOD_FILE).is_some(), "the good database loads");
    for name in HOSTILE {
        std::fs::rename(dir.join(name), sync.join("core.db")).unwrap();
        let started = Instant::now();
        let outcome = dbs.reload("core");
        let took = started.elapsed();
        println!("{name}: {outcome:?} in {took:?}");
        match outcome {
            Err(DbError::Refused { bound, .. }) => {
                let want = if name == "longname" {
                    Bound::LongName(2 << 30)
                } else {
                    Bound::Unpacked
                };
                assert_eq!(bound, want, "{name}");
            }
            other => panic!("{name}: not refused: {other:?}"),
        }
        assert!(took < QUICKLY, "{name} took {took:?}");
        assert!(
            dbs.lookup(GOOD_FILE).is_some(),
            "{name}: previous table kept"
        );
    }
}
