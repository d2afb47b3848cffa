//! `MirrorClient::get_from` against a real HTTP server on loopback (hyper):
//! ranged continuations, servers that ignore Range, redirects, and the
//! answers that must be refused.

mod support;

use std::net::SocketAddr;

use http::StatusCode;

use pacmeshd::mirror_client::{MirrorClient, MirrorError};
use support::mirror::{content, start_mirror};

/// Everything `get_from(path, offset)` yields: where it starts, and the bytes.
async fn get(me: SocketAddr, path: &str, offset: u64) -> Result<(u64, Vec<u8>), MirrorError> {
    let client = MirrorClient::new();
    let mut body = client
        .get_from(&format!("http://{me}{path}"), offset)
        .await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok((body.start, bytes))
}

#[tokio::test]
async fn a_ranged_get_continues_from_the_byte_asked_for() {
    let me = start_mirror().await;
    let (start, bytes) = get(me, "/file", 12_345).await.unwrap();
    assert_eq!(start, 12_345);
    assert_eq!(bytes, content()[12_345..]);
    let (start, bytes) = get(me, "/file", 0).await.unwrap();
    assert_eq!((start, bytes), (0, content()));
}

#[tokio::test]
async fn a_mirror_that_ignores_range_gives_the_whole_file_from_zero() {
    let me = start_mirror().await;
    let (start, bytes) = get(me, "/whole", 500).await.unwrap();
    assert_eq!((start, bytes), (0, content()));
}

#[tokio::test]
async fn redirects_are_followed_relative_and_absolute_but_not_forever() {
    let me = start_mirror().await;
    for path in ["/hop", "/hop-abs"] {
        let (start, bytes) = get(me, path, 99).await.unwrap();
        assert_eq!(start, 99, "{path}");
        assert_eq!(bytes, content()[99..], "{path}");
    }
    let err = get(me, "/loop", 0).await.unwrap_err();
    assert!(matches!(err, MirrorError::Redirects), "{err}");
}

#[tokio::test]
async fn wrong_ranges_errors_and_dead_mirrors_are_refused_with_what_was_wrong() {
    let me = start_mirror().await;
    let err = get(me, "/wrong", 10).await.unwrap_err();
    assert!(
        matches!(err, MirrorError::WrongRange { asked: 10, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bytes 0-"), "{err}");
    let err = get(me, "/nothing-here", 0).await.unwrap_err();
    assert!(
        matches!(err, MirrorError::Status(StatusCode::NOT_FOUND)),
        "{err}"
    );
    let err = get(me, "not a url", 0).await.unwrap_err();
    assert!(matches!(err, MirrorError::BadUrl(_)), "{err}");
    // Nothing listens there any more: a connection error, quickly.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = get(closed, "/file", 0).await.unwrap_err();
    assert!(matches!(err, MirrorError::Http(_)), "{err}");
}

/// A mirror that failed goes after the others until it serves again, so the
/// next download (and pacman's redirect) goes to one that works
/// (`pacmeshd::mirror_health`).
#[tokio::test]
async fn a_mirror_that_failed_is_tried_after_the_others() {
    let good = start_mirror().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (dead_url, good_url) = (format!("http://{dead}/file"), format!("http://{good}/file"));
    let client = MirrorClient::new();
    let configured = vec![dead_url.clone(), good_url.clone()];
    assert_eq!(
        client.order(configured.clone()),
        configured,
        "nothing seen yet"
    );
    let err = client.get_from(&dead_url, 0).await.unwrap_err();
    assert!(matches!(err, MirrorError::Http(_)), "{err}");
    assert_eq!(
        client.order(configured.clone()),
        vec![good_url.clone(), dead_url.clone()],
        "the dead mirror goes last"
    );
    // A whole body from the good one changes nothing of that.
    let mut body = client
        .get_from(&good_url, 0)
        .await
        .expect("the good mirror");
    while body.next_chunk().await.expect("reading").is_some() {}
    assert_eq!(client.order(configured), vec![good_url, dead_url]);
}
