//! The `lan` harness itself: hosts in network namespaces on a bridge reach each other by UDP
//! and TCP, multicast reaches every host, the real `pacmeshd` runs in a host and answers on the
//! host's own loopback, and dropping the LAN leaves no namespace and no process behind.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use pacmesh_tests::daemon::DaemonArgs;
use pacmesh_tests::lan::{self, Lan, MDNS_GROUP, PORT};
use pacmesh_tests::prereq;

#[test]
fn three_hosts_reach_each_other_by_udp_tcp_and_multicast() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(3);
    let ips: Vec<_> = lan.hosts().iter().map(|h| h.ip()).collect();
    assert_eq!(ips.len(), 3);
    for w in ips.windows(2) {
        assert_eq!(w[0].octets()[..3], w[1].octets()[..3], "one /24: {ips:?}");
    }

    let _servers: Vec<_> = lan.hosts().iter().map(|h| h.serve()).collect();
    for host in lan.hosts() {
        let targets: Vec<_> = lan
            .hosts()
            .iter()
            .filter(|h| h.index() != host.index())
            .flat_map(|h| {
                [
                    ("udp", h.ip(), PORT),
                    ("udp", h.ip(), 5353),
                    ("tcp", h.ip(), PORT),
                ]
            })
            .collect();
        for (what, result) in host.probe(&targets) {
            assert_eq!(result, "open", "{what} from {}", host.name());
        }
        // Each host has its own loopback: nothing listens on 127.0.0.1 there.
        let own = host.probe(&[("tcp", std::net::Ipv4Addr::LOCALHOST, PORT)]);
        assert_eq!(own[0].1, "refused", "{own:?}");
    }

    // On mDNS's own group, on a test port (the daemon will own 5353 in these namespaces).
    lan.assert_multicast(SocketAddrV4::new(MDNS_GROUP, 15353));
    // And on a group that only IGMP joins would let a snooping bridge forward.
    lan.assert_multicast(SocketAddrV4::new("239.255.80.1".parse().unwrap(), 15354));
}

#[test]
fn daemons_answer_in_their_hosts_and_keep_their_identity() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(2);
    let mut a = lan.host(0).start_daemon(DaemonArgs::default());
    let b = lan.host(1).start_daemon(DaemonArgs::default());
    let (sa, sb) = (a.status(), b.status());
    let id = |s: &serde_json::Value| {
        s["node_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no node_id in {s}"))
            .to_string()
    };
    let (ida, idb) = (id(&sa), id(&sb));
    assert_ne!(ida, idb, "two hosts, two identities");
    assert!(a.cache_dir().is_dir());
    let dirs = sa["cache"]["dirs"].to_string();
    assert!(
        dirs.contains(&a.cache_dir().display().to_string()),
        "the harness's pacman.conf CacheDir is served: {dirs}"
    );
    let old_pid = a.pid().expect("running");
    let status = a.stop();
    assert!(
        status.success(),
        "SIGTERM exits 0, not {status}\n{}",
        a.log()
    );
    assert!(!lan::pid_alive(old_pid));
    assert!(
        lan.host(0).http_get("http://127.0.0.1:15680/").is_err(),
        "nothing answers once stopped"
    );
    a.restart();
    assert_ne!(a.pid(), Some(old_pid));
    assert_eq!(id(&a.status()), ida, "same state dir, same node_id");
    assert_eq!(id(&b.status()), idb);

    // restart() of a running daemon stops it first.
    a.restart();
    assert_eq!(id(&a.status()), ida);
    let killed = a.kill();
    assert!(!killed.success());
}

#[test]
fn dropping_the_lan_removes_its_namespaces_and_processes() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(2);
    let names = lan.netns_names();
    assert_eq!(names.len(), 3);
    let listed = lan::netns_list();
    for n in &names {
        assert!(listed.contains(n), "{n} in {listed:?}");
    }
    // A daemon and a server held by the test, plus a process the harness does not know of,
    // detached so nothing in the test waits for it.
    let daemon = lan.host(0).start_daemon(DaemonArgs::default());
    let server = lan.host(1).serve();
    let stray = lan
        .host(1)
        .exec("sh")
        .args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
        .output()
        .expect("starting a stray sleep");
    let stray: u32 = String::from_utf8_lossy(&stray.stdout)
        .trim()
        .parse()
        .expect("the stray's pid");
    let mut pids = lan.pids();
    pids.sort_unstable();
    for p in [daemon.pid().expect("running"), server.pid(), stray] {
        assert!(pids.contains(&p), "{p} in the LAN's namespaces: {pids:?}");
    }
    // The daemon and the server go as the test's guards end; the stray only the Lan kills.
    drop(server);
    drop(daemon);
    let started = Instant::now();
    drop(lan);
    let took = started.elapsed();

    let listed = lan::netns_list();
    for n in &names {
        assert!(!listed.contains(n), "{n} still listed: {listed:?}");
    }
    for p in pids {
        let deadline = Instant::now() + Duration::from_secs(2);
        while lan::pid_alive(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!lan::pid_alive(p), "pid {p} survived the LAN");
    }
    eprintln!("dropping the LAN took {took:?}");
}

#[test]
fn a_panicking_test_still_removes_its_lan() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let lan = Lan::new(1);
        let server = lan.host(0).serve();
        tx.send((lan.netns_names(), server.pid())).unwrap();
        panic!("a test failing with its LAN up");
    })
    .join();
    assert!(result.is_err());
    let (names, pid) = rx.recv().unwrap();
    let listed = lan::netns_list();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "{names:?} in {listed:?}"
    );
    assert!(!lan::pid_alive(pid));
}
