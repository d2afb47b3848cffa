//! `/_pacmesh/`: one self-contained HTML page a person reads at a glance.

use std::fmt::Write;

use http::Response;

use super::Body;
use crate::State;

pub fn response(state: &State) -> Response<Body> {
    let html = render(state);
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
}

pub fn render(state: &State) -> String {
    let r = state.stats.requests();
    let b = state.stats.bytes(state.mesh.bytes_to_peers());
    let (dirs, files) = state.index_summary();
    let packages = r.local + r.peer + r.mirror_redirect + r.mirror_fetch;
    let ratio = |n: u64| {
        if packages == 0 {
            0.0
        } else {
            100.0 * n as f64 / packages as f64
        }
    };
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
        node = esc(&state.node_id.to_string()),
        version = esc(env!("CARGO_PKG_VERSION")),
        up = state.started.elapsed().as_secs(),
        saved = esc(&human_bytes(b.wan_saved)),
    );
    h.push_str("<h2>Package requests</h2>\n<table><tr><th>source</th><th>requests</th><th>share</th><th>bytes</th></tr>\n");
    for (name, n, bytes) in [
        ("local cache", r.local, Some(b.local)),
        ("peers", r.peer, Some(b.peer)),
        (
            "of which from a peer's fetch under way",
            0,
            Some(b.peer_inflight),
        ),
        ("mirror (redirected)", r.mirror_redirect, None),
        ("mirror (fetched)", r.mirror_fetch, Some(b.mirror_fetch)),
    ] {
        let bytes = bytes.map_or("–".to_string(), human_bytes);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{:.1} %</td><td>{}</td></tr>",
            esc(name),
            ratio(n),
            esc(&bytes)
        );
    }
    let _ = writeln!(
        h,
        "</table>\n<p>not found: {} · bad requests: {}</p>",
        r.not_found, r.bad_request
    );
    if let Some(m) = state.mirror_status() {
        mirror(&mut h, &m);
    }
    h.push_str("<h2>Peers</h2>\n<table id=\"peers\"><tr><th>node</th><th>address</th><th>RTT</th><th>packages</th><th>received</th><th>sent</th></tr>\n");
    let peers = state.mesh.peers();
    if peers.is_empty() {
        h.push_str("<tr><td colspan=\"6\">no peers linked</td></tr>\n");
    }
    for p in &peers {
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
    let _ = writeln!(h, "<h2>Cache</h2>\n<p>{files} package files in</p>\n<ul>");
    for dir in dirs {
        let _ = writeln!(h, "<li><code>{}</code></li>", esc(&dir));
    }
    h.push_str("</ul>\n<p><a href=\"/_pacmesh/status\">status (JSON)</a> · <a href=\"/_pacmesh/metrics\">metrics</a></p>\n</body></html>\n");
    h
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
}
