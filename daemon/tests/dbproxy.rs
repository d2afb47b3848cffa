//! A caching mirror's databases against real HTTP upstreams on loopback
//! (hyper): fetched once and kept as a pair with their signature, served
//! from the copy within the revalidation interval, asked again with
//! `If-Modified-Since`, served stale with a `Warning` when the upstreams
//! are gone, and never kept when they are not databases.

#![allow(clippy::unwrap_used)] // test set-up: a failure here is the test's own

mod support;

use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use pacmeshd::dbproxy::fresh::{STALE_UNREACHABLE, STALE_UNUSABLE};
use pacmeshd::dbproxy::{DbAnswer, DbKey, DbProxy};
use pacmeshd::mirror_client::MirrorClient;
use pacmeshd::syncdb::FedDbs;
use support::data::sha256_hex;

/// What one test upstream serves at `/core/os/x86_64/`.
#[derive(Clone)]
struct Served {
    db: Vec<u8>,
    /// `None`: 404.
    sig: Option<Vec<u8>>,
    /// Answer the signature with a 500.
    sig_broken: bool,
    /// A redirector's choice: the database is a 302 to this URL, its
    /// signature to `sig_at` (two mirrors, maybe at two versions).
    db_at: Option<String>,
    sig_at: Option<String>,
    /// 304 only to its own date exactly (nginx's `if_modified_since exact`).
    exact_dates: bool,
    modified: SystemTime,
    /// Every request: (file name, If-Modified-Since sent).
    log: Vec<(String, bool)>,
}

type Upstream = Arc<Mutex<Served>>;

/// A gzipped sync database listing packages `name-1-1-any.pkg.tar.zst`
/// whose contents are `name` repeated.
fn db(names: &[&str]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for name in names {
        let data = name.repeat(10);
        let desc = format!(
            "%FILENAME%\n{name}-1-1-any.pkg.tar.zst\n\n%NAME%\n{name}\n\n%CSIZE%\n{}\n\n%SHA256SUM%\n{}\n\n",
            data.len(),
            sha256_hex(data.as_bytes())
        );
        let mut header = tar::Header::new_ustar();
        header.set_size(desc.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{name}-1-1/desc"), desc.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn served(db: Vec<u8>, sig: Option<&[u8]>, modified: SystemTime) -> Upstream {
    Arc::new(Mutex::new(Served {
        db,
        sig: sig.map(<[u8]>::to_vec),
        sig_broken: false,
        db_at: None,
        sig_at: None,
        exact_dates: false,
        modified,
        log: Vec::new(),
    }))
}

async fn answer(req: Request<Incoming>, up: Upstream) -> Response<Full<Bytes>> {
    let mut s = up.lock().unwrap();
    let name = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    s.log.push((name.clone(), since.is_some()));
    let reply = |status, body: Vec<u8>, modified| {
        Response::builder()
            .status(status)
            .header(header::LAST_MODIFIED, httpdate::fmt_http_date(modified))
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let redirect = |to: &String| {
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, to)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    match name.as_str() {
        "core.db" if s.db_at.is_some() => redirect(s.db_at.as_ref().unwrap()),
        // An alias, served as the database is.
        "core.db.tar.gz" => reply(StatusCode::OK, s.db.clone(), s.modified),
        "core.db.sig" if s.sig_at.is_some() => redirect(s.sig_at.as_ref().unwrap()),
        "core.db"
            if since.is_some_and(|t| t == s.modified || (t > s.modified && !s.exact_dates)) =>
        {
            reply(StatusCode::NOT_MODIFIED, Vec::new(), s.modified)
        }
        "core.db" => reply(StatusCode::OK, s.db.clone(), s.modified),
        "core.db.sig" if s.sig_broken => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, vec![], s.modified)
        }
        "core.db.sig" => match &s.sig {
            Some(sig) => reply(StatusCode::OK, sig.clone(), s.modified),
            None => reply(StatusCode::NOT_FOUND, vec![], s.modified),
        },
        _ => reply(StatusCode::NOT_FOUND, vec![], s.modified),
    }
}

/// Serves `up` on loopback until the returned handle is aborted (then
/// its connections close and its port refuses new ones: an upstream that
/// is gone).
async fn start(up: Upstream) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me: SocketAddr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Held by this task: aborting it closes every connection too (the
        // client's pooled ones included).
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            let up = up.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let up = up.clone();
                    async move { Ok::<_, Infallible>(answer(req, up).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{me}/core/os/x86_64/core.db"), task)
}

fn key() -> DbKey {
    DbKey {
        arch: "x86_64".into(),
        repo: "core".into(),
        name: "core.db".into(),
    }
}

fn open(store: &std::path::Path, interval: Duration) -> Arc<DbProxy> {
    let fed = Arc::new(FedDbs::default());
    Arc::new(
        DbProxy::open(
            store,
            fed,
            MirrorClient::new(),
            interval,
            Default::default(),
        )
        .unwrap(),
    )
}

/// The body and `Warning` of an answer that is a file; panics otherwise.
fn file(answer: DbAnswer) -> (Vec<u8>, Option<&'static str>) {
    match answer {
        DbAnswer::File {
            mut file, warning, ..
        } => {
            let mut body = Vec::new();
            file.read_to_end(&mut body).unwrap();
            (body, warning)
        }
        other => panic!("expected a file, got {other:?}"),
    }
}

fn requests(up: &Upstream) -> Vec<(String, bool)> {
    std::mem::take(&mut up.lock().unwrap().log)
}

fn db_files_under(dir: &std::path::Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "core.db"))
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn fetched_once_kept_as_a_pair_and_revalidated() {
    let v1 = db(&["a"]);
    let up = served(v1.clone(), Some(b"sig one"), at(1_000_000));
    let (url, _task) = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::from_secs(3600));
    let urls = vec![url];

    // Two clients at once: one fetch of the pair.
    let k = key();
    let (first, second) = tokio::join!(
        proxy.answer(&k, false, &urls, 0),
        proxy.answer(&k, true, &urls, 0)
    );
    assert_eq!(file(first), (v1.clone(), None));
    assert_eq!(file(second), (b"sig one".to_vec(), None));
    assert_eq!(
        requests(&up),
        [
            ("core.db".to_string(), false),
            ("core.db.sig".to_string(), false)
        ]
    );
    // The database feeds the verification table.
    let a = proxy
        .fed()
        .lookup_in("x86_64", "core", "a-1-1-any.pkg.tar.zst");
    assert_eq!(a.map(|e| e.size), Some(10));
    // Within the interval: the copy, upstream not asked.
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v1);
    assert!(requests(&up).is_empty());

    // Interval 0, after a restart: the kept pair is loaded, and asked
    // about with If-Modified-Since (304: nothing fetched).
    drop(proxy);
    let proxy = open(store.path(), Duration::ZERO);
    assert!(proxy
        .fed()
        .lookup_in("x86_64", "core", "a-1-1-any.pkg.tar.zst")
        .is_some());
    assert_eq!(
        file(proxy.answer(&key(), false, &urls, 0).await),
        (v1, None)
    );
    assert_eq!(requests(&up), [("core.db".to_string(), true)]);
    assert_eq!(proxy.counts().not_modified, 1);

    // A new database upstream, unsigned now: the new pair replaces the
    // old one whole (no old signature next to the new database).
    let v2 = db(&["b"]);
    {
        let mut s = up.lock().unwrap();
        s.db = v2.clone();
        s.sig = None;
        s.modified = at(2_000_000);
    }
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v2);
    assert!(matches!(
        proxy.answer(&key(), true, &urls, 0).await,
        DbAnswer::NoSignature
    ));
    assert!(proxy
        .fed()
        .lookup_in("x86_64", "core", "a-1-1-any.pkg.tar.zst")
        .is_none());
    assert_eq!(db_files_under(store.path()), 1, "{:?}", walk(store.path()));
    let counts = proxy.counts();
    assert_eq!((counts.fetched, counts.kept), (1, 1));
}

/// A signature is the kept copy's, even when the database is due for a
/// check: pacman asks for it right after the database, and a refresh
/// started (or joined) then could hand it a signature of another database.
#[tokio::test]
async fn a_signature_never_starts_a_refresh() {
    let v1 = db(&["a"]);
    let up = served(v1.clone(), Some(b"sig one"), at(1_000_000));
    let (url, _task) = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let urls = vec![url];
    let proxy = open(store.path(), Duration::ZERO);
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v1);
    requests(&up);
    let v2 = db(&["b"]);
    {
        let mut s = up.lock().unwrap();
        s.db = v2.clone();
        s.sig = Some(b"sig two".to_vec());
        s.modified = at(2_000_000);
    }
    // Due for a check (interval 0): the signature is still the copy's.
    assert_eq!(
        file(proxy.answer(&key(), true, &urls, 0).await).0,
        b"sig one".to_vec()
    );
    assert!(requests(&up).is_empty());
    // The database's own request refreshes the pair.
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v2);
    assert_eq!(
        file(proxy.answer(&key(), true, &urls, 0).await).0,
        b"sig two".to_vec()
    );
}

/// A mirror behind the kept copy (answering 200 with an older database,
/// as nginx does to any other date than its own) does not replace it.
#[tokio::test]
async fn an_older_database_does_not_replace_the_copy() {
    let v2 = db(&["b"]);
    let up = served(v2.clone(), None, at(2_000_000));
    up.lock().unwrap().exact_dates = true;
    let (url, _task) = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let urls = vec![url];
    let proxy = open(store.path(), Duration::ZERO);
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v2);
    {
        let mut s = up.lock().unwrap();
        s.db = db(&["a"]);
        s.modified = at(1_000_000);
    }
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v2);
    assert_eq!(requests(&up).last(), Some(&("core.db".to_string(), true)));
    assert!(proxy
        .fed()
        .lookup_in("x86_64", "core", "b-1-1-any.pkg.tar.zst")
        .is_some());
}

/// A repo's database kept under two names (its alias asked for once,
/// long ago): after a restart the verification table lists the newer one.
#[tokio::test]
async fn after_a_restart_the_newer_of_two_names_feeds_the_table() {
    let up = served(db(&["old"]), None, at(1_000_000));
    let (url, _task) = start(up.clone()).await;
    let alias_url = format!("{url}.tar.gz");
    let alias = DbKey {
        name: "core.db.tar.gz".into(),
        ..key()
    };
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::from_secs(3600));
    let _ = file(proxy.answer(&alias, false, &[alias_url], 0).await);
    {
        let mut s = up.lock().unwrap();
        s.db = db(&["new"]);
        s.modified = at(2_000_000);
    }
    let _ = file(proxy.answer(&key(), false, &[url], 0).await);
    drop(proxy);
    let proxy = open(store.path(), Duration::from_secs(3600));
    let fed = proxy.fed();
    assert!(fed
        .lookup_in("x86_64", "core", "new-1-1-any.pkg.tar.zst")
        .is_some());
    assert!(fed
        .lookup_in("x86_64", "core", "old-1-1-any.pkg.tar.zst")
        .is_none());
}

/// An upstream that redirects (a mirror redirector) may send the database
/// and its signature to two mirrors at two versions: the signature is
/// asked of the server that gave the database.
#[tokio::test]
async fn the_signature_comes_from_where_the_database_did() {
    let v1 = db(&["a"]);
    let (good, _g) = start(served(v1.clone(), Some(b"sig of v1"), at(1_000_000))).await;
    let other = served(db(&["b"]), Some(b"sig of another version"), at(2_000_000));
    let (other, _o) = start(other).await;
    let redirector = served(Vec::new(), None, at(0));
    {
        let mut r = redirector.lock().unwrap();
        r.db_at = Some(good);
        r.sig_at = Some(format!("{other}.sig"));
    }
    let (url, _r) = start(redirector.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::from_secs(3600));
    let urls = vec![url];
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v1);
    assert_eq!(
        file(proxy.answer(&key(), true, &urls, 0).await).0,
        b"sig of v1".to_vec()
    );
    assert_eq!(requests(&redirector), [("core.db".to_string(), false)]);
}

/// A signature refused part-way at one upstream (too large) is not kept
/// with the next one's unsigned database, not even after a restart.
#[tokio::test]
async fn a_signature_refused_part_way_is_not_kept_with_the_next_upstreams_database() {
    let oversized = vec![b's'; 4 * pacmeshd::dbproxy::upstream::MAX_SIG_BYTES as usize];
    let (refused, _r) = start(served(db(&["a"]), Some(&oversized), at(1_000_000))).await;
    let v2 = db(&["b"]);
    let (unsigned, _u) = start(served(v2.clone(), None, at(1_000_000))).await;
    let store = tempfile::tempdir().unwrap();
    let urls = vec![refused, unsigned];
    let proxy = open(store.path(), Duration::from_secs(3600));
    assert_eq!(file(proxy.answer(&key(), false, &urls, 0).await).0, v2);
    assert!(matches!(
        proxy.answer(&key(), true, &urls, 0).await,
        DbAnswer::NoSignature
    ));
    drop(proxy);
    let proxy = open(store.path(), Duration::from_secs(3600));
    let sig = proxy.answer(&key(), true, &urls, 0).await;
    assert!(matches!(sig, DbAnswer::NoSignature), "{sig:?}");
}

#[tokio::test]
async fn upstreams_gone_serve_the_last_good_copy_marked_stale() {
    let v1 = db(&["a"]);
    let up = served(v1.clone(), None, at(1_000_000));
    let (url, task) = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::ZERO);
    let urls = vec![url];
    assert_eq!(
        file(proxy.answer(&key(), false, &urls, 0).await),
        (v1.clone(), None)
    );
    task.abort();
    let _ = task.await;
    assert_eq!(
        file(proxy.answer(&key(), false, &urls, 0).await),
        (v1.clone(), Some(STALE_UNREACHABLE))
    );
    let counts = proxy.counts();
    assert_eq!((counts.stale_served, counts.failed_checks), (1, 1));
    // No copy at all: an error, and nothing kept.
    let empty = tempfile::tempdir().unwrap();
    let fresh = open(empty.path(), Duration::ZERO);
    assert!(matches!(
        fresh.answer(&key(), false, &urls, 0).await,
        DbAnswer::Fail(_)
    ));
    assert_eq!(db_files_under(empty.path()), 0);
}

#[tokio::test]
async fn what_is_not_a_database_is_neither_kept_nor_served() {
    let good = db(&["a"]);
    let bad = served(b"<html>not found</html>".to_vec(), None, at(3_000_000));
    let (bad_url, _bad) = start(bad.clone()).await;
    let up = served(good.clone(), Some(b"sig"), at(1_000_000));
    let (good_url, _good) = start(up.clone()).await;
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::ZERO);

    // Only a bad upstream, nothing kept: an error.
    let only_bad = vec![bad_url.clone()];
    assert!(matches!(
        proxy.answer(&key(), false, &only_bad, 0).await,
        DbAnswer::Fail(_)
    ));
    assert_eq!(db_files_under(store.path()), 0);
    // A bad upstream first: the next one's database is kept.
    let both = vec![bad_url.clone(), good_url.clone()];
    assert_eq!(
        file(proxy.answer(&key(), false, &both, 0).await),
        (good.clone(), None)
    );
    // Then the good one breaks its signature: the copy stays, stale.
    up.lock().unwrap().sig_broken = true;
    up.lock().unwrap().modified = at(4_000_000);
    assert_eq!(
        file(proxy.answer(&key(), false, &[good_url], 0).await),
        (good.clone(), Some(STALE_UNUSABLE))
    );
    assert_eq!(file(proxy.answer(&key(), true, &both, 0).await).0, b"sig");
    assert_eq!(db_files_under(store.path()), 1, "{:?}", walk(store.path()));
}

#[tokio::test]
async fn made_up_architectures_cannot_grow_the_table() {
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::from_secs(3600));
    for i in 0..pacmeshd::dbproxy::MAX_DATABASES {
        let key = DbKey {
            arch: format!("arch{i}"),
            ..key()
        };
        // No upstream for it: a failure, remembered.
        assert!(matches!(
            proxy.answer(&key, false, &[], 0).await,
            DbAnswer::Fail(_)
        ));
    }
    let one_more = DbKey {
        arch: "one_more".into(),
        ..key()
    };
    match proxy.answer(&one_more, false, &[], 0).await {
        DbAnswer::Fail(why) => assert!(why.contains("too many"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// Made-up names fill the table only until their failure is older than
/// the revalidation interval: then a real database takes the place of one.
#[tokio::test]
async fn made_up_names_give_way_after_the_interval() {
    let v1 = db(&["a"]);
    let (url, _task) = start(served(v1.clone(), None, at(1_000_000))).await;
    let store = tempfile::tempdir().unwrap();
    let proxy = open(store.path(), Duration::ZERO);
    for i in 0..pacmeshd::dbproxy::MAX_DATABASES {
        let made_up = DbKey {
            name: format!("x{i}.db"),
            ..key()
        };
        assert!(matches!(
            proxy.answer(&made_up, false, &[], 0).await,
            DbAnswer::Fail(_)
        ));
    }
    assert_eq!(file(proxy.answer(&key(), false, &[url], 0).await).0, v1);
}
