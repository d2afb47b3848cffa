//! Caching-mirror mode with the real pacman on machines that do not run pacmesh: an upstream
//! (nginx) in a host of its own, `pacmeshd --mode mirror` in another, and clients whose only
//! `Server` is the mirror host (see `pacmesh_tests::caching`). Proves: two netinstalls at the
//! same moment make the upstream send each package once; with the upstream's link cut, `-Sy`
//! still works from the kept database (its response carrying the stale warning) and cached
//! packages still install; a database that is not a database is neither kept nor served (the
//! next upstream's is, or the client gets a clear error); a package with the wrong hash is not
//! kept; an upstream that ignores Range still gives a resuming client the right bytes, and
//! takes over from an upstream dying mid-file without the client seeing anything; admin
//! actions are refused without the token and run with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pacmesh_tests::caching::{Client, MirrorHost};
use pacmesh_tests::fixtures::{FixturePackage, FixtureRepo, PkgSpec};
use pacmesh_tests::fleet::{
    assert_clean_output, await_event, files_under, output_text, sha256_file, wait_all, PacmanRun,
};
use pacmesh_tests::lan::Lan;
use pacmesh_tests::prereq::{self, WHOLE_SYSTEM_TOOLS};
use pacmesh_tests::process::{run, run_ok};
use pacmesh_tests::prometheus::{parse_with_prometheus, PYTHON};
use pacmesh_tests::upstream::{ServeOptions, Upstream};

const REPO: &str = "pmcmirror";
const BIG: &str = "cmbig";
/// Any pacman run here, on a LAN without a rate cap.
const PACMAN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an upstream may take to log its last request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test waits for a transfer to reach the byte count it acts at.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Databases revalidated at most once an hour: within a test, never twice.
const REVALIDATE_RARELY: u64 = 3600;

/// Four small packages and an 8 MiB one, shared by every test here.
fn fixture() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-a", "1.0-1", 256 << 10),
            PkgSpec::new("cm-b", "1.0-1", 512 << 10),
            PkgSpec::new("cm-c", "2.0-1", 1 << 20),
            PkgSpec::new("cm-d", "1.0-1", 2 << 20),
            PkgSpec::new(BIG, "1.0-1", 8 << 20),
        ],
    )
}

fn tools_present() -> bool {
    prereq::require(WHOLE_SYSTEM_TOOLS)
        && prereq::require(Lan::TOOLS)
        && prereq::require(&["sha256sum", "tidy", PYTHON])
}

/// The value of the sample `name{labels}` (labels sorted, `k=v` joined by commas).
fn sample(samples: &[String], key: &str) -> f64 {
    samples
        .iter()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{}", samples.join("\n")))
}

/// The human page is valid HTML (tidy finds no error) and has the mirror's table.
fn check_page(mirror: &MirrorHost<'_>) {
    let html = mirror.daemon.get("/_pacmesh/").text();
    assert!(html.contains("<table id=\"mirror\">"), "{html}");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("page.html");
    std::fs::write(&path, &html).expect("writing the page");
    let tidy = run(Command::new("tidy").args(["-errors", "-quiet"]).arg(&path));
    // tidy: 0 = clean, 1 = warnings only, 2 = errors.
    assert!(
        tidy.status.code().is_some_and(|c| c < 2),
        "tidy found errors:\n{}\n---\n{html}",
        String::from_utf8_lossy(&tidy.stderr)
    );
}

fn db_name() -> String {
    format!("{REPO}.db")
}

/// `pkg`'s bytes with 4 KiB in the middle flipped: same size, wrong SHA-256.
fn corrupt_copy(pkg: &FixturePackage, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(pkg.path()).expect("reading the package");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4096] {
        *b ^= 0x5a;
    }
    let path = dir.join(pkg.file_name());
    std::fs::write(&path, bytes).expect("writing the corrupt copy");
    path
}

/// Waits for every run and checks each exited 0 without an error line.
fn all_succeed(runs: Vec<PacmanRun>) {
    for run in wait_all(runs, PACMAN_TIMEOUT) {
        assert!(
            run.output.status.success(),
            "{} failed:\n{}",
            run.what,
            output_text(&run.output)
        );
        assert_clean_output(&run.output, &run.what);
    }
}

#[test]
fn two_netinstalls_at_once_fetch_each_package_once() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let pkgs: Vec<&FixturePackage> = repo.packages().iter().collect();
    let lan = Lan::new(4);
    let upstream = Upstream::start_in(lan.host(0), repo.root());
    let mirror = MirrorHost::start(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
    );
    let clients = [
        Client::new(lan.host(2), REPO, &mirror),
        Client::new(lan.host(3), REPO, &mirror),
    ];
    all_succeed(clients.iter().map(|c| c.spawn_pacman(&["-Sy"])).collect());
    let mut install = vec!["-S"];
    install.extend(pkgs.iter().map(|p| p.name()));
    let runs: Vec<PacmanRun> = clients.iter().map(|c| c.spawn_pacman(&install)).collect();
    for (client, run) in clients.iter().zip(wait_all(runs, PACMAN_TIMEOUT)) {
        client.check_installed(&pkgs, &run.output);
    }
    upstream.wait_idle(IDLE_TIMEOUT);
    for pkg in &pkgs {
        let gets = upstream.gets_for(pkg.file_name());
        let bytes: u64 = gets.iter().map(|r| r.bytes).sum();
        assert!(
            gets.len() == 1 && bytes == pkg.size(),
            "the upstream sent {} ({} B) in {} GETs ({bytes} B), not once:\n{}",
            pkg.file_name(),
            pkg.size(),
            gets.len(),
            upstream.transfer_report()
        );
    }
    assert_eq!(
        upstream.gets_for(&db_name()).len(),
        1,
        "two clients' -Sy at once: one database fetch\n{}",
        upstream.transfer_report()
    );
    let mut want: Vec<String> = pkgs.iter().map(|p| p.file_name().to_string()).collect();
    want.sort();
    // Kept once flushed, which may end just after the client had the last byte.
    pacmesh_tests::assert_eventually!(
        mirror.kept_packages() == want,
        EVENT_TIMEOUT,
        "every package kept, verified: {:?}",
        mirror.kept_packages()
    );
    let status = mirror.daemon.status();
    let served = status["requests"]["mirror_fetch"].as_u64().unwrap_or(0)
        + status["requests"]["local"].as_u64().unwrap_or(0);
    assert_eq!(
        served,
        2 * pkgs.len() as u64,
        "each client's package requests answered from the fetch or the store: {status}"
    );
    let unique: u64 = pkgs.iter().map(|p| p.size()).sum();
    let m = &status["mirror"];
    assert_eq!(m["packages"]["bytes_upstream"], unique, "{status}");
    assert_eq!(m["packages"]["kept"], pkgs.len(), "{status}");
    assert_eq!(m["packages"]["kept_bytes"], unique, "{status}");
    assert_eq!(m["databases"]["fetched"], 1, "{status}");
    assert_eq!(m["repos"][0]["files"], pkgs.len(), "{status}");
    let metrics = parse_with_prometheus(&mirror.daemon.get("/_pacmesh/metrics").text());
    let upstream_bytes = "pacmesh_mirror_upstream_bytes_total{kind=package}";
    assert_eq!(sample(&metrics, upstream_bytes), unique as f64);
    let kept = "pacmesh_mirror_store_bytes{kind=package}";
    assert_eq!(sample(&metrics, kept), unique as f64);
    check_page(&mirror);
}

#[test]
fn wan_down_serves_the_kept_database_stale_and_cached_packages() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let (a, b) = (repo.package("cm-a"), repo.package("cm-b"));
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), repo.root());
    // Revalidated at every request, so every -Sy below asks the upstream.
    let mirror = MirrorHost::start(lan.host(1), REPO, &[upstream.server_url()], 0);
    let client = Client::new(lan.host(2), REPO, &mirror);
    client.sync();
    let out = client.install(&[a, b]);
    client.check_installed(&[a, b], &out);

    // The WAN goes down: the upstream host's link is cut.
    run_ok(lan.host(0).exec("ip").args(["link", "set", "eth0", "down"]));
    client.forget(a);
    let out = client.pacman(&["-Syy"]);
    assert!(
        out.status.success(),
        "pacman -Syy with the upstream gone:\n{}",
        client.pacman.report(&out, "pacman -Syy")
    );
    assert_clean_output(&out, "pacman -Syy with the upstream gone");
    let out = client.install(&[a]);
    client.check_installed(&[a], &out);

    // What the database responses carried, seen with a plain GET.
    let url = mirror.file_url(REPO, repo.arch(), &db_name());
    let response = client
        .host()
        .http_get(&url)
        .unwrap_or_else(|e| panic!("GET {url}: {e:#}\n{}", mirror.daemon.log()));
    let warning = response.header("Warning").unwrap_or_default().to_string();
    assert!(
        response.status == 200 && warning.starts_with("110 ") && warning.contains("stale"),
        "GET {url} with the upstream gone: {} with Warning {warning:?}\n{}",
        response.status,
        mirror.daemon.log()
    );
    assert_eq!(
        response.body,
        std::fs::read(repo.db_path()).expect("reading the fixture db"),
        "the kept database is the upstream's"
    );
    // Log lines are written in batches (up to 20 ms late): wait for it.
    pacmesh_tests::assert_eventually!(
        mirror.daemon.log().contains("serving a stale database"),
        Duration::from_secs(5),
        "no log line for the stale database:\n{}",
        mirror.daemon.log()
    );
    let status = mirror.daemon.status();
    assert!(
        status["mirror"]["databases"]["stale_served"]
            .as_u64()
            .is_some_and(|n| n >= 2),
        "stale databases counted (pacman's and the GET): {status}"
    );
}

#[test]
fn a_database_that_is_not_a_database_is_neither_kept_nor_served() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let scratch = tempfile::tempdir().expect("temp dir");
    let garbage = scratch.path().join("garbage.db");
    std::fs::write(
        &garbage,
        "<html><body>Captive portal: log in first</body></html>\n",
    )
    .expect("writing the garbage");
    // Hosts: a bad upstream, a good one, a mirror trying the bad one first, a mirror with
    // only the bad one, and the clients.
    let lan = Lan::new(5);
    let bad = Upstream::start_in_with(
        lan.host(0),
        repo.root(),
        &ServeOptions::default().replace(&repo.url_path(&db_name()), &garbage),
    );
    let good = Upstream::start_in(lan.host(1), repo.root());
    let both = MirrorHost::start(
        lan.host(2),
        REPO,
        &[bad.server_url(), good.server_url()],
        REVALIDATE_RARELY,
    );
    let bad_only = MirrorHost::start(lan.host(3), REPO, &[bad.server_url()], REVALIDATE_RARELY);

    // The next upstream's database is the one kept and served.
    let client = Client::new(lan.host(4), REPO, &both);
    client.sync();
    let a = repo.package("cm-a");
    let out = client.install(&[a]);
    client.check_installed(&[a], &out);
    let kept = both.kept_databases();
    assert_eq!(kept.len(), 1, "one database kept: {kept:?}");
    assert_eq!(sha256_file(&kept[0]), sha256_file(&repo.db_path()));

    // With only the bad upstream: a clear error, nothing kept.
    let url = bad_only.file_url(REPO, repo.arch(), &db_name());
    let response = client.host().http_get(&url).expect("an answer");
    assert!(
        response.status == 502 && response.text().contains("not a usable database"),
        "GET {url}: {} {}",
        response.status,
        response.text()
    );
    assert_eq!(bad_only.kept_databases(), Vec::<PathBuf>::new());
    let stranded = Client::new(lan.host(4), REPO, &bad_only);
    let out = stranded.pacman(&["-Sy"]);
    assert!(
        !out.status.success() && output_text(&out).contains("502"),
        "pacman -Sy against a mirror with no usable database must fail, saying why:\n{}",
        output_text(&out)
    );
}

#[test]
fn a_package_with_the_wrong_hash_is_never_kept_or_served_as_good() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let d = repo.package("cm-d");
    let scratch = tempfile::tempdir().expect("temp dir");
    let corrupt = corrupt_copy(d, scratch.path());
    let lan = Lan::new(3);
    let upstream = Upstream::start_in_with(
        lan.host(0),
        repo.root(),
        &ServeOptions::default().replace(&repo.url_path(d.file_name()), &corrupt),
    );
    let mirror = MirrorHost::start(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
    );
    let client = Client::new(lan.host(2), REPO, &mirror);
    client.sync();
    // Twice: the second run resumes from what the first left, and must fail too.
    for attempt in 1..=2 {
        let out = client.install(&[d]);
        assert!(
            !out.status.success(),
            "attempt {attempt}: pacman installed a package whose bytes do not match the \
             database:\n{}",
            output_text(&out)
        );
        assert!(
            !mirror.kept_packages().iter().any(|n| n == d.file_name()),
            "attempt {attempt}: the mirror kept the corrupt {}",
            d.file_name()
        );
    }
    let store = files_under(mirror.daemon.store_dir());
    assert!(
        !store.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(d.file_name()))),
        "nothing of the corrupt package left in the store: {store:?}"
    );
    // Log lines are written in batches (up to 20 ms late): wait for it.
    pacmesh_tests::assert_eventually!(
        mirror.daemon.log().contains("SHA-256"),
        Duration::from_secs(5),
        "the mismatch is logged:\n{}",
        mirror.daemon.log()
    );
}

#[test]
fn an_upstream_that_ignores_range_still_gives_resuming_clients_the_right_bytes() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let (big, d) = (repo.package(BIG), repo.package("cm-d"));
    let lan = Lan::new(3);
    let upstream = Upstream::start_in_with(
        lan.host(0),
        repo.root(),
        &ServeOptions::default().ignore_range(),
    );
    let mirror = MirrorHost::start(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
    );
    let client = Client::new(lan.host(2), REPO, &mirror);
    client.sync();

    // pacman resumes a download it had half done (its `.part` file) with a Range request.
    let bytes = std::fs::read(big.path()).expect("reading the package");
    let half = bytes.len() / 2;
    let part = client
        .pacman
        .cache_dir()
        .join(format!("{}.part", big.file_name()));
    std::fs::write(&part, &bytes[..half]).expect("writing the .part file");
    let out = client.install(&[big]);
    client.check_installed(&[big], &out);

    // A plain ranged GET of a package nobody fetched yet.
    let from = d.size() / 3;
    let url = mirror.file_url(REPO, repo.arch(), d.file_name());
    let response = client
        .host()
        .http_get_with(&url, &[("Range", &format!("bytes={from}-"))])
        .expect("an answer");
    let want = std::fs::read(d.path()).expect("reading the package");
    assert_eq!(response.status, 206, "{:?}", response.headers);
    assert!(
        response.body == want[from as usize..],
        "the ranged answer is not the package's bytes from {from}"
    );
    upstream.wait_idle(IDLE_TIMEOUT);
    for pkg in [big, d] {
        let gets = upstream.gets_for(pkg.file_name());
        assert!(
            gets.len() == 1 && gets[0].status == 200,
            "{}: one whole GET upstream\n{}",
            pkg.file_name(),
            upstream.transfer_report()
        );
    }
    let kept = mirror.kept_packages();
    for pkg in [big, d] {
        assert!(
            kept.iter().any(|n| n == pkg.file_name()),
            "{} kept: {kept:?}",
            pkg.file_name()
        );
    }
}

#[test]
fn an_upstream_dying_mid_file_then_one_ignoring_range_is_unseen_by_the_client() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let big = repo.package(BIG);
    let lan = Lan::new(4);
    // Upstream 0 sends 2 MiB/s per response, so the 8 MiB package takes 4 s from it.
    let mut dying = Upstream::start_in_with(
        lan.host(0),
        repo.root(),
        &ServeOptions::default().limit_rate("2m"),
    );
    let whole = Upstream::start_in_with(
        lan.host(1),
        repo.root(),
        &ServeOptions::default().ignore_range(),
    );
    let mirror = MirrorHost::start(
        lan.host(2),
        REPO,
        &[dying.server_url(), whole.server_url()],
        REVALIDATE_RARELY,
    );
    let client = Client::new(lan.host(3), REPO, &mirror);
    client.sync();
    let mut runs = vec![client.spawn_pacman(&["-S", big.name()])];
    let at = big.size() / 4;
    await_event(
        &mut runs,
        EVENT_TIMEOUT,
        &format!("upstream 0 past {at} bytes of {}", big.file_name()),
        || dying.connection_past(at),
    );
    dying.kill();
    let run = wait_all(runs, PACMAN_TIMEOUT).remove(0);
    client.check_installed(&[big], &run.output);
    whole.wait_idle(IDLE_TIMEOUT);
    let gets = whole.gets_for(big.file_name());
    assert!(
        gets.len() == 1 && gets[0].status == 200 && gets[0].range.is_some(),
        "upstream 1 was asked once, with a Range it ignored:\n{}",
        whole.transfer_report()
    );
    assert!(
        mirror.kept_packages().iter().any(|n| n == big.file_name()),
        "{} kept",
        big.file_name()
    );
}

#[test]
fn admin_actions_are_refused_without_the_token_and_run_with_it() {
    if !tools_present() {
        return;
    }
    let repo = fixture();
    let (a, b) = (repo.package("cm-a"), repo.package("cm-b"));
    // The upstream serves a copy of the repo, whose database the test changes.
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = scratch.path().join("root");
    run_ok(Command::new("cp").arg("-a").arg(repo.root()).arg(&root));
    let (token, token_key) = admin_token(scratch.path());
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    let mirror = MirrorHost::start_with(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
        &token_key,
        &[],
    );
    let client = Client::new(lan.host(2), REPO, &mirror);
    client.sync();
    let out = client.install(&[a, b]);
    client.check_installed(&[a, b], &out);

    // Refused without the token, with a wrong one, and as a GET; from the LAN.
    let host = client.host();
    let refresh = mirror.admin_url("refresh");
    let bearer = format!("Bearer {token}");
    let post = |url: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|v| ("Authorization", v)).into_iter().collect();
        host.http_post_with(url, &headers).expect("an answer")
    };
    let none = post(&refresh, None);
    assert_eq!(
        (none.status, none.header("WWW-Authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(
        post(&refresh, Some("Bearer not-the-token-at-all")).status,
        403
    );
    let get = host
        .http_get_with(&refresh, &[("Authorization", &bearer)])
        .expect("an answer");
    assert_eq!(get.status, 405);
    assert_eq!(post(&mirror.admin_url("reboot"), Some(&bearer)).status, 404);
    upstream.wait_idle(IDLE_TIMEOUT);
    assert_eq!(
        upstream.gets_for(&db_name()).len(),
        1,
        "nothing refused reached upstream"
    );

    // cm-b leaves the repository upstream.
    let repo_dir = root.join(REPO).join("os").join(repo.arch());
    let tarball = repo_dir.join(format!("{REPO}.db.tar.gz"));
    run_ok(
        Command::new("repo-remove")
            .arg("-q")
            .arg(&tarball)
            .arg(b.name()),
    );
    // repo-remove makes `{repo}.db` a symlink to the tarball again: a copy, as the fixtures.
    let db = repo_dir.join(db_name());
    std::fs::remove_file(&db).expect("removing the db link");
    std::fs::copy(&tarball, &db).expect("replacing the db");

    // With the token: the refresh fetches the new database...
    let done = post(&refresh, Some(&bearer));
    assert_eq!(done.status, 200, "{}", done.text());
    let report: serde_json::Value = serde_json::from_slice(&done.body).expect("JSON");
    assert_eq!(
        (report["asked"].as_u64(), report["fresh"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let served = host
        .http_get(&mirror.file_url(REPO, repo.arch(), &db_name()))
        .expect("the db");
    assert_eq!(
        served.body,
        std::fs::read(repo_dir.join(db_name())).expect("db")
    );
    // ...and the purge removes the kept package it no longer lists.
    let purged = post(&mirror.admin_url("purge"), Some(&bearer));
    assert_eq!(purged.status, 200, "{}", purged.text());
    let report: serde_json::Value = serde_json::from_slice(&purged.body).expect("JSON");
    assert_eq!(
        report["removed"],
        serde_json::json!([b.file_name()]),
        "{report}"
    );
    assert_eq!(mirror.kept_packages(), vec![a.file_name().to_string()]);
}

/// An admin token, written to a file (mode 0600) in `dir`, and the `[mirror]` line naming it.
fn admin_token(dir: &Path) -> (&'static str, String) {
    let token = "a-long-enough-admin-token-1234";
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("writing the token");
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod 600");
    let key = format!("admin_token_file = {:?}", token_file.display().to_string());
    (token, key)
}

#[test]
fn an_admin_refresh_syncs_a_full_mirror_at_once_and_status_shows_the_run() {
    if !tools_present() || !prereq::require(&["repo-add"]) {
        return;
    }
    let repo = FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-a", "1.0-1", 256 << 10),
            PkgSpec::new("cm-b", "1.0-1", 256 << 10),
        ],
    );
    let (a, b) = (repo.package("cm-a"), repo.package("cm-b"));
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    set_upstream_db(&repo_dir, &[a], 0);
    let (token, token_key) = admin_token(scratch.path());
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    // No refresh timer: only the run at start, and those an admin asks for.
    let keys = format!("refresh_interval_s = 0\n{token_key}");
    let mirror = MirrorHost::start_full_with(
        lan.host(1),
        REPO,
        repo.arch(),
        &[upstream.server_url()],
        &keys,
    );
    let run = || mirror.daemon.status()["mirror"]["full_sync"][0].clone();
    let counts = |r: &serde_json::Value| {
        ["listed", "present", "fetched", "failed"].map(|k| r[k].as_u64().unwrap_or(u64::MAX))
    };
    pacmesh_tests::assert_eventually!(
        run()["switched"] == true,
        EVENT_TIMEOUT,
        "status shows the run at start: {}\n{}",
        run(),
        mirror.daemon.log()
    );
    let first = run();
    assert_eq!(counts(&first), [1, 0, 1, 0], "{first}");
    assert!(first["error"].is_null(), "{first}");

    // cm-b joins the repository upstream; an admin asks for a refresh.
    set_upstream_db(&repo_dir, &[a, b], 1);
    let host = lan.host(2);
    let answer = admin_refresh(host, &mirror, token);
    assert_eq!(answer["full_sync_started"], true, "{answer}");
    pacmesh_tests::assert_eventually!(
        counts(&run()) == [2, 1, 1, 0] && run()["switched"] == true,
        EVENT_TIMEOUT,
        "the admin's refresh ran a sync that fetched cm-b: {}\n{}",
        run(),
        mirror.daemon.log()
    );
    assert_eq!(mirror.kept_packages(), file_names(&[a, b]));
    let page = mirror.daemon.get("/_pacmesh/");
    let line = format!(
        "<code>{REPO}/{}</code> (ended at Unix time {}): 2 listed, 1 present, 1 fetched",
        repo.arch(),
        run()["ended_unix"]
    );
    assert!(page.text().contains(&line), "{line}\n{}", page.text());
}

/// Replaces the upstream copy's database in `repo_dir` with one listing only `files` (as
/// a repo whose packages were upgraded or removed), a real file as the fixtures have. Its
/// mtime is `generation` × 10 s past a fixed time: each database a new Last-Modified, even
/// several within a second (nginx answers 304 to an exact match only).
fn set_upstream_db(repo_dir: &Path, files: &[&FixturePackage], generation: u64) {
    let tarball = repo_dir.join(format!("{REPO}.db.tar.gz"));
    let _ = std::fs::remove_file(&tarball);
    run_ok(
        Command::new("repo-add")
            .arg("-q")
            .arg(&tarball)
            .args(files.iter().map(|p| repo_dir.join(p.file_name())))
            .current_dir(repo_dir),
    );
    let db = repo_dir.join(db_name());
    let _ = std::fs::remove_file(&db);
    std::fs::copy(&tarball, &db).expect("replacing the db");
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + generation * 10);
    std::fs::File::options()
        .write(true)
        .open(&db)
        .and_then(|f| f.set_modified(mtime))
        .expect("setting the db's mtime");
}

/// `GET` of `name` in the test repo from `host` through `mirror`, which must answer 200.
fn get_ok(
    host: &pacmesh_tests::lan::Host,
    mirror: &MirrorHost<'_>,
    arch: &str,
    name: &str,
) -> pacmesh_tests::http::Response {
    get_from(host, mirror, arch, REPO, name)
}

/// The file names of `pkgs`, sorted.
fn file_names(pkgs: &[&FixturePackage]) -> Vec<String> {
    let mut names: Vec<String> = pkgs.iter().map(|p| p.file_name().to_string()).collect();
    names.sort();
    names
}

/// The upstream serves a copy of `repo`'s tree, whose database the test rewrites.
fn upstream_copy(repo: &FixtureRepo, scratch: &Path) -> (PathBuf, PathBuf) {
    let root = scratch.join("root");
    run_ok(Command::new("cp").arg("-a").arg(repo.root()).arg(&root));
    let repo_dir = root.join(REPO).join("os").join(repo.arch());
    (root, repo_dir)
}

#[test]
fn keep_n_versions_and_the_cap_spare_what_is_being_sent() {
    if !tools_present() || !prereq::require(&["repo-add"]) {
        return;
    }
    // Three versions of one package, and two others to fill the store past its cap.
    let repo = FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-k", "1.0-1", 1000 << 10),
            PkgSpec::new("cm-k", "2.0-1", 1000 << 10),
            PkgSpec::new("cm-k", "10.0-1", 1000 << 10),
            PkgSpec::new("cm-x", "1.0-1", 2000 << 10),
            PkgSpec::new("cm-big", "1.0-1", 3000 << 10),
        ],
    );
    let k = |v: &str| repo.package_version("cm-k", v);
    let (k1, k2, k10) = (k("1.0-1"), k("2.0-1"), k("10.0-1"));
    let (x, big) = (repo.package("cm-x"), repo.package("cm-big"));
    let cap: u64 = 6 << 20;
    // The premise: all four do not fit, and without k10 they do.
    let sizes = |ps: &[&FixturePackage]| ps.iter().map(|p| p.size()).sum::<u64>();
    assert!(sizes(&[k2, k10, x, big]) > cap && sizes(&[k2, x, big]) <= cap);
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    // Revalidated at every request: each GET of the database sees the upstream's now.
    let mirror = MirrorHost::start_with(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        0,
        &format!("keep_versions = 2\nstore_max_mib = {}", cap >> 20),
        &[],
    );
    let host = lan.host(2);
    // A small send buffer on the mirror (its namespace's own setting, written from inside
    // it): the kernel queues a few tens of KiB of a held response, never the whole file.
    run_ok(lan.host(1).exec("sh").args([
        "-c",
        "echo '4096 16384 65536' > /proc/sys/net/ipv4/tcp_wmem",
    ]));
    let get = |name: &str| get_ok(host, &mirror, repo.arch(), name);
    let kept_now = || mirror.kept_packages();
    let names = file_names;

    // Keep-N: each version in turn is the one the database lists, and is fetched.
    for (generation, pkg) in [k1, k2, k10].into_iter().enumerate() {
        set_upstream_db(&repo_dir, &[pkg], generation as u64);
        get(&db_name());
        assert_eq!(get(pkg.file_name()).body.len() as u64, pkg.size());
    }
    pacmesh_tests::assert_eventually!(
        kept_now() == names(&[k2, k10]),
        Duration::from_secs(10),
        "keep_versions = 2 keeps 2.0 and 10.0 (pacman's order), not {:?}\n{}",
        kept_now(),
        mirror.daemon.log()
    );

    // The cap: k2 (listed nowhere now) is being sent to a client while x and big
    // arrive; big needs room, and k10, the least recently used listed file, makes it.
    set_upstream_db(&repo_dir, &[k10, x, big], 3);
    get(&db_name());
    let out = scratch.path().join("k2.held");
    // A client that took k2's first bytes and reads no more until told: the mirror is
    // mid-response for as long as this test wants, whatever the kernel buffers.
    let mut held = host.spawn_ready(
        host.netprobe()
            .arg("hold-get")
            .arg(mirror.file_url(REPO, repo.arch(), k2.file_name()))
            .arg(&out),
    );
    get(x.file_name());
    assert_eq!(get(big.file_name()).body.len() as u64, big.size());
    pacmesh_tests::assert_eventually!(
        kept_now() == names(&[k2, x, big]),
        Duration::from_secs(10),
        "the cap made room by removing k10, sparing k2 being sent: {:?}\n{}",
        kept_now(),
        mirror.daemon.log()
    );
    // Room was made before big arrived, for its size.
    let ahead = format!(
        "kept files removed by policy files=[\"{}\"] reserve={}",
        k10.file_name(),
        big.size()
    );
    pacmesh_tests::assert_eventually!(
        mirror.daemon.log().contains(&ahead),
        Duration::from_secs(5),
        "no log line {ahead:?}:\n{}",
        mirror.daemon.log()
    );
    let status = held.stop();
    assert!(
        status.success(),
        "the held client's transfer was cut: {status}"
    );
    assert_eq!(
        sha256_file(&out),
        k2.sha256(),
        "the held client got k2 whole"
    );
    let kept_bytes = mirror.daemon.status()["mirror"]["packages"]["kept_bytes"].as_u64();
    assert!(
        kept_bytes.is_some_and(|b| b <= cap),
        "{kept_bytes:?} over {cap}"
    );
    upstream.wait_idle(IDLE_TIMEOUT);
    assert_eq!(upstream.gets_for(k10.file_name()).len(), 1);
}

/// The package files a served database lists (`%FILENAME%` of each entry), read with tar.
fn listed_in(db: &[u8], scratch: &Path) -> Vec<String> {
    // Callers poll from two threads: a file of its own each time.
    let file = tempfile::NamedTempFile::new_in(scratch).expect("a temp file");
    std::fs::write(file.path(), db).expect("writing the polled db");
    let out = run_ok(Command::new("tar").arg("-xzOf").arg(file.path()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let mut names = Vec::new();
    while let Some(line) = lines.next() {
        if line == "%FILENAME%" {
            names.extend(lines.next().map(str::to_string));
        }
    }
    names.sort();
    names
}

/// What a poller of a full mirror saw: the listings of the databases served, and any file
/// one of them named that the store lacked both just before and just after the GET.
#[derive(Default)]
struct Polled {
    listings: Vec<Vec<String>>,
    missing: Vec<(String, Vec<String>)>,
}

#[test]
fn a_full_mirror_switches_its_database_only_when_every_package_is_kept() {
    if !tools_present() || !prereq::require(&["repo-add", "tar"]) {
        return;
    }
    let repo = FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-a", "1.0-1", 512 << 10),
            PkgSpec::new("cm-a", "2.0-1", 512 << 10),
            PkgSpec::new("cm-b", "1.0-1", 512 << 10),
            PkgSpec::new("cm-c", "1.0-1", 1 << 20),
            PkgSpec::new("cm-e", "1.0-1", 256 << 10),
            PkgSpec::new("cm-f", "1.0-1", 4 << 20),
        ],
    );
    let a = |v: &str| repo.package_version("cm-a", v);
    let (a1, a2) = (a("1.0-1"), a("2.0-1"));
    let (b, c, e, f) = (
        repo.package("cm-b"),
        repo.package("cm-c"),
        repo.package("cm-e"),
        repo.package("cm-f"),
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    set_upstream_db(&repo_dir, &[a1, b, c], 0);
    let lan = Lan::new(3);
    // 1 MiB/s per response: cm-f takes 4 s, long enough to kill the mirror in the middle.
    let upstream = Upstream::start_in_with(
        lan.host(0),
        &root,
        &ServeOptions::default().limit_rate("1m"),
    );
    let mut mirror =
        MirrorHost::start_full(lan.host(1), REPO, repo.arch(), &[upstream.server_url()], 1);
    let names = file_names;
    let db_url = mirror.file_url(REPO, repo.arch(), &db_name());
    let host = lan.host(2);
    let served = |host: &pacmesh_tests::lan::Host| {
        host.http_get(&db_url)
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| listed_in(&r.body, scratch.path()))
    };
    pacmesh_tests::assert_eventually!(
        served(host) == Some(names(&[a1, b, c])) && mirror.kept_packages() == names(&[a1, b, c]),
        EVENT_TIMEOUT,
        "the first sync mirrors the repo whole: kept {:?}\n{}",
        mirror.kept_packages(),
        mirror.daemon.log()
    );

    // A poller checks every database served against the store, while the repo changes.
    let store = mirror.daemon.store_dir().join("fetched");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let polled = std::sync::Mutex::new(Polled::default());
    std::thread::scope(|s| {
        s.spawn(|| {
            let kept = || -> std::collections::HashSet<String> {
                std::fs::read_dir(&store)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let before = kept();
                let Some(listing) = served(host) else {
                    continue;
                };
                let after = kept();
                let mut p = polled.lock().expect("poll lock");
                for name in &listing {
                    if !before.contains(name) && !after.contains(name) {
                        p.missing.push((name.clone(), listing.clone()));
                    }
                }
                p.listings.push(listing);
            }
        });

        // cm-a is upgraded upstream: after the next run 2.0 is kept and 1.0 gone.
        set_upstream_db(&repo_dir, &[a2, b, c], 1);
        pacmesh_tests::assert_eventually!(
            mirror.kept_packages() == names(&[a2, b, c])
                && served(host) == Some(names(&[a2, b, c])),
            EVENT_TIMEOUT,
            "the upgrade is mirrored: kept {:?}\n{}",
            mirror.kept_packages(),
            mirror.daemon.log()
        );

        // Two packages arrive; the mirror is killed once the small one is kept and the big
        // one is on its way, and resumes after a restart.
        set_upstream_db(&repo_dir, &[a2, b, c, e, f], 2);
        pacmesh_tests::assert_eventually!(
            mirror.kept_packages().iter().any(|n| n == e.file_name())
                && upstream.connection_past(1 << 20).is_some(),
            EVENT_TIMEOUT,
            "cm-e kept and cm-f on its way: kept {:?}\n{}",
            mirror.kept_packages(),
            mirror.daemon.log()
        );
        assert_eq!(
            served(host),
            Some(names(&[a2, b, c])),
            "not switched before cm-f is kept"
        );
        // A second writer is refused while the daemon holds the store.
        let refused = mirror.sync_once();
        assert!(
            !refused.status.success() && output_text(&refused).contains("locked"),
            "--sync-once beside the running daemon:\n{}",
            output_text(&refused)
        );
        // Killed half-way; the terminal run finishes the job, fetching cm-f only.
        mirror.daemon.kill();
        let out = mirror.sync_once();
        let text = output_text(&out);
        let line = format!("{}/{REPO}: 5 listed, 4 present, 1 fetched", repo.arch());
        assert!(
            out.status.success() && text.contains(&line) && text.contains("database switched"),
            "pacmeshd --sync-once after the kill, wanted {line:?}:\n{text}"
        );
        mirror.daemon.restart();
        pacmesh_tests::assert_eventually!(
            served(host) == Some(names(&[a2, b, c, e, f])),
            EVENT_TIMEOUT,
            "the restarted mirror finishes the sync: kept {:?}\n{}",
            mirror.kept_packages(),
            mirror.daemon.log()
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let polled = polled.into_inner().expect("poll lock");
    assert!(
        polled.missing.is_empty(),
        "a served database named files the mirror lacked: {:?}",
        polled.missing
    );
    for want in [names(&[a2, b, c]), names(&[a2, b, c, e, f])] {
        assert!(
            polled.listings.contains(&want),
            "the poller saw the database listing {want:?} ({} polls)",
            polled.listings.len()
        );
    }
    assert_eq!(mirror.kept_packages(), names(&[a2, b, c, e, f]));
    for pkg in [a2, b, c, e, f] {
        let got = host
            .http_get(&mirror.file_url(REPO, repo.arch(), pkg.file_name()))
            .expect("a GET of a mirrored package");
        assert!(
            got.status == 200 && got.body.len() as u64 == pkg.size(),
            "{}",
            pkg.file_name()
        );
    }
    upstream.wait_idle(IDLE_TIMEOUT);
    for pkg in [a1, a2, b, c, e] {
        assert_eq!(
            upstream.gets_for(pkg.file_name()).len(),
            1,
            "{} fetched once, not again after the kill\n{}",
            pkg.file_name(),
            upstream.transfer_report()
        );
    }
    assert_eq!(
        upstream.gets_for(f.file_name()).len(),
        2,
        "cm-f: cut by the kill, then fetched whole\n{}",
        upstream.transfer_report()
    );
}

#[test]
fn newer_versions_of_what_clients_fetched_are_prefetched_after_a_refresh() {
    if !tools_present() || !prereq::require(&["repo-add"]) {
        return;
    }
    let repo = FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-a", "1.0-1", 512 << 10),
            PkgSpec::new("cm-a", "2.0-1", 512 << 10),
            PkgSpec::new("cm-b", "1.0-1", 256 << 10),
            PkgSpec::new("cm-b", "2.0-1", 256 << 10),
        ],
    );
    let (a1, a2) = (
        repo.package_version("cm-a", "1.0-1"),
        repo.package_version("cm-a", "2.0-1"),
    );
    let (b1, b2) = (
        repo.package_version("cm-b", "1.0-1"),
        repo.package_version("cm-b", "2.0-1"),
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    set_upstream_db(&repo_dir, &[a1, b1], 0);
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    let mirror = MirrorHost::start_with(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
        "refresh_interval_s = 1\nprefetch_days = 7\nprefetch_kib_s = 256",
        &[],
    );
    let host = lan.host(2);
    let get = |name: &str| get_ok(host, &mirror, repo.arch(), name);
    // A client fetches cm-a 1.0 only.
    get(&db_name());
    assert_eq!(get(a1.file_name()).body.len() as u64, a1.size());
    // Both packages are upgraded upstream: the next refresh prefetches cm-a 2.0 alone.
    set_upstream_db(&repo_dir, &[a2, b2], 1);
    wait_kept(&mirror, a2);
    // Two runs more: cm-b, which no client fetched, stays upstream.
    wait_prefetch_runs(&mirror, 2);
    assert!(!mirror.kept_packages().contains(&b2.file_name().to_string()));
    upstream.wait_idle(IDLE_TIMEOUT);
    assert_eq!(upstream.gets_for(b2.file_name()).len(), 0);
    let status = mirror.daemon.status();
    let prefetch = &status["mirror"]["prefetch"];
    assert_eq!(prefetch["files"], 1, "{status}");
    assert_eq!(prefetch["bytes"], a2.size(), "{status}");
    assert_eq!(prefetch["last"], serde_json::json!([a2.file_name()]));
    let page = mirror.daemon.get("/_pacmesh/").text();
    assert!(page.contains(a2.file_name()), "{page}");
    // The client's upgrade is then a hit: the upstream sent cm-a 2.0 once.
    get(&db_name());
    assert_eq!(get(a2.file_name()).body.len() as u64, a2.size());
    upstream.wait_idle(IDLE_TIMEOUT);
    assert_eq!(upstream.gets_for(a2.file_name()).len(), 1);
    check_page(&mirror);
}

#[test]
fn a_file_two_databases_list_is_prefetched_once() {
    if !tools_present() || !prereq::require(&["repo-add"]) {
        return;
    }
    const TESTING: &str = "cmtesting";
    let repo = cm_a_versions();
    let (a1, a2) = (
        repo.package_version("cm-a", "1.0-1"),
        repo.package_version("cm-a", "2.0-1"),
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    // A second repo has the same files (as a package moved from testing keeps its name).
    let testing_dir = root.join(TESTING).join("os").join(repo.arch());
    std::fs::create_dir_all(root.join(TESTING).join("os")).expect("testing repo dir");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&repo_dir)
            .arg(&testing_dir),
    );
    // Both repos' databases list cm-a 1.0, then cm-a 2.0: each generation's pair in its
    // own dir, behind one symlink, so that a single rename switches both.
    for (generation, pkg) in [a1, a2].into_iter().enumerate() {
        let dir = scratch.path().join(format!("gen{generation}"));
        std::fs::create_dir(&dir).expect("generation dir");
        for name in [REPO, TESTING] {
            let tarball = dir.join(format!("{name}.db.tar.gz"));
            run_ok(
                Command::new("repo-add")
                    .arg("-q")
                    .arg(&tarball)
                    .arg(repo_dir.join(pkg.file_name())),
            );
            let db = dir.join(format!("{name}.db"));
            let _ = std::fs::remove_file(&db);
            std::fs::copy(&tarball, &db).expect("the db");
            let mtime =
                std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 10 * generation as u64);
            std::fs::File::options()
                .write(true)
                .open(&db)
                .and_then(|f| f.set_modified(mtime))
                .expect("setting the db's mtime");
        }
    }
    let current = scratch.path().join("current");
    std::os::unix::fs::symlink(scratch.path().join("gen0"), &current).expect("symlink");
    for (name, dir) in [(REPO, &repo_dir), (TESTING, &testing_dir)] {
        let db = dir.join(format!("{name}.db"));
        let _ = std::fs::remove_file(&db);
        std::os::unix::fs::symlink(current.join(format!("{name}.db")), &db).expect("symlink");
    }
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    let keys = format!(
        "refresh_interval_s = 1\nprefetch_days = 7\nprefetch_kib_s = 256\n\n\
         [[mirror.repo]]\nname = \"{TESTING}\"\nservers = [{:?}]",
        upstream.server_url()
    );
    let mirror = MirrorHost::start_with(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
        &keys,
        &[],
    );
    let host = lan.host(2);
    get_from(host, &mirror, repo.arch(), REPO, &db_name());
    get_from(
        host,
        &mirror,
        repo.arch(),
        TESTING,
        &format!("{TESTING}.db"),
    );
    get_from(host, &mirror, repo.arch(), REPO, a1.file_name());
    wait_kept(&mirror, a1);
    // Both databases now list cm-a 2.0: one run finds it in each.
    let next = scratch.path().join("next");
    std::os::unix::fs::symlink(scratch.path().join("gen1"), &next).expect("symlink");
    std::fs::rename(&next, &current).expect("switching both databases");
    wait_kept(&mirror, a2);
    wait_prefetch_runs(&mirror, 2);
    let status = mirror.daemon.status();
    let prefetch = &status["mirror"]["prefetch"];
    assert_eq!(prefetch["files"], 1, "{status}\n{}", mirror.daemon.log());
    assert_eq!(prefetch["last"], serde_json::json!([a2.file_name()]));
    upstream.wait_idle(IDLE_TIMEOUT);
    let gets = upstream.gets_for(a2.file_name()).len();
    assert_eq!(gets, 1, "{}", mirror.daemon.log());
}

/// `GET` of `name` in `repo` from `host` through `mirror`, which must answer 200.
fn get_from(
    host: &pacmesh_tests::lan::Host,
    mirror: &MirrorHost<'_>,
    arch: &str,
    repo: &str,
    name: &str,
) -> pacmesh_tests::http::Response {
    let url = mirror.file_url(repo, arch, name);
    let r = host
        .http_get(&url)
        .unwrap_or_else(|e| panic!("GET {url}: {e:#}\n{}", mirror.daemon.log()));
    assert_eq!(
        r.status,
        200,
        "GET {url}: {}\n{}",
        r.text(),
        mirror.daemon.log()
    );
    r
}

#[test]
fn an_admin_refresh_prefetches_at_once_without_full_mirrors() {
    if !tools_present() || !prereq::require(&["repo-add"]) {
        return;
    }
    let repo = cm_a_versions();
    let (a1, a2) = (
        repo.package_version("cm-a", "1.0-1"),
        repo.package_version("cm-a", "2.0-1"),
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let (root, repo_dir) = upstream_copy(&repo, scratch.path());
    set_upstream_db(&repo_dir, &[a1], 0);
    let (token, token_key) = admin_token(scratch.path());
    let lan = Lan::new(3);
    let upstream = Upstream::start_in(lan.host(0), &root);
    // The timer's next tick is an hour away: only the admin's refresh runs prefetch.
    let keys = format!("refresh_interval_s = 3600\nprefetch_days = 7\n{token_key}");
    let mirror = MirrorHost::start_with(
        lan.host(1),
        REPO,
        &[upstream.server_url()],
        REVALIDATE_RARELY,
        &keys,
        &[],
    );
    let host = lan.host(2);
    get_ok(host, &mirror, repo.arch(), &db_name());
    get_ok(host, &mirror, repo.arch(), a1.file_name());
    set_upstream_db(&repo_dir, &[a2], 1);
    let answer = admin_refresh(host, &mirror, token);
    assert_eq!(answer["full_sync_started"], false, "{answer}");
    wait_kept(&mirror, a2);
}

/// Two versions of one package.
fn cm_a_versions() -> FixtureRepo {
    FixtureRepo::get(
        REPO,
        &[
            PkgSpec::new("cm-a", "1.0-1", 512 << 10),
            PkgSpec::new("cm-a", "2.0-1", 512 << 10),
        ],
    )
}

/// Waits until `mirror` keeps `pkg`.
fn wait_kept(mirror: &MirrorHost<'_>, pkg: &FixturePackage) {
    pacmesh_tests::assert_eventually!(
        mirror
            .kept_packages()
            .contains(&pkg.file_name().to_string()),
        EVENT_TIMEOUT,
        "{} kept: kept {:?}\n{}",
        pkg.file_name(),
        mirror.kept_packages(),
        mirror.daemon.log()
    );
}

/// Waits for `n` prefetch runs more (each logs its end).
fn wait_prefetch_runs(mirror: &MirrorHost<'_>, n: usize) {
    let runs = || mirror.daemon.log().matches("prefetch run done").count();
    let seen = runs();
    pacmesh_tests::assert_eventually!(
        runs() >= seen + n,
        EVENT_TIMEOUT,
        "no further prefetch runs:\n{}",
        mirror.daemon.log()
    );
}

/// An admin's `POST /_pacmesh/admin/refresh` from `host`, which must answer 200; its JSON.
fn admin_refresh(
    host: &pacmesh_tests::lan::Host,
    mirror: &MirrorHost<'_>,
    token: &str,
) -> serde_json::Value {
    let bearer = format!("Bearer {token}");
    let done = host
        .http_post_with(&mirror.admin_url("refresh"), &[("Authorization", &bearer)])
        .expect("an answer");
    assert_eq!(done.status, 200, "{}", done.text());
    serde_json::from_slice(&done.body).expect("JSON")
}
