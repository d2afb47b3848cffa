//! A run's bookkeeping of the packages it fetched.

use super::*;

/// A progress report that panics when it hears of bytes (a fault in a
/// package's task).
struct Panicking;

impl Progress for Panicking {
    fn begin(&self, _what: &str, _files: usize, _bytes: u64) {}
    fn bytes(&self, _n: u64) {
        panic!("a fault while a package was fetched");
    }
    fn done(&self, _name: &str, _ok: bool) {}
}

/// A syncer over `store`, its engine's incoming dir and its database proxy
/// under `dir`, with no upstream.
fn syncer(dir: &std::path::Path, store: fetch::store::Store) -> Syncer {
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let engine = Engine::new(incoming, store, Arc::default());
    let client = MirrorClient::new();
    let proxy = DbProxy::open(
        dir,
        Arc::default(),
        client.clone(),
        Duration::from_secs(60),
        HashSet::new(),
    )
    .unwrap();
    Syncer {
        engine,
        proxy: Arc::new(proxy),
        client,
    }
}

#[tokio::test]
async fn a_package_whose_task_failed_counts_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = fetch::store::Store::new(dir.path().join("fetched")).unwrap();
    let name = "p-1-1-any.pkg.tar.zst";
    // Kept at its listed size: its task reports the bytes, and panics.
    std::fs::write(store.dir().join(name), b"12345").unwrap();
    let syncer = syncer(dir.path(), store);
    // No upstream: nothing leaves this host.
    let mirrors = MirrorTable::new([("core".to_string(), Vec::new())]);
    let expected = Expected {
        size: 5,
        sha256: [0; 32],
        repo: "core".into(),
    };
    let progress: Arc<dyn Progress> = Arc::new(Panicking);
    let jobs = vec![(name.to_string(), expected)];
    let (kept, failed) = syncer
        .fetch_all(&mirrors, "core", "x86_64", jobs, &progress)
        .await;
    // Neither list would let the run switch its database without the file.
    assert_eq!((kept, failed), (vec![], vec![name.to_string()]));
}

/// Reports nothing.
struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _what: &str, _files: usize, _bytes: u64) {}
    fn bytes(&self, _n: u64) {}
    fn done(&self, _name: &str, _ok: bool) {}
}

#[tokio::test(start_paused = true)]
async fn once_the_engine_refuses_a_package_the_rest_of_the_run_is_not_tried() {
    let dir = tempfile::tempdir().unwrap();
    let store = fetch::store::Store::new(dir.path().join("fetched")).unwrap();
    let syncer = syncer(dir.path(), store);
    let mirrors = MirrorTable::new([("core".to_string(), Vec::new())]);
    // Each bigger than all downloads together may be: never given room.
    let too_big = Expected {
        size: fetch::room::MAX_INCOMING_BYTES + 1,
        sha256: [0; 32],
        repo: "core".into(),
    };
    let jobs: Vec<(String, Expected)> = (0..3 * PARALLEL)
        .map(|i| (format!("p{i}-1-1-any.pkg.tar.zst"), too_big.clone()))
        .collect();
    let progress: Arc<dyn Progress> = Arc::new(Quiet);
    let began = tokio::time::Instant::now();
    let (kept, failed) = syncer
        .fetch_all(&mirrors, "core", "x86_64", jobs, &progress)
        .await;
    assert_eq!((kept.len(), failed.len()), (0, 3 * PARALLEL));
    // One round of refusals, not one per batch of PARALLEL (paused clock).
    let one_round = ENGINE_BUSY * ENGINE_BUSY_TRIES;
    assert!(began.elapsed() < 2 * one_round, "{:?}", began.elapsed());
}
