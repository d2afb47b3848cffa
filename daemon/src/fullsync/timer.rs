//! The daemon's refresh timer for a caching mirror: full mirrors synced,
//! databases refreshed, newer versions prefetched; and the log lines a
//! daemon's sync writes (`LogProgress`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Progress, Report, Syncer};
use crate::mirrors::MirrorTable;

/// The daemon's report of a run: a line per package that failed.
struct LogProgress;

impl Progress for LogProgress {
    fn begin(&self, what: &str, files: usize, bytes: u64) {
        if files > 0 {
            info!(repo = what, files, bytes, "full mirror: fetching");
        }
    }

    fn bytes(&self, _n: u64) {}

    fn done(&self, name: &str, ok: bool) {
        if !ok {
            warn!(file = name, "full mirror: package not fetched");
        }
    }
}

/// The daemon's timer (`mirror.refresh_interval_s`): full mirrors synced
/// at start; then, every interval or when an admin refresh asks
/// ([`Report::run_now`]), every kept database refreshed, newer versions
/// prefetched (`prefetch`, when on) and the full mirrors synced again.
/// Each sync's outcome goes to `report`. The caller pins what the served
/// databases list first (`Syncer::pin_current`) and tells `report` what
/// the loop has to do (`Report::set_work`), before clients are served.
pub async fn refresh_loop(
    syncer: Syncer,
    prefetcher: Option<crate::prefetch::Prefetcher>,
    mirrors: impl Fn() -> Arc<MirrorTable> + Send + 'static,
    full: Vec<(String, String)>,
    timer: (Option<Duration>, Arc<Report>),
    shutdown: CancellationToken,
) {
    let (interval, report) = timer;
    let progress: Arc<dyn Progress> = Arc::new(LogProgress);
    loop {
        for (repo, arch) in &full {
            let table = mirrors();
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                r = syncer.sync(&table, repo, arch, &progress) => r,
            };
            match &outcome {
                Ok(s) => info!(
                    repo,
                    arch,
                    listed = s.listed,
                    fetched = s.fetched,
                    bytes = s.fetched_bytes,
                    failed = s.failed.len(),
                    switched = s.switched,
                    removed = s.removed,
                    "full mirror synced"
                ),
                Err(e) => warn!(repo, arch, error = %e, "full mirror sync failed"),
            }
            report.record(repo, arch, &outcome);
        }
        if interval.is_none() && full.is_empty() && prefetcher.is_none() {
            return;
        }
        let tick = async {
            match interval {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tick => {}
            () = report.asked() => info!("refresh and full sync asked for by an admin"),
        }
        refresh_once(&syncer, prefetcher.as_ref(), &mirrors(), &shutdown).await;
    }
}

/// Every kept database refreshed, then newer versions prefetched.
async fn refresh_once(
    syncer: &Syncer,
    prefetcher: Option<&crate::prefetch::Prefetcher>,
    table: &MirrorTable,
    shutdown: &CancellationToken,
) {
    let done = syncer
        .proxy
        .refresh_all(|k| (syncer.client).order(table.file_urls(&k.repo, &k.arch, &k.name)))
        .await;
    info!(
        asked = done.asked,
        fresh = done.fresh,
        failed = done.failed,
        "databases refreshed"
    );
    if let Some(prefetcher) = prefetcher {
        let files = tokio::select! {
            () = shutdown.cancelled() => return,
            n = prefetcher.run(table) => n,
        };
        info!(files, "prefetch run done");
    }
}

/// The (repo, architecture) pairs mirrored whole.
pub fn full_repos(mirror: &crate::config::mirror::MirrorConfig) -> Vec<(String, String)> {
    mirror
        .repos
        .iter()
        .filter(|r| r.full)
        .flat_map(|r| r.archs.iter().map(|a| (r.name.clone(), a.clone())))
        .collect()
}
