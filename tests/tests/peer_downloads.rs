//! Packages from peers, with the real pacman on real hosts: host 0 of a [`Lan`] is the mirror
//! (nginx), every other host runs `pacmeshd` and a pacman whose repo lists its own daemon
//! (`127.0.0.1:15680`) first and the mirror second; the daemon reads that pacman.conf, so it
//! shares pacman's CacheDir and verifies peers' bytes against the sync database `-Sy` wrote.
//! Proves: a package only a peer holds comes from the peer and never from the mirror; a peer
//! with a corrupt copy is penalised and pacman still gets the right file (from the mirror) with
//! nothing corrupt kept; a holder killed or stalled mid-transfer costs pacman nothing; two
//! hosts pulling the same file from one peer at once both get it right; a sole holder killed
//! mid-transfer is finished by the mirror from the byte reached; a peer download longer
//! than pacman's 10 s patience still comes from the peer, and one too slow to be worth it is
//! given up for the mirror; a daemon killed mid-download serves and announces no partial file
//! after its restart.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use pacmesh_tests::assert_eventually;
use pacmesh_tests::files::{files_under, sha256_file, sha256_hex};
use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::fleet::{Node, PacmanRun};
use pacmesh_tests::lan::{Lan, NsDaemon, DAEMON_SERVER_URL, PORT};
use pacmesh_tests::pacman::PacmanRoot;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::upstream::{ServeOptions, Upstream};

const REPO: &str = "pmpeer";
/// Links, digests, a sync-database reload: each well under this.
const SOON: Duration = Duration::from_secs(8);
/// A holder's egress while a test interrupts it: 40 MB take ~3.4 s.
const SLOW: &str = "100mbit";
/// How long one request waits for a peer download before pacman is asked back (pacmeshd's
/// `WAIT_PER_REQUEST`).
const WAIT_PER_REQUEST: Duration = Duration::from_millis(8500);

fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("xray", "1.0-1", 512 * 1024),
            PkgSpec::new("yankee", "1.0-1", 1024 * 1024),
            PkgSpec::new("papa", "1.0-1", 8 * 1024 * 1024),
            PkgSpec::new("zulu", "1.0-1", 40 * 1024 * 1024),
        ],
    )
}

fn tools_present(extra: &[&str]) -> bool {
    prereq::require(WHOLE_SYSTEM_TOOLS) && prereq::require(Lan::TOOLS) && prereq::require(extra)
}

/// Host 0 serves the fixture with nginx; hosts 1..=n each get a [`Node`]. `seed(i, cache)`
/// fills node i's pacman cache dir before its daemon starts. Returns once every node lists
/// every other as a peer with the digest `seed` implies.
fn start<'a>(
    lan: &'a Lan,
    repo: &FixtureRepo,
    n: usize,
    seed: impl Fn(usize, &Path),
) -> (Upstream, Vec<Node<'a>>) {
    start_with(lan, repo, n, &ServeOptions::default(), seed)
}

/// [`start`] with a mirror that serves as `options` say.
fn start_with<'a>(
    lan: &'a Lan,
    repo: &FixtureRepo,
    n: usize,
    options: &ServeOptions,
    seed: impl Fn(usize, &Path),
) -> (Upstream, Vec<Node<'a>>) {
    let mirror = Upstream::start_in_with(lan.host(0), repo.root(), options);
    let nodes: Vec<Node<'a>> = (0..n)
        .map(|i| {
            let pacman =
                PacmanRoot::new(REPO, &[DAEMON_SERVER_URL.to_string(), mirror.server_url()]);
            seed(i, pacman.cache_dir());
            Node::start_on(lan.host(i + 1), pacman, &[])
        })
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.daemon.node_id()).collect();
    let held: Vec<u64> = nodes
        .iter()
        .map(|n| package_files(n.pacman.cache_dir()))
        .collect();
    assert_eventually!(
        nodes.iter().enumerate().all(|(i, viewer)| {
            let status = viewer.daemon.status();
            (0..n).filter(|&j| j != i).all(|j| {
                status["peers"].as_array().is_some_and(|peers| {
                    peers.iter().any(|p| {
                        p["node_id"].as_str() == Some(ids[j].as_str())
                            && p["packages"].as_u64() == Some(held[j])
                    })
                })
            })
        }),
        SOON,
        "the nodes did not all link and exchange digests (holding {held:?})"
    );
    (mirror, nodes)
}

fn package_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains(".pkg.tar"))
                .count() as u64
        })
        .unwrap_or(0)
}

fn counter(daemon: &NsDaemon, pointer: &str) -> u64 {
    daemon
        .status()
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status has no {pointer}: {}", daemon.status()))
}

#[test]
fn a_package_only_a_peer_holds_comes_from_it_and_not_the_mirror() {
    if !tools_present(&[]) {
        return;
    }
    let repo = fixture();
    let x = repo.package("xray");
    let lan = Lan::new(3);
    // Node 0 = A holds xray; node 1 = B wants it.
    let (mirror, nodes) = start(&lan, &repo, 2, |i, cache| {
        if i == 0 {
            x.copy_into(cache);
        }
    });
    let (a, b) = (&nodes[0], &nodes[1]);
    b.sync();
    b.install(x);
    mirror.barrier();
    assert_eq!(
        mirror.requests_for(x.file_name()),
        vec![],
        "the mirror was asked for {}",
        x.file_name()
    );
    assert!(b.counter("/requests/peer") >= 1, "{}", b.daemon.status());
    assert!(
        b.counter("/bytes/peer") >= x.size(),
        "{}",
        b.daemon.status()
    );
    assert!(
        a.counter("/bytes/to_peers") >= x.size(),
        "{}",
        a.daemon.status()
    );
}

#[test]
fn a_peer_with_a_corrupt_copy_is_penalised_and_pacman_gets_the_mirror_s() {
    if !tools_present(&[]) {
        return;
    }
    let repo = fixture();
    let y = repo.package("yankee");
    let lan = Lan::new(3);
    // Node 0 = B wants yankee; node 1 = C holds a copy of the right name and size, wrong bytes.
    let (mirror, nodes) = start(&lan, &repo, 2, |i, cache| {
        if i == 1 {
            let mut bytes = std::fs::read(y.path()).expect("reading the package");
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 4096] {
                *b ^= 0x5a;
            }
            std::fs::write(cache.join(y.file_name()), bytes).expect("writing the corrupt copy");
        }
    });
    let (b, c) = (&nodes[0], &nodes[1]);
    let c_id = c.daemon.node_id();
    b.sync();
    b.install(y);
    assert_eventually!(
        mirror
            .gets_for(y.file_name())
            .iter()
            .any(|r| r.status == 200 && r.bytes == y.size()),
        SOON,
        "the mirror never served {} whole: {:?}",
        y.file_name(),
        mirror.requests()
    );
    assert_eq!(b.counter("/requests/peer"), 0, "{}", b.daemon.status());
    // Nothing corrupt kept: pacman's cache holds the package only (checked by install), and
    // no leftovers; the daemon's incoming dir is empty and its store holds no copy.
    let cache: Vec<PathBuf> = files_under(b.pacman.cache_dir());
    assert_eq!(
        cache,
        vec![b.pacman.cache_dir().join(y.file_name())],
        "stray files in B's pacman cache"
    );
    let incoming = b.daemon.store_dir().join("incoming");
    assert!(incoming.is_dir(), "{} missing", incoming.display());
    assert_eq!(files_under(&incoming), Vec::<PathBuf>::new());
    // B fetched the good copy from the mirror itself and keeps it for its peers: any copy
    // in its store is the mirror's, never C's.
    for kept in files_under(b.daemon.store_dir()) {
        if kept.to_string_lossy().contains(y.name()) {
            assert_eq!(
                sha256_file(&kept),
                y.sha256(),
                "a bad copy kept at {}",
                kept.display()
            );
        }
    }
    let seen = b
        .daemon
        .peer(&c_id)
        .unwrap_or_else(|| panic!("B lost its link to C: {}", b.daemon.status()));
    assert!(
        seen["penalty_reason"].is_string() && seen["penalised_until_s"].is_number(),
        "C is not penalised in B's status: {seen}"
    );
    let metrics = b.daemon.get("/_pacmesh/metrics").text();
    let gauge = format!("pacmesh_peer_penalised{{peer=\"{c_id}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == gauge),
        "no {gauge} in B's metrics:\n{metrics}"
    );
}

/// How a holder is interrupted mid-transfer.
#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// SIGKILL.
    Crash,
    /// SIGSTOP: linked, silent.
    Stall,
}

/// Nodes A and C hold the 40 MB zulu, both throttled; B installs it. Whichever holder B pulls
/// from is interrupted once it has sent a few MB; the other is unthrottled. pacman must finish
/// cleanly with the right bytes — continued from the other holder or, failing that, the mirror.
fn interrupted_holder(how: Interrupt) {
    if !tools_present(&["tc"]) {
        return;
    }
    let repo = fixture();
    let z = repo.package("zulu");
    let lan = Lan::new(4);
    // Nodes 0 and 2 (A, C) hold zulu; node 1 (B) wants it.
    let (mirror, mut nodes) = start(&lan, &repo, 3, |i, cache| {
        if i != 1 {
            z.copy_into(cache);
        }
    });
    for i in [0, 2] {
        nodes[i].host().limit_egress(SLOW);
    }
    nodes[1].sync();
    let started = Instant::now();
    let mut pacman = spawn_install(&nodes[1], z);
    let (source, sent) = first_uploader(&nodes, &[0, 2], &mut pacman, z);
    let other = 2 - source;
    let source_id = nodes[source].daemon.node_id();
    match how {
        Interrupt::Crash => {
            nodes[source].daemon.kill();
        }
        Interrupt::Stall => nodes[source].daemon.pause(),
    }
    nodes[other].host().unlimit_egress();
    eprintln!(
        "{how:?}: {} (node {source}) interrupted after {sent} bytes, {} ms in",
        nodes[source].name(),
        started.elapsed().as_millis()
    );
    let out = pacman.wait_with_output().expect("waiting for pacman");
    let took = started.elapsed();
    if matches!(how, Interrupt::Stall) {
        nodes[source].daemon.resume();
    }
    let b = &nodes[1];
    b.check_installed(&[z], &out);
    let from_other = counter(&nodes[other].daemon, "/bytes/to_peers");
    mirror.barrier();
    let mirror_gets = mirror.gets_for(z.file_name());
    eprintln!(
        "{how:?}: pacman done in {} ms; B requests.peer={} bytes.peer={}; the other holder sent \
         {from_other}; mirror GETs {mirror_gets:?}\nB's log on {source_id}:\n{}",
        took.as_millis(),
        b.counter("/requests/peer"),
        b.counter("/bytes/peer"),
        b.daemon
            .log()
            .lines()
            .filter(|l| l.contains(z.name()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        from_other > 0 || !mirror_gets.is_empty(),
        "the rest of {} came from neither the other holder nor the mirror",
        z.file_name()
    );
    // A continuation from the byte reached, not a fresh start.
    assert!(
        from_other < z.size(),
        "the other holder sent {from_other} bytes: the whole file again"
    );
}

/// `pacman -S pkg` on `node`, running on with its output piped.
fn spawn_install(node: &Node, pkg: &FixturePackage) -> std::process::Child {
    node.host()
        .pacman_command(&node.pacman, &["-S", pkg.name()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning pacman")
}

/// Kills `child` and collects what it printed.
fn stop(child: &mut std::process::Child) -> Output {
    use std::io::Read as _;
    let _ = child.kill();
    let status = child.wait().expect("waiting for pacman");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut stdout);
    }
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The first of `holders` whose upload counter passes 2 MB while `pacman` (on node 1) installs
/// `pkg`, and what it had sent then: still short of the whole file.
fn first_uploader(
    nodes: &[Node],
    holders: &[usize],
    pacman: &mut std::process::Child,
    pkg: &FixturePackage,
) -> (usize, u64) {
    let deadline = Instant::now() + SOON;
    let (source, sent) = loop {
        if let Some(found) = holders.iter().find_map(|&i| {
            let sent = nodes[i].counter("/bytes/to_peers");
            (sent >= 2 << 20).then_some((i, sent))
        }) {
            break found;
        }
        if Instant::now() >= deadline || pacman.try_wait().is_ok_and(|s| s.is_some()) {
            let out = stop(pacman);
            panic!(
                "no holder uploaded 2 MB of {} within {SOON:?}{}\nB's log:\n{}",
                pkg.file_name(),
                nodes[1].pacman.report(&out, "pacman -S"),
                nodes[1].daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        sent < pkg.size(),
        "the transfer finished before it could be interrupted"
    );
    (source, sent)
}

#[test]
fn a_holder_killed_mid_transfer_costs_pacman_nothing() {
    interrupted_holder(Interrupt::Crash);
}

#[test]
fn a_holder_stalling_mid_transfer_costs_pacman_nothing() {
    interrupted_holder(Interrupt::Stall);
}

/// The only holder A is SIGKILLed mid-transfer: B's daemon fetches the rest from the mirror with
/// a ranged GET from the byte reached, so pacman still gets one clean download and the mirror
/// sends only what A did not.
#[test]
fn a_sole_holder_killed_mid_transfer_is_finished_by_the_mirror() {
    with_a_throttled_holder(SLOW, sole_holder_killed);
}

fn sole_holder_killed(mirror: &Upstream, nodes: &mut [Node], z: &FixturePackage) {
    // `first_uploader` reads node 1 as the one installing: B is node 1.
    let mut pacman = spawn_install(&nodes[1], z);
    let (_, sent) = first_uploader(nodes, &[0], &mut pacman, z);
    nodes[0].daemon.kill();
    let out = pacman.wait_with_output().expect("waiting for pacman");
    let b = &nodes[1];
    b.check_installed(&[z], &out);
    mirror.barrier();
    let gets = mirror.gets_for(z.file_name());
    let status = b.daemon.status();
    eprintln!("A sent {sent} bytes before it died; mirror GETs {gets:?}; B: {status}");
    assert_eq!(gets.len(), 1, "one GET for zulu at the mirror: {gets:?}");
    let from = gets[0]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the mirror's GET was not ranged: {:?}", gets[0]));
    // Where B's download stood; A's counter may run ahead of it by what was in flight.
    assert!(
        from > 0 && from < z.size(),
        "continued from byte {from}, A had sent {sent}"
    );
    assert_eq!(gets[0].status, 206, "{:?}", gets[0]);
    assert_eq!(gets[0].bytes, z.size() - from, "{:?}", gets[0]);
    assert_eq!(status["requests"]["peer"], 1, "{status}");
    assert_eq!(status["bytes"]["mirror_fetch"], z.size() - from, "{status}");
    assert_eq!(status["bytes"]["peer"], from, "{status}");
}

#[test]
fn two_hosts_pull_the_same_package_from_one_peer_at_once() {
    if !tools_present(&[]) {
        return;
    }
    let repo = fixture();
    let p = repo.package("papa");
    let lan = Lan::new(4);
    // Node 0 = A holds papa; nodes 1 and 2 (B, C) install it at the same moment.
    let (mirror, nodes) = start(&lan, &repo, 3, |i, cache| {
        if i == 0 {
            p.copy_into(cache);
        }
    });
    nodes[1].sync();
    nodes[2].sync();
    std::thread::scope(|s| {
        let runs: Vec<_> = [&nodes[1], &nodes[2]]
            .map(|n| s.spawn(move || (n, n.host().pacman(&n.pacman, &["-S", p.name()]))))
            .into_iter()
            .collect();
        for run in runs {
            let (node, out) = run.join().expect("a pacman thread panicked");
            node.check_installed(&[p], &out);
        }
    });
    mirror.barrier();
    assert_eq!(mirror.requests_for(p.file_name()), vec![]);
    for n in &nodes[1..] {
        assert!(n.counter("/requests/peer") >= 1, "{}", n.daemon.status());
        assert!(
            n.counter("/bytes/peer") >= p.size(),
            "{}",
            n.daemon.status()
        );
    }
    assert!(
        nodes[0].counter("/bytes/to_peers") >= 2 * p.size(),
        "{}",
        nodes[0].daemon.status()
    );
}

/// What became of one install of the 40 MB zulu from a single holder A whose egress is capped
/// at `rate`: how long pacman took, the mirror's GETs for it, and B's status afterwards.
struct ThrottledInstall {
    took: Duration,
    mirror_gets: usize,
    status: serde_json::Value,
}

/// Node 0 = A holds the 40 MB zulu behind an egress cap of `rate`, node 1 = B has synced its
/// database: `body` runs with the mirror, the nodes and zulu. `None` without `tc`.
fn with_a_throttled_holder<R>(
    rate: &str,
    body: impl FnOnce(&Upstream, &mut [Node], &FixturePackage) -> R,
) -> Option<R> {
    if !tools_present(&["tc"]) {
        return None;
    }
    let repo = fixture();
    let z = repo.package("zulu");
    let lan = Lan::new(3);
    let (mirror, mut nodes) = start(&lan, &repo, 2, |i, cache| {
        if i == 0 {
            z.copy_into(cache);
        }
    });
    nodes[0].host().limit_egress(rate);
    nodes[1].sync();
    Some(body(&mirror, &mut nodes, z))
}

fn install_from_a_throttled_holder(rate: &str) -> Option<ThrottledInstall> {
    with_a_throttled_holder(rate, |mirror, nodes, z| {
        let b = &nodes[1];
        let started = Instant::now();
        b.install(z);
        let took = started.elapsed();
        mirror.barrier();
        let status = b.daemon.status();
        eprintln!(
            "{rate}: pacman took {} ms; B's requests: {}",
            took.as_millis(),
            status["requests"]
        );
        ThrottledInstall {
            took,
            mirror_gets: mirror.gets_for(z.file_name()).len(),
            status,
        }
    })
}

/// 40 MB at 32 Mbit/s take longer than pacman waits for a silent server (10 s) and longer than
/// one request waits for a verified peer download: pacman is sent back to ask again, and the
/// package still comes from the peer, not the mirror.
#[test]
fn a_peer_download_longer_than_pacman_s_patience_still_comes_from_the_peer() {
    let Some(run) = install_from_a_throttled_holder("32mbit") else {
        return;
    };
    assert!(
        run.took > WAIT_PER_REQUEST,
        "the transfer took {:?}: not slow enough to test anything",
        run.took
    );
    assert_eq!(run.mirror_gets, 0, "the mirror was asked for zulu");
    assert_eq!(run.status["requests"]["peer"], 1, "{}", run.status);
    assert!(
        run.status["requests"]["peer_wait"].as_u64() >= Some(1),
        "pacman was never asked back: {}",
        run.status
    );
}

/// A holder slower than the mirror is likely to be (8 Mbit/s, under pacmeshd's 2 MiB/s floor)
/// is given up after one wait: pacman gets the mirror's copy in seconds, not the 40 s the peer
/// would take.
#[test]
fn a_peer_too_slow_to_be_worth_it_is_given_up_for_the_mirror() {
    let Some(run) = install_from_a_throttled_holder("8mbit") else {
        return;
    };
    assert_eq!(
        run.mirror_gets, 1,
        "pacman did not get zulu from the mirror"
    );
    assert_eq!(run.status["requests"]["peer"], 0, "{}", run.status);
    assert_eq!(run.status["requests"]["peer_wait"], 0, "{}", run.status);
    assert!(
        run.took < WAIT_PER_REQUEST + Duration::from_secs(8),
        "pacman took {:?}",
        run.took
    );
}

/// The mirror's rate per response in the crash test: xray (512 KiB) takes about 8 s.
const SLOW_MIRROR: &str = "64k";
/// A's egress in the crash test: papa (8 MiB) takes about 8 s.
const SLOW_PEER: &str = "8mbit";
/// How long the crash test waits for both downloads to be under way (pacman -S on a loaded
/// machine included): a deadline for an event, not a pause.
const UNDER_WAY: Duration = Duration::from_secs(30);
/// How long a restarted daemon may take to link again: the peer keeps the dead link until
/// its QUIC idle timeout (10 s) and may refuse the new one as a duplicate until then; then a
/// redial after backoff.
const RELINK: Duration = Duration::from_secs(30);

/// SIGKILL while B fetches papa from peer A and xray from the mirror, both being written into
/// B's store (`STORE/incoming`, renamed into `STORE/fetched` once verified), then B restarts
/// on the same store: the partial files are removed, neither B's status nor the digest A holds
/// for B lists them, and a GET of either is the whole package or a redirect, never the bytes
/// the crash left.
#[test]
fn a_daemon_killed_mid_download_serves_and_announces_no_partial_file_after_restart() {
    if !tools_present(&["tc"]) {
        return;
    }
    let repo = fixture();
    let (p, x) = (repo.package("papa"), repo.package("xray"));
    let lan = Lan::new(3);
    let slow = ServeOptions::default().limit_rate(SLOW_MIRROR);
    // Node 0 = A holds papa; node 1 = B wants papa and xray.
    let (_mirror, mut nodes) = start_with(&lan, &repo, 2, &slow, |i, cache| {
        if i == 0 {
            p.copy_into(cache);
        }
    });
    nodes[0].host().limit_egress(SLOW_PEER);
    nodes[1].pacman.add_option("ParallelDownloads = 2");
    nodes[1].sync();
    let mut pacman = nodes[1].spawn_install(&[p, x]);
    let incoming = nodes[1].daemon.store_dir().join("incoming");
    let partial = wait_under_way(&incoming, &[p, x], &mut pacman, &nodes[1]);
    nodes[1].daemon.kill();
    // pacman would go on to the mirror; it dies too, leaving its own partial files and its
    // lock behind.
    pacman.kill();
    let _ = std::fs::remove_file(nodes[1].pacman.db_path().join("db.lck"));
    for (pkg, path) in [p, x].iter().zip(&partial) {
        let left = std::fs::metadata(path).map_or(0, |m| m.len());
        eprintln!(
            "killed with {left} of {} bytes of {} in",
            pkg.size(),
            pkg.name()
        );
        assert!(
            left > 0 && left < pkg.size(),
            "{} was not mid-way when B died: {left} of {} bytes",
            path.display(),
            pkg.size()
        );
    }
    nodes[0].host().unlimit_egress();
    nodes[1].daemon.restart();
    let (a, b) = (&nodes[0], &nodes[1]);
    assert_eq!(
        files_under(&incoming),
        Vec::<PathBuf>::new(),
        "the crash's leftovers stayed"
    );
    let fetched = b.daemon.store_dir().join("fetched");
    assert_eq!(
        files_under(&fetched),
        Vec::<PathBuf>::new(),
        "a partial file was kept"
    );
    assert_eq!(
        b.daemon.status()["cache"]["files"],
        0,
        "{}",
        b.daemon.status()
    );
    assert_digest_seen(a, b, 0);
    for pkg in [p, x] {
        let got = b.daemon.get(&repo.url_path(pkg.file_name()));
        eprintln!("after the restart GET {}: {}", pkg.name(), got.status);
        match got.status {
            200 => assert_eq!(
                (got.body.len() as u64, sha256_hex(&got.body)),
                (pkg.size(), pkg.sha256().to_owned()),
                "B served {} but not the package's bytes",
                pkg.file_name()
            ),
            307 => {}
            other => panic!("GET {} after the restart: {other}", pkg.file_name()),
        }
    }
    // The same checks can see a file once B really holds it.
    b.install(p);
    b.install(x);
    assert_digest_seen(a, b, 2);
}

/// Waits until `incoming` holds a non-empty download of each of `pkgs` (in order), and
/// returns their paths; panics if pacman ends first or `UNDER_WAY` passes.
fn wait_under_way(
    incoming: &Path,
    pkgs: &[&FixturePackage],
    pacman: &mut PacmanRun,
    b: &Node,
) -> Vec<PathBuf> {
    let deadline = Instant::now() + UNDER_WAY;
    loop {
        let files = files_under(incoming);
        let found: Vec<PathBuf> = pkgs
            .iter()
            .filter_map(|pkg| {
                let prefix = format!(".{}.", pkg.file_name());
                files.iter().find(|f| {
                    f.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                        && f.metadata().is_ok_and(|m| m.len() > 0)
                })
            })
            .cloned()
            .collect();
        if found.len() == pkgs.len() {
            return found;
        }
        let exited = pacman.exited();
        assert!(
            Instant::now() < deadline && !exited,
            "both downloads were not under way in {} within {UNDER_WAY:?} (saw {files:?}; {} \
             exited: {exited})\nB's log:\n{}",
            incoming.display(),
            pacman.what(),
            b.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until B lists A as linked again and A holds B's digest listing `packages` files.
fn assert_digest_seen(a: &Node, b: &Node, packages: u64) {
    let (a_id, b_id) = (a.daemon.node_id(), b.daemon.node_id());
    assert_eventually!(
        b.daemon.peer(&a_id).is_some()
            && a.daemon
                .peer(&b_id)
                .is_some_and(|seen| seen["packages"].as_u64() == Some(packages)),
        RELINK,
        "A does not see B's digest with {packages} packages: {}",
        a.daemon.status()
    );
}

/// Slow readers pin no copies (issue 12, item 9): five clients, 11 s apart (past the 10 s a
/// finished download stays in the engine's table), ask B for a 40 MiB package only A holds
/// and then read at 1 KiB/s. At every moment B holds at most one copy of it: the files under
/// its store (kept or arriving) and those its process holds open, deleted or not, are one
/// inode.
#[test]
fn slow_readers_of_a_peer_held_package_pin_one_copy() {
    if !tools_present(&["curl"]) {
        return;
    }
    let repo = fixture();
    let z = repo.package("zulu");
    let lan = Lan::new(3);
    let (_mirror, nodes) = start(&lan, &repo, 2, |i, cache| {
        if i == 0 {
            z.copy_into(cache);
        }
    });
    let b = &nodes[1];
    b.sync();
    let url = format!("http://127.0.0.1:{PORT}{}", repo.url_path(z.file_name()));
    let mut readers = Vec::new();
    for i in 0..5 {
        if i > 0 {
            // The spacing the issue names, not a wait for an outcome: the copies are
            // counted once the new reader's first bytes arrived.
            std::thread::sleep(Duration::from_secs(11));
        }
        let reader = SlowReader::start(b, &url);
        assert_eventually!(
            reader.received() > 0,
            SOON,
            "reader {i} got no byte of {}",
            z.file_name()
        );
        readers.push(reader);
        let copies = copies_held(b, z.size());
        assert!(
            copies <= 1,
            "after reader {i}: {copies} copies of {}",
            z.file_name()
        );
    }
    assert_eq!(copies_held(b, z.size()), 1, "the one copy is kept");
}

/// `curl` inside a node's host reading `url` at 1 KiB/s (following pacmesh's come-back
/// redirects as pacman does), into a file whose size says how much came; killed on drop.
struct SlowReader {
    child: std::process::Child,
    out: tempfile::NamedTempFile,
}

impl SlowReader {
    fn start(node: &Node, url: &str) -> SlowReader {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let child = node
            .host()
            .exec("curl")
            .args(["-sL", "--limit-rate", "1k", "-o"])
            .arg(out.path())
            .arg(url)
            .spawn()
            .expect("starting curl");
        SlowReader { child, out }
    }

    fn received(&self) -> u64 {
        std::fs::metadata(self.out.path()).map_or(0, |m| m.len())
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct files of `size` bytes (or growing towards it) that `node`'s daemon has under its
/// store or open: one inode each, deleted or not.
fn copies_held(node: &Node, size: u64) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let store = node.daemon.store_dir();
    let mut inodes = std::collections::BTreeSet::new();
    for path in files_under(store) {
        if let Ok(m) = std::fs::metadata(&path) {
            if m.is_file() && m.len() <= size && path.to_string_lossy().contains("zulu") {
                inodes.insert((m.dev(), m.ino()));
            }
        }
    }
    let pid = node.daemon.pid().expect("B's daemon runs");
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        if !target.starts_with(store) || !target.to_string_lossy().contains("zulu") {
            continue;
        }
        // The open file itself, even when its name is gone.
        if let Ok(m) = std::fs::metadata(fd.path()) {
            if m.is_file() && m.len() <= size {
                inodes.insert((m.dev(), m.ino()));
            }
        }
    }
    inodes.len()
}
