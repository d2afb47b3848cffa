//! Sync databases from disk: every compression repo-add writes, databases
//! made by the real `repo-add`, and reloading when a database is replaced.

#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pacmeshd::syncdb::{self, Compression, Expected, SyncDbs, Verifier};
use support::data::sha256;
use support::wait::eventually;
use tokio_util::sync::CancellationToken;

/// A fake package file: its name and contents.
struct Pkg {
    name: String,
    data: Vec<u8>,
}

fn pkg(name: &str) -> Pkg {
    Pkg {
        name: format!("{name}-1.0-1-x86_64.pkg.tar.zst"),
        data: format!("contents of {name}").repeat(3).into_bytes(),
    }
}

fn expected(p: &Pkg, repo: &str) -> Expected {
    Expected {
        size: p.data.len() as u64,
        sha256: sha256(&p.data),
        repo: repo.into(),
    }
}

/// A sync database listing `pkgs`, laid out as repo-add lays it out.
fn db(compression: Compression, pkgs: &[Pkg]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for p in pkgs {
        let dir = p.name.trim_end_matches("-x86_64.pkg.tar.zst");
        let desc = format!(
            "%FILENAME%\n{}\n\n%NAME%\n{dir}\n\n%CSIZE%\n{}\n\n%SHA256SUM%\n{}\n\n",
            p.name,
            p.data.len(),
            syncdb::to_hex(&sha256(&p.data)),
        );
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{dir}/"), &[][..])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(desc.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{dir}/desc"), desc.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(&tar[..], 3).unwrap(),
        Compression::Xz => {
            let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
            xz.write_all(&tar).unwrap();
            xz.finish().unwrap()
        }
    }
}

#[test]
fn reads_every_compression_and_only_db_files() {
    let dir = tempfile::tempdir().unwrap();
    let repos = [
        ("core", Compression::Gzip, pkg("a")),
        ("extra", Compression::Zstd, pkg("b")),
        ("multilib", Compression::Xz, pkg("c")),
        ("plain", Compression::None, pkg("d")),
    ];
    for (repo, compression, p) in &repos {
        let file = dir.path().join(format!("{repo}.db"));
        std::fs::write(file, db(*compression, std::slice::from_ref(p))).unwrap();
    }
    // Not databases: must be neither read nor a reason to fail.
    let files_db = db(Compression::Gzip, &[pkg("files-only")]);
    std::fs::write(dir.path().join("core.files"), files_db).unwrap();
    std::fs::write(dir.path().join("core.db.sig"), b"\x89PGP").unwrap();
    std::fs::create_dir(dir.path().join("download-x1y2")).unwrap();

    let dbs = SyncDbs::load(dir.path());
    for (repo, _, p) in &repos {
        assert_eq!(dbs.lookup(&p.name), Some(expected(p, repo)), "{repo}");
        assert_eq!(dbs.lookup_in(repo, &p.name), Some(expected(p, repo)));
        assert_eq!(dbs.lookup(&format!("{}.sig", p.name)), None);
    }
    assert_eq!(dbs.lookup(&pkg("files-only").name), None);
    let repos: Vec<(String, usize)> = dbs
        .table()
        .repos()
        .map(|(r, n)| (r.to_owned(), n))
        .collect();
    let names = ["core", "extra", "multilib", "plain"];
    assert_eq!(repos, names.map(|r| (r.to_owned(), 1)));
}

#[test]
fn a_missing_sync_dir_is_an_empty_table() {
    let dbs = SyncDbs::load(Path::new("/nonexistent/pacman/sync"));
    assert_eq!(dbs.table().repos().count(), 0);
    assert_eq!(dbs.lookup("a-1-1-any.pkg.tar.zst"), None);
}

#[test]
fn a_corrupt_db_is_left_out_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = db(Compression::Gzip, &[pkg("a")]);
    std::fs::write(dir.path().join("core.db"), &good).unwrap();
    std::fs::write(dir.path().join("extra.db"), &good[..good.len() / 2]).unwrap();
    let dbs = SyncDbs::load(dir.path());
    assert!(dbs.lookup_in("core", &pkg("a").name).is_some());
    let e = dbs.reload("extra").unwrap_err().to_string();
    assert!(e.starts_with("extra.db: corrupt archive"), "{e}");
}

/// True when `tools` are on PATH; otherwise fails under `CI=true` and
/// skips loudly elsewhere.
fn have_tools(tools: &[&str]) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |tool: &str| {
        std::env::split_paths(&path).any(|dir| {
            dir.join(tool)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    };
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "needs {missing:?} on PATH (apt-get install pacman-package-manager libarchive-tools)"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {msg}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\nSKIPPED: {msg}\n**********\n"
    );
    // Listed at the end of scripts/test.sh's run (as pacmesh_tests::prereq does).
    if let Some(path) = std::env::var_os("PACMESH_SKIP_LOG") {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "daemon/tests/syncdb.rs {test} {msg}");
        }
    }
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A minimal package: a zstd tar holding a `.PKGINFO`, all repo-add reads.
fn make_package(dir: &Path, name: &str) -> PathBuf {
    let build = dir.join(format!("build-{name}"));
    std::fs::create_dir(&build).unwrap();
    let info = format!("pkgname = {name}\npkgbase = {name}\npkgver = 1.0-1\npkgdesc = test package {name}\narch = any\nsize = 1\n");
    std::fs::write(build.join(".PKGINFO"), info).unwrap();
    let file = dir.join(format!("{name}-1.0-1-any.pkg.tar.zst"));
    run(Command::new("bsdtar")
        .args(["--zstd", "-cf"])
        .arg(&file)
        .arg("-C")
        .arg(&build)
        .arg(".PKGINFO"));
    file
}

#[test]
fn reads_databases_made_by_repo_add() {
    if !have_tools(&["repo-add", "bsdtar"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // A directory name over ustar's 155-byte prefix makes bsdtar write a
    // PAX `path` record, which the bounded tar walk must follow.
    let long = "long".repeat(43);
    let pkgs: Vec<PathBuf> = ["alpha", "beta", "gamma", &long]
        .iter()
        .map(|n| make_package(work.path(), n))
        .collect();
    let sync = work.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    let forms = [
        ("gz", ".tar.gz"),
        ("zst", ".tar.zst"),
        ("xz", ".tar.xz"),
        ("none", ".tar"),
    ];
    for (repo, ext) in forms {
        let repo_dir = work.path().join(format!("repo-{repo}"));
        std::fs::create_dir(&repo_dir).unwrap();
        let db_file = repo_dir.join(format!("{repo}.db{ext}"));
        run(Command::new("repo-add")
            .arg("-q")
            .arg(&db_file)
            .args(&pkgs)
            .env("LC_ALL", "C"));
        // pacman stores the downloaded database under the plain name.
        std::fs::copy(&db_file, sync.join(format!("{repo}.db"))).unwrap();
    }
    let dbs = SyncDbs::load(&sync);
    for (repo, _) in forms {
        for file in &pkgs {
            let data = std::fs::read(file).unwrap();
            let name = file.file_name().unwrap().to_str().unwrap();
            let got = dbs
                .lookup_in(repo, name)
                .unwrap_or_else(|| panic!("{repo}: {name}"));
            assert_eq!(got.size, data.len() as u64, "{repo}: {name}");
            assert_eq!(got.sha256, sha256(&data), "{repo}: {name}");
            let mut verifier = Verifier::new(got);
            verifier.update(&data).unwrap();
            verifier.finish().unwrap();
        }
    }
}

/// Writes `bytes` beside `dest` and renames it into place, as pacman does.
fn replace(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_file_name(".incoming.part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_replaced_databases_and_keeps_the_old_one_when_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.db");
    let old: Vec<Pkg> = (0..50).map(|i| pkg(&format!("old{i}"))).collect();
    let new: Vec<Pkg> = (0..50).map(|i| pkg(&format!("new{i}"))).collect();
    std::fs::write(&core, db(Compression::Gzip, &old)).unwrap();
    let shutdown = CancellationToken::new();
    let dbs = syncdb::watch::start(dir.path().to_owned(), shutdown.clone()).await;
    assert_eq!(dbs.lookup(&old[0].name), Some(expected(&old[0], "core")));
    // Regression: the load's own reads of the dir were taken for a change,
    // and each reload started the next one. A database renamed in now is
    // loaded by exactly one more reload: its event comes after any the
    // first load caused, so none of those started a reload.
    let settled = dbs.reloads();
    replace(
        &dir.path().join("sentinel.db"),
        &db(Compression::Gzip, &[pkg("sentinel")]),
    );
    eventually("sentinel db loaded", Duration::from_secs(2), || {
        dbs.lookup(&pkg("sentinel").name).is_some()
    })
    .await;
    assert_eq!(dbs.reloads(), settled + 1, "reloads without any change");

    // Readers only ever see a whole table: all old entries or all new ones.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dbs, stop) = (dbs.clone(), stop.clone());
        let (first, last) = (old[0].name.clone(), old[49].name.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let table = dbs.table();
                assert_eq!(
                    table.lookup(&first).is_some(),
                    table.lookup(&last).is_some()
                );
            }
        })
    };
    replace(&core, &db(Compression::Zstd, &new));
    let wait = Duration::from_secs(2);
    eventually("renamed db loaded", wait, || {
        dbs.lookup(&new[49].name).is_some()
    })
    .await;
    assert_eq!(dbs.lookup(&old[0].name), None);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    let before = dbs.reloads();
    replace(&core, b"<html>502 Bad Gateway</html>");
    eventually("corrupt db read", wait, || dbs.reloads() > before).await;
    assert_eq!(dbs.lookup(&new[0].name), Some(expected(&new[0], "core")));

    // Written in place, then closed.
    let extra = dir.path().join("extra.db");
    std::fs::write(&extra, db(Compression::Xz, &[pkg("x")])).unwrap();
    eventually("written db loaded", wait, || {
        dbs.lookup(&pkg("x").name).is_some()
    })
    .await;

    std::fs::remove_file(&extra).unwrap();
    eventually("removed db dropped", wait, || {
        dbs.lookup(&pkg("x").name).is_none()
    })
    .await;
    assert!(dbs.lookup(&new[0].name).is_some());
    shutdown.cancel();
}

/// Regression: a host whose pacman had never synced had no sync dir when
/// the daemon started, and the first `pacman -Sy` was never picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_dir_created_after_start_is_loaded_and_watched() {
    let root = tempfile::tempdir().unwrap();
    let sync = root.path().join("sync");
    let shutdown = CancellationToken::new();
    let dbs = syncdb::watch::start(sync.clone(), shutdown.clone()).await;
    let first = pkg("first");
    assert_eq!(dbs.lookup(&first.name), None);
    std::fs::create_dir(&sync).unwrap();
    replace(
        &sync.join("core.db"),
        &db(Compression::Gzip, std::slice::from_ref(&first)),
    );
    eventually(
        "db in a late sync dir loaded",
        Duration::from_secs(8),
        || dbs.lookup(&first.name).is_some(),
    )
    .await;
    // And it is watched from then on.
    let second = pkg("second");
    replace(
        &sync.join("core.db"),
        &db(Compression::Gzip, std::slice::from_ref(&second)),
    );
    eventually("the next refresh loaded", Duration::from_secs(2), || {
        dbs.lookup(&second.name).is_some()
    })
    .await;
    shutdown.cancel();
}
