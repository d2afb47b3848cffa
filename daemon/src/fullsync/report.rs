//! What the full mirrors' last runs did, for the status JSON and the page
//! (`mirror.full_sync`), and the admin refresh's way to start a run now
//! instead of at the next tick of the refresh timer.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::{Summary, SyncError};

/// How many failed packages a run's status names (the count is always
/// whole; the log has a line for each).
pub const FAILED_NAMED: usize = 10;

/// One full-mirror repo's last run, as the status JSON shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncStatus {
    pub repo: String,
    pub arch: String,
    /// When the run ended (Unix seconds).
    pub ended_unix: u64,
    /// Why the run stopped before fetching packages (the database could
    /// not be had, the store could not be listed); the rest is then 0.
    pub error: Option<String>,
    pub listed: usize,
    pub present: usize,
    pub fetched: usize,
    pub fetched_bytes: u64,
    /// Packages that could not be had (the database was not switched).
    pub failed: usize,
    /// The first [`FAILED_NAMED`] of them.
    pub failed_names: Vec<String>,
    pub unverifiable: usize,
    /// The run switched clients to a new database.
    pub switched: bool,
    pub removed: usize,
}

impl SyncStatus {
    fn new(repo: &str, arch: &str, outcome: &Result<Summary, SyncError>) -> Self {
        let ended_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = SyncStatus {
            repo: repo.to_owned(),
            arch: arch.to_owned(),
            ended_unix,
            ..SyncStatus::default()
        };
        match outcome {
            Err(e) => SyncStatus {
                error: Some(e.to_string()),
                ..base
            },
            Ok(s) => SyncStatus {
                listed: s.listed,
                present: s.present,
                fetched: s.fetched,
                fetched_bytes: s.fetched_bytes,
                failed: s.failed.len(),
                failed_names: s.failed.iter().take(FAILED_NAMED).cloned().collect(),
                unverifiable: s.unverifiable,
                switched: s.switched,
                removed: s.removed,
                ..base
            },
        }
    }
}

/// The last run of each full-mirror repo, and the "run now" signal.
#[derive(Debug, Default)]
pub struct Report {
    last: Mutex<BTreeMap<(String, String), SyncStatus>>,
    now: Notify,
    /// Whether any repo is mirrored whole (a run now syncs one).
    full: std::sync::atomic::AtomicBool,
    /// Whether a run now has work to do (full mirrors, or prefetch).
    work: std::sync::atomic::AtomicBool,
}

impl Report {
    /// Records how the run of `repo`/`arch` that just ended went.
    pub fn record(&self, repo: &str, arch: &str, outcome: &Result<Summary, SyncError>) {
        let status = SyncStatus::new(repo, arch, outcome);
        self.last
            .lock()
            .insert((repo.to_owned(), arch.to_owned()), status);
    }

    /// Each full-mirror repo's last run, by repo then architecture.
    pub fn status(&self) -> Vec<SyncStatus> {
        self.last.lock().values().cloned().collect()
    }

    /// The refresh loop has repos to mirror whole (`full`), or prefetches
    /// (`prefetch`).
    pub fn set_work(&self, full: bool, prefetch: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.full.store(full, Relaxed);
        self.work.store(full || prefetch, Relaxed);
    }

    /// Asks the refresh loop to refresh, prefetch and sync now, if it has
    /// any of that to do; `false` when no repo is mirrored whole (no sync
    /// to run).
    pub fn run_now(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.work.load(Relaxed) {
            self.now.notify_one();
        }
        self.full.load(Relaxed)
    }

    /// Resolves when [`Report::run_now`] was called (once per call made
    /// while nobody waited).
    pub(super) async fn asked(&self) {
        self.now.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_shown_with_its_failures_named_up_to_the_bound() {
        let report = Report::default();
        let failed: Vec<String> = (0..FAILED_NAMED + 5).map(|i| format!("p{i}")).collect();
        let summary = Summary {
            listed: 40,
            present: 20,
            fetched: 5,
            fetched_bytes: 500,
            failed: failed.clone(),
            ..Summary::default()
        };
        report.record("core", "x86_64", &Ok(summary));
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        report.record("extra", "x86_64", &Err(SyncError::Store(missing)));
        let shown = report.status();
        assert_eq!(shown.len(), 2);
        let core = &shown[0];
        assert_eq!(
            (core.repo.as_str(), core.listed, core.fetched),
            ("core", 40, 5)
        );
        assert_eq!(core.failed, FAILED_NAMED + 5);
        assert_eq!(core.failed_names, failed[..FAILED_NAMED]);
        assert!(!core.switched && core.error.is_none());
        let extra = &shown[1];
        assert_eq!(extra.error.as_deref(), Some("the store: gone"));
        assert_eq!(extra.listed, 0);
        assert!(extra.ended_unix > 0);
    }

    #[test]
    fn run_now_is_refused_without_full_repos_and_remembered_with_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // Asked before anyone waited: the next wait resolves at once.
        let remembered = |report: &Report| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(5), report.asked())
                    .await
                    .expect("the request to run was remembered");
            })
        };
        let report = Report::default();
        assert!(!report.run_now());
        report.set_work(true, false);
        assert!(report.run_now());
        remembered(&report);
        // Prefetch alone: no sync started, but the run is asked for.
        let report = Report::default();
        report.set_work(false, true);
        assert!(!report.run_now());
        remembered(&report);
    }
}
