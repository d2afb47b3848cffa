//! What the daemon shows people and monitoring: `/_pacmesh/metrics` parses
//! with Prometheus' own client library and its counters move as requests
//! are served; `/_pacmesh/` is valid HTML (HTML Tidy finds no errors) with
//! the peers table present; with `serve_lan` they answer other hosts only
//! with `pages_lan`.

use std::process::Command;
use std::time::Duration;

use pacmesh_tests::assert_eventually;
use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::lan::{Lan, PORT};
use pacmesh_tests::prometheus::{parse_with_prometheus, PYTHON};
use pacmesh_tests::{http, prereq};

fn sample(samples: &[String], prefix: &str) -> f64 {
    samples
        .iter()
        .find_map(|s| {
            s.strip_prefix(prefix)
                .map(|v| v.trim().parse::<f64>().expect("a number"))
        })
        .unwrap_or_else(|| panic!("no sample {prefix} in {samples:#?}"))
}

fn daemon_with_one_package() -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("cache")).expect("mkdir");
    std::fs::write(
        dir.path().join("cache/obs-1.0-1-any.pkg.tar.zst"),
        vec![9u8; 10_000],
    )
    .expect("write");
    let conf = dir.path().join("pacman.conf");
    std::fs::write(
        &conf,
        "[options]\n[obs]\nServer = http://127.0.0.1:9/$repo/os/$arch\n",
    )
    .expect("write");
    let daemon = Daemon::start(DaemonArgs::new(&conf).cache_dir(&dir.path().join("cache")));
    (daemon, dir)
}

#[test]
fn metrics_parse_with_prometheus_and_counters_move() {
    if !prereq::require_tools(&[PYTHON]) {
        return;
    }
    let (daemon, _dir) = daemon_with_one_package();
    let before = parse_with_prometheus(
        &http::get(&format!("{}/_pacmesh/metrics", daemon.url()), &[]).text(),
    );
    assert_eq!(sample(&before, "pacmesh_requests_total{source=local}"), 0.0);
    assert_eq!(sample(&before, "pacmesh_cache_files{}"), 1.0);

    let hit = http::get(
        &format!("{}/obs/os/x86_64/obs-1.0-1-any.pkg.tar.zst", daemon.url()),
        &[],
    );
    assert_eq!(hit.status, 200);
    let miss = http::get(
        &format!("{}/obs/os/x86_64/other-1-1-any.pkg.tar.zst", daemon.url()),
        &[],
    );
    assert_eq!(miss.status, 307);

    let after = parse_with_prometheus(
        &http::get(&format!("{}/_pacmesh/metrics", daemon.url()), &[]).text(),
    );
    assert_eq!(sample(&after, "pacmesh_requests_total{source=local}"), 1.0);
    assert_eq!(
        sample(&after, "pacmesh_requests_total{source=mirror_redirect}"),
        1.0
    );
    assert_eq!(
        sample(&after, "pacmesh_bytes_total{source=local}"),
        10_000.0
    );
    assert_eq!(sample(&after, "pacmesh_saved_bytes_total{}"), 10_000.0);
    assert_eq!(
        sample(
            &after,
            "pacmesh_transfer_duration_seconds_count{source=local}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "pacmesh_transfer_duration_seconds_bucket{le=+Inf,source=local}"
        ),
        1.0
    );
}

#[test]
fn status_page_is_valid_html_with_a_peers_table() {
    if !prereq::require_tools(&["tidy"]) {
        return;
    }
    let (daemon, _dir) = daemon_with_one_package();
    let page = http::get(&format!("{}/_pacmesh/", daemon.url()), &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let html = page.text();
    assert!(html.contains("<table id=\"peers\">"), "{html}");
    assert!(html.contains(
        &daemon.status()["node_id"]
            .as_str()
            .expect("node_id")
            .to_string()
    ));
    // Self-contained: nothing is loaded from elsewhere.
    assert!(!html.contains("src=") && !html.contains("<link"), "{html}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("page.html");
    std::fs::write(&path, &html).expect("write");
    let tidy = Command::new("tidy")
        .args(["-errors", "-quiet"])
        .arg(&path)
        .output()
        .expect("tidy");
    // tidy: 0 = clean, 1 = warnings only, 2 = errors.
    assert!(
        tidy.status.code().is_some_and(|c| c < 2),
        "tidy found errors:\n{}\n---\n{html}",
        String::from_utf8_lossy(&tidy.stderr)
    );
}

const PAGES: [&str; 3] = ["/_pacmesh/status", "/_pacmesh/metrics", "/_pacmesh/"];

#[test]
fn with_serve_lan_the_pages_answer_other_hosts_only_with_pages_lan() {
    if !prereq::require(Lan::TOOLS) {
        return;
    }
    let lan = Lan::new(2);
    let (a, b) = (lan.host(0), lan.host(1));
    let from_b = |path: &str| {
        b.http_get(&format!("http://{}:{PORT}{path}", a.ip()))
            .unwrap_or_else(|e| panic!("{path} from the other host: {e}"))
    };
    let lan_args = || DaemonArgs::default().arg("--no-mdns").arg("--serve-lan");
    let mut daemon = a.start_daemon(lan_args());
    let package = "lan-1.0-1-any.pkg.tar.zst";
    std::fs::write(daemon.cache_dir().join(package), vec![7u8; 5000]).expect("write");
    // Packages are what serve_lan is for: served to the other host.
    assert_eventually!(
        from_b(&format!("/{package}")).status == 200,
        Duration::from_secs(10)
    );
    for path in PAGES {
        let refused = from_b(path);
        let body = String::from_utf8_lossy(&refused.body);
        assert_eq!(refused.status, 403, "{path}: {body}");
        assert!(body.contains("pages_lan = true"), "{path}: {body}");
        assert_eq!(daemon.get(path).status, 200, "{path} on loopback");
    }
    daemon.stop();
    drop(daemon);

    let daemon = a.start_daemon(lan_args().arg("--pages-lan"));
    for path in PAGES {
        assert_eq!(from_b(path).status, 200, "{path} with pages_lan");
        assert_eq!(daemon.get(path).status, 200, "{path} on loopback");
    }
}
