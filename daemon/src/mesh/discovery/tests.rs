//! Pure tests of the TXT record, the peer filter and the tracker, and
//! in-process tests of the memory LAN.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use tokio::sync::mpsc;

use super::super::{Announce, DiscoveryEvent, NodeId, PeerAd};
use super::txt::{decode, dialable, encode, parse_node_id, Ignored, Resolved, SeenIp};
use super::{Discovery, MemoryLan, Tracker};

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn announce(n: u8) -> Announce {
    Announce {
        node_id: id(n),
        quic_port: 15680,
        archs: vec!["x86_64".into(), "any".into()],
        mesh_tag: "open".into(),
        protocol_version: pacmesh_proto::PROTOCOL_VERSION,
    }
}

fn v4(a: u8) -> SeenIp {
    SeenIp {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
        scope: 0,
    }
}

fn seen(ad: &Announce, ips: Vec<SeenIp>) -> Resolved {
    let txt = encode(ad);
    Resolved::new(txt.iter().map(|(k, v)| (*k, v.as_str())), ips)
}

fn sock(a: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), 15680)
}

#[test]
fn txt_is_short_and_round_trips() {
    let me = announce(1);
    let txt = encode(&me);
    let keys: Vec<&str> = txt.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["id", "v", "arch", "port", "mesh"]);
    let bytes: usize = txt.iter().map(|(k, v)| k.len() + 1 + v.len() + 1).sum();
    assert!(bytes < 120, "TXT record is {bytes} bytes");
    assert_eq!(parse_node_id(&me.node_id.to_string()), Some(me.node_id));

    let peer = decode(&announce(2), &seen(&me, vec![v4(1)]));
    let expected = PeerAd {
        node_id: Some(id(1)),
        addrs: vec![sock(1)],
    };
    assert_eq!(peer, Ok(expected));
}

#[test]
fn filter() {
    fn check(name: &str, edit: impl Fn(&mut Resolved), expected: Result<(), Ignored>) {
        let me = announce(1);
        let mut r = seen(&announce(2), vec![v4(2)]);
        edit(&mut r);
        let got = decode(&me, &r).map(|_| ());
        assert_eq!(got, expected, "case {name}");
    }
    fn set(k: &'static str, v: &str) -> impl Fn(&mut Resolved) {
        let v = v.to_string();
        move |r| {
            r.txt.insert(k.into(), v.clone());
        }
    }
    fn unset(k: &'static str) -> impl Fn(&mut Resolved) {
        move |r| {
            r.txt.remove(k);
        }
    }
    check("a peer", |_| {}, Ok(()));
    check("myself", set("id", &"01".repeat(32)), Err(Ignored::Myself));
    check(
        "other mesh",
        set("mesh", "k3y"),
        Err(Ignored::OtherMesh("k3y".into())),
    );
    // Older and newer versions link (newer ones add only messages that
    // older peers are never sent); below the oldest supported, not.
    check("version 1", set("v", "1"), Ok(()));
    check("version 2", set("v", "2"), Ok(()));
    check("a later version", set("v", "3"), Ok(()));
    check("version 0", set("v", "0"), Err(Ignored::Version(0)));
    check(
        "only another arch",
        set("arch", "aarch64"),
        Err(Ignored::NoCommonArch),
    );
    check(
        "empty arch list",
        set("arch", ""),
        Err(Ignored::NoCommonArch),
    );
    check("no arch key", unset("arch"), Err(Ignored::NoCommonArch));
    check("another arch and any", set("arch", "aarch64,any"), Ok(()));
    check("no id", unset("id"), Err(Ignored::Malformed("no id")));
    check("short id", set("id", "abcd"), Err(Ignored::Malformed("id")));
    check(
        "id not hex",
        set("id", &"zz".repeat(32)),
        Err(Ignored::Malformed("id")),
    );
    check(
        "no mesh",
        unset("mesh"),
        Err(Ignored::Malformed("no mesh tag")),
    );
    check(
        "no version",
        unset("v"),
        Err(Ignored::Malformed("no version")),
    );
    check(
        "version text",
        set("v", "one"),
        Err(Ignored::Malformed("version")),
    );
    check("port 0", set("port", "0"), Err(Ignored::Malformed("port")));
    check(
        "port too big",
        set("port", "70000"),
        Err(Ignored::Malformed("port")),
    );
    check("no port", unset("port"), Err(Ignored::Malformed("no port")));
    check(
        "only link-local v6 without interface",
        |r| {
            r.ips = vec![SeenIp {
                ip: "fe80::1".parse().unwrap(),
                scope: 0,
            }]
        },
        Err(Ignored::Malformed("no usable address")),
    );
    // Myself is decided before anything else: this host's own record is
    // never reported as "other mesh" when its tag is being changed.
    check(
        "myself wins over other fields",
        |r| {
            set("id", &"01".repeat(32))(r);
            set("mesh", "x")(r);
        },
        Err(Ignored::Myself),
    );
}

#[test]
fn an_announcement_off_this_hosts_subnets_is_ignored_naming_the_address() {
    use super::scope::{dialable_from, LocalNet};
    let me = announce(2);
    let nets = [LocalNet {
        if_index: 3,
        addr: Ipv4Addr::new(10, 0, 0, 2),
        prefix: 24,
    }];
    let outside = SeenIp {
        ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        scope: 3,
    };
    let inside = SeenIp { scope: 3, ..v4(1) };
    let keep = |s: &SeenIp| dialable_from(s, &nets, &[], false);

    let mut only_outside = seen(&announce(1), vec![outside]);
    only_outside.keep_dialable(keep);
    assert_eq!(
        decode(&me, &only_outside),
        Err(Ignored::OffSubnet(outside.ip))
    );
    // Mixed: the outside address is dropped, the peer dialled inside.
    let mut mixed = seen(&announce(1), vec![outside, inside]);
    mixed.keep_dialable(keep);
    let ad = decode(&me, &mixed).expect("a peer");
    assert_eq!(ad.addrs, vec![sock(1)]);
}

#[test]
fn the_tracker_holds_a_bounded_number_of_announcements() {
    use super::tracker::MAX_ANNOUNCEMENTS;
    let mut tracker = Tracker::new(announce(1));
    let peer = seen(&announce(2), vec![v4(2)]);
    for i in 0..MAX_ANNOUNCEMENTS {
        tracker.resolved(&format!("n{i}._pacmesh._udp.local."), &peer);
    }
    assert_eq!(tracker.len(), MAX_ANNOUNCEMENTS);
    let update = tracker.resolved("one-more._pacmesh._udp.local.", &peer);
    assert_eq!(update.newly_ignored, Some(Ignored::TooMany));
    assert!(update.events.is_empty());
    assert_eq!(tracker.len(), MAX_ANNOUNCEMENTS);
    // A name already tracked still updates, and a goodbye makes room.
    let moved = seen(&announce(3), vec![v4(3)]);
    assert!(!tracker
        .resolved("n0._pacmesh._udp.local.", &moved)
        .events
        .is_empty());
    tracker.removed("n1._pacmesh._udp.local.");
    let update = tracker.resolved("one-more._pacmesh._udp.local.", &peer);
    assert_eq!(update.newly_ignored, None);
}

#[test]
fn addresses_best_first() {
    fn check(ips: &[(&str, u32)], expected: &[&str]) {
        let ips: Vec<SeenIp> = ips
            .iter()
            .map(|(ip, scope)| SeenIp {
                ip: ip.parse().unwrap(),
                scope: *scope,
            })
            .collect();
        let got = dialable(&ips, 7);
        let expected: Vec<SocketAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(got, expected, "for {ips:?}");
    }
    check(&[("10.0.0.2", 0)], &["10.0.0.2:7"]);
    check(
        &[
            ("fe80::1", 3),
            ("fd00::2", 0),
            ("10.0.0.2", 0),
            ("127.0.0.1", 0),
        ],
        &["10.0.0.2:7", "[fd00::2]:7", "[fe80::1%3]:7", "127.0.0.1:7"],
    );
    check(&[("fe80::1", 0), ("10.0.0.2", 0)], &["10.0.0.2:7"]);
    check(
        &[("10.0.0.3", 0), ("10.0.0.2", 0), ("10.0.0.3", 0)],
        &["10.0.0.2:7", "10.0.0.3:7"],
    );
    check(&[("0.0.0.0", 0), ("224.0.0.251", 0), ("ff02::fb", 1)], &[]);
    let scoped = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        7,
        0,
        3,
    ));
    assert_eq!(
        dialable(
            &[SeenIp {
                ip: "fe80::1".parse().unwrap(),
                scope: 3
            }],
            7
        ),
        [scoped]
    );
}

#[test]
fn tracker_sequences() {
    let peer = announce(2);
    let up = |addrs: Vec<SocketAddr>| {
        DiscoveryEvent::Up(PeerAd {
            node_id: Some(id(2)),
            addrs,
        })
    };
    let mut t = Tracker::new(announce(1));
    let name = "222222222222._pacmesh._udp.local.";

    // First resolution: Up. The same again: nothing.
    assert_eq!(
        t.resolved(name, &seen(&peer, vec![v4(2)])).events,
        [up(vec![sock(2)])]
    );
    assert_eq!(t.resolved(name, &seen(&peer, vec![v4(2)])).events, []);
    // A new address: Up with the whole set; same set in another order: nothing.
    let both = vec![v4(2), v4(3)];
    assert_eq!(
        t.resolved(name, &seen(&peer, both)).events,
        [up(vec![sock(2), sock(3)])]
    );
    assert_eq!(
        t.resolved(name, &seen(&peer, vec![v4(3), v4(2)])).events,
        []
    );
    // A useless address (link-local without scope) changes nothing.
    let ll = SeenIp {
        ip: "fe80::9".parse().unwrap(),
        scope: 0,
    };
    assert_eq!(
        t.resolved(name, &seen(&peer, vec![v4(3), v4(2), ll]))
            .events,
        []
    );
    // Goodbye: Down once; unknown names: nothing.
    assert_eq!(t.removed(name), Some(DiscoveryEvent::Down(id(2))));
    assert_eq!(t.removed(name), None);
    assert_eq!(t.removed("nobody._pacmesh._udp.local."), None);
}

#[test]
fn tracker_reports_each_ignore_reason_once() {
    let mut t = Tracker::new(announce(1));
    let mut stranger = announce(3);
    stranger.mesh_tag = "other".into();
    let name = "333333333333._pacmesh._udp.local.";
    let other = Some(Ignored::OtherMesh("other".into()));

    let first = t.resolved(name, &seen(&stranger, vec![v4(3)]));
    assert_eq!((first.events, first.newly_ignored), (vec![], other));
    let again = t.resolved(name, &seen(&stranger, vec![v4(3), v4(4)]));
    assert_eq!((again.events, again.newly_ignored), (vec![], None));
    // Still another mesh (checked before the version): not reported again.
    stranger.protocol_version = 0;
    let still = t.resolved(name, &seen(&stranger, vec![v4(3)]));
    assert_eq!(still.newly_ignored, None);
    // Its reason changes: reported again.
    stranger.mesh_tag = "open".into();
    let v0 = t.resolved(name, &seen(&stranger, vec![v4(3)]));
    assert_eq!(v0.newly_ignored, Some(Ignored::Version(0)));
    // An ignored announcement's goodbye is no Down.
    assert_eq!(t.removed(name), None);
    // Myself: reported (logged at debug) once, never an event.
    let me = t.resolved(
        "111111111111._pacmesh._udp.local.",
        &seen(&announce(1), vec![v4(1)]),
    );
    assert_eq!(
        (me.events, me.newly_ignored),
        (vec![], Some(Ignored::Myself))
    );
}

#[test]
fn tracker_peer_that_turns_incompatible_goes_down() {
    let mut t = Tracker::new(announce(1));
    let name = "222222222222._pacmesh._udp.local.";
    let mut peer = announce(2);
    assert_eq!(t.resolved(name, &seen(&peer, vec![v4(2)])).events.len(), 1);
    peer.mesh_tag = "new-key".into();
    let update = t.resolved(name, &seen(&peer, vec![v4(2)]));
    assert_eq!(update.events, [DiscoveryEvent::Down(id(2))]);
    assert_eq!(
        update.newly_ignored,
        Some(Ignored::OtherMesh("new-key".into()))
    );
}

#[test]
fn tracker_renamed_announcement_keeps_peer_up() {
    // mDNS renames a clashing instance ("x (2)"): one peer, two names.
    let mut t = Tracker::new(announce(1));
    let peer = seen(&announce(2), vec![v4(2)]);
    assert_eq!(t.resolved("a._pacmesh._udp.local.", &peer).events.len(), 1);
    assert_eq!(
        t.resolved("a (2)._pacmesh._udp.local.", &peer).events.len(),
        1
    );
    assert_eq!(t.removed("a._pacmesh._udp.local."), None);
    assert_eq!(
        t.removed("a (2)._pacmesh._udp.local."),
        Some(DiscoveryEvent::Down(id(2)))
    );
}

// ---- memory LAN ----

async fn next(rx: &mut mpsc::Receiver<DiscoveryEvent>) -> DiscoveryEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("channel open")
}

/// No event is waiting or on its way. The memory LAN's tests run on a
/// paused clock: this sleep returns only once every task is idle, so the
/// forwarding tasks have delivered all they had.
async fn nothing_more(rx: &mut mpsc::Receiver<DiscoveryEvent>) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.try_recv().ok(), None);
}

fn up_at(n: u8, ip: IpAddr) -> DiscoveryEvent {
    DiscoveryEvent::Up(PeerAd {
        node_id: Some(id(n)),
        addrs: vec![SocketAddr::new(ip, 15680)],
    })
}

#[tokio::test(start_paused = true)]
async fn memory_members_see_each_other_never_themselves() {
    let lan = MemoryLan::new();
    let (mut a, mut b) = (lan.join(), lan.join_at("10.0.0.2".parse().unwrap()));
    let (tx_a, mut rx_a) = mpsc::channel(8);
    let (tx_b, mut rx_b) = mpsc::channel(8);
    a.start(&announce(1), tx_a).unwrap();
    nothing_more(&mut rx_a).await;
    b.start(&announce(2), tx_b).unwrap();
    assert_eq!(next(&mut rx_a).await, up_at(2, "10.0.0.2".parse().unwrap()));
    assert_eq!(next(&mut rx_b).await, up_at(1, Ipv4Addr::LOCALHOST.into()));
    nothing_more(&mut rx_a).await;
    nothing_more(&mut rx_b).await;

    // stop → Down at the others; stopping twice is harmless.
    b.stop();
    b.stop();
    assert_eq!(next(&mut rx_a).await, DiscoveryEvent::Down(id(2)));
    nothing_more(&mut rx_a).await;
}

#[tokio::test(start_paused = true)]
async fn memory_other_mesh_and_crash() {
    let lan = MemoryLan::new();
    let (mut a, mut b, mut c) = (lan.join(), lan.join(), lan.join());
    let (tx_a, mut rx_a) = mpsc::channel(8);
    let (tx_b, mut rx_b) = mpsc::channel(8);
    let (tx_c, mut rx_c) = mpsc::channel(8);
    let mut stranger = announce(3);
    stranger.mesh_tag = "theirs".into();
    a.start(&announce(1), tx_a).unwrap();
    c.start(&stranger, tx_c).unwrap();
    b.start(&announce(2), tx_b).unwrap();
    assert_eq!(next(&mut rx_a).await, up_at(2, Ipv4Addr::LOCALHOST.into()));
    assert_eq!(next(&mut rx_b).await, up_at(1, Ipv4Addr::LOCALHOST.into()));
    for rx in [&mut rx_a, &mut rx_b, &mut rx_c] {
        nothing_more(rx).await;
    }
    // Dropped without stop(): a crash, nobody is told.
    drop(b);
    nothing_more(&mut rx_a).await;
    c.stop();
    nothing_more(&mut rx_a).await;
}

#[tokio::test]
async fn memory_same_instance_name_is_renamed() {
    // Two ids with the same first 12 hex digits clash on the instance name.
    let lan = MemoryLan::new();
    let (mut a, mut b) = (lan.join(), lan.join());
    let mut one = announce(1);
    let mut two = announce(1);
    one.node_id.0[31] = 0xaa;
    two.node_id.0[31] = 0xbb;
    let (tx_a, mut rx_a) = mpsc::channel(8);
    let (tx_b, _rx_b) = mpsc::channel(8);
    a.start(&one, tx_a).unwrap();
    b.start(&two, tx_b).unwrap();
    let DiscoveryEvent::Up(ad) = next(&mut rx_a).await else {
        panic!("expected Up");
    };
    assert_eq!(ad.node_id, Some(two.node_id));
    b.stop();
    assert_eq!(next(&mut rx_a).await, DiscoveryEvent::Down(two.node_id));
}
