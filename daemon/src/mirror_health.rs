//! Which of a repo's mirrors to try first, from what this daemon saw of
//! them: a mirror that failed (could not be reached, timed out, answered
//! an error, or broke off a body) within the last [`RETRY_AFTER`] goes
//! after every other, and is tried again in its turn once that passed;
//! among the rest the faster (a moving average of the bytes per second
//! its bodies came at) goes first, a mirror not measured yet counting as
//! fast as the best measured one, so each gets its chance; ties keep the
//! configured order. Throughputs are compared in buckets a factor of two
//! apart, so noise does not reorder mirrors.
//!
//! Mirrors are told apart by origin (scheme, host and port): one mirror
//! serves every repo and architecture of a site.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A failed mirror goes last for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Weight of the newest throughput sample in the moving average.
const EWMA_WEIGHT: f64 = 0.3;

/// Bodies shorter than this say more about latency than throughput and
/// are not measured.
const MIN_SAMPLE_BYTES: u64 = 256 * 1024;

/// Origins remembered at most (the least recently heard of goes first).
pub const MAX_ORIGINS: usize = 256;

#[derive(Debug, Clone, Default)]
struct Record {
    bytes_per_s: Option<f64>,
    failed_at: Option<Instant>,
    heard: Option<Instant>,
}

/// What was seen of each mirror.
#[derive(Debug, Default)]
pub struct Health {
    origins: HashMap<String, Record>,
}

/// `scheme://host:port` of `url`, lowercase, the scheme's default port
/// left out (the URL itself when it does not parse).
pub fn origin(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return url.to_owned();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    match uri.port_u16().filter(|&p| Some(p) != default) {
        Some(port) => format!("{scheme}://{}:{port}", host.to_ascii_lowercase()),
        None => format!("{scheme}://{}", host.to_ascii_lowercase()),
    }
}

impl Health {
    fn record(&mut self, url: &str, now: Instant) -> &mut Record {
        let origin = origin(url);
        if self.origins.len() >= MAX_ORIGINS && !self.origins.contains_key(&origin) {
            let oldest = self
                .origins
                .iter()
                .min_by_key(|(_, r)| r.heard)
                .map(|(o, _)| o.clone());
            if let Some(oldest) = oldest {
                self.origins.remove(&oldest);
            }
        }
        let record = self.origins.entry(origin).or_default();
        record.heard = Some(now);
        record
    }

    /// The mirror of `url` failed.
    pub fn failed(&mut self, url: &str, now: Instant) {
        self.record(url, now).failed_at = Some(now);
    }

    /// The mirror of `url` sent a whole body of `bytes` in `took`.
    pub fn served(&mut self, url: &str, bytes: u64, took: Duration, now: Instant) {
        let record = self.record(url, now);
        record.failed_at = None;
        if bytes < MIN_SAMPLE_BYTES || took.is_zero() {
            return;
        }
        let sample = bytes as f64 / took.as_secs_f64();
        record.bytes_per_s = Some(match record.bytes_per_s {
            Some(old) => EWMA_WEIGHT * sample + (1.0 - EWMA_WEIGHT) * old,
            None => sample,
        });
    }

    /// `urls` in the order to try them.
    pub fn order(&self, urls: Vec<String>, now: Instant) -> Vec<String> {
        let records: Vec<Option<&Record>> =
            urls.iter().map(|u| self.origins.get(&origin(u))).collect();
        let best = records
            .iter()
            .filter_map(|r| r.and_then(|r| r.bytes_per_s))
            .map(bucket)
            .max()
            .unwrap_or(0);
        let mut keyed: Vec<(bool, std::cmp::Reverse<i32>, usize, String)> = urls
            .into_iter()
            .zip(records)
            .enumerate()
            .map(|(i, (url, r))| {
                let down = r
                    .and_then(|r| r.failed_at)
                    .is_some_and(|at| now.saturating_duration_since(at) < RETRY_AFTER);
                let speed = r.and_then(|r| r.bytes_per_s).map_or(best, bucket);
                (down, std::cmp::Reverse(speed), i, url)
            })
            .collect();
        keyed.sort();
        keyed.into_iter().map(|(.., url)| url).collect()
    }
}

/// Buckets a factor of two apart.
fn bucket(bytes_per_s: f64) -> i32 {
    bytes_per_s.max(1.0).log2().floor() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn urls() -> Vec<String> {
        [
            "https://a.example/core/os/x86_64/p",
            "http://b.example:8080/core/p",
            "https://c.example/p",
        ]
        .map(String::from)
        .to_vec()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// What happened to a mirror, `secs` after t0.
    enum Seen {
        Failed(&'static str),
        Served(&'static str, u64, u64),
    }

    #[test]
    fn ordering_table() {
        use Seen::*;
        let (a, b, c) = (
            "https://a.example/q",
            "http://b.example:8080/q",
            "https://c.example/q",
        );
        let cases: Vec<(&str, Vec<Seen>, u64, [usize; 3])> = vec![
            ("nothing seen: configured order", vec![], 0, [0, 1, 2]),
            ("a failed: last", vec![Failed(a)], 1, [1, 2, 0]),
            (
                "a failed long ago: tried in its turn",
                vec![Failed(a)],
                301,
                [0, 1, 2],
            ),
            (
                "the fastest first; unmeasured ones count as fast",
                vec![Served(b, 10 * MB, 10), Served(c, 100 * MB, 10)],
                1,
                [0, 2, 1],
            ),
            (
                "a success clears a failure",
                vec![Failed(a), Served(a, 1, 1)],
                1,
                [0, 1, 2],
            ),
            (
                "small bodies measure nothing",
                vec![Served(b, 1000, 10)],
                1,
                [0, 1, 2],
            ),
            (
                "down before slow",
                vec![Failed(c), Served(b, MB, 100)],
                1,
                [0, 1, 2],
            ),
        ];
        for (what, seen, now_s, want) in cases {
            let t0 = Instant::now();
            let mut health = Health::default();
            for event in seen {
                match event {
                    Failed(url) => health.failed(url, t0),
                    Served(url, bytes, s) => health.served(url, bytes, secs(s), t0),
                }
            }
            let got = health.order(urls(), t0 + secs(now_s));
            let want: Vec<String> = want.iter().map(|&i| urls()[i].clone()).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            origin("https://a.example/core/os/x86_64/p"),
            "https://a.example"
        );
        assert_eq!(origin("http://b.example:8080/x"), "http://b.example:8080");
        assert_eq!(origin("not a url"), "not a url");
        // One origin however the URL spells it: the default port, the
        // host's case.
        assert_eq!(origin("https://a.example:443/x"), "https://a.example");
        assert_eq!(origin("http://A.Example:80/x"), "http://a.example");
        assert_eq!(origin("https://a.example:80/x"), "https://a.example:80");
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let t0 = Instant::now();
        let mut health = Health::default();
        for i in 0..MAX_ORIGINS * 2 {
            health.failed(&format!("http://m{i}.example/p"), t0 + secs(i as u64));
        }
        assert_eq!(health.origins.len(), MAX_ORIGINS);
        assert!(health
            .origins
            .contains_key(&format!("http://m{}.example", MAX_ORIGINS * 2 - 1)));
    }
}
