//! `/_pacmesh/metrics` in the Prometheus text exposition format (0.0.4).

use std::fmt::Write;

use http::Response;

use super::Body;
use crate::snapshot::Snapshot;
use crate::stats::DURATION_BUCKETS;

pub fn response(snapshot: &Snapshot) -> Response<Body> {
    let text = render(snapshot);
    super::live_page("text/plain; version=0.0.4; charset=utf-8", text)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Caching-mirror mode's families.
fn mirror(out: &mut String, m: &crate::stats::MirrorStatus) {
    let d = &m.databases;
    family(
        out,
        "pacmesh_mirror_upstream_bytes_total",
        "counter",
        "Bytes a caching mirror fetched from its upstreams, by kind.",
    );
    let _ = writeln!(
        out,
        "pacmesh_mirror_upstream_bytes_total{{kind=\"package\"}} {}",
        m.packages.bytes_upstream
    );
    let _ = writeln!(
        out,
        "pacmesh_mirror_upstream_bytes_total{{kind=\"database\"}} {}",
        d.bytes_upstream
    );
    family(
        out,
        "pacmesh_mirror_store_bytes",
        "gauge",
        "Bytes a caching mirror keeps, by kind.",
    );
    let _ = writeln!(
        out,
        "pacmesh_mirror_store_bytes{{kind=\"package\"}} {}",
        m.packages.kept_bytes
    );
    let _ = writeln!(
        out,
        "pacmesh_mirror_store_bytes{{kind=\"database\"}} {}",
        d.kept_bytes
    );
    family(
        out,
        "pacmesh_mirror_store_max_bytes",
        "gauge",
        "A caching mirror's cap on kept packages.",
    );
    let _ = writeln!(
        out,
        "pacmesh_mirror_store_max_bytes {}",
        m.packages.max_bytes
    );
    family(
        out,
        "pacmesh_mirror_prefetched_total",
        "counter",
        "Newer package versions a caching mirror fetched ahead of its clients: files, bytes.",
    );
    for (unit, n) in [("files", m.prefetch.files), ("bytes", m.prefetch.bytes)] {
        let _ = writeln!(
            out,
            "pacmesh_mirror_prefetched_total{{unit=\"{unit}\"}} {n}"
        );
    }
    family(
        out,
        "pacmesh_mirror_databases_total",
        "counter",
        "A caching mirror's database events: served, stale_served, fetched, not_modified, failed_check.",
    );
    for (event, n) in [
        ("served", d.served),
        ("stale_served", d.stale_served),
        ("fetched", d.fetched),
        ("not_modified", d.not_modified),
        ("failed_check", d.failed_checks),
    ] {
        let _ = writeln!(
            out,
            "pacmesh_mirror_databases_total{{event=\"{event}\"}} {n}"
        );
    }
}

/// The metrics of `s` (docs/DESIGN.md, "Metrics").
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "pacmesh_requests_total",
        "counter",
        "Requests answered, by source.",
    );
    for (source, n) in s.requests.iter() {
        let source = source.as_str();
        let _ = writeln!(out, "pacmesh_requests_total{{source=\"{source}\"}} {n}");
    }
    family(
        &mut out,
        "pacmesh_bytes_total",
        "counter",
        "Package bytes sent to pacman or peers, by source.",
    );
    for (source, _, n) in s.bytes.iter() {
        let _ = writeln!(out, "pacmesh_bytes_total{{source=\"{source}\"}} {n}");
    }
    family(
        &mut out,
        "pacmesh_saved_bytes_total",
        "counter",
        "Bytes this host did not download from the internet (served locally or by peers).",
    );
    let _ = writeln!(out, "pacmesh_saved_bytes_total {}", s.bytes.wan_saved);
    family(
        &mut out,
        "pacmesh_cache_files",
        "gauge",
        "Package files in the shared cache dirs.",
    );
    let _ = writeln!(out, "pacmesh_cache_files {}", s.cache.files);
    family(&mut out, "pacmesh_peers", "gauge", "Linked peers.");
    let _ = writeln!(out, "pacmesh_peers {}", s.peers.len());
    peers(&mut out, s);
    family(
        &mut out,
        "pacmesh_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(out, "pacmesh_uptime_seconds {}", s.uptime_s);
    if let Some(m) = &s.mirror {
        mirror(&mut out, m);
    }
    transfers(&mut out, s);
    out
}

/// The per-peer families.
fn peers(out: &mut String, s: &Snapshot) {
    family(
        out,
        "pacmesh_peer_packages",
        "gauge",
        "Packages in each linked peer's digest.",
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "pacmesh_peer_packages{{peer=\"{}\"}} {}",
            p.node_id, p.packages
        );
    }
    family(
        out,
        "pacmesh_peer_rtt_seconds",
        "gauge",
        "Round-trip time to each linked peer.",
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "pacmesh_peer_rtt_seconds{{peer=\"{}\"}} {}",
            p.node_id,
            p.rtt_ms / 1000.0
        );
    }
    family(
        out,
        "pacmesh_peer_penalised",
        "gauge",
        "1 while a peer is penalised (it sent a file that did not verify).",
    );
    for p in &s.peers {
        let on = u8::from(p.penalised_until_s.is_some());
        let _ = writeln!(out, "pacmesh_peer_penalised{{peer=\"{}\"}} {on}", p.node_id);
    }
}

/// The transfer-duration histogram.
fn transfers(out: &mut String, s: &Snapshot) {
    let name = "pacmesh_transfer_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Duration of package responses, by source.",
    );
    for (source, h) in s.transfer.iter() {
        for (i, n) in h.cumulative.iter().enumerate() {
            let le = DURATION_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{source=\"{source}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_sum{{source=\"{source}\"}} {}", h.sum_s);
        let _ = writeln!(out, "{name}_count{{source=\"{source}\"}} {}", h.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample;

    #[test]
    fn every_counter_is_a_sample() {
        let s = sample::snapshot(true);
        let text = render(&s);
        let has = |line: String| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        for (source, n) in s.requests.iter() {
            has(format!(
                "pacmesh_requests_total{{source=\"{}\"}} {n}",
                source.as_str()
            ));
        }
        for (source, _, n) in s.bytes.iter() {
            has(format!("pacmesh_bytes_total{{source=\"{source}\"}} {n}"));
        }
        has(format!("pacmesh_saved_bytes_total {}", s.bytes.wan_saved));
        has("pacmesh_cache_files 77".into());
        has("pacmesh_peers 1".into());
        has("pacmesh_uptime_seconds 4242".into());
        let peer = "ab".repeat(32);
        has(format!("pacmesh_peer_packages{{peer=\"{peer}\"}} 321"));
        has(format!(
            "pacmesh_peer_rtt_seconds{{peer=\"{peer}\"}} 0.0015"
        ));
        has(format!("pacmesh_peer_penalised{{peer=\"{peer}\"}} 1"));
        has("pacmesh_mirror_upstream_bytes_total{kind=\"package\"} 5000002".into());
        has("pacmesh_mirror_upstream_bytes_total{kind=\"database\"} 2006".into());
        has("pacmesh_mirror_store_bytes{kind=\"package\"} 7000000".into());
        has("pacmesh_mirror_store_bytes{kind=\"database\"} 2008".into());
        has("pacmesh_mirror_store_max_bytes 8000000".into());
        has("pacmesh_mirror_prefetched_total{unit=\"files\"} 3".into());
        has("pacmesh_mirror_prefetched_total{unit=\"bytes\"} 3003".into());
        for (event, n) in [
            ("served", 2001),
            ("stale_served", 2002),
            ("fetched", 2003),
            ("not_modified", 2004),
            ("failed_check", 2005),
        ] {
            has(format!(
                "pacmesh_mirror_databases_total{{event=\"{event}\"}} {n}"
            ));
        }
        let d = "pacmesh_transfer_duration_seconds";
        has(format!("{d}_bucket{{source=\"local\",le=\"0.001\"}} 1"));
        has(format!("{d}_bucket{{source=\"local\",le=\"+Inf\"}} 11"));
        has(format!("{d}_sum{{source=\"local\"}} 0.25"));
        has(format!("{d}_count{{source=\"local\"}} 11"));
        has(format!("{d}_count{{source=\"peer\"}} 0"));
    }

    #[test]
    fn each_family_is_declared_once_and_local_mode_has_no_mirror_families() {
        let text = render(&sample::snapshot(false));
        assert!(!text.contains("pacmesh_mirror_"), "{text}");
        let mut types: Vec<_> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "{text}");
    }
}
