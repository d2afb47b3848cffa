//! The cache index follows the cache dir as pacman and paccache change it:
//! a `.part` renamed into place appears, a removed file disappears, and a
//! file still open for writing is not listed until it is closed.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use pacmeshd::index::watch::{start, SharedIndex};
use pacmeshd::index::Change;
use tokio_util::sync::CancellationToken;

const PKG: &str = "foo-1.0-1-x86_64.pkg.tar.zst";

async fn eventually(index: &SharedIndex, name: &str, want: bool) {
    let what = format!("{name}: expected present={want}");
    support::wait::eventually(&what, Duration::from_secs(5), || {
        index.read().contains(name) == want
    })
    .await;
}

/// Writes a complete package named after `tag` and waits until it is
/// listed: every event before it has been handled by then.
async fn sentinel(dir: &Path, index: &SharedIndex, tag: &str) {
    let name = format!("{tag}-1-1-x86_64.pkg.tar.zst");
    std::fs::write(dir.join(&name), b"complete").expect("write sentinel");
    eventually(index, &name, true).await;
}

async fn watched(dir: &Path) -> (SharedIndex, CancellationToken) {
    let shutdown = CancellationToken::new();
    let index = start(
        vec![dir.to_owned()],
        Arc::new(|_: &[Change]| {}),
        shutdown.clone(),
    )
    .await
    .expect("watch starts");
    (index, shutdown)
}

#[tokio::test]
async fn startup_scan_lists_complete_packages_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(PKG), b"x").expect("write");
    std::fs::write(dir.path().join(format!("{PKG}.sig")), b"x").expect("write");
    std::fs::write(dir.path().join("bar-1-1-any.pkg.tar.zst.part"), b"x").expect("write");
    std::fs::create_dir(dir.path().join("download-XYZ")).expect("mkdir");
    std::fs::write(
        dir.path()
            .join("download-XYZ")
            .join("baz-1-1-any.pkg.tar.zst"),
        b"x",
    )
    .expect("write");
    let (index, shutdown) = watched(dir.path()).await;
    {
        let ix = index.read();
        let mut names: Vec<&str> = ix.names().collect();
        names.sort();
        assert_eq!(names, vec![PKG.to_string(), format!("{PKG}.sig")]);
    }
    shutdown.cancel();
}

#[tokio::test]
async fn a_part_file_renamed_into_place_appears_and_removal_makes_it_disappear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (index, shutdown) = watched(dir.path()).await;
    let part = dir.path().join(format!("{PKG}.part"));
    std::fs::write(&part, vec![7u8; 100_000]).expect("write part");
    // The watcher handles events in order: once a complete file written
    // after the `.part` is listed, the `.part`'s events were seen too.
    sentinel(dir.path(), &index, "sentinel-1").await;
    assert_eq!(
        index.read().len(),
        1,
        "a .part file must never be indexed (only the sentinel is)"
    );
    std::fs::rename(&part, dir.path().join(PKG)).expect("rename");
    eventually(&index, PKG, true).await;
    std::fs::remove_file(dir.path().join(PKG)).expect("remove");
    eventually(&index, PKG, false).await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_file_still_being_written_is_listed_only_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (index, shutdown) = watched(dir.path()).await;
    let mut file = std::fs::File::create(dir.path().join(PKG)).expect("create");
    file.write_all(&[1u8; 50_000]).expect("write");
    file.flush().expect("flush");
    sentinel(dir.path(), &index, "sentinel-2").await;
    assert!(
        !index.read().contains(PKG),
        "listed while still open for writing"
    );
    file.write_all(&[2u8; 50_000]).expect("write");
    drop(file);
    eventually(&index, PKG, true).await;
    shutdown.cancel();
}

#[tokio::test]
async fn rewriting_an_indexed_file_hides_it_until_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(PKG), b"old").expect("write");
    let (index, shutdown) = watched(dir.path()).await;
    assert!(index.read().contains(PKG));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(PKG))
        .expect("open");
    file.write_all(b"new").expect("write");
    eventually(&index, PKG, false).await;
    drop(file);
    eventually(&index, PKG, true).await;
    shutdown.cancel();
}

#[tokio::test]
async fn every_change_reaches_the_sink_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(PKG), b"x").expect("write");
    let seen: Arc<std::sync::Mutex<Vec<Change>>> = Arc::default();
    let sink = seen.clone();
    let shutdown = CancellationToken::new();
    let index = start(
        vec![dir.path().to_owned()],
        Arc::new(move |changes: &[Change]| sink.lock().expect("lock").extend_from_slice(changes)),
        shutdown.clone(),
    )
    .await
    .expect("watch starts");
    let other = "bar-2.0-1-any.pkg.tar.zst";
    std::fs::write(dir.path().join(format!("{other}.part")), b"y").expect("write");
    std::fs::rename(
        dir.path().join(format!("{other}.part")),
        dir.path().join(other),
    )
    .expect("rename");
    eventually(&index, other, true).await;
    std::fs::remove_file(dir.path().join(PKG)).expect("remove");
    eventually(&index, PKG, false).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            Change::Added(PKG.into()),
            Change::Added(other.into()),
            Change::Removed(PKG.into()),
        ]
    );
    shutdown.cancel();
}
