//! Prefetch (docs/DESIGN.md, "Prefetch"), pacoloco's behaviour: after
//! each periodic or admin refresh, a newer version of each package clients fetched
//! in the last `mirror.prefetch_days` days is fetched before any client
//! asks, one file at a time, its average rate held under
//! `mirror.prefetch_kib_s`; what was prefetched is logged and shown in
//! status, metrics and the page.
//!
//! "Fetched by clients": a kept file a response sent (its last use,
//! `fetch::usage`) or that a client's miss kept (its mtime), within the
//! window; a file prefetched and not yet sent to anyone does not count,
//! so versions nobody uses are not chained forward.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::fetch::vercmp::{package_arch, split_package, vercmp};
use crate::fetch::{source::MirrorSources, Engine};
use crate::fullsync::{fetch_and_keep, Fetched};
use crate::mirror_client::MirrorClient;
use crate::mirrors::MirrorTable;
use crate::syncdb::{Expected, FedDbs};

/// Names of the last prefetched files shown in status and the page.
pub const SHOWN: usize = 20;

/// Which listed files to prefetch (pure): those not kept whose package
/// (name and architecture) a client fetched recently at an older version.
/// `recent`: file names clients fetched; `listed`: the database's files.
pub fn select(
    recent: &[String],
    listed: &[(String, Expected)],
    kept: &HashSet<String>,
) -> Vec<(String, Expected)> {
    let mut newest: HashMap<(&str, &str), &str> = HashMap::new();
    for file in recent {
        let (Some((name, version)), Some(arch)) = (split_package(file), package_arch(file)) else {
            continue;
        };
        let seen = newest.entry((name, arch)).or_insert(version);
        if vercmp(version, seen).is_gt() {
            *seen = version;
        }
    }
    let mut out: Vec<(String, Expected)> = listed
        .iter()
        .filter(|(file, _)| !kept.contains(file))
        .filter(|(file, _)| {
            let (Some((name, version)), Some(arch)) = (split_package(file), package_arch(file))
            else {
                return false;
            };
            newest
                .get(&(name, arch))
                .is_some_and(|old| vercmp(version, old).is_gt())
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// How long to pause after `bytes` took `took`, so that the average rate
/// stays at most `limit` bytes a second (0: no limit).
pub fn pause(bytes: u64, took: Duration, limit: u64) -> Duration {
    if limit == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 / limit as f64).saturating_sub(took)
}

/// What prefetch did since start, for status, metrics and the page.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct PrefetchStatus {
    pub files: u64,
    pub bytes: u64,
    /// The last files prefetched, newest last.
    pub last: Vec<String>,
}

/// Prefetch's record: counters, and the files it kept that no client has
/// been sent yet.
#[derive(Debug, Default)]
pub struct Report {
    inner: Mutex<(PrefetchStatus, VecDeque<String>, HashSet<String>)>,
}

impl Report {
    pub fn status(&self) -> PrefetchStatus {
        let inner = self.inner.lock();
        PrefetchStatus {
            last: inner.1.iter().cloned().collect(),
            ..inner.0.clone()
        }
    }

    fn add(&self, name: &str, bytes: u64) {
        let mut inner = self.inner.lock();
        inner.0.files += 1;
        inner.0.bytes += bytes;
        inner.1.push_back(name.to_owned());
        if inner.1.len() > SHOWN {
            inner.1.pop_front();
        }
        inner.2.insert(name.to_owned());
    }

    fn prefetched(&self, name: &str) -> bool {
        self.inner.lock().2.contains(name)
    }

    /// Forgets the prefetched files no longer kept (the store's policy
    /// removed them): the record stays as small as the store.
    fn forget_unless(&self, kept: &HashSet<String>) {
        self.inner.lock().2.retain(|name| kept.contains(name));
    }
}

/// What a prefetch run works with.
#[derive(Clone)]
pub struct Prefetcher {
    pub engine: Engine,
    pub fed: Arc<FedDbs>,
    pub client: MirrorClient,
    pub report: Arc<Report>,
    /// Clients' fetches this recent count.
    pub window: Duration,
    /// Bytes a second on average; 0: no limit.
    pub limit: u64,
}

impl Prefetcher {
    /// One run over every proxied database; returns the files kept.
    pub async fn run(&self, mirrors: &MirrorTable) -> usize {
        let store = self.engine.store();
        let Ok(files) = store.listed().await else {
            return 0;
        };
        let recent: Vec<String> = files
            .iter()
            .filter(|f| f.idle <= self.window)
            .filter(|f| !self.report.prefetched(&f.name) || store.served(&f.name))
            .map(|f| f.name.clone())
            .collect();
        let mut kept: HashSet<String> = files.into_iter().map(|f| f.name).collect();
        self.report.forget_unless(&kept);
        let mut done = 0;
        for (arch, repo, _) in self.fed.repos() {
            let todo = select(&recent, &self.fed.listed(&arch, &repo), &kept);
            for (name, expected) in todo {
                let urls = self.client.order(mirrors.file_urls(&repo, &arch, &name));
                let started = Instant::now();
                let sources = MirrorSources {
                    client: self.client.clone(),
                    mirror_urls: urls,
                };
                let fetched = fetch_and_keep(&self.engine, &name, sources, &expected, &|_| {});
                // Paced by what was kept: a file that failed (or whose
                // listed size is absurd and was refused) holds no pause.
                let paced = if fetched.await == Fetched::Kept {
                    info!(file = %name, bytes = expected.size, "prefetched");
                    self.report.add(&name, expected.size);
                    done += 1;
                    // Another database may list the same file.
                    kept.insert(name);
                    expected.size
                } else {
                    warn!(file = %name, "prefetch failed");
                    0
                };
                let wait = pause(paced, started.elapsed(), self.limit);
                tokio::time::sleep(wait).await;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(size: u64) -> Expected {
        Expected {
            size,
            sha256: [0; 32],
            repo: "core".into(),
        }
    }

    #[test]
    fn newer_versions_of_what_clients_fetched() {
        let recent: Vec<String> = [
            "a-1.0-1-x86_64.pkg.tar.zst",
            "a-1.5-1-x86_64.pkg.tar.zst",
            "b-2-1-any.pkg.tar.zst",
            "c-1-1-x86_64.pkg.tar.zst",
        ]
        .map(String::from)
        .to_vec();
        let listed = vec![
            ("a-2.0-1-x86_64.pkg.tar.zst".to_string(), exp(1)),
            ("a-1.2-1-aarch64.pkg.tar.zst".to_string(), exp(1)),
            ("b-2-1-any.pkg.tar.zst".to_string(), exp(2)),
            ("c-1-1-x86_64.pkg.tar.zst".to_string(), exp(3)),
            ("d-9-1-x86_64.pkg.tar.zst".to_string(), exp(4)),
            ("c-0.9-1-x86_64.pkg.tar.zst".to_string(), exp(5)),
        ];
        let kept: HashSet<String> = ["b-2-1-any.pkg.tar.zst".to_string()].into();
        let got: Vec<String> = select(&recent, &listed, &kept)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // a: newer on the same arch (not aarch64); b kept; c the same or older; d never fetched.
        assert_eq!(got, vec!["a-2.0-1-x86_64.pkg.tar.zst".to_string()]);
    }

    #[test]
    fn the_average_rate_is_held_under_the_limit() {
        let s = Duration::from_secs;
        assert_eq!(pause(1000, s(0), 0), s(0));
        assert_eq!(pause(1000, s(1), 100), s(9));
        assert_eq!(pause(1000, s(20), 100), s(0));
        // Nothing kept (a failed fetch), nothing to wait for.
        assert_eq!(pause(0, s(0), 100), s(0));
    }

    #[test]
    fn the_record_of_prefetched_files_forgets_those_no_longer_kept() {
        let report = Report::default();
        report.add("a-2-1-any.pkg.tar.zst", 10);
        report.add("b-2-1-any.pkg.tar.zst", 20);
        let kept: HashSet<String> = ["b-2-1-any.pkg.tar.zst".to_string()].into();
        report.forget_unless(&kept);
        assert!(!report.prefetched("a-2-1-any.pkg.tar.zst"));
        assert!(report.prefetched("b-2-1-any.pkg.tar.zst"));
        // The counters and the last names shown stay as they were.
        assert_eq!((report.status().files, report.status().last.len()), (2, 2));
    }
}
