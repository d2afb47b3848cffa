//! Hostile peers and strangers against an in-process mesh on loopback
//! (docs/DESIGN.md, "What closes a link" and "Limits"): each test is one
//! way of exhausting the daemon that must not work.

mod support;

use std::time::Duration;

use pacmesh_proto::{Delta, Digest, Message, NameHash, PackageSet};
use pacmesh_proto::{MAX_DELTA_CHANGES, MAX_DIGEST_PACKAGES};
use pacmeshd::mesh::link::CloseCode;
use support::logs::{capture_logs, log_has_line};
use support::node::Node;
use support::stranger::Stranger;

/// Closed by the mesh with `code`, within 5 s.
async fn closed_with(conn: &quinn::Connection, code: CloseCode, what: &str) {
    let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the mesh did not close the link"));
    match &err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, code.varint(), "{what}: {err}");
        }
        other => panic!("{what}: closed otherwise: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_growing_a_digest_past_its_limit_close_the_link() {
    capture_logs();
    let a = Node::start(&[], |_| {}).await;
    let mut stranger = Stranger::connect(a.id(), a.mesh.local_addr()).await;
    stranger.hello().await;
    stranger
        .send_message(&Message::Digest(Digest {
            seq: 0,
            packages: PackageSet::new(),
        }))
        .await;
    let chunk = MAX_DELTA_CHANGES as u64;
    for seq in 1..=30u64 {
        let added = (0..chunk)
            .map(|i| NameHash::from_u64(seq * chunk + i))
            .collect();
        let delta = Message::Delta(Delta {
            seq,
            added,
            removed: Vec::new(),
        });
        if stranger.try_send_message(&delta).await.is_err() {
            break;
        }
    }
    closed_with(&stranger.conn, CloseCode::Protocol, "30 deltas of 4096").await;
    let id = stranger.me.node_id().to_string();
    let limit = format!("past {MAX_DIGEST_PACKAGES} packages");
    assert!(
        log_has_line(&["WARN", &id, &limit]),
        "no warning naming the peer and the limit"
    );
    assert!(a.mesh.peers().is_empty());
}
