//! `/_pacmesh/metrics` in the Prometheus text exposition format (0.0.4).

use std::fmt::Write;

use http::Response;

use super::Body;
use crate::stats::DURATION_BUCKETS;
use crate::State;

pub fn response(state: &State) -> Response<Body> {
    let text = render(state);
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

pub fn render(state: &State) -> String {
    let mut out = String::with_capacity(2048);
    let r = state.stats.requests();
    family(
        &mut out,
        "pacmesh_requests_total",
        "counter",
        "Requests answered, by source.",
    );
    for (source, n) in [
        ("local", r.local),
        ("peer", r.peer),
        ("peer_unverified", r.peer_unverified),
        ("peer_wait", r.peer_wait),
        ("mirror_redirect", r.mirror_redirect),
        ("mirror_fetch", r.mirror_fetch),
        ("database", r.database),
        ("not_found", r.not_found),
        ("bad_request", r.bad_request),
    ] {
        let _ = writeln!(out, "pacmesh_requests_total{{source=\"{source}\"}} {n}");
    }
    let b = state.stats.bytes(state.mesh.bytes_to_peers());
    family(
        &mut out,
        "pacmesh_bytes_total",
        "counter",
        "Package bytes sent to pacman or peers, by source.",
    );
    for (source, n) in [
        ("local", b.local),
        ("peer", b.peer),
        ("mirror_fetch", b.mirror_fetch),
        ("peer_inflight", b.peer_inflight),
        ("to_peers", b.to_peers),
    ] {
        let _ = writeln!(out, "pacmesh_bytes_total{{source=\"{source}\"}} {n}");
    }
    family(
        &mut out,
        "pacmesh_saved_bytes_total",
        "counter",
        "Bytes this host did not download from the internet (served locally or by peers).",
    );
    let _ = writeln!(out, "pacmesh_saved_bytes_total {}", b.wan_saved);
    let (_, files) = state.index_summary();
    family(
        &mut out,
        "pacmesh_cache_files",
        "gauge",
        "Package files in the shared cache dirs.",
    );
    let _ = writeln!(out, "pacmesh_cache_files {files}");
    family(&mut out, "pacmesh_peers", "gauge", "Linked peers.");
    let peers = state.mesh.peers();
    let _ = writeln!(out, "pacmesh_peers {}", peers.len());
    family(
        &mut out,
        "pacmesh_peer_packages",
        "gauge",
        "Packages in each linked peer's digest.",
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "pacmesh_peer_packages{{peer=\"{}\"}} {}",
            p.node_id, p.packages
        );
    }
    family(
        &mut out,
        "pacmesh_peer_rtt_seconds",
        "gauge",
        "Round-trip time to each linked peer.",
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "pacmesh_peer_rtt_seconds{{peer=\"{}\"}} {}",
            p.node_id,
            p.rtt_ms / 1000.0
        );
    }
    family(
        &mut out,
        "pacmesh_peer_penalised",
        "gauge",
        "1 while a peer is penalised (it sent a file that did not verify).",
    );
    for p in &peers {
        let on = u8::from(p.penalised_until_s.is_some());
        let _ = writeln!(out, "pacmesh_peer_penalised{{peer=\"{}\"}} {on}", p.node_id);
    }
    family(
        &mut out,
        "pacmesh_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(
        out,
        "pacmesh_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );

    if let Some(m) = state.mirror_status() {
        mirror(&mut out, &m);
    }

    let name = "pacmesh_transfer_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Duration of package responses, by source.",
    );
    for (source, histogram) in [
        ("local", &state.stats.local_transfer),
        ("peer", &state.stats.peer_transfer),
    ] {
        let (buckets, sum, count) = histogram.snapshot();
        for (i, n) in buckets.iter().enumerate() {
            let le = DURATION_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{source=\"{source}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_sum{{source=\"{source}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{source=\"{source}\"}} {count}");
    }
    out
}
