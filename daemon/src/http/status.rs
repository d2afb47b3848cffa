//! `/_pacmesh/status`: what this daemon knows and has done, as JSON.

use http::Response;

use super::Body;
use crate::snapshot::Snapshot;

pub fn response(snapshot: &Snapshot) -> Response<Body> {
    super::live_page("application/json", render(snapshot))
}

/// The status JSON (docs/DESIGN.md, "Status JSON"): the snapshot's serde
/// form, pretty-printed.
pub fn render(snapshot: &Snapshot) -> Vec<u8> {
    serde_json::to_vec_pretty(snapshot).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::sample;
    use crate::stats::Source;

    fn json(mirror: bool) -> serde_json::Value {
        serde_json::from_slice(&render(&sample::snapshot(mirror))).unwrap()
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<_> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn the_field_names_are_the_documented_ones() {
        let j = json(true);
        assert_eq!(
            keys(&j),
            [
                "bytes", "cache", "mirror", "node_id", "peers", "repos", "requests", "uptime_s",
                "version"
            ]
        );
        assert_eq!(
            keys(&j["requests"]),
            [
                "bad_request",
                "database",
                "local",
                "mirror_fetch",
                "mirror_redirect",
                "not_found",
                "peer",
                "peer_unverified",
                "peer_wait"
            ]
        );
        assert_eq!(
            keys(&j["bytes"]),
            [
                "local",
                "mirror_fetch",
                "peer",
                "peer_inflight",
                "to_peers",
                "wan_saved"
            ]
        );
        assert_eq!(keys(&j["cache"]), ["dirs", "files"]);
        assert_eq!(
            keys(&j["mirror"]),
            ["databases", "full_sync", "packages", "prefetch", "repos"]
        );
        assert_eq!(
            keys(&j["mirror"]["full_sync"][0]),
            [
                "arch",
                "ended_unix",
                "error",
                "failed",
                "failed_names",
                "fetched",
                "fetched_bytes",
                "listed",
                "present",
                "removed",
                "repo",
                "switched",
                "unverifiable"
            ]
        );
        assert_eq!(keys(&j["mirror"]["prefetch"]), ["bytes", "files", "last"]);
        assert_eq!(
            keys(&j["mirror"]["packages"]),
            [
                "bytes_upstream",
                "hits",
                "kept",
                "kept_bytes",
                "max_bytes",
                "misses"
            ]
        );
        assert_eq!(
            keys(&j["mirror"]["databases"]),
            [
                "bytes_upstream",
                "failed_checks",
                "fetched",
                "kept",
                "kept_bytes",
                "not_modified",
                "served",
                "stale_served"
            ]
        );
        assert_eq!(keys(&j["mirror"]["repos"][0]), ["arch", "files", "repo"]);
        assert_eq!(
            keys(&j["peers"][0]),
            [
                "addr",
                "archs",
                "bytes_received",
                "bytes_sent",
                "file_bytes_received",
                "file_bytes_sent",
                "node_id",
                "packages",
                "penalised_until_s",
                "penalty_reason",
                "rtt_ms"
            ]
        );
        assert!(json(false).get("mirror").is_none());
    }

    #[test]
    fn every_counter_has_its_value() {
        let s = sample::snapshot(true);
        let j = json(true);
        for (source, n) in s.requests.iter() {
            assert_eq!(j["requests"][source.as_str()], n, "{}", source.as_str());
        }
        for (name, _, n) in s.bytes.iter() {
            assert_eq!(j["bytes"][name], n, "{name}");
        }
        assert_eq!(j["bytes"]["wan_saved"], s.bytes.wan_saved);
        assert_eq!(j["node_id"], "ab".repeat(32));
        assert_eq!(j["peers"][0]["node_id"], "ab".repeat(32));
        assert_eq!(j["uptime_s"], 4242);
        assert_eq!(j["cache"]["files"], 77);
        assert_eq!(j["repos"], 5);
        assert_eq!(
            j["mirror"]["packages"]["misses"],
            s.requests.get(Source::MirrorFetch)
        );
        assert_eq!(j["mirror"]["databases"]["failed_checks"], 2005);
    }
}
