//! `pacmeshd --sync-once`: one run of every full mirror's sync in a
//! terminal, with a progress bar (on stderr, when it is a terminal) and a
//! summary line per repo and architecture (stdout). The daemon holds the
//! store's lock while it runs, so this refuses to run beside it: two
//! writers would each switch databases the other serves.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};

use super::{full_repos, Progress, Summary, Syncer};
use crate::setup::Environment;
use crate::stats::Stats;

/// The lock file under the store dir.
pub const LOCK_FILE: &str = "mirror.lock";

/// Takes the store's lock (mirror mode: one daemon or one `--sync-once`).
pub fn lock_store(store_dir: &Path) -> anyhow::Result<File> {
    let path = store_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "{} is locked: another pacmeshd uses this store (the daemon syncs full mirrors \
             on its refresh timer; stop it to run --sync-once)",
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Runs every full mirror's sync once; `Ok(false)` if any is incomplete.
pub async fn run(env: Environment) -> anyhow::Result<bool> {
    let Some(mirror) = env.mirror_mode.clone() else {
        bail!("--sync-once needs mode = \"mirror\"");
    };
    let full = full_repos(&mirror);
    if full.is_empty() {
        bail!("--sync-once: no [[mirror.repo]] has full = true");
    }
    let _lock = lock_store(&env.store_dir)?;
    let engine = crate::open_engine(&env, Arc::new(Stats::default()))?;
    let client = crate::mirror_client::MirrorClient::new();
    let proxy = crate::open_dbproxy(&env, &mirror, &engine, &client).await?;
    let syncer = Syncer {
        engine,
        proxy,
        client,
    };
    for (repo, arch) in &full {
        syncer.pin_current(repo, arch);
    }
    let mut complete = true;
    for (repo, arch) in &full {
        let bar = Arc::new(Bar(ProgressBar::new(0)));
        let progress: Arc<dyn Progress> = bar.clone();
        let outcome = syncer.sync(&env.mirrors, repo, arch, &progress).await;
        bar.0.finish_and_clear();
        match outcome {
            Ok(summary) => {
                println!("{}", summary_line(&summary));
                complete &= summary.failed.is_empty();
            }
            Err(e) => {
                eprintln!("pacmeshd: {arch}/{repo}: {e}");
                complete = false;
            }
        }
    }
    Ok(complete)
}

/// `arch/repo: N listed, N present, N fetched (B bytes), …`.
pub fn summary_line(s: &Summary) -> String {
    let mut line = format!(
        "{}/{}: {} listed, {} present, {} fetched ({} bytes), {} removed, database {}",
        s.arch,
        s.repo,
        s.listed,
        s.present,
        s.fetched,
        s.fetched_bytes,
        s.removed,
        if s.switched { "switched" } else { "unchanged" }
    );
    if !s.failed.is_empty() {
        line.push_str(&format!("; NOT COMPLETE, failed: {}", s.failed.join(" ")));
    }
    if s.unverifiable > 0 {
        line.push_str(&format!(
            "; {} entries without a checksum skipped",
            s.unverifiable
        ));
    }
    line
}

/// The terminal's progress bar, in bytes.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, what: &str, files: usize, bytes: u64) {
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.0.set_style(style.progress_chars("=> "));
        self.0.set_length(bytes);
        self.0.set_message(format!("{what}: {files} packages"));
    }

    fn bytes(&self, n: u64) {
        self.0.inc(n);
    }

    fn done(&self, name: &str, ok: bool) {
        if !ok {
            self.0.println(format!("failed: {name}"));
        }
    }
}
