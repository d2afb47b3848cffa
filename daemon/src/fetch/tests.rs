//! The engine driven end to end with fake sources (no sockets): what
//! pacman's reader and a joining peer's reader see, what is kept, who is
//! told and who is blamed.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use pacmesh_proto::NodeId;

use super::machine::{Claimant, Failure, SourceId};
use super::source::{Opened, Sources, Stream};
use super::*;
use crate::syncdb::Expected;

const NAME: &str = "big-1-1-any.pkg.tar.zst";

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn expected(good: &[u8]) -> Expected {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, good).as_ref());
    Expected {
        size: good.len() as u64,
        sha256,
        repo: "core".into(),
    }
}

/// What one source serves: these bytes, breaking after `break_at`.
#[derive(Clone)]
struct Script {
    bytes: Vec<u8>,
    break_at: Option<usize>,
    /// Ignores the offset asked for: its stream starts at byte 0.
    whole: bool,
    /// Panics at `break_at` instead of breaking (a bug).
    panics: bool,
}

impl Fake {
    /// Sources serving these scripts; every other source is unavailable.
    fn serving<const N: usize>(scripts: [(SourceId, Script); N]) -> Arc<Fake> {
        Arc::new(Fake {
            scripts: HashMap::from(scripts),
            ..Fake::default()
        })
    }
}

impl Script {
    fn new(bytes: Vec<u8>, break_at: Option<usize>) -> Script {
        Script {
            bytes,
            break_at,
            whole: false,
            panics: false,
        }
    }

    /// A source whose stream panics at `at`.
    fn panicking(bytes: Vec<u8>, at: usize) -> Script {
        Script {
            panics: true,
            ..Script::new(bytes, Some(at))
        }
    }

    /// A source that ignores Range requests.
    fn whole(bytes: Vec<u8>) -> Script {
        Script {
            whole: true,
            ..Script::new(bytes, None)
        }
    }
}

#[derive(Default)]
struct Fake {
    scripts: HashMap<SourceId, Script>,
    claims: Mutex<VecDeque<Claimant>>,
    ended: Mutex<Vec<(String, bool)>>,
    penalised: Mutex<Vec<NodeId>>,
    opens: Mutex<Vec<(SourceId, u64)>>,
}

struct FakeStream {
    bytes: Vec<u8>,
    pos: usize,
    break_at: Option<usize>,
    panics: bool,
}

impl Stream for FakeStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        if self.break_at.is_some_and(|b| self.pos >= b) {
            assert!(!self.panics, "a bug in a source");
            return Err(Failure::Broke("gone".into()));
        }
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let end = (self.pos + 1000).min(self.bytes.len());
        let end = self.break_at.map_or(end, |b| end.min(b));
        let chunk = Bytes::copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(Some(chunk))
    }
}

impl Sources for Arc<Fake> {
    type Stream = FakeStream;

    async fn open(
        &self,
        source: SourceId,
        _name: &str,
        offset: u64,
        _size: Option<u64>,
    ) -> Result<(FakeStream, Opened), Failure> {
        self.opens.lock().push((source, offset));
        let Some(script) = self.scripts.get(&source) else {
            // A mirror that takes its time to refuse (a connect timeout).
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            return Err(Failure::Unavailable("no such source".into()));
        };
        let start = if script.whole { 0 } else { offset };
        let stream = FakeStream {
            bytes: script.bytes.clone(),
            pos: start as usize,
            break_at: script.break_at,
            panics: script.panics,
        };
        let opened = Opened {
            size: script.bytes.len() as u64,
            start,
        };
        Ok((stream, opened))
    }

    async fn claim(&self, _name: &str, _size: u64, _exclude: &[NodeId]) -> Claimant {
        self.claims.lock().pop_front().unwrap_or(Claimant::Us)
    }

    fn ended(&self, name: &str, complete: bool) {
        self.ended.lock().push((name.into(), complete));
    }

    fn penalise(&self, peers: &[NodeId], _name: &str, _why: &str) {
        self.penalised.lock().extend_from_slice(peers);
    }
}

/// Starts a download of `good` (what the database says) named `name`.
fn start(
    engine: &Engine,
    name: &str,
    kind: Kind,
    sources: Arc<Fake>,
    order: Vec<SourceId>,
    good: &[u8],
) -> Arc<Transfer> {
    engine
        .start(Job {
            name: name.into(),
            kind,
            sources,
            order,
            expected: Some(expected(good)),
            keep: true,
        })
        .expect("a download starts")
}

/// A fetch of `good` as `NAME` from the first mirror of `sources`.
fn fetch_of_name(engine: &Engine, sources: Arc<Fake>, good: &[u8]) -> Arc<Transfer> {
    start(
        engine,
        NAME,
        Kind::Fetch,
        sources,
        vec![SourceId::Mirror(0)],
        good,
    )
}

/// A fetch of `good` as `NAME` from one mirror.
fn fetch_from_one_mirror(engine: &Engine, good: &[u8]) -> Arc<Transfer> {
    let fake = Fake::serving([(SourceId::Mirror(0), Script::new(good.to_vec(), None))]);
    fetch_of_name(engine, fake, good)
}

/// What pacman's request gets of `t`: its stream, whole.
async fn streamed_to_pacman(t: &Transfer) -> Vec<u8> {
    let Answer::Stream(growing) = t.answer(0, false).await else {
        panic!("no stream")
    };
    read_all(growing.reader_for_pacman(0)).await.unwrap()
}

/// Waits (on the paused clock) until a download's end was announced;
/// how long that took.
async fn ended_eventually(fake: &Fake) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    while fake.ended.lock().is_empty() {
        assert!(
            started.elapsed() < ANNOUNCE_DONE_AFTER * 4,
            "no end announced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn engine(dir: &std::path::Path) -> Engine {
    engine_with_room(dir, room::Limits::default())
}

fn engine_with_room(dir: &std::path::Path, limits: room::Limits) -> Engine {
    let store = store::Store::new(dir.join("fetched")).unwrap();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    Engine::with_room(
        dir.join("incoming"),
        store,
        Arc::new(Stats::default()),
        limits,
    )
}

/// Everything a peer joining a download reads from it.
async fn drain(mut chunks: Box<dyn crate::mesh::inflight::GrowingChunks>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = chunks
        .next_chunk()
        .await
        .expect("the joined download fails")
    {
        out.extend_from_slice(&c);
    }
    out
}

/// How a joiner reading `NAME` from byte 0 comes to an end: every byte
/// read (`Ok(None)`), or the error that cut it.
async fn joiners_end(engine: &Engine) -> Result<Option<bytes::Bytes>, GrowingError> {
    let joiner = engine.open(NAME, 0).unwrap().await.unwrap();
    let mut chunks = joiner.chunks;
    loop {
        match chunks.next_chunk().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    }
}

async fn read_all(mut r: growing::Reader) -> Result<Vec<u8>, GrowingError> {
    let mut out = Vec::new();
    while let Some(chunk) = r.next_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

const F: NodeId = NodeId([3; 32]);

#[tokio::test(start_paused = true)]
async fn a_claimed_fetch_streams_to_pacman_and_is_kept_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(50_000, 1);
    let fake = Fake::serving([
        (SourceId::Mirror(0), Script::new(good.clone(), Some(20_000))),
        (SourceId::Mirror(1), Script::new(good.clone(), None)),
    ]);
    let t = start(
        &engine,
        NAME,
        Kind::Fetch,
        fake.clone(),
        vec![SourceId::Mirror(0), SourceId::Mirror(1)],
        &good,
    );
    // pacman's request gets a stream as soon as the mirror answered.
    let Answer::Stream(growing) = t.answer(0, false).await else {
        panic!("no stream")
    };
    let joiner = engine.open(NAME, 0).expect("peers may join our fetch");
    let joiner = joiner.await.unwrap();
    assert_eq!(joiner.size, good.len() as u64);
    let pacman = read_all(growing.reader_for_pacman(0)).await.unwrap();
    assert_eq!(
        pacman, good,
        "one unbroken download across the mirror switch"
    );
    let peer = drain(joiner.chunks).await;
    assert_eq!(peer, good);
    // Readers have every byte before the file is flushed and kept.
    assert!(t.finished().await, "the download ended well");
    assert_eq!(
        std::fs::read(dir.path().join("fetched").join(NAME)).unwrap(),
        good
    );
    assert_eq!(
        *fake.opens.lock(),
        vec![(SourceId::Mirror(0), 0), (SourceId::Mirror(1), 20_000)]
    );
    // "Done" goes out once the digest had time to list the file.
    assert!(fake.ended.lock().is_empty());
    let waited = ended_eventually(&fake).await;
    assert!(
        waited >= ANNOUNCE_DONE_AFTER / 2,
        "announced after {waited:?}"
    );
    assert_eq!(*fake.ended.lock(), vec![(NAME.to_string(), true)]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("incoming"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_joiner_whose_fetcher_dies_continues_at_the_mirror_from_the_byte_reached() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(30_000, 2);
    let fake = Fake::serving([
        (
            SourceId::Fetcher(F),
            Script::new(good.clone(), Some(12_000)),
        ),
        (SourceId::Mirror(0), Script::new(good.clone(), None)),
    ]);
    let t = start(
        &engine,
        NAME,
        Kind::Join,
        fake.clone(),
        vec![SourceId::Fetcher(F), SourceId::Mirror(0)],
        &good,
    );
    let Answer::Stream(growing) = t.answer(0, false).await else {
        panic!("not done within one wait")
    };
    // Peer bytes were in it: pacman got it only once verified.
    assert_eq!(growing.shown().end, growing::End::Complete);
    assert_eq!(read_all(growing.reader_for_pacman(0)).await.unwrap(), good);
    assert_eq!(
        *fake.opens.lock(),
        vec![(SourceId::Fetcher(F), 0), (SourceId::Mirror(0), 12_000)]
    );
    // We claimed and fetched the rest: the others are told it is done.
    ended_eventually(&fake).await;
    assert_eq!(*fake.ended.lock(), vec![(NAME.to_string(), true)]);
    assert!(fake.penalised.lock().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_mirror_copy_is_never_kept_and_joiners_drop_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(20_000, 3);
    let mut bad = good.clone();
    bad[10_000] ^= 0xff;
    let fake = Fake::serving([
        (SourceId::Mirror(0), Script::new(bad, None)),
        (SourceId::Mirror(1), Script::new(good.clone(), None)),
    ]);
    let t = start(
        &engine,
        NAME,
        Kind::Fetch,
        fake.clone(),
        vec![SourceId::Mirror(0), SourceId::Mirror(1)],
        &good,
    );
    let first = joiners_end(&engine).await;
    assert_eq!(
        first,
        Err(GrowingError::BadBytes),
        "the joiner must drop mirror 0's bytes"
    );
    // Asked again, the fetch serves the good copy from mirror 1.
    let again = engine.open(NAME, 0).unwrap().await.unwrap();
    let got = drain(again.chunks).await;
    assert!(got == good, "the second read is not mirror 1's copy");
    // The download went on at mirror 1 and kept only the good copy.
    let mut outcome = t.outcome.clone();
    outcome.wait_for(|o| o.is_some()).await.unwrap();
    // Readers have every byte before the file is flushed and kept.
    assert!(t.finished().await, "the download ended well");
    assert_eq!(
        std::fs::read(dir.path().join("fetched").join(NAME)).unwrap(),
        good
    );
    assert!(fake.penalised.lock().is_empty(), "no peer is to blame");
}

/// The only mirror's copy is corrupt: the download gives up, and a peer
/// that joined it learns its bytes were bad (it throws them away), not
/// merely that the download ended (it would keep them and blame us).
#[tokio::test(start_paused = true)]
async fn a_corrupt_copy_with_no_source_left_is_bad_bytes_to_joiners() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(20_000, 4);
    let mut bad = good.clone();
    bad[10_000] ^= 0xff;
    let fake = Fake::serving([(SourceId::Mirror(0), Script::new(bad, None))]);
    let t = start(
        &engine,
        NAME,
        Kind::Fetch,
        fake.clone(),
        vec![SourceId::Mirror(0)],
        &good,
    );
    let end = joiners_end(&engine).await;
    assert_eq!(end, Err(GrowingError::BadBytes));
    assert!(!t.finished().await, "a corrupt copy ended well");
    assert!(!dir.path().join("fetched").join(NAME).exists());
}

#[tokio::test(start_paused = true)]
async fn a_lost_claim_joins_the_winner_and_pacman_waits_for_verified_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(10_000, 4);
    let fake = Arc::new(Fake {
        scripts: HashMap::from([
            (SourceId::Fetcher(F), Script::new(good.clone(), None)),
            (SourceId::Mirror(0), Script::new(good.clone(), None)),
        ]),
        claims: Mutex::new(VecDeque::from([Claimant::Peer(F)])),
        ..Fake::default()
    });
    let t = fetch_of_name(&engine, fake.clone(), &good);
    let Answer::Stream(growing) = t.answer(0, false).await else {
        panic!("no answer")
    };
    assert_eq!(
        growing.shown().end,
        growing::End::Complete,
        "joined bytes are served only verified"
    );
    assert_eq!(*fake.opens.lock(), vec![(SourceId::Fetcher(F), 0)]);
    // We lost the claim, so we announce nothing on completion.
    assert!(fake.ended.lock().is_empty());
}

/// A join at 100 KB/s of a 10 MB file: far past pacman's redirects.
fn slow_join(engine: &Engine, name: &str) -> Arc<Transfer> {
    let good = content(10_000_000, 5);
    let fake = Fake::serving([(SourceId::Fetcher(F), Script::new(good.clone(), None))]);
    start(
        engine,
        name,
        Kind::Join,
        fake,
        vec![SourceId::Fetcher(F)],
        &good,
    )
}

#[tokio::test(start_paused = true)]
async fn a_join_longer_than_pacmans_redirects_streams_only_between_keyed_members() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let open_mesh = slow_join(&engine, "open-1-1-any.pkg.tar.zst");
    // At its pace it cannot end within pacman's redirects: without a mesh
    // key the mirror answers at once, not after every hop was used.
    assert!(
        matches!(open_mesh.answer(0, false).await, Answer::Elsewhere),
        "without a mesh key the mirror must answer"
    );
    let keyed = slow_join(&engine, "keyed-1-1-any.pkg.tar.zst");
    let Answer::StreamUnverified(growing) = keyed.answer(0, true).await else {
        panic!("a keyed mesh streams the member's bytes")
    };
    let mut r = growing.reader(0);
    let first = r.next_chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        growing.shown().end,
        growing::End::Running,
        "streamed before it is complete"
    );
}

/// pacman giving up on a slow join does not cancel it while a peer reads
/// it (it joined us): that peer would have to start over.
#[tokio::test(start_paused = true)]
async fn a_join_pacman_gave_up_on_goes_on_for_the_peers_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let join = slow_join(&engine, "read-1-1-any.pkg.tar.zst");
    let peer = join.growing.reader(0);
    assert!(matches!(join.answer(0, false).await, Answer::Elsewhere));
    assert!(join.finished().await, "cancelled under a peer reading it");
    drop(peer);
}

#[tokio::test(start_paused = true)]
async fn when_no_mirror_answers_pacman_gets_the_redirect_not_a_broken_stream() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(1000, 6);
    // No scripts: every source is unavailable.
    let fake = Arc::new(Fake::default());
    let t = start(
        &engine,
        NAME,
        Kind::Fetch,
        fake,
        vec![SourceId::Mirror(0), SourceId::Mirror(1)],
        &good,
    );
    assert!(matches!(t.answer(0, false).await, Answer::Elsewhere));
    assert_eq!(
        std::fs::read_dir(dir.path().join("incoming"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_mirror_download_stays_streamable_for_requests_joining_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(30_000, 7);
    let t = fetch_from_one_mirror(&engine, &good);
    assert_eq!(streamed_to_pacman(&t).await, good);
    // Kept, and still in the table for a moment: a late request joins it
    // and sees the mirror's bytes (counted as a mirror fetch).
    let Answer::Stream(late) = t.answer(0, false).await else {
        panic!("no stream for a late request")
    };
    let shown = late.shown();
    assert_eq!(shown.end, growing::End::Complete);
    assert!(shown.streamable, "{shown:?}");
}

#[tokio::test(start_paused = true)]
async fn a_mirror_ignoring_range_after_a_mirror_died_keeps_pacmans_stream_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(50_000, 8);
    let fake = Fake::serving([
        (SourceId::Mirror(0), Script::new(good.clone(), Some(20_500))),
        (SourceId::Mirror(1), Script::whole(good.clone())),
    ]);
    let t = start(
        &engine,
        NAME,
        Kind::Fetch,
        fake.clone(),
        vec![SourceId::Mirror(0), SourceId::Mirror(1)],
        &good,
    );
    let Answer::Stream(growing) = t.answer(0, false).await else {
        panic!("no stream")
    };
    // One reader from the start: never told its bytes were thrown away.
    let pacman = read_all(growing.reader_for_pacman(0)).await.unwrap();
    assert_eq!(pacman, good);
    // Readers have every byte before the file is flushed and kept.
    assert!(t.finished().await, "the download ended well");
    assert_eq!(
        std::fs::read(dir.path().join("fetched").join(NAME)).unwrap(),
        good
    );
    assert_eq!(
        *fake.opens.lock(),
        vec![(SourceId::Mirror(0), 0), (SourceId::Mirror(1), 20_500)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_mirror_ignoring_range_after_a_holder_is_read_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let good = content(20_000, 9);
    let holder = SourceId::Holder(NodeId([1; 32]));
    let fake = Fake::serving([
        (holder, Script::new(good.clone(), Some(3_000))),
        (SourceId::Mirror(0), Script::whole(good.clone())),
    ]);
    let t = start(
        &engine,
        NAME,
        Kind::Holders,
        fake,
        vec![holder, SourceId::Mirror(0)],
        &good,
    );
    assert_eq!(streamed_to_pacman(&t).await, good);
    // Readers have every byte before the file is flushed and kept.
    assert!(t.finished().await, "the download ended well");
    assert_eq!(
        std::fs::read(dir.path().join("fetched").join(NAME)).unwrap(),
        good
    );
}

/// An engine whose downloads may reserve `max_bytes` in all.
fn small_room_engine(dir: &std::path::Path, max_bytes: u64) -> Engine {
    engine_with_room(
        dir,
        room::Limits {
            max_bytes,
            min_free: 0,
        },
    )
}

#[tokio::test(start_paused = true)]
async fn a_peer_claiming_more_than_the_room_is_cut_before_a_byte_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_room_engine(dir.path(), 10_000);
    // An unverifiable file (no database entry): its size is the holder's
    // word, here ten times the room.
    let peer = NodeId([7; 32]);
    let fake = Fake::serving([(
        SourceId::Holder(peer),
        Script::new(content(100_000, 9), None),
    )]);
    let t = engine
        .start(Job {
            name: NAME.into(),
            kind: Kind::Holders,
            sources: fake.clone(),
            order: vec![SourceId::Holder(peer)],
            expected: None,
            keep: false,
        })
        .expect("the download starts: its size is not known yet");
    assert!(matches!(t.answer(0, false).await, Answer::Elsewhere));
    assert_eq!(
        t.growing().shown().len,
        0,
        "bytes were written past the room"
    );
    assert_eq!(
        engine.inner.room.reserved(),
        0,
        "the refusal reserved nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_download_the_database_sizes_past_the_room_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_room_engine(dir.path(), 10_000);
    let good = content(20_000, 3);
    let fake = Fake::serving([(SourceId::Mirror(0), Script::new(good.clone(), None))]);
    let job = Job {
        name: NAME.into(),
        kind: Kind::Fetch,
        sources: fake.clone(),
        order: vec![SourceId::Mirror(0)],
        expected: Some(expected(&good)),
        keep: true,
    };
    assert!(engine.start(job).is_none(), "started past the room");
    assert!(fake.opens.lock().is_empty(), "a source was asked");
    // One that fits runs, and gives its room back when it ends.
    let small = content(5_000, 4);
    let fake = Fake::serving([(SourceId::Mirror(0), Script::new(small.clone(), None))]);
    let t = start(
        &engine,
        "small-1-1-any.pkg.tar.zst",
        Kind::Fetch,
        fake.clone(),
        vec![SourceId::Mirror(0)],
        &small,
    );
    assert_eq!(engine.inner.room.reserved(), 5_000);
    assert!(matches!(t.answer(0, false).await, Answer::Stream(_)));
    ended_eventually(&fake).await;
    assert_eq!(engine.inner.room.reserved(), 0);
}

/// A lease is taken for a kept file's path as the cache index makes it,
/// and for no other dir's file of the same name.
#[test]
fn leases_are_for_kept_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::new(dir.path().join("fetched")).unwrap();
    let mut index =
        crate::index::CacheIndex::new(vec![dir.path().join("cache"), store.dir().into()]);
    let name = "a-1.0-1-any.pkg.tar.zst";
    index.set(0, name, true);
    assert!(store.lease(&index.locate(name).unwrap()).is_none());
    assert!(!store.served(name));
    index.set(0, name, false);
    index.set(1, name, true);
    let lease = store.lease(&index.locate(name).unwrap());
    assert!(lease.is_some());
    assert!(store.served(name));
}

/// A store capped at `cap` bytes that holds `old` (`old_size` bytes).
fn engine_with_full_store(dir: &std::path::Path, cap: u64, old: &str, old_size: usize) -> Engine {
    let mut store = store::Store::new(dir.join("fetched")).unwrap();
    store.max_bytes = cap;
    std::fs::write(store.dir().join(old), vec![0u8; old_size]).unwrap();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    Engine::with_room(
        dir.join("incoming"),
        store,
        Arc::new(Stats::default()),
        room::Limits::default(),
    )
}

#[tokio::test(start_paused = true)]
async fn room_in_a_full_store_is_made_while_the_download_runs() {
    let dir = tempfile::tempdir().unwrap();
    let old = "old-1-1-any.pkg.tar.zst";
    let engine = engine_with_full_store(dir.path(), 60_000, old, 40_000);
    let good = content(50_000, 7);
    let t = fetch_from_one_mirror(&engine, &good);
    assert!(t.finished().await, "the download ended well");
    let fetched = dir.path().join("fetched");
    assert_eq!(std::fs::read(fetched.join(NAME)).unwrap(), good);
    assert!(!fetched.join(old).exists(), "no room was made for it");
}

#[tokio::test(start_paused = true)]
async fn a_download_the_full_store_has_no_room_for_is_served_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let old = "old-1-1-any.pkg.tar.zst";
    let engine = engine_with_full_store(dir.path(), 60_000, old, 40_000);
    // Being sent: the old file cannot go.
    let sending = engine.store().lease(&dir.path().join("fetched").join(old));
    let good = content(50_000, 8);
    let t = fetch_from_one_mirror(&engine, &good);
    assert_eq!(streamed_to_pacman(&t).await, good);
    assert!(t.finished().await, "the download ended well");
    let fetched = dir.path().join("fetched");
    assert!(!fetched.join(NAME).exists(), "kept past the cap");
    assert!(fetched.join(old).exists());
    // Nothing is left reserved for it: once the old file may go, a
    // download of the same size gets its room.
    drop(sending);
    assert!(engine
        .store()
        .make_room("next-1-1-any.pkg.tar.zst", 50_000)
        .unwrap());
}

/// A bug that panics in a download ends it as a failure: its readers and
/// peers are told, its room on disk and in the store is given back, and
/// the file may be fetched again at once.
#[tokio::test(start_paused = true)]
async fn a_download_that_panics_ends_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_full_store(dir.path(), 60_000, "old-1-1-any.pkg.tar.zst", 5_000);
    let good = content(50_000, 9);
    let fake = Fake::serving([(SourceId::Mirror(0), Script::panicking(good.clone(), 3_000))]);
    let t = fetch_of_name(&engine, fake.clone(), &good);
    assert!(!t.finished().await, "ended well");
    assert_eq!(fake.ended.lock().as_slice(), [(NAME.to_string(), false)]);
    assert_eq!(engine.inner.room.reserved(), 0, "room on disk kept");
    assert!(
        engine
            .store()
            .make_room("next-1-1-any.pkg.tar.zst", 50_000)
            .unwrap(),
        "room in the store kept"
    );
    let left = tokio::time::Instant::now();
    while engine
        .find(NAME)
        .is_some_and(|found| Arc::ptr_eq(&found, &t))
    {
        assert!(left.elapsed() < LINGER, "still in the map");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let again = fetch_from_one_mirror(&engine, &good);
    assert!(again.finished().await, "fetched again");
}
