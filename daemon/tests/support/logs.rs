//! Log capture, to check that what the daemon logs names the peer and the
//! reason. One global subscriber per test binary.

use std::io::Write;
use std::sync::{Mutex, Once};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing the daemon's debug log (once per binary).
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("pacmeshd=debug,pacmesh=debug")
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Whether one captured line contains every string of `all`.
pub fn log_has_line(all: &[&str]) -> bool {
    log_count(all) > 0
}

/// How many captured lines contain every string of `all`.
pub fn log_count(all: &[&str]) -> usize {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| all.iter().all(|s| line.contains(s)))
        .count()
}
