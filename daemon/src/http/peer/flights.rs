//! Peer fetches that outlive the requests asking for them.
//!
//! A file comes from peers whole and verified before pacman gets a byte
//! (see the module above), and pacman drops a server that sends nothing
//! for 10 s. So a request waits at most [`WAIT_PER_REQUEST`] for its
//! fetch; if the fetch is still on course then, the answer is a `307` to
//! the very same URL, which pacman (libcurl) follows at once, with a fresh
//! 10 s allowance, into a new wait on the same fetch. One fetch per file
//! serves every request for it. A fetch too slow to be worth waiting for
//! ([`keep_waiting`]) is given up and the answer becomes the mirror's.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::temp::Fetched;

/// The longest one request waits for a fetch before pacman is asked to
/// come back: well inside pacman's 10 s silence limit.
pub const WAIT_PER_REQUEST: Duration = Duration::from_secs(6);

/// The longest a fetch may take in all. libcurl follows at most 30
/// redirects (since 8.3); this needs about 20.
pub const BUDGET: Duration = Duration::from_secs(120);

/// Peers slower than this (bytes/s, measured over the fetch so far) are
/// not waited for past the first [`WAIT_PER_REQUEST`]: the mirror is
/// likely faster.
pub const MIN_RATE: u64 = 2 << 20;

/// A fetch nobody has asked about for this long is dropped (pacman was
/// interrupted, or went to its next server).
const ABANDONED: Duration = Duration::from_secs(15);

/// How long a finished fetch waits to be collected by the request pacman
/// sends after a `307` to itself.
const LINGER: Duration = Duration::from_secs(10);

/// Fetches under way at once; past this, requests go to the mirror.
const MAX_FLIGHTS: usize = 16;

/// Whether a fetch that has run for `elapsed` and has `done` of `size`
/// bytes is worth another wait: it moves at [`MIN_RATE`] or better and,
/// at its pace so far, ends within [`BUDGET`].
pub fn keep_waiting(elapsed: Duration, done: u64, size: u64) -> bool {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs <= 0.0 {
        return false;
    }
    let rate = done as f64 / secs;
    let finish = secs + size.saturating_sub(done) as f64 / rate;
    rate >= MIN_RATE as f64 && finish <= BUDGET.as_secs_f64()
}

/// How far a fetch has come, written by the fetch, read by waiters.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    size: AtomicU64,
}

impl Progress {
    pub fn set(&self, bytes: u64, size: u64) {
        self.bytes.store(bytes, Relaxed);
        self.size.store(size, Relaxed);
    }
}

/// What a request gets from [`Flight::wait`].
#[derive(Debug)]
pub enum Answer {
    /// The file, verified (or allowed unverified), ready to serve.
    Ready(Arc<Fetched>),
    /// Still arriving and worth waiting for: send pacman back to us.
    ComeBack,
    /// No peer can provide it in time: the next source answers.
    Elsewhere,
}

#[derive(Clone, Debug)]
enum Outcome {
    Running,
    Ready(Arc<Fetched>),
    Failed,
}

/// One file's fetch from peers.
pub struct Flight {
    name: String,
    started: Instant,
    progress: Arc<Progress>,
    wanted: Mutex<Instant>,
    outcome: watch::Receiver<Outcome>,
    cancel: CancellationToken,
}

impl Flight {
    /// Waits up to [`WAIT_PER_REQUEST`] for the fetch to end.
    pub async fn wait(&self) -> Answer {
        self.touch();
        let mut outcome = self.outcome.clone();
        let ended = async {
            match outcome.wait_for(|o| !matches!(o, Outcome::Running)).await {
                Ok(ended) => ended.clone(),
                Err(_) => Outcome::Failed,
            }
        };
        match tokio::time::timeout(WAIT_PER_REQUEST, ended).await {
            Ok(Outcome::Ready(fetched)) => Answer::Ready(fetched),
            Ok(_) => Answer::Elsewhere,
            Err(_) => {
                self.touch();
                let elapsed = self.started.elapsed();
                let done = self.progress.bytes.load(Relaxed);
                let size = self.progress.size.load(Relaxed);
                if keep_waiting(elapsed, done, size) {
                    info!(file = %self.name, done, size, "still arriving from peers; pacman asked back");
                    Answer::ComeBack
                } else {
                    info!(file = %self.name, done, size, ms = elapsed.as_millis() as u64,
                        "peers too slow; given up for the mirror");
                    self.cancel.cancel();
                    Answer::Elsewhere
                }
            }
        }
    }

    fn touch(&self) {
        if let Ok(mut wanted) = self.wanted.lock() {
            *wanted = Instant::now();
        }
    }

    async fn abandoned(&self) {
        loop {
            tokio::time::sleep(ABANDONED / 3).await;
            let idle = self.wanted.lock().map(|w| w.elapsed()).unwrap_or_default();
            if idle >= ABANDONED {
                return;
            }
        }
    }
}

/// The fetches under way, by file name; one per daemon.
#[derive(Clone)]
pub struct Flights {
    incoming: PathBuf,
    map: Arc<Mutex<HashMap<String, Arc<Flight>>>>,
}

impl Flights {
    /// Fetches write under `incoming`, a dir no cache dir includes.
    pub fn new(incoming: PathBuf) -> Flights {
        Flights {
            incoming,
            map: Arc::default(),
        }
    }

    pub fn incoming(&self) -> &Path {
        &self.incoming
    }

    /// The fetch of `name` under way, if any.
    pub fn find(&self, name: &str) -> Option<Arc<Flight>> {
        self.map.lock().ok()?.get(name).cloned()
    }

    /// Starts `work` as the fetch of `name`, unless one is already under
    /// way (then that one is returned and `work` never runs) or too many
    /// are (then `None`).
    pub fn start<W, F>(&self, name: &str, work: W) -> Option<Arc<Flight>>
    where
        W: FnOnce(Arc<Progress>) -> F,
        F: Future<Output = Result<Fetched, &'static str>> + Send + 'static,
    {
        let mut map = self.map.lock().ok()?;
        if let Some(flight) = map.get(name) {
            return Some(flight.clone());
        }
        if map.len() >= MAX_FLIGHTS {
            info!(
                file = name,
                limit = MAX_FLIGHTS,
                "too many peer fetches under way; not fetched"
            );
            return None;
        }
        let (tx, rx) = watch::channel(Outcome::Running);
        let progress = Arc::new(Progress::default());
        let flight = Arc::new(Flight {
            name: name.to_owned(),
            started: Instant::now(),
            progress: progress.clone(),
            wanted: Mutex::new(Instant::now()),
            outcome: rx,
            cancel: CancellationToken::new(),
        });
        map.insert(name.to_owned(), flight.clone());
        let work = work(progress);
        let this = self.clone();
        let running = flight.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                fetched = work => match fetched {
                    Ok(fetched) => Outcome::Ready(Arc::new(fetched)),
                    Err(_) => Outcome::Failed,
                },
                _ = running.cancel.cancelled() => Outcome::Failed,
                _ = tokio::time::sleep(BUDGET) => {
                    info!(file = %running.name, budget_s = BUDGET.as_secs(), "peer fetch over its time budget; dropped");
                    Outcome::Failed
                }
                _ = running.abandoned() => {
                    info!(file = %running.name, "nobody waits for this peer fetch any more; dropped");
                    Outcome::Failed
                }
            };
            let ready = matches!(outcome, Outcome::Ready(_));
            let _ = tx.send(outcome);
            if ready {
                tokio::time::sleep(LINGER).await;
            }
            this.remove(&running);
        });
        Some(flight)
    }

    fn remove(&self, flight: &Arc<Flight>) {
        if let Ok(mut map) = self.map.lock() {
            if map
                .get(&flight.name)
                .is_some_and(|f| Arc::ptr_eq(f, flight))
            {
                map.remove(&flight.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const MIB: u64 = 1 << 20;

    type Work = std::pin::Pin<Box<dyn Future<Output = Result<Fetched, &'static str>> + Send>>;

    fn fetched(dir: &Path) -> Fetched {
        let path = dir.join("f");
        std::fs::write(&path, b"package bytes").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        Fetched {
            file,
            meta,
            verified: true,
            from_mirror: 0,
        }
    }

    /// A fetch that reports `rate` bytes/s of a `size`-byte file every
    /// 100 ms, then yields the file; `runs` counts how often one started.
    fn steady(
        dir: &Path,
        size: u64,
        rate: u64,
        runs: &Arc<AtomicUsize>,
    ) -> impl FnOnce(Arc<Progress>) -> Work {
        let done = fetched(dir);
        let runs = runs.clone();
        move |progress| {
            runs.fetch_add(1, Relaxed);
            Box::pin(async move {
                let mut bytes = 0;
                while bytes < size {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    bytes = (bytes + rate / 10).min(size);
                    progress.set(bytes, size);
                }
                Ok(done)
            })
        }
    }

    #[test]
    fn waiting_goes_on_only_for_fast_fetches_that_end_within_the_budget() {
        let s = Duration::from_secs;
        // 10 MiB/s, 100 MiB file, 6 s in: ends at 10 s.
        assert!(keep_waiting(s(6), 60 * MIB, 100 * MIB));
        // Same pace, 2 GiB: would end at ~205 s, past the budget.
        assert!(!keep_waiting(s(6), 60 * MIB, 2048 * MIB));
        // Under MIN_RATE, however small the rest.
        assert!(!keep_waiting(s(6), 6 * MIB, 7 * MIB));
        // Exactly MIN_RATE and ending at the budget is still worth it.
        assert!(keep_waiting(s(6), 12 * MIB, 240 * MIB));
        assert!(!keep_waiting(s(6), 12 * MIB, 240 * MIB + 1));
        // Nothing arrived (no header yet): not worth waiting for.
        assert!(!keep_waiting(s(6), 0, 0));
        assert!(!keep_waiting(Duration::ZERO, 0, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch_and_long_ones_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(dir.path().to_path_buf());
        let runs = Arc::new(AtomicUsize::new(0));
        // 80 MiB at 8 MiB/s: 10 s, longer than one wait.
        let a = flights
            .start("big", steady(dir.path(), 80 * MIB, 8 * MIB, &runs))
            .unwrap();
        let b = flights
            .start("big", steady(dir.path(), 80 * MIB, 8 * MIB, &runs))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&flights.find("big").unwrap(), &a));
        let started = tokio::time::Instant::now();
        let (first, second) = tokio::join!(a.wait(), b.wait());
        assert!(matches!(first, Answer::ComeBack), "{first:?}");
        assert!(matches!(second, Answer::ComeBack), "{second:?}");
        assert_eq!(started.elapsed(), WAIT_PER_REQUEST);
        // pacman's second request, straight after the 307.
        let again = flights.find("big").unwrap().wait().await;
        assert!(matches!(again, Answer::Ready(_)), "{again:?}");
        assert_eq!(runs.load(Relaxed), 1);
        // Collected by later requests for a while, then gone.
        tokio::time::sleep(LINGER / 2).await;
        assert!(matches!(a.wait().await, Answer::Ready(_)));
        tokio::time::sleep(LINGER).await;
        assert!(flights.find("big").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_fetch_is_given_up_for_the_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(dir.path().to_path_buf());
        let runs = Arc::new(AtomicUsize::new(0));
        // 1 MiB/s: under MIN_RATE.
        let slow = flights
            .start("slow", steady(dir.path(), 80 * MIB, MIB, &runs))
            .unwrap();
        assert!(matches!(slow.wait().await, Answer::Elsewhere));
        // Cancelled: gone at once, and a request that was waiting too is told so.
        tokio::task::yield_now().await;
        assert!(flights.find("slow").is_none());
        assert!(matches!(slow.wait().await, Answer::Elsewhere));
        // The next request starts afresh.
        assert!(flights
            .start("slow", steady(dir.path(), MIB, MIB, &runs))
            .is_some());
        assert_eq!(runs.load(Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_nobody_asks_about_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(dir.path().to_path_buf());
        let runs = Arc::new(AtomicUsize::new(0));
        // 100 s of fetching at 10 MiB/s, and one request that never returns.
        let flight = flights
            .start("gone", steady(dir.path(), 1000 * MIB, 10 * MIB, &runs))
            .unwrap();
        assert!(matches!(flight.wait().await, Answer::ComeBack));
        // Still wanted just short of ABANDONED after that request…
        tokio::time::sleep(ABANDONED - Duration::from_secs(1)).await;
        assert!(flights.find("gone").is_some());
        // …and dropped by the next check (every ABANDONED / 3) after it.
        tokio::time::sleep(ABANDONED / 3 + Duration::from_secs(1)).await;
        assert!(flights.find("gone").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_answers_elsewhere_and_frees_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(dir.path().to_path_buf());
        let failing = flights
            .start("bad", |_| async {
                Err::<Fetched, _>("every holder failed")
            })
            .unwrap();
        assert!(matches!(failing.wait().await, Answer::Elsewhere));
        tokio::task::yield_now().await;
        assert!(flights.find("bad").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_at_once_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(dir.path().to_path_buf());
        let runs = Arc::new(AtomicUsize::new(0));
        for i in 0..MAX_FLIGHTS {
            let name = format!("f{i}");
            assert!(flights
                .start(&name, steady(dir.path(), 100 * MIB, 10 * MIB, &runs))
                .is_some());
        }
        assert!(flights
            .start("one-more", steady(dir.path(), MIB, MIB, &runs))
            .is_none());
        // One already under way is still joined.
        assert!(flights
            .start("f0", steady(dir.path(), MIB, MIB, &runs))
            .is_some());
        assert_eq!(runs.load(Relaxed), MAX_FLIGHTS);
    }
}
