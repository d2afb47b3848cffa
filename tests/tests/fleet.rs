//! One WAN transfer per package for the whole network, with the real pacman on real hosts:
//! the mirror (nginx, one or two) runs in hosts of its own behind a capped link; every other
//! host is a [`Node`] (pacman root + `pacmeshd`, its repo listing its own daemon first and the
//! mirrors after). Proves: four hosts upgrading at once make the mirror send each package once;
//! the host fetching for the others can die mid-file and the others still finish, at no more
//! than twice the WAN bytes; a mirror dying mid-file is continued at the next mirror from the
//! byte reached, unseen by pacman; a corrupt copy from the mirror is never kept, nor handed to
//! the hosts that joined its fetch; a peer fetch longer than pacman's redirect budget does not
//! fail the joining host's pacman.
//!
//! Written ahead of the fetch engine (request flow step 2.4): until it lands, every host is
//! sent to the mirror and the "once" assertions fail (each says so in its message).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::fleet::{
    self, await_event, files_under, files_with_sha256, pacman_errors, wait_all, Fleet, WanUse,
    WAN_RATE,
};
use pacmesh_tests::lan::Lan;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::upstream::{OpenConnection, ServeOptions};

const REPO: &str = "pmfleet";
const BIG: &str = "fleetbig";
/// The longest a whole install by several hosts at once may take here (4 × 47 MB through a
/// 100 Mbit/s WAN is ~15 s when each host downloads for itself).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a test waits for a transfer to reach the byte count it acts at.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One 40 MiB package and five small ones (6.75 MiB together): shared by every test here.
fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new(BIG, "1.0-1", 40 << 20),
            PkgSpec::new("fleet-a", "1.0-1", 256 << 10),
            PkgSpec::new("fleet-b", "1.0-1", 512 << 10),
            PkgSpec::new("fleet-c", "1.0-1", 1 << 20),
            PkgSpec::new("fleet-d", "2.0-1", 2 << 20),
            PkgSpec::new("fleet-e", "1.0-1", 3 << 20),
        ],
    )
}

fn tools_present() -> bool {
    prereq::require(WHOLE_SYSTEM_TOOLS)
        && prereq::require(Lan::TOOLS)
        && prereq::require(&["tc", "ss", "sha256sum", "gzip"])
}

fn all(repo: &FixtureRepo) -> Vec<&FixturePackage> {
    repo.packages().iter().collect()
}

/// 4 nodes and the mirror behind a 100 Mbit/s WAN, databases synced.
fn four_hosts<'a>(lan: &'a Lan, repo: &FixtureRepo) -> Fleet<'a> {
    let fleet = Fleet::start(lan, repo, &[ServeOptions::default()], 4);
    fleet.cap_wan(WAN_RATE);
    fleet.sync_all();
    fleet
}

fn report_times(test: &str, runs: &[fleet::Finished]) {
    for run in runs {
        eprintln!(
            "{test}: {} took {} ms ({})",
            run.what,
            run.took.as_millis(),
            run.output.status
        );
    }
}

#[test]
fn four_hosts_upgrading_at_once_download_each_package_once() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let pkgs = all(&repo);
    let lan = Lan::new(5);
    let fleet = four_hosts(&lan, &repo);
    let started = Instant::now();
    let runs = fleet.install_at_once(&[0, 1, 2, 3], &pkgs, INSTALL_TIMEOUT);
    report_times("four hosts", &runs);
    eprintln!(
        "four hosts: all done in {} ms",
        started.elapsed().as_millis()
    );
    for (node, run) in fleet.nodes.iter().zip(&runs) {
        node.check_installed(&pkgs, &run.output);
    }
    fleet.wait_mirrors_idle();
    let wan = WanUse::of(&fleet.mirrors, repo.packages());
    eprintln!("four hosts: {wan}");
    assert!(
        wan.ratio() <= 1.05,
        "one WAN transfer per package: the mirror sent {:.2}× the unique package bytes \
         (allowed 1.05×)\n{wan}{}",
        wan.ratio(),
        fleet.describe_hosts()
    );
    // The daemons' own accounts agree with the mirror's: what they fetched from it adds up
    // to what it sent, and every host got the rest from its neighbours, part of it from
    // their fetches while those were under way.
    let sum = |key: &str| -> u64 { fleet.nodes.iter().map(|n| n.counter(key)).sum() };
    let fetched = sum("/bytes/mirror_fetch");
    assert_eq!(
        fetched, wan.sent_bytes,
        "the daemons' bytes.mirror_fetch vs the mirror's log"
    );
    let unique = wan.unique_bytes;
    let saved = sum("/bytes/wan_saved");
    assert!(
        saved >= 3 * unique,
        "four hosts, each package fetched once: the others' {} bytes should show as saved, \
         the daemons say {saved}",
        3 * unique
    );
    assert!(
        sum("/bytes/peer_inflight") > 0,
        "no host counted bytes from a neighbour's fetch under way"
    );
}

/// A connection of mirror 0 that has carried at least a quarter of the big package: more
/// than every small package together plus a quarter of the big one, so only the big
/// package's transfer can be that far along.
fn quarter_of_big(repo: &FixtureRepo) -> u64 {
    let big = repo.package(BIG);
    let small: u64 = repo
        .packages()
        .iter()
        .filter(|p| p.name() != BIG)
        .map(FixturePackage::size)
        .sum();
    small + big.size() / 4
}

#[test]
fn fetcher_killed_mid_transfer_others_finish() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let pkgs = all(&repo);
    let lan = Lan::new(5);
    let mut fleet = four_hosts(&lan, &repo);
    let started = Instant::now();
    let mut runs = fleet.spawn_installs(&[0, 1, 2, 3], &pkgs);
    let threshold = quarter_of_big(&repo);
    let conn: OpenConnection = await_event(
        &mut runs,
        EVENT_TIMEOUT,
        &format!("a mirror connection past {threshold} bytes"),
        || fleet.mirrors[0].connection_past(threshold),
    );
    let fetcher = fleet.node_at(conn.client.ip()).unwrap_or_else(|| {
        panic!(
            "{} is no node's address\n{}",
            conn.client,
            fleet.describe_hosts()
        )
    });
    fleet.nodes[fetcher].daemon.kill();
    eprintln!(
        "fetcher killed: node {fetcher} ({}) killed {} ms in, its connection at {} bytes",
        conn.client.ip(),
        started.elapsed().as_millis(),
        conn.bytes_acked
    );
    let done = wait_all(runs, INSTALL_TIMEOUT);
    report_times("fetcher killed", &done);
    for (i, (node, run)) in fleet.nodes.iter().zip(&done).enumerate() {
        if i != fetcher {
            node.check_installed(&pkgs, &run.output);
        }
    }
    fleet.wait_mirrors_idle();
    let wan = WanUse::of(&fleet.mirrors, repo.packages());
    eprintln!("fetcher killed: {wan}");
    assert!(
        wan.sent_bytes <= 2 * wan.unique_bytes,
        "one WAN transfer per package, plus what the killed fetcher (node {fetcher}) had \
         fetched: the mirror sent {:.2}× the unique package bytes (allowed 2×)\n{wan}{}",
        wan.ratio(),
        fleet.describe_hosts()
    );
}

/// Mirror 0 throttled to 4 MiB/s per response, so the 40 MiB package takes 10 s from it.
const DYING_MIRROR_RATE: &str = "4m";

#[test]
fn mirror_dying_mid_file_is_continued_at_the_next_mirror() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let big = repo.package(BIG);
    // Hosts: mirror 0 (dies), mirror 1, node 0 (installs), node 1 (the linked peer the
    // engine needs before it fetches for itself).
    let lan = Lan::new(4);
    let mirrors = [
        ServeOptions::default().limit_rate(DYING_MIRROR_RATE),
        ServeOptions::default(),
    ];
    let mut fleet = Fleet::start(&lan, &repo, &mirrors, 2);
    fleet.nodes[0].sync();
    let mut runs = vec![fleet.nodes[0].spawn_install(&[big])];
    let at = big.size() / 4;
    let conn = await_event(
        &mut runs,
        EVENT_TIMEOUT,
        &format!("mirror 0 past {at} bytes of {}", big.file_name()),
        || fleet.mirrors[0].connection_past(at),
    );
    fleet.mirrors[0].kill();
    eprintln!(
        "mirror dying: mirror 0 killed with {} bytes acknowledged by {}",
        conn.bytes_acked, conn.client
    );
    let run = wait_all(runs, INSTALL_TIMEOUT).remove(0);
    report_times("mirror dying", std::slice::from_ref(&run));
    let a = &fleet.nodes[0];
    a.check_files(&[big], &run.output);
    fleet.wait_mirrors_idle();
    let gets = fleet.mirrors[1].gets_for(big.file_name());
    let ranged: Vec<u64> = gets
        .iter()
        .filter(|r| r.status == 206 && r.remote_addr == Some(IpAddr::V4(a.ip())))
        .filter_map(|r| {
            let from = r
                .range
                .as_deref()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?;
            from.parse::<u64>().ok()
        })
        .filter(|&n| n > 0 && n < big.size())
        .collect();
    assert!(
        !ranged.is_empty(),
        "mirror 1 got no ranged GET `bytes=N-` (0 < N < {}) of {} from node 0 ({}):\n{}\n{}",
        big.size(),
        big.file_name(),
        a.ip(),
        fleet.mirrors[1].transfer_report(),
        fleet.mirrors[0].transfer_report()
    );
    eprintln!("mirror dying: continued at mirror 1 from byte(s) {ranged:?}");
    let errors = pacman_errors(&run.output);
    assert!(
        errors.is_empty(),
        "one download as far as pacman can tell: pacmeshd was to fetch {} itself (a peer is \
         linked) and hide mirror 0's death, but pacman saw it:\n{}\n{}",
        big.file_name(),
        errors.join("\n"),
        fleet.mirrors[1].transfer_report()
    );
}

/// `pkg`'s bytes with 4 KiB in the middle flipped: same size, wrong SHA-256.
fn corrupt_copy(pkg: &FixturePackage, dir: &Path) -> (std::path::PathBuf, String) {
    let mut bytes = std::fs::read(pkg.path()).expect("reading the package");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4096] {
        *b ^= 0x5a;
    }
    let path = dir.join(pkg.file_name());
    std::fs::write(&path, bytes).expect("writing the corrupt copy");
    let sha = fleet::sha256_file(&path);
    assert_ne!(sha, pkg.sha256());
    (path, sha)
}

#[test]
fn upstream_corrupt_copy_is_never_stored_or_served_by_joiners() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let big = repo.package(BIG);
    let scratch = tempfile::tempdir().expect("temp dir");
    let (corrupt, corrupt_sha) = corrupt_copy(big, scratch.path());
    // Hosts: mirror 0 (corrupt copy), mirror 1 (good copy), nodes 0..3.
    let lan = Lan::new(5);
    let mirrors = [
        ServeOptions::default().replace(&repo.url_path(big.file_name()), &corrupt),
        ServeOptions::default(),
    ];
    let fleet = Fleet::start(&lan, &repo, &mirrors, 3);
    fleet.cap_wan(WAN_RATE);
    fleet.sync_all();
    let runs = fleet.install_at_once(&[0, 1, 2], &[big], INSTALL_TIMEOUT);
    report_times("corrupt copy", &runs);
    fleet.wait_mirrors_idle();
    // Whatever happened, nothing with the corrupt bytes is kept anywhere.
    for node in &fleet.nodes {
        let dirs = [node.pacman.cache_dir(), node.daemon.store_dir()];
        let found = files_with_sha256(&dirs, big.size(), &corrupt_sha);
        assert!(
            found.is_empty(),
            "{} keeps the corrupt copy: {found:?}\n{}",
            node.name(),
            fleet.mirrors[0].transfer_report()
        );
        let incoming = node.daemon.store_dir().join("incoming");
        assert_eq!(
            files_under(&incoming),
            Vec::<std::path::PathBuf>::new(),
            "leftovers in {}'s incoming dir",
            node.name()
        );
    }
    // One host fetched from mirror 0 (the first in its log); the others were to join it.
    let m0 = fleet.mirrors[0].gets_for(big.file_name());
    let clients: Vec<IpAddr> = m0.iter().filter_map(|r| r.remote_addr).collect();
    let fetcher_ip = *clients.first().unwrap_or_else(|| {
        panic!(
            "nobody fetched {} from mirror 0\n{}",
            big.file_name(),
            fleet.mirrors[0].transfer_report()
        )
    });
    let fetcher = fleet
        .node_at(fetcher_ip)
        .unwrap_or_else(|| panic!("{fetcher_ip} is no node\n{}", fleet.describe_hosts()));
    let others: Vec<&IpAddr> = clients.iter().filter(|&&ip| ip != fetcher_ip).collect();
    assert!(
        others.is_empty(),
        "one WAN transfer per package: node {fetcher} ({fetcher_ip}) fetched {} from mirror 0 \
         and the others were to join it, but {others:?} fetched it from mirror 0 too\n{}{}",
        big.file_name(),
        fleet.mirrors[0].transfer_report(),
        fleet.describe_hosts()
    );
    // The fetcher's own pacman got mirror 0's corrupt stream, as it would without pacmesh:
    // nothing is asserted for it. Every joiner ends with the right package.
    for (i, (node, run)) in fleet.nodes.iter().zip(&runs).enumerate() {
        if i != fetcher {
            node.check_installed(&[big], &run.output);
        }
    }
}

/// Each response from the mirror at 480 KiB/s: the 40 MiB package takes ~85 s, past
/// pacman's budget of 10 redirects at one `307` every ~6–8 s. Per response (nginx
/// `limit_rate`), not a tc cap, so two hosts downloading at once (as both do until the
/// engine lands) each still take ~85 s and the test stays under 2 minutes.
const SLOW_MIRROR_RATE: &str = "480k";

/// Where the joining host's copy came from, by its daemon's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Joined the fetcher's transfer over the mesh (`requests.peer`).
    Peer,
    /// Sent to the mirror (`requests.mirror_redirect`).
    Mirror,
}

/// Without a mesh key, a join that cannot end within pacman's redirects sends pacman to the
/// mirror as soon as that is clear (nothing unverified reaches pacman).
#[test]
fn peer_fetch_longer_than_the_redirect_budget() {
    redirect_budget(None, Source::Mirror);
}

/// With a mesh key, the same join streams the member's bytes to pacman as they arrive: the
/// package crosses the WAN once.
#[test]
fn peer_fetch_longer_than_the_redirect_budget_between_keyed_members() {
    let keys = tempfile::tempdir().expect("temp dir");
    let key = keys.path().join("mesh.key");
    std::fs::write(&key, "a fleet's own mesh key, 32 bytes or more\n").expect("writing the key");
    redirect_budget(Some(&key), Source::Peer);
}

fn redirect_budget(mesh_key: Option<&Path>, expected: Source) {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let big = repo.package(BIG);
    // Hosts: the mirror, node 0 = A (fetches first), node 1 = B (joins).
    let lan = Lan::new(3);
    let mirrors = [ServeOptions::default().limit_rate(SLOW_MIRROR_RATE)];
    let extra: Vec<std::ffi::OsString> = match mesh_key {
        Some(key) => vec!["--mesh-key".into(), key.into()],
        None => Vec::new(),
    };
    let fleet = Fleet::start_with(&lan, &repo, &mirrors, 2, &extra);
    fleet.sync_all();
    // `-Sy`'s database redirect counts as `mirror_redirect` too: count from here.
    let before = fleet.nodes[1].daemon.status();
    let started = Instant::now();
    let mut runs = vec![fleet.nodes[0].spawn_install(&[big])];
    // B asks once A's fetch is under way (and announced, once the engine does that).
    await_event(&mut runs, EVENT_TIMEOUT, "A's transfer past 1 MiB", || {
        fleet.mirrors[0].connection_past(1 << 20)
    });
    runs.push(fleet.nodes[1].spawn_install(&[big]));
    eprintln!(
        "redirect budget: B started {} ms after A",
        started.elapsed().as_millis()
    );
    let done = wait_all(runs, Duration::from_secs(150));
    report_times("redirect budget", &done);
    let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);
    let text = fleet::output_text(&done[1].output);
    assert!(
        !text.contains("redirects followed"),
        "B's pacman ran out of redirects waiting for the peer fetch:\n{text}"
    );
    b.check_installed(&[big], &done[1].output);
    a.check_files(&[big], &done[0].output);
    fleet.wait_mirrors_idle();
    let status = b.daemon.status();
    let count = |key: &str| {
        let at = |s: &serde_json::Value| s["requests"][key].as_u64().unwrap_or(0);
        at(&status) - at(&before)
    };
    let (peer, redirect) = (count("peer"), count("mirror_redirect"));
    let from_b = fleet.mirrors[0]
        .gets_for(big.file_name())
        .into_iter()
        .filter(|r| r.remote_addr == Some(IpAddr::V4(b.ip())))
        .count();
    let source = match (peer, redirect) {
        (1.., 0) => Source::Peer,
        (0, 1..) => Source::Mirror,
        _ => panic!(
            "B's counters name no single source (during the install: requests.peer {peer}, \
             requests.mirror_redirect {redirect}): {status}"
        ),
    };
    eprintln!(
        "redirect budget: B's copy came from {source:?} (requests after the install {}, \
         before it {}), B's GETs at the mirror: {from_b}",
        status["requests"], before["requests"]
    );
    match source {
        Source::Peer => {
            // Joined A's fetch: the mirror sent the package once, to A.
            let wan = WanUse::of(&fleet.mirrors, std::slice::from_ref(big));
            assert_eq!(
                from_b, 0,
                "B came from the peer but asked the mirror too\n{wan}"
            );
            assert!(
                wan.ratio() <= 1.05,
                "B came from the peer but the mirror sent {:.2}×\n{wan}",
                wan.ratio()
            );
        }
        Source::Mirror => {
            // Sent to the mirror: B's own download there.
            assert!(
                from_b >= 1,
                "B's daemon redirected it to the mirror, which has no GET from B\n{}",
                fleet.mirrors[0].transfer_report()
            );
        }
    }
    assert_eq!(
        source,
        expected,
        "B's copy of {} came from {source:?}: {status}",
        big.file_name()
    );
}
