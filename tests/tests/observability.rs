//! What the daemon shows people and monitoring: `/_pacmesh/metrics` parses
//! with Prometheus' own client library and its counters move as requests
//! are served; `/_pacmesh/` is valid HTML (HTML Tidy finds no errors) with
//! the peers table present.

use std::process::Command;

use pacmesh_tests::daemon::{Daemon, DaemonArgs};
use pacmesh_tests::{http, prereq};

/// Debian's interpreter, where `python3-prometheus-client` installs.
const PYTHON: &str = "/usr/bin/python3";

/// Parses metrics text with `prometheus_client.parser` and returns
/// `name{labels} value` lines, sorted.
fn parse_with_prometheus(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out.append(f"{s.name}{{{labels}}} {s.value}")
print("\n".join(sorted(out)))
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feeding metrics");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "prometheus_client rejected the metrics:\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

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
