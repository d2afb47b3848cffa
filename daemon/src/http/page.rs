//! `/_pacmesh/`: one self-contained HTML page a person reads at a glance.

use std::fmt::Write;

use http::Response;

use super::Body;
use crate::snapshot::Snapshot;
use crate::stats::Source;

pub fn response(snapshot: &Snapshot) -> Response<Body> {
    let html = render(snapshot);
    super::live_page("text/html; charset=utf-8", html)
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Bytes in binary units, as `du -h` would say them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Caching-mirror mode: what it served, fetched and keeps.
fn mirror(h: &mut String, m: &crate::stats::MirrorStatus) {
    let (p, d) = (&m.packages, &m.databases);
    let _ = writeln!(
        h,
        "<h2>Caching mirror</h2>\n<table id=\"mirror\">\
         <tr><th></th><th>hits</th><th>misses</th><th>fetched upstream</th><th>kept</th></tr>\n\
         <tr><td>packages</td><td>{}</td><td>{}</td><td>{}</td><td>{} files, {} of {}</td></tr>\n\
         <tr><td>databases</td><td>{}</td><td>{}</td><td>{}</td><td>{} files, {}</td></tr>\n\
         </table>\n<p>stale databases served: {} · upstream checks failed: {} · not modified: {}</p>",
        p.hits,
        p.misses,
        esc(&human_bytes(p.bytes_upstream)),
        p.kept,
        esc(&human_bytes(p.kept_bytes)),
        esc(&human_bytes(p.max_bytes)),
        d.served,
        d.fetched,
        esc(&human_bytes(d.bytes_upstream)),
        d.kept,
        esc(&human_bytes(d.kept_bytes)),
        d.stale_served,
        d.failed_checks,
        d.not_modified,
    );
    let pre = &m.prefetch;
    let _ = writeln!(
        h,
        "<p>prefetched: {} files, {} · last: {}</p>",
        pre.files,
        esc(&human_bytes(pre.bytes)),
        if pre.last.is_empty() {
            "none".to_string()
        } else {
            codes(&pre.last)
        }
    );
    if !m.repos.is_empty() {
        h.push_str("<ul>\n");
        for r in &m.repos {
            let _ = writeln!(
                h,
                "<li><code>{}/{}</code>: {} packages</li>",
                esc(&r.repo),
                esc(&r.arch),
                r.files
            );
        }
        h.push_str("</ul>\n");
    }
    full_sync(h, &m.full_sync);
}

/// File names as code, comma-separated.
fn codes(names: &[String]) -> String {
    let codes: Vec<String> = names
        .iter()
        .map(|n| format!("<code>{}</code>", esc(n)))
        .collect();
    codes.join(", ")
}

/// A line per repo mirrored whole: its last run.
fn full_sync(h: &mut String, runs: &[crate::fullsync::SyncStatus]) {
    if runs.is_empty() {
        return;
    }
    h.push_str("<h3>Full mirrors, last run</h3>\n<ul>\n");
    for r in runs {
        let what = match &r.error {
            Some(e) => format!("failed: {}", esc(e)),
            None => {
                let mut line = format!(
                    "{} listed, {} present, {} fetched ({}), {} removed, {}",
                    r.listed,
                    r.present,
                    r.fetched,
                    esc(&human_bytes(r.fetched_bytes)),
                    r.removed,
                    if r.switched {
                        "database switched"
                    } else {
                        "database kept"
                    }
                );
                if r.failed > 0 {
                    let _ = write!(
                        line,
                        "; {} not fetched: {}",
                        r.failed,
                        codes(&r.failed_names)
                    );
                }
                line
            }
        };
        let _ = writeln!(
            h,
            "<li><code>{}/{}</code> (ended at Unix time {}): {what}</li>",
            esc(&r.repo),
            esc(&r.arch),
            r.ended_unix
        );
    }
    h.push_str("</ul>\n");
}

/// The page of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>pacmesh {node}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #ccc;padding:.3em .8em;text-align:right}}\
         th{{background:#eee}}td:first-child,th:first-child{{text-align:left}}\
         .big{{font-size:1.6em}}</style></head><body>\n\
         <h1>pacmesh</h1>\n<p>node <code>{node}</code> · version {version} · up {up} s</p>\n\
         <p class=\"big\">{saved} not downloaded from the internet</p>\n",
        node = esc(&s.node_id),
        version = esc(&s.version),
        up = s.uptime_s,
        saved = esc(&human_bytes(s.bytes.wan_saved)),
    );
    requests(&mut h, s);
    if let Some(m) = &s.mirror {
        mirror(&mut h, m);
    }
    peers(&mut h, s);
    let _ = writeln!(
        h,
        "<h2>Cache</h2>\n<p>{} package files in</p>\n<ul>",
        s.cache.files
    );
    for dir in &s.cache.dirs {
        let _ = writeln!(h, "<li><code>{}</code></li>", esc(dir));
    }
    let _ = writeln!(
        h,
        "</ul>\n<p>{} repositories in the mirror table</p>",
        s.repos
    );
    h.push_str("<p><a href=\"/_pacmesh/status\">status (JSON)</a> · <a href=\"/_pacmesh/metrics\">metrics</a></p>\n</body></html>\n");
    h
}

/// Requests by source, with each package source's share, then bytes.
fn requests(h: &mut String, s: &Snapshot) {
    let packages: u64 = s
        .requests
        .iter()
        .filter(|(source, _)| source.is_package())
        .map(|(_, n)| n)
        .sum();
    h.push_str("<h2>Requests</h2>\n<table id=\"requests\"><tr><th>source</th><th>requests</th><th>share of packages</th></tr>\n");
    for (source, n) in s.requests.iter() {
        let share = if !source.is_package() && source != Source::PeerUnverified {
            "–".to_string()
        } else if packages == 0 {
            "0.0 %".to_string()
        } else {
            format!("{:.1} %", 100.0 * n as f64 / packages as f64)
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{share}</td></tr>",
            esc(source.describe()),
        );
    }
    h.push_str("</table>\n<h2>Bytes</h2>\n<table id=\"bytes\"><tr><th></th><th>bytes</th></tr>\n");
    for (_, what, n) in s.bytes.iter() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td title=\"{n}\">{}</td></tr>",
            esc(what),
            esc(&human_bytes(n))
        );
    }
    h.push_str("</table>\n");
}

/// One row per linked peer.
fn peers(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Peers</h2>\n<table id=\"peers\"><tr><th>node</th><th>address</th><th>RTT</th><th>packages</th><th>received</th><th>sent</th></tr>\n");
    if s.peers.is_empty() {
        h.push_str("<tr><td colspan=\"6\">no peers linked</td></tr>\n");
    }
    for p in &s.peers {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{:.1} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.node_id.to_string()),
            esc(&p.addr.to_string()),
            p.rtt_ms,
            p.packages,
            esc(&human_bytes(p.bytes_received)),
            esc(&human_bytes(p.bytes_sent)),
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_units() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    use crate::snapshot::sample;

    #[test]
    fn every_counter_is_on_the_page() {
        let s = sample::snapshot(true);
        let html = render(&s);
        for (source, n) in s.requests.iter() {
            let row = format!("<tr><td>{}</td><td>{n}</td>", esc(source.describe()));
            assert!(html.contains(&row), "{row}\n{html}");
        }
        for (_, what, n) in s.bytes.iter() {
            let row = format!("<tr><td>{}</td><td title=\"{n}\">", esc(what));
            assert!(html.contains(&row), "{row}\n{html}");
        }
        let saved = human_bytes(s.bytes.wan_saved);
        assert!(html.contains(&format!("{saved} not downloaded")), "{html}");
        for needle in [
            format!("<code>{}</code>", "ab".repeat(32)),
            "version 9.9.9".into(),
            "up 4242 s".into(),
            "77 package files".into(),
            "5 repositories".into(),
            "<code>/srv/&lt;odd&gt;&amp;dir</code>".into(),
            "<td>192.0.2.7:7878</td><td>1.5 ms</td><td>321</td>".into(),
            "<table id=\"mirror\">".into(),
            "<code>core/x86_64</code>: 271 packages".into(),
            "prefetched: 3 files, ".into(),
            "last: <code>pre-2-1-any.pkg.tar.zst</code>".into(),
            "301 listed, 302 present, 303 fetched (304 B), 306 removed, database kept; \
             2 not fetched: <code>&lt;bad&gt;-1-1-any.pkg.tar.zst</code>"
                .into(),
            "stale databases served: 2002 · upstream checks failed: 2005 · not modified: 2004"
                .into(),
        ] {
            assert!(html.contains(&needle), "{needle}\n{html}");
        }
    }

    #[test]
    fn shares_are_of_package_answers() {
        let s = sample::snapshot(false);
        let html = render(&s);
        assert!(!html.contains("id=\"mirror\""), "{html}");
        // local 1000 of 1000 + 1001 + 1004 + 1005 package answers.
        assert!(
            html.contains("<tr><td>local cache</td><td>1000</td><td>24.9 %</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><td>not found</td><td>1007</td><td>–</td></tr>"),
            "{html}"
        );
    }
}
