//! The mesh across real hosts: one `pacmeshd` per network namespace on a
//! bridge, real mDNS and QUIC between them. Hosts find each other with no
//! configuration, know each other's packages, notice departures, keep
//! strangers out, link through static peers without mDNS, and shrug off a
//! peer that speaks garbage.

use std::time::{Duration, Instant};

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::DaemonArgs;
use pacmesh_tests::lan::{Lan, NsDaemon, PORT};
use pacmesh_tests::prereq;
use pacmesh_tests::prometheus::parse_with_prometheus;

/// The node ids in a daemon's `peers` list.
fn peer_ids(daemon: &NsDaemon) -> Vec<String> {
    daemon.status()["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| p["node_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// How many packages `viewer` believes `of` holds, if linked.
fn packages_seen(viewer: &NsDaemon, of: &str) -> Option<u64> {
    viewer.peer(of)?["packages"].as_u64()
}

fn linked(a: &NsDaemon, b: &NsDaemon) -> bool {
    peer_ids(a).contains(&b.node_id()) && peer_ids(b).contains(&a.node_id())
}

/// Default daemons on hosts 0 and 1 of `lan`, once each lists the other as a peer.
fn linked_pair(lan: &Lan) -> (NsDaemon<'_>, NsDaemon<'_>) {
    let a = lan.host(0).start_daemon(DaemonArgs::default());
    let b = lan.host(1).start_daemon(DaemonArgs::default());
    assert_eventually!(
        linked(&a, &b),
        Duration::from_secs(3),
        "a and b never linked"
    );
    (a, b)
}

fn put_package(daemon: &NsDaemon, name: &str) {
    let tmp = daemon.cache_dir().join(format!("{name}.part"));
    std::fs::write(&tmp, vec![7u8; 4096]).expect("writing a package");
    std::fs::rename(&tmp, daemon.cache_dir().join(name)).expect("renaming into place");
}

fn mesh_key(dir: &std::path::Path, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, secret).expect("writing a mesh key");
    path
}

#[test]
fn three_hosts_find_each_other_within_3_s() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(3);
    let daemons: Vec<_> = lan
        .hosts()
        .iter()
        .map(|h| h.start_daemon(DaemonArgs::default()))
        .collect();
    let started = Instant::now();
    let ids: Vec<String> = daemons.iter().map(NsDaemon::node_id).collect();
    assert_eventually!(
        daemons.iter().zip(&ids).all(|(d, me)| {
            let mut seen = peer_ids(d);
            seen.sort();
            let mut want: Vec<String> = ids.iter().filter(|id| *id != me).cloned().collect();
            want.sort();
            seen == want
        }),
        Duration::from_secs(3),
        "not every host lists the other two within 3 s"
    );
    eprintln!(
        "all linked {} ms after the last start",
        started.elapsed().as_millis()
    );
    for d in &daemons {
        for p in d.status()["peers"].as_array().expect("peers") {
            let addr = p["addr"].as_str().expect("addr");
            assert!(addr.ends_with(&format!(":{PORT}")), "{p}");
            assert!(p["rtt_ms"].as_f64().is_some(), "{p}");
        }
    }
}

#[test]
fn a_package_added_or_removed_reaches_the_peer_within_2_s() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(2);
    let (a, b) = linked_pair(&lan);
    let a_id = a.node_id();
    assert_eq!(packages_seen(&b, &a_id), Some(0));

    let pkg = "meshy-1.0-1-x86_64.pkg.tar.zst";
    put_package(&a, pkg);
    assert_eventually!(
        packages_seen(&b, &a_id) == Some(1),
        Duration::from_secs(2),
        "b did not see a's new package within 2 s"
    );
    std::fs::remove_file(a.cache_dir().join(pkg)).expect("removing");
    assert_eventually!(
        packages_seen(&b, &a_id) == Some(0),
        Duration::from_secs(2),
        "b still lists a's removed package after 2 s"
    );
}

#[test]
fn departures_are_noticed_and_a_restart_keeps_the_node_id() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(2);
    let (mut a, b) = linked_pair(&lan);
    let a_id = a.node_id();

    assert!(a.stop().success(), "a did not stop cleanly");
    assert_eventually!(
        !peer_ids(&b).contains(&a_id),
        Duration::from_secs(2),
        "b still lists a 2 s after a clean stop"
    );

    a.restart();
    assert_eq!(a.node_id(), a_id, "a restarted with another node id");
    assert_eventually!(
        linked(&a, &b),
        Duration::from_secs(3),
        "a did not come back"
    );
    // No settling wait: b's mDNS may hear the restarted a only after the
    // kill below (or not at all, when a's goodbye was lost and b never
    // forgot it); a dial to the dead a then fails and lists nothing, so
    // the bound below holds either way.

    a.kill();
    let killed = Instant::now();
    assert_eventually!(
        !peer_ids(&b).contains(&a_id),
        Duration::from_secs(15),
        "b still lists a 15 s after SIGKILL"
    );
    eprintln!(
        "killed peer dropped after {} ms",
        killed.elapsed().as_millis()
    );
}

#[test]
fn a_peer_that_crashed_and_came_back_is_relinked_without_waiting_out_the_dead_link() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    // Only b dials (a static peer, no mDNS), so only b's link to a can bring them together
    // again: a restarted a knows nothing of b.
    let lan = Lan::new(2);
    let mut a = lan
        .host(0)
        .start_daemon(DaemonArgs::default().arg("--no-mdns"));
    let b = lan.host(1).start_daemon(
        DaemonArgs::default()
            .arg("--no-mdns")
            .arg("--peer")
            .arg(format!("{}:{PORT}", lan.host(0).ip())),
    );
    assert_eventually!(
        linked(&a, &b),
        Duration::from_secs(5),
        "a and b never linked"
    );
    a.kill();
    a.restart();
    // b's next keep-alive on the dead connection reaches the new a, which answers with a
    // stateless reset keyed by its identity: b drops the dead link at once and dials again.
    // Without that b keeps it until its idle timeout (10 s), whose reason is "timed out",
    // never this one.
    assert_eventually!(
        b.log().contains("reset by peer"),
        Duration::from_secs(20),
        "b never took the restarted a's reset:\n{}",
        b.log()
    );
    assert_eventually!(
        linked(&a, &b),
        Duration::from_secs(20),
        "a and b never linked again:\n{}",
        b.log()
    );
}

#[test]
fn hosts_of_another_mesh_or_without_the_key_get_no_link() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(4);
    let keys = tempfile::tempdir().expect("tempdir");
    let ours = mesh_key(
        keys.path(),
        "ours.key",
        "correct horse battery staple, 32 bytes\n",
    );
    let theirs = mesh_key(
        keys.path(),
        "theirs.key",
        "another mesh entirely, thanks, 32 bytes\n",
    );
    let a = lan
        .host(0)
        .start_daemon(DaemonArgs::default().arg("--mesh-key").arg(&ours));
    let b = lan
        .host(1)
        .start_daemon(DaemonArgs::default().arg("--mesh-key").arg(&ours));
    let other = lan
        .host(2)
        .start_daemon(DaemonArgs::default().arg("--mesh-key").arg(&theirs));
    // Keyless, and dialing `a` directly, so the key proof (not only the
    // mDNS tag) is what keeps it out.
    let keyless = lan.host(3).start_daemon(
        DaemonArgs::default()
            .arg("--peer")
            .arg(format!("{}:{PORT}", lan.host(0).ip())),
    );
    assert_eventually!(
        linked(&a, &b),
        Duration::from_secs(3),
        "the keyed hosts never linked"
    );
    // The strangers were turned away, and their logs say why (written in
    // batches, within a few ms): these lines are the events the checks
    // below wait for.
    let soon = Duration::from_secs(5);
    assert_eventually!(
        other.log().contains("other mesh"),
        soon,
        "other mesh's log:\n{}",
        other.log()
    );
    assert_eventually!(
        keyless.log().matches("mesh key").count() >= 2,
        soon,
        "the keyless host's log does not say why (twice: a redial too):\n{}",
        keyless.log()
    );
    let (a_id, b_id) = (a.node_id(), b.node_id());
    for (d, who) in [(&other, "other mesh"), (&keyless, "keyless")] {
        let id = d.node_id();
        assert!(peer_ids(d).is_empty(), "{who} has peers: {:?}", peer_ids(d));
        assert!(
            !peer_ids(&a).contains(&id) && !peer_ids(&b).contains(&id),
            "{who} linked"
        );
        assert!(!peer_ids(d).contains(&a_id) && !peer_ids(d).contains(&b_id));
    }
    assert_eq!(peer_ids(&a), vec![b_id.clone()]);
    assert_eq!(peer_ids(&b), vec![a_id]);
}

#[test]
fn static_peers_without_mdns_form_the_same_links() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(3);
    let daemons: Vec<_> = lan
        .hosts()
        .iter()
        .map(|h| {
            let mut args = DaemonArgs::default().arg("--no-mdns");
            for other in lan.hosts().iter().filter(|o| o.index() != h.index()) {
                args = args.arg("--peer").arg(format!("{}:{PORT}", other.ip()));
            }
            h.start_daemon(args)
        })
        .collect();
    assert_eventually!(
        linked(&daemons[0], &daemons[1])
            && linked(&daemons[1], &daemons[2])
            && linked(&daemons[0], &daemons[2]),
        Duration::from_secs(5),
        "static peers did not all link"
    );
    for d in &daemons {
        assert_eq!(peer_ids(d).len(), 2, "one link per pair: {:?}", peer_ids(d));
    }
}

#[test]
fn a_peer_speaking_garbage_loses_its_link_and_nothing_else() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(3);
    let (a, b) = linked_pair(&lan);

    // A stranger completes TLS on the pacmesh ALPN, then sends garbage.
    let out = lan
        .host(2)
        .netprobe()
        .args(["quic-garbage", &format!("{}:{PORT}", lan.host(0).ip())])
        .output()
        .expect("running netprobe quic-garbage");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("PMH closed"),
        "the garbage link was not closed: {said}"
    );

    assert!(a.get("/_pacmesh/status").status == 200, "a stopped serving");
    assert!(linked(&a, &b), "a lost its good link");
    assert_eq!(peer_ids(&a).len(), 1, "{:?}", peer_ids(&a));
    assert_eventually!(
        a.log().contains(&lan.host(2).ip().to_string()),
        Duration::from_secs(2),
        "a's log does not name the garbage peer:\n{}",
        a.log()
    );
}

#[test]
fn page_metrics_and_sigusr1_show_the_linked_peer() {
    if !prereq::require(Lan::TOOLS)
        || !prereq::require_tools(&["tidy", pacmesh_tests::prometheus::PYTHON])
    {
        return;
    }
    let lan = Lan::new(2);
    let (a, b) = linked_pair(&lan);
    put_package(&a, "shown-1.0-1-any.pkg.tar.zst");
    let a_id = a.node_id();
    assert_eventually!(
        packages_seen(&b, &a_id) == Some(1),
        Duration::from_secs(2),
        "no digest"
    );

    let page = b.get("/_pacmesh/").text();
    let row = format!(
        "<tr><td><code>{a_id}</code></td><td>{}:{PORT}</td>",
        lan.host(0).ip()
    );
    assert!(page.contains(&row), "no row for a in b's page:\n{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let html = dir.path().join("page.html");
    std::fs::write(&html, &page).expect("write");
    let tidy = std::process::Command::new("tidy")
        .args(["-errors", "-quiet"])
        .arg(&html)
        .output()
        .expect("tidy");
    assert!(
        tidy.status.code().is_some_and(|c| c < 2),
        "tidy: {}",
        String::from_utf8_lossy(&tidy.stderr)
    );

    let metrics = parse_with_prometheus(&b.get("/_pacmesh/metrics").text());
    assert!(
        metrics.contains(&"pacmesh_peers{} 1.0".to_string()),
        "{metrics:#?}"
    );
    let row = format!("pacmesh_peer_packages{{peer={a_id}}} 1.0");
    assert!(metrics.contains(&row), "{metrics:#?}");

    let pid = b.pid().expect("b runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .expect("kill")
        .success());
    assert_eventually!(
        b.log().lines().any(|l| l.contains("peer table entry")
            && l.contains(&a_id)
            && l.contains("packages=1")),
        Duration::from_secs(3),
        "SIGUSR1 did not log a's row:\n{}",
        b.log()
    );
}

#[test]
fn a_package_only_a_peer_holds_is_served_and_counted_as_unverified_without_a_sync_db() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(3);
    let a = lan.host(0).start_daemon(DaemonArgs::default());
    let b = lan.host(1).start_daemon(DaemonArgs::default());
    let strict = lan
        .host(2)
        .start_daemon(DaemonArgs::default().arg("--verified-only"));
    let pkg = "peerly-2.0-1-x86_64.pkg.tar.zst";
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(a.cache_dir().join(pkg), &bytes).expect("writing a's package");
    let a_id = a.node_id();
    assert_eventually!(
        packages_seen(&b, &a_id) == Some(1) && packages_seen(&strict, &a_id) == Some(1),
        Duration::from_secs(5),
        "the others never saw a's package"
    );

    let got = b.get(&format!("/{pkg}"));
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.body == bytes, "b served other bytes than a holds");
    let status = b.status();
    assert_eq!(status["requests"]["peer"], 1, "{status}");
    assert_eq!(status["requests"]["peer_unverified"], 1, "{status}");
    assert_eq!(status["bytes"]["peer"], bytes.len() as u64, "{status}");
    assert_eventually!(
        a.status()["bytes"]["to_peers"].as_u64() >= Some(bytes.len() as u64),
        Duration::from_secs(2),
        "a did not count its upload"
    );
    // Nothing is left behind in b's store: the download was unlinked.
    let leftovers: Vec<_> = std::fs::read_dir(b.store_dir().join("incoming"))
        .expect("b's incoming dir")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A host that takes only verifiable files from peers does not take it.
    let refused = strict.get(&format!("/{pkg}"));
    assert_eq!(
        refused.status,
        404,
        "flat path, no repo to redirect to: {}",
        refused.text()
    );
    assert_eq!(strict.status()["requests"]["peer"], 0);
}
