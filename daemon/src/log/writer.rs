//! Log lines written off the request path: formatted lines are appended to
//! a buffer that one thread writes out in batches. At a hundred thousand
//! requests a second, one `write(2)` per request line on the runtime
//! thread cost a fifth of the serving capacity; batched, a busy second
//! costs at most 50 writes. A line waits at most [`GATHER`] before it is
//! written; an idle daemon never wakes the thread.

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer gathers lines after the first one arrives: at most
/// 50 writes a second whatever the request rate, and few wake-ups of this
/// thread (each one took a core from the connections' threads).
pub const GATHER: Duration = Duration::from_millis(20);

/// A batch is written as soon as it holds this much, gathered or not: at
/// a hundred thousand lines a second, 20 ms of them would be 300 KB held
/// twice (the batch being written and the one filling).
pub const BATCH: usize = 64 * 1024;

/// Lines buffered beyond this are dropped (and counted) rather than let a
/// stalled log reader hold the daemon's memory or its request threads.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer is waiting for lines and must be woken for one.
    idle: bool,
    /// The writer is gathering a batch and must be woken once it is full.
    gathering: bool,
    /// Lines dropped since the last batch, because the buffer was full.
    dropped: u64,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock()
    }
}

/// The writer thread; flushes what is buffered and stops when dropped.
pub struct BatchWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A handle that appends whole lines (tracing's `MakeWriter`).
#[derive(Clone)]
pub struct LineSink {
    shared: Arc<Shared>,
}

impl BatchWriter {
    /// Starts the thread that writes batches to `out`.
    pub fn start(out: impl Write + Send + 'static) -> io::Result<(BatchWriter, LineSink)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared, out)
            })?;
        let sink = LineSink {
            shared: shared.clone(),
        };
        Ok((
            BatchWriter {
                shared,
                thread: Some(thread),
            },
            sink,
        ))
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closing {
            pending.idle = true;
            shared.wake.wait(&mut pending);
        }
        if pending.lines.is_empty() {
            return;
        }
        // Let the lines of this moment gather into one write.
        let deadline = Instant::now() + GATHER;
        pending.gathering = true;
        while pending.lines.len() < BATCH && !pending.closing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            shared.wake.wait_for(&mut pending, left);
        }
        pending.gathering = false;
        std::mem::swap(&mut batch, &mut pending.lines);
        let dropped = std::mem::take(&mut pending.dropped);
        drop(pending);
        if dropped > 0 {
            let _ = writeln!(batch, "log: {dropped} lines dropped (log output too slow)");
        }
        let _ = out.write_all(&batch);
        let _ = out.flush();
        batch.clear();
        // A burst's buffer is not kept for the quiet that follows.
        batch.shrink_to(2 * BATCH);
    }
}

impl Write for LineSink {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.lines.len() + line.len() > MAX_BUFFERED {
            pending.dropped += 1;
            return Ok(line.len());
        }
        pending.lines.extend_from_slice(line);
        let full = pending.gathering && pending.lines.len() >= BATCH;
        if std::mem::take(&mut pending.idle) || full {
            pending.gathering = false;
            drop(pending);
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineSink {
    type Writer = LineSink;

    fn make_writer(&'a self) -> LineSink {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::SharedBuf;

    #[test]
    fn lines_arrive_in_order_and_all_are_flushed_on_drop() {
        let out = SharedBuf::default();
        let (writer, sink) = BatchWriter::start(out.clone()).expect("thread");
        let mut want = Vec::new();
        for i in 0..10_000 {
            let line = format!("line {i}\n");
            sink.clone().write_all(line.as_bytes()).expect("write");
            want.extend_from_slice(line.as_bytes());
        }
        drop(writer);
        assert!(*out.0.lock() == want);
    }

    #[test]
    fn a_single_line_is_written_without_more_coming() {
        let out = SharedBuf::default();
        let (_writer, mut sink) = BatchWriter::start(out.clone()).expect("thread");
        sink.write_all(b"one\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*out.0.lock(), b"one\n");
    }
}
