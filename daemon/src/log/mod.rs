//! The daemon's log: tracing events to stderr, one line each, in
//! tracing-subscriber's `Full` format (`format`), written by a thread of
//! their own in batches (`writer`), so a line per request costs the
//! request path little more than its formatting; the request line itself
//! is formatted by hand (`request`).

pub mod format;
pub mod request;
pub mod writer;

/// A `Write` whose bytes a test can read (`.0`), shared by the log's tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(pub(crate) std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

use tracing::warn;
use tracing_subscriber::EnvFilter;

pub use writer::BatchWriter;

/// Installs the global subscriber (filter from `PACMESH_LOG`, default
/// `info`). Keep what it returns until the end of `main`: dropping it
/// writes the last lines. Without the writer thread, lines go straight to
/// stderr.
pub fn init() -> Option<BatchWriter> {
    init_at("info")
}

/// [`init`] with `default` as the level when `PACMESH_LOG` is not set
/// (`--sync-once` logs warnings only, under its progress bar).
pub fn init_at(default: &str) -> Option<BatchWriter> {
    let filter = EnvFilter::try_from_env("PACMESH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .event_format(format::LineFormat::default());
    match BatchWriter::start(std::io::stderr()) {
        Ok((writer, sink)) => {
            if !ansi {
                request::install(sink.clone());
            }
            builder.with_writer(sink).init();
            Some(writer)
        }
        Err(e) => {
            builder.with_writer(std::io::stderr).init();
            warn!(error = %e, "cannot start the log writer thread; logging directly");
            None
        }
    }
}
